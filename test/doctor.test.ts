import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../src/log/logger.js';
import { ReplicationStream, StreamError } from '../src/replication/stream.js';
import { closedPort } from './support/backend.js';
import { describeRun, runCli, type Run } from './support/cli.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';
import { Seeder } from './support/seed.js';
import { makeCertificate, makeStorageKeyText, storeCertificate } from './support/certificates.js';
import { REGION_A, REGION_B } from './support/service.js';
import { startStandby } from './support/standby.js';

// `edgeproxy doctor` as a process against databases set up right and wrong: a second server runs
// with wal_level=replica.

let logical: PgServer;
let replicaWal: PgServer;
before(async () => {
  [logical, replicaWal] = await Promise.all([startPostgres(), startPostgres({ walLevel: 'replica' })]);
});
after(async () => {
  await Promise.all([logical.stop(), replicaWal.stop()]);
});

interface Check {
  readonly check: string;
  readonly status: 'pass' | 'fail' | 'warn' | 'skip';
  readonly detail: string;
  readonly fix?: string;
  readonly code?: string;
}

const PUBLICATION_SQL =
  'CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms, regions, edgeproxy_certificates, edgeproxy_acme_challenges';

const STORAGE_KEY = makeStorageKeyText();

/**
 * What a proxy that serves and issues certificates has: the storage key, and `url` as its primary.
 * The ACME directory is off here (the check says so, a skip): test/doctor-acme.test.ts runs doctor
 * against the test CA; none may ask Let's Encrypt.
 */
const tlsEnv = (url: string) => ({
  EDGEPROXY_TLS_STORAGE_KEY: STORAGE_KEY,
  EDGEPROXY_PRIMARY_DATABASE_URL: url,
  EDGEPROXY_ACME_DIRECTORY_URL: 'off',
});

async function doctorJson(
  url: string,
  extra: string[] = [],
  env: Record<string, string> = tlsEnv(url),
): Promise<{ run: Run; ok: boolean; checks: Map<string, Check> }> {
  const run = await runCli(['doctor', '--json', ...extra], { EDGEPROXY_DATABASE_URL: url, ...env });
  let doc: { ok: boolean; checks: Check[] };
  try {
    doc = JSON.parse(run.stdout) as { ok: boolean; checks: Check[] };
  } catch {
    throw new Error(`not JSON:\n${describeRun(run)}`);
  }
  return { run, ok: doc.ok, checks: new Map(doc.checks.map((c) => [c.check, c])) };
}

/** A migrated database with one route, optionally with the publication. */
async function database(server: PgServer, opts: { publication: boolean }): Promise<{ db: TestDatabase; seed: Seeder }> {
  const db = await createDatabase(server);
  const seed = await Seeder.connect(db.url);
  await seed.region(REGION_A);
  await seed.region(REGION_B, '192.0.2.7');
  await seed.route({ name: 'a.example', regionId: REGION_A, vmPort: 3000 });
  await seed.route({ name: 'b.example', regionId: REGION_B, vmIp: '10.0.0.2', vmPort: 3000 });
  if (opts.publication) await seed.query(PUBLICATION_SQL);
  return { db, seed };
}

/** How the proxy's stream setup fails on this database (it must fail). */
async function streamFailure(url: string): Promise<StreamError> {
  try {
    const started = await ReplicationStream.open({
      databaseUrl: url,
      publication: 'edgeproxy',
      regionAddressColumn: 'public_ipv4',
      logger: createLogger('error', { write: () => undefined }),
      setupTimeoutMs: 10_000,
      statusIntervalMs: 1000,
      onTransaction: () => undefined,
      onFailure: () => undefined,
    });
    await started.stream.close();
  } catch (err) {
    assert.ok(err instanceof StreamError, String(err));
    return err;
  }
  assert.fail('the stream started');
}

