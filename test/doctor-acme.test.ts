import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { acmeChecks } from '../src/cli/doctor-acme.js';
import { CHECKS, type CheckResult } from '../src/cli/doctor-checks.js';
import { startTestCa, type TestCa } from './support/acme-ca.js';
import { makeStorageKeyText } from './support/certificates.js';
import { describeRun, runCli } from './support/cli.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';

let server: PgServer;
let ca: TestCa;
let db: TestDatabase;

before(async () => {
  [server, ca] = await Promise.all([startPostgres(), startTestCa({ names: [] })]);
  db = await createDatabase(server);
});
after(async () => {
  await db?.drop();
  await Promise.all([server?.stop(), ca?.stop()]);
});

const checks = async (over: Partial<Parameters<typeof acmeChecks>[0]> = {}) => {
  const [directory, primary] = await acmeChecks({
    directoryUrl: ca.directoryUrl,
    caRootsFile: ca.rootsFile,
    primaryDatabaseUrl: db.url,
    ...over,
  });
  return { directory: directory!, primary: primary! };
};

describe('doctor: the ACME directory and the primary (real Caddy CA, real PostgreSQL)', () => {
  it('both set up right: pass', async () => {
    const { directory, primary } = await checks();
    assert.equal(directory.status, 'pass', directory.detail);
    assert.match(directory.detail, /answers as an ACME directory in \d+ ms$/);
    assert.equal(primary.status, 'pass', primary.detail);
    assert.match(primary.detail, /is a primary; role postgres may write orders, tokens, accounts and certificates$/);
  });

  it('issuance off or no primary: skipped, saying why', async () => {
    const { directory, primary } = await checks({ directoryUrl: undefined, primaryDatabaseUrl: undefined });
    assert.deepEqual([directory.status, primary.status], ['skip', 'skip']);
    assert.match(primary.detail, /EDGEPROXY_PRIMARY_DATABASE_URL is not set/);
  });

  it('a private CA without EDGEPROXY_ACME_CA_ROOTS, or a CA that is down: FAIL ACME_DIRECTORY_UNREACHABLE with the fix', async () => {
    const untrusted = (await checks({ caRootsFile: undefined })).directory;
    assert.deepEqual([untrusted.status, untrusted.code], ['fail', 'ACME_DIRECTORY_UNREACHABLE']);
    assert.match(untrusted.fix!, /EDGEPROXY_ACME_CA_ROOTS/);
    await ca.pause();
    try {
      const down = (await checks()).directory;
      assert.deepEqual([down.status, down.code], ['fail', 'ACME_DIRECTORY_UNREACHABLE']);
      assert.match(down.detail, /ECONNREFUSED/);
    } finally {
      await ca.start();
    }
  });

  it('a role that may only read: FAIL with the GRANTs it needs; nothing is written', async () => {
    const role = `reader_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE ${role} LOGIN`);
      await admin.query(`GRANT SELECT ON edgeproxy_acme_orders, edgeproxy_acme_accounts, edgeproxy_certificates TO ${role}`);
      const { primary } = await checks({ primaryDatabaseUrl: db.url.replace('postgres://postgres@', `postgres://${role}@`) });
      assert.equal(primary.status, 'fail');
      assert.equal(
        primary.fix,
        `GRANT INSERT, UPDATE ON edgeproxy_acme_orders TO "${role}"; GRANT INSERT, UPDATE, DELETE ON edgeproxy_acme_challenges TO "${role}"; ` +
          `GRANT INSERT, UPDATE ON edgeproxy_acme_accounts TO "${role}"; GRANT INSERT ON edgeproxy_certificates TO "${role}";`,
      );
      const rows = await admin.query(
        'SELECT (SELECT count(*) FROM edgeproxy_acme_orders) + (SELECT count(*) FROM edgeproxy_acme_accounts) AS n',
      );
      assert.equal(Number(rows.rows[0].n), 0);
    } finally {
      await admin.end();
    }
  });

  it('edgeproxy doctor runs them last, after the storage key: directory reachable, primary writable, key present', async () => {
    const run = await runCli(['doctor', '--json', '--sync-mode', 'poll'], {
      EDGEPROXY_DATABASE_URL: db.url,
      EDGEPROXY_PRIMARY_DATABASE_URL: db.url,
      EDGEPROXY_TLS_STORAGE_KEY: makeStorageKeyText(),
      EDGEPROXY_ACME_DIRECTORY_URL: ca.directoryUrl,
      EDGEPROXY_ACME_CA_ROOTS: ca.rootsFile,
    });
    const checks = (JSON.parse(run.stdout) as { checks: CheckResult[] }).checks;
    assert.deepEqual(
      checks.map((c) => c.check),
      [...CHECKS],
    );
    const tail = checks.slice(-3).map((c) => [c.check, c.status]);
    assert.deepEqual(
      tail,
      [
        ['certificate storage', 'pass'],
        ['ACME directory', 'pass'],
        ['primary writable', 'pass'],
      ],
      describeRun(run),
    );
    assert.match(checks.at(-2)!.detail, new RegExp(`^${ca.directoryUrl.replace(/[.]/g, '\\.')} answers as an ACME directory`));

    await ca.pause();
    try {
      const down = await runCli(['doctor', '--json', '--sync-mode', 'poll'], {
        EDGEPROXY_DATABASE_URL: db.url,
        EDGEPROXY_ACME_DIRECTORY_URL: ca.directoryUrl,
        EDGEPROXY_ACME_CA_ROOTS: ca.rootsFile,
      });
      assert.equal(down.code, 1, describeRun(down));
      const directory = (JSON.parse(down.stdout) as { checks: CheckResult[] }).checks.find((c) => c.check === 'ACME directory')!;
      assert.deepEqual([directory.status, directory.code], ['fail', 'ACME_DIRECTORY_UNREACHABLE']);
    } finally {
      await ca.start();
    }
  });

  it('a primary that cannot be reached: FAIL, naming the server, never the password', async () => {
    const { primary } = await checks({ primaryDatabaseUrl: 'postgres://edge:Secret99@127.0.0.1:1/primary', connectTimeoutMs: 2000 });
    assert.equal(primary.status, 'fail');
    assert.match(primary.detail, /127\.0\.0\.1:1/);
    assert.ok(!JSON.stringify(primary).includes('Secret99'));
  });
});
