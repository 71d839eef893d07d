import assert from 'node:assert/strict';
import { randomBytes, X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { accountKeyContext, loadAccount } from '../src/acme/account.js';
import { configureAcmeHttp, readCaRoots } from '../src/acme/directory-trust.js';
import { asAcmeError, issueCertificate } from '../src/acme/issue.js';
import { challengeArrives } from '../src/acme/tls-view.js';
import { EdgeProxyError, isFailure } from '../src/errors.js';
import { loadCertificate } from '../src/tls/certificate.js';
import { StorageKey } from '../src/tls/storage-key.js';
import { startTestCa, type TestCa } from './support/acme-ca.js';
import { captureLogs } from './support/log-capture.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';
import { eventually, startTestService, type TestService } from './support/service.js';

const NAMES = ['shop.issue.test', 'second.issue.test', 'unanswered.issue.test'];
let server: PgServer;
let db: TestDatabase;
let pool: pg.Pool;
let ca: TestCa;
/** The real proxy, answering HTTP-01 on port 80 of the address the CA resolves the names to. */
let proxy: TestService;
const storageKeyText = randomBytes(32).toString('base64');
const storageKey = StorageKey.parse(storageKeyText) as StorageKey;
const captured = captureLogs('debug');
const logger = captured.logger;

before(async () => {
  [server, ca] = await Promise.all([startPostgres(), startTestCa({ names: NAMES })]);
  db = await createDatabase(server);
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
  proxy = await startTestService({ databaseUrl: db.url, httpAddr: { host: ca.hostAddress, port: 80 }, tlsStorageKey: storageKeyText });
  configureAcmeHttp(readCaRoots(ca.rootsFile));
});
after(async () => {
  await proxy?.stop('test done');
  await pool?.end();
  await db?.drop();
  await Promise.all([server?.stop(), ca?.stop()]);
});

/** As the service does: the CA is told to validate once the token is in the proxy's snapshot. */
const served = (token: string) => challengeArrives(proxy.store, token, new Promise((r) => setTimeout(r, 5000)));

const account = () => loadAccount({ pool, directoryUrl: ca.directoryUrl, email: 'ops@issue.test', storageKey, logger });

describe('ACME account and one order (real Caddy CA, real PostgreSQL)', () => {
  it('registers the account once, stores its key sealed for the directory, and reuses it', async () => {
    const first = await account();
    const { rows } = await pool.query('SELECT directory_url, email, account_url, key_sealed FROM edgeproxy_acme_accounts');
    assert.equal(rows.length, 1);
    assert.equal(rows[0].email, 'ops@issue.test');
    assert.equal(rows[0].account_url, first.getAccountUrl());
    const sealed: Buffer = rows[0].key_sealed;
    assert.ok(!sealed.toString('latin1').includes('PRIVATE KEY'), 'the account key is sealed, not PEM');
    assert.match(storageKey.open(sealed, accountKeyContext(ca.directoryUrl)).toString(), /BEGIN PRIVATE KEY|BEGIN EC PRIVATE KEY/);
    const again = await account();
    assert.equal(again.getAccountUrl(), first.getAccountUrl());
    assert.equal((await pool.query('SELECT 1 FROM edgeproxy_acme_accounts')).rowCount, 1);
  });

  it('issues a certificate over HTTP-01 and stores it with its key sealed for its row', async () => {
    const started = Date.now();
    const issued = await issueCertificate({ pool, client: await account(), storageKey, challengeServed: served }, 'shop.issue.test');
    const elapsed = Date.now() - started;
    assert.deepEqual(issued.names, ['shop.issue.test']);
    const { rows } = await pool.query('SELECT id, names, chain_pem, key_sealed, issuer, not_after FROM edgeproxy_certificates');
    assert.equal(rows.length, 1);
    assert.equal(rows[0].id, issued.id);
    assert.deepEqual(rows[0].names, ['shop.issue.test']);
    const loaded = loadCertificate({ id: rows[0].id, chainPem: rows[0].chain_pem, sealedKey: rows[0].key_sealed }, storageKey);
    assert.ok(!isFailure(loaded), JSON.stringify(loaded));
    assert.equal(loaded.notAfter, issued.notAfter);
    assert.match(loaded.issuer, /EdgeProxy test CA/);
    const [leafPem, intermediatePem] = (rows[0].chain_pem as string).match(
      /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g,
    )!;
    const leaf = new X509Certificate(leafPem!);
    assert.ok(leaf.verify(new X509Certificate(intermediatePem!).publicKey), 'the chain is leaf then its issuer');
    assert.ok(new X509Certificate(intermediatePem!).verify(new X509Certificate(ca.rootPem).publicKey), 'issued under the test root');
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal((await pool.query('SELECT 1 FROM edgeproxy_acme_challenges')).rowCount, 0, 'the token is removed');
    console.log(`# one order with the local CA: ${elapsed} ms`);
  });

  it('asks for a short lifetime with the order (the test CA takes 5 minutes and more)', async () => {
    const issued = await issueCertificate(
      { pool, client: await account(), storageKey, challengeServed: served, lifetimeMs: 6 * 60_000 },
      'second.issue.test',
    );
    const lifetime = issued.notAfter - Date.now();
    assert.ok(lifetime > 4 * 60_000 && lifetime <= 6 * 60_000 + 1000, `lifetime left ${lifetime} ms`);
  });

  it('a validation that fails: ACME_ORDER_FAILED, the token removed', async () => {
    // Nobody answers this name's token: the proxy serves tokens from its snapshot, and this one is deleted first.
    const client = await account();
    await assert.rejects(
      issueCertificate(
        {
          pool,
          client,
          storageKey,
          challengeServed: async (token) => {
            await pool.query('DELETE FROM edgeproxy_acme_challenges WHERE token = $1', [token]);
            await eventually('the token gone from the snapshot', () => proxy.store.current?.tls.challenges.has(token) === false);
          },
        },
        'unanswered.issue.test',
      ),
      (err: unknown) => err instanceof EdgeProxyError && err.code === 'ACME_ORDER_FAILED' && /unanswered\.issue\.test/.test(err.message),
    );
    assert.equal((await pool.query('SELECT 1 FROM edgeproxy_acme_challenges')).rowCount, 0);
  });

  it('a directory that is not trusted: ACME_DIRECTORY_UNREACHABLE (the extra roots are for acme-client only)', async () => {
    configureAcmeHttp(undefined);
    try {
      const fresh = await createDatabase(server);
      const other = new pg.Pool({ connectionString: fresh.url, max: 1 });
      try {
        await assert.rejects(
          loadAccount({ pool: other, directoryUrl: ca.directoryUrl, email: undefined, storageKey, logger }).catch((e: unknown) => {
            throw asAcmeError(e, 'the account');
          }),
          (e: unknown) => e instanceof EdgeProxyError && e.code === 'ACME_DIRECTORY_UNREACHABLE',
        );
      } finally {
        await other.end();
        await fresh.drop();
      }
    } finally {
      configureAcmeHttp(readCaRoots(ca.rootsFile));
    }
  });

  it('a CA that is down: ACME_DIRECTORY_UNREACHABLE at once, no retry loop of the client', async () => {
    await ca.pause();
    try {
      const client = await account();
      const started = Date.now();
      await assert.rejects(
        issueCertificate({ pool, client, storageKey }, 'second.issue.test'),
        (e: unknown) => e instanceof EdgeProxyError && e.code === 'ACME_DIRECTORY_UNREACHABLE',
      );
      assert.ok(Date.now() - started < 3000, `failed after ${Date.now() - started} ms`);
    } finally {
      await ca.start();
    }
  });

  it('EDGEPROXY_ACME_CA_ROOTS: a missing file or one without a certificate is a ConfigError naming it', () => {
    assert.throws(() => readCaRoots('/nonexistent/roots.pem'), /EDGEPROXY_ACME_CA_ROOTS: cannot read \/nonexistent\/roots.pem \(ENOENT\)/);
    assert.throws(() => readCaRoots('/etc/hostname'), /EDGEPROXY_ACME_CA_ROOTS: \/etc\/hostname holds no PEM certificate/);
    assert.equal(readCaRoots(undefined), undefined);
    assert.equal(readCaRoots(ca.rootsFile)?.length, 1);
  });

  it('no log line holds a private key or the storage key', () => {
    const all = captured.text();
    assert.ok(captured.logs.length > 0);
    assert.ok(!/PRIVATE KEY/.test(all));
    assert.ok(!all.includes(storageKeyText));
  });
});