/** The stream says what doctor says, word for word: its message is doctor's detail and fix, its fix doctor's fix. */
function assertSameWords(stream: StreamError, check: Check): void {
  assert.equal(stream.kind, 'unavailable');
  assert.equal(stream.code, 'STREAM_UNAVAILABLE');
  assert.equal(stream.step, 'check_server');
  assert.equal(stream.diagnosis, check.code);
  assert.equal(stream.fix, check.fix);
  assert.equal(stream.fixSql, check.fix);
  assert.equal(stream.message, `${check.detail}. Fix: ${check.fix}`);
}

function statuses(checks: Map<string, Check>): Record<string, string> {
  return Object.fromEntries([...checks.values()].map((c) => [c.check, c.status]));
}

describe('edgeproxy doctor', { concurrency: true }, () => {
  it('a database set up right: every check passes, exit 0; the human output has one line per check', async () => {
    const { db, seed } = await database(logical, { publication: true });
    try {
      const { run, ok, checks } = await doctorJson(db.url, ['--region-id', REGION_A]);
      assert.equal(run.code, 0, describeRun(run));
      assert.equal(ok, true);
      assert.equal(checks.size, 17);
      const acme = checks.get('ACME directory')!;
      assert.deepEqual([acme.status, acme.detail], ['skip', 'EDGEPROXY_ACME_DIRECTORY_URL is off: no issuance']);
      for (const c of checks.values()) if (c !== acme) assert.equal(c.status, 'pass', `${c.check}: ${c.detail}`);
      assert.match(
        checks.get('primary writable')!.detail,
        /is a primary; role postgres may write orders, tokens, accounts and certificates$/,
      );
      assert.match(checks.get('server version')!.detail, /^PostgreSQL \d+/);
      assert.equal(checks.get('primary or standby')!.detail, 'primary (not in recovery)');
      assert.match(checks.get('routing query')!.detail, new RegExp(`^2 rows → 2 routes \\(1 in region ${REGION_A}, 1 in other regions\\)`));

      const human = await runCli(['doctor', '--database-url', db.url], tlsEnv(db.url));
      assert.equal(human.code, 0, describeRun(human));
      const lines = human.stdout.trimEnd().split('\n');
      assert.match(lines[0]!, /^edgeproxy doctor: postgres:\/\/postgres@127\.0\.0\.1:\d+\/\S+, publication "edgeproxy", sync mode auto$/);
      assert.equal(lines.length, 1 + 17 + 1);
      for (const line of lines.slice(1, -1)) assert.match(line, /^(PASS {2}\S|SKIP {2}ACME directory )/);
      assert.equal(lines.at(-1), '16 passed, 0 failed, 0 warnings, 1 skipped');
    } finally {
      await seed.close();
      await db.drop();
    }
  });

  it('no publication: FAIL with the CREATE PUBLICATION to run, exit 1', async () => {
    const { db, seed } = await database(logical, { publication: false });
    try {
      const { run, checks } = await doctorJson(db.url);
      assert.equal(run.code, 1, describeRun(run));
      assert.equal(run.stderr, 'edgeproxy: 1 check failed\n');
      const pub = checks.get('publication')!;
      assert.equal(pub.status, 'fail');
      assert.equal(pub.detail, 'publication "edgeproxy" does not exist');
      assert.equal(
        pub.fix,
        'CREATE PUBLICATION "edgeproxy" FOR TABLE "domains", "deployments", "vms", "regions", "edgeproxy_certificates", "edgeproxy_acme_challenges";',
      );
      assert.deepEqual(
        [...checks.values()].filter((c) => c.status !== 'pass').map((c) => c.check),
        ['publication', 'ACME directory'],
      );

      // The human form prints the fix under the failed line.
      const human = await runCli(['doctor'], { EDGEPROXY_DATABASE_URL: db.url, ...tlsEnv(db.url) });
      assert.match(
        human.stdout,
        /^FAIL {2}publication +publication "edgeproxy" does not exist\n +fix: CREATE PUBLICATION "edgeproxy" FOR TABLE/m,
      );
      assert.match(human.stdout, /15 passed, 1 failed, 0 warnings, 1 skipped\n$/);
    } finally {
      await seed.close();
      await db.drop();
    }
  });

  it('a publication missing a table and an action: FAIL with the ALTER PUBLICATIONs', async () => {
    const { db, seed } = await database(logical, { publication: false });
    try {
      await seed.query(`CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms WITH (publish = 'insert, update, delete')`);
      const { run, checks } = await doctorJson(db.url);
      assert.equal(run.code, 1, describeRun(run));
      const pub = checks.get('publication')!;
      assert.equal(pub.status, 'fail');
      assert.match(pub.detail, /does not include regions, edgeproxy_certificates, edgeproxy_acme_challenges; does not publish truncate/);
      assert.match(pub.fix!, /ALTER PUBLICATION "edgeproxy" ADD TABLE "regions", "edgeproxy_certificates", "edgeproxy_acme_challenges";/);
      assert.match(pub.fix!, /ALTER PUBLICATION "edgeproxy" SET \(publish = 'insert, update, delete, truncate'\);/);
    } finally {
      await seed.close();
      await db.drop();
    }
  });

  it('a table without a primary key: FAIL with ALTER TABLE ... ADD PRIMARY KEY', async () => {
    const { db, seed } = await database(logical, { publication: true });
    try {
      await seed.query('ALTER TABLE vms DROP CONSTRAINT vms_pkey CASCADE');
      const { run, checks } = await doctorJson(db.url);
      assert.equal(run.code, 1, describeRun(run));
      const keys = checks.get('primary keys')!;
      assert.equal(keys.status, 'fail');
      assert.equal(keys.detail, 'table vms has no primary key');
      assert.equal(keys.fix, 'ALTER TABLE "vms" ADD PRIMARY KEY (id);');
      assert.equal(checks.get('routing query')!.status, 'pass', 'polling still works');
    } finally {
      await seed.close();
      await db.drop();
    }
  });

  it('wal_level=replica: FAIL with ALTER SYSTEM and a restart; with --sync-mode poll the streaming checks are skipped and it passes', async () => {
    const { db, seed } = await database(replicaWal, { publication: true });
    try {
      const { run, checks } = await doctorJson(db.url);
      assert.equal(run.code, 1, describeRun(run));
      const wal = checks.get('wal_level')!;
      assert.equal(wal.status, 'fail');
      assert.equal(wal.detail, "wal_level is 'replica'; logical replication needs 'logical'");
      assert.equal(wal.fix, 'ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL');
      assert.equal(wal.code, 'PG_WAL_LEVEL');
      assertSameWords(await streamFailure(db.url), wal);

      const poll = await doctorJson(db.url, ['--sync-mode', 'poll']);
      assert.equal(poll.run.code, 0, describeRun(poll.run));
      assert.deepEqual(statuses(poll.checks), {
        connect: 'pass',
        'server version': 'pass',
        'primary or standby': 'pass',
        wal_level: 'skip',
        publication: 'skip',
        'primary keys': 'skip',
        'replication privilege': 'skip',
        'replication slots': 'skip',
        'wal senders': 'skip',
        'read access': 'pass',
        'routing query': 'pass',
        'route rows': 'pass',
        'duplicate domain names': 'pass',
        'certificate tables': 'pass',
        'certificate storage': 'pass',
        'ACME directory': 'skip',
        'primary writable': 'pass',
      });
    } finally {
      await seed.close();
      await db.drop();
    }
  });

  it('a role without REPLICATION or SELECT: FAIL with ALTER ROLE and GRANT; its password is never printed', async () => {
    const { db, seed } = await database(logical, { publication: true });
    const role = `reader_${randomBytes(4).toString('hex')}`;
    await seed.query(`CREATE ROLE ${role} LOGIN`);
    try {
      const url = db.url.replace('postgres://postgres@', `postgres://${role}:Hunter2Secret@`);
      const { run, checks } = await doctorJson(url);
      assert.equal(run.code, 1, describeRun(run));
      assert.ok(!run.stdout.includes('Hunter2Secret') && !run.stderr.includes('Hunter2Secret'));
      assert.equal(checks.get('replication privilege')!.status, 'fail');
      assert.equal(checks.get('replication privilege')!.fix, `ALTER ROLE "${role}" WITH REPLICATION;`);
      assert.equal(checks.get('replication privilege')!.detail, `role "${role}" lacks the REPLICATION attribute`);
      assert.equal(checks.get('replication privilege')!.code, 'PG_REPLICATION_ROLE');
      assertSameWords(await streamFailure(url), checks.get('replication privilege')!);
      assert.equal(checks.get('read access')!.status, 'fail');
      assert.equal(checks.get('read access')!.fix, `GRANT SELECT ON domains, deployments, vms, regions TO "${role}";`);
      assert.equal(checks.get('routing query')!.status, 'fail');
      assert.match(checks.get('routing query')!.detail, /permission denied.*\(42501\)/);
      assert.equal(checks.get('route rows')!.status, 'skip');
      const human = await runCli(['doctor', '--database-url', url], tlsEnv(url));
      assert.match(human.stdout, /^edgeproxy doctor: postgres:\/\/reader_[0-9a-f]+:\*\*\*@/);
      assert.ok(!human.stdout.includes('Hunter2Secret'));
    } finally {
      await seed.close();
      await db.drop();
      await logicalQuery(`DROP ROLE ${role}`);
    }
  });

  it('the certificate checks: tables readable, every stored key opens with the storage key, issuance needs the primary', async () => {
    const { db, seed } = await database(logical, { publication: true });
    const role = `reader_${randomBytes(4).toString('hex')}`;
    try {
      const key = STORAGE_KEY;
      const id = await storeCertificate(seed.client, key, makeCertificate(['a.example']));
      const good = (await doctorJson(db.url)).checks;
      assert.equal(
        good.get('certificate tables')!.detail,
        'edgeproxy_certificates, edgeproxy_acme_challenges readable; 1 certificate stored',
      );
      assert.match(good.get('certificate storage')!.detail, /^storage key [0-9a-f]{16} opens all 1 stored certificate$/);

      const noKey = await doctorJson(db.url, [], { EDGEPROXY_PRIMARY_DATABASE_URL: db.url });
      assert.equal(noKey.run.code, 1, describeRun(noKey.run));
      assert.deepEqual(
        [noKey.checks.get('certificate storage')!.status, noKey.checks.get('certificate storage')!.code],
        ['fail', 'TLS_KEY_NO_STORAGE_KEY'],
      );
      const otherKey = await doctorJson(db.url, [], { ...tlsEnv(db.url), EDGEPROXY_TLS_STORAGE_KEY: makeStorageKeyText() });
      const other = otherKey.checks.get('certificate storage')!;
      assert.equal(other.code, 'TLS_KEY_OTHER_STORAGE_KEY');
      assert.match(
        other.detail,
        new RegExp(`^1 of 1 stored certificates cannot be served: the key of certificate ${id} was sealed with storage key`),
      );
      assert.ok(!otherKey.run.stdout.includes(key), 'never the key itself');

      const noPrimary = (await doctorJson(db.url, [], { EDGEPROXY_TLS_STORAGE_KEY: key })).checks.get('certificate storage')!;
      assert.equal(noPrimary.status, 'warn');
      assert.match(noPrimary.detail, /EDGEPROXY_PRIMARY_DATABASE_URL is not set: this proxy issues no certificate$/);

      await seed.query(`CREATE ROLE ${role} LOGIN`);
      await seed.query(`GRANT SELECT ON domains, deployments, vms, regions TO ${role}`);
      const reader = (await doctorJson(db.url.replace('postgres://postgres@', `postgres://${role}@`))).checks.get('certificate tables')!;
      assert.equal(reader.status, 'warn');
      assert.equal(reader.fix, `on the primary: GRANT SELECT ON edgeproxy_certificates, edgeproxy_acme_challenges TO "${role}";`);
      await seed.query('DROP TABLE edgeproxy_acme_challenges');
      const gone = (await doctorJson(db.url)).checks.get('certificate tables')!;
      assert.deepEqual(
        [gone.status, gone.detail],
        ['warn', 'edgeproxy_acme_challenges not found: HTTPS serves only the default certificate'],
      );
    } finally {
      await seed.close();
      await db.drop();
      await logicalQuery(`DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('duplicate names and unroutable rows are warnings: exit 0', async () => {
    const { db, seed } = await database(logical, { publication: true });
    try {
      await seed.route({ name: 'A.example.', regionId: REGION_B, vmIp: '10.0.0.3', vmPort: 3000 });
      await seed.route({ name: 'bad port.example', regionId: REGION_A, vmPort: 3000 });
      await seed.route({ name: 'c.example', regionId: REGION_A, vmPort: 3000 });
      await seed.query(
        `UPDATE vms SET port = NULL WHERE id = (SELECT dep.vm_id FROM domains d JOIN deployments dep ON dep.id = d.deployment_id WHERE d.name = 'c.example')`,
      );
      const { run, ok, checks } = await doctorJson(db.url);
      assert.equal(run.code, 0, describeRun(run));
      assert.equal(ok, true);
      const dup = checks.get('duplicate domain names')!;
      assert.equal(dup.status, 'warn');
      assert.match(dup.detail, /^1 host is routed by several rows, e\.g\. a\.example \(2 rows\)/);
      const rows = checks.get('route rows')!;
      assert.equal(rows.status, 'warn');
      assert.match(rows.detail, /^2 rows skipped/);
      assert.match(rows.detail, /c\.example: vm_port "null" is not a port number/);
    } finally {
      await seed.close();
      await db.drop();
    }
  });

  it('an unreachable server: FAIL connect with the fix, the rest skipped, exit 1', async () => {
    const port = await closedPort();
    const { run, checks } = await doctorJson(`postgres://edge:Hunter2Secret@127.0.0.1:${port}/zeitwork`);
    assert.equal(run.code, 1, describeRun(run));
    const connect = checks.get('connect')!;
    assert.equal(connect.status, 'fail');
    assert.match(connect.detail, /ECONNREFUSED/);
    assert.match(connect.fix!, /is PostgreSQL running and reachable/);
    assert.equal([...checks.values()].filter((c) => c.status === 'skip').length, 16);
    assert.ok(!run.stdout.includes('Hunter2Secret'));
  });
});

// Alone, after the concurrent tests: cloning the primary's data folder must not race with
// databases being created and dropped there.
describe('edgeproxy doctor on a standby', () => {
  it('a standby without hot_standby_feedback: FAIL with the setting to change; the publication made on the primary passes', async () => {
    const { db, seed } = await database(logical, { publication: true });
    const standby = await startStandby(logical, { hot_standby_feedback: 'off' });
    try {
      // The proxy reads the standby and writes to the primary.
      const { run, checks } = await doctorJson(standby.url(db.name), [], tlsEnv(db.url));
      assert.equal(run.code, 1, describeRun(run));
      const role = checks.get('primary or standby')!;
      assert.equal(role.status, 'fail');
      assert.match(role.detail, /^standby \(read replica\) that can decode logical replication, but hot_standby_feedback is off/);
      assert.equal(role.fix, 'on this standby: ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf();');
      assert.equal(role.code, 'PG_HOT_STANDBY_FEEDBACK');
      assert.equal(checks.get('publication')!.status, 'pass');
      assert.equal(checks.get('routing query')!.status, 'pass');
      assert.deepEqual(
        [...checks.values()].filter((c) => c.status !== 'pass').map((c) => c.check),
        ['primary or standby', 'ACME directory'],
      );
      // The standby given as the primary: it cannot be written.
      const wrong = (await doctorJson(standby.url(db.name))).checks.get('primary writable')!;
      assert.equal(wrong.status, 'fail');
      assert.match(wrong.detail, /is a standby \(in recovery\): it cannot be written$/);
      assert.equal(wrong.fix, 'point EDGEPROXY_PRIMARY_DATABASE_URL at the primary');
    } finally {
      await standby.stop();
      await seed.close();
      await db.drop();
    }
  });
});

async function logicalQuery(sql: string): Promise<void> {
  const seed = await Seeder.connect(logical.url('postgres'));
  try {
    await seed.query(sql);
  } finally {
    await seed.close();
  }
}
