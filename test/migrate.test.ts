import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MIGRATION_SETS, migrate } from '../src/db/migrate.js';
import { describeRun, runCli } from './support/cli.js';
import { createDatabase, startPostgres, type PgServer } from './support/postgres.js';
import { Seeder } from './support/seed.js';

// `edgeproxy migrate` (node-pg-migrate over migrations/edgeproxy, and migrations/control-plane with --dev-schema) on fresh databases.

const OWN = ['edgeproxy_acme_accounts', 'edgeproxy_acme_challenges', 'edgeproxy_acme_orders', 'edgeproxy_certificates'];
const DEV = ['deployments', 'domains', 'regions', 'vms'];
const OWN_TABLE = MIGRATION_SETS.edgeproxy.table;
const DEV_TABLE = MIGRATION_SETS['control-plane'].table;

let pg: PgServer;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

async function tables(url: string): Promise<string[]> {
  const seed = await Seeder.connect(url);
  try {
    const r = await seed.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`);
    return r.rows.map((row: { tablename: string }) => row.tablename);
  } finally {
    await seed.close();
  }
}

describe('edgeproxy migrate', () => {
  it("applies EdgeProxy's own tables only, so that it is safe on a production primary", async () => {
    const db = await createDatabase(pg, { migrate: false });
    try {
      const r = await runCli(['migrate'], { EDGEPROXY_DATABASE_URL: db.url });
      assert.equal(r.code, 0, describeRun(r));
      assert.match(r.stdout, /^applied 1 migration to postgres:\/\/postgres@127\.0\.0\.1:\d+\/\S+:\n {2}edgeproxy\/001_tls_storage\n$/);
      assert.deepEqual(await tables(db.url), [...OWN, OWN_TABLE].sort(), 'no control-plane table');
    } finally {
      await db.drop();
    }
  });

  it('--dev-schema applies both sets to an empty database, records them, and skips them the second time', async () => {
    const db = await createDatabase(pg, { migrate: false });
    try {
      const dry = await runCli(['migrate', '--dev-schema', '--dry-run'], { EDGEPROXY_DATABASE_URL: db.url });
      assert.equal(dry.code, 0, describeRun(dry));
      assert.match(
        dry.stdout,
        /^would apply 2 migrations to postgres:\/\/.*:\n {2}control-plane\/001_initial_schema\n {2}edgeproxy\/001_tls_storage\n$/,
      );
      assert.deepEqual(
        await tables(db.url),
        [OWN_TABLE, DEV_TABLE].sort(),
        "a dry run creates node-pg-migrate's bookkeeping tables, nothing else",
      );

      const first = await runCli(['migrate', '--dev-schema'], { EDGEPROXY_DATABASE_URL: db.url });
      assert.equal(first.code, 0, describeRun(first));
      assert.match(first.stdout, /^applied 2 migrations to postgres:\/\/postgres@127\.0\.0\.1:\d+\/\S+:\n/);
      assert.deepEqual(await tables(db.url), [...DEV, ...OWN, OWN_TABLE, DEV_TABLE].sort());

      const second = await runCli(['migrate', '--dev-schema', '--json', '--database-url', db.url]);
      assert.equal(second.code, 0, describeRun(second));
      assert.deepEqual((JSON.parse(second.stdout) as { applied: string[] }).applied, []);
      const third = await runCli(['migrate'], { EDGEPROXY_DATABASE_URL: db.url });
      assert.match(third.stdout, /is up to date: no migration to apply\n$/);
    } finally {
      await db.drop();
    }
  });

  it('applies only the new files, in name order, and ignores non-SQL files', async () => {
    const db = await createDatabase(pg, { migrate: false });
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edgeproxy-migrations-'));
    try {
      await fs.writeFile(path.join(dir, '001_a.sql'), 'CREATE TABLE a (id int PRIMARY KEY);');
      await fs.writeFile(path.join(dir, 'README.md'), '# not a migration');
      assert.deepEqual((await migrate({ databaseUrl: db.url, dir })).applied, ['001_a']);
      await fs.writeFile(path.join(dir, '002_b.sql'), 'CREATE TABLE b (id int PRIMARY KEY);\nINSERT INTO a VALUES (1);');
      assert.deepEqual((await migrate({ databaseUrl: db.url, dir })).applied, ['002_b']);
      assert.deepEqual(await tables(db.url), ['a', 'b', OWN_TABLE]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
      await db.drop();
    }
  });

  it('a failing file rolls back every pending file and exits 1 with the database error', async () => {
    const db = await createDatabase(pg, { migrate: false });
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edgeproxy-migrations-'));
    try {
      await fs.writeFile(path.join(dir, '001_ok.sql'), 'CREATE TABLE ok (id int);');
      await fs.writeFile(path.join(dir, '002_bad.sql'), 'CREATE TABLE bad (id nonexistent_type);');
      await assert.rejects(migrate({ databaseUrl: db.url, dir }), /nonexistent_type/);
      assert.ok(!(await tables(db.url)).includes('ok'), '001_ok rolled back with 002_bad: one transaction');
      assert.deepEqual((await migrate({ databaseUrl: db.url, dir, dryRun: true })).applied, ['001_ok', '002_bad'], 'both still pending');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
      await db.drop();
    }
  });

  it('an unreachable database: exit 1, one line, no password', async () => {
    const r = await runCli(['migrate', '--database-url', 'postgres://edge:Hunter2Secret@127.0.0.1:1/x']);
    assert.equal(r.code, 1, describeRun(r));
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^edgeproxy: connect ECONNREFUSED 127\.0\.0\.1:1 \(ECONNREFUSED\)\n$/);
  });
});
