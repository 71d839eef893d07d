import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import http from 'node:http';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { CertificatesView } from '../src/admin/certificates-view.js';
import { startBackend, type Backend } from './support/backend.js';
import { describeRun, runCli } from './support/cli.js';
import { makeCertificate, makeStorageKeyText, storeCertificate } from './support/certificates.js';
import { createDatabase, startPostgres, type PgServer } from './support/postgres.js';
import { Seeder } from './support/seed.js';
import { eventually, REGION_A, startTestService, type TestService } from './support/service.js';

// Certificates stored in Postgres reach the HTTPS listener through the same stream (or poll) as
// routes; HTTP-01 tokens are answered on the plain port; plain requests for a name with a
// certificate are redirected.

let pg: PgServer;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

const KEY = makeStorageKeyText();

/** The certificate the proxy serves for `servername` (its SHA-256 fingerprint), or the TLS error. */
function servedFor(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const fp = socket.getPeerX509Certificate()?.fingerprint256 ?? 'none';
      socket.end();
      resolve(fp);
    });
    socket.on('error', reject);
  });
}

function plainGet(port: number, host: string, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, headers: { host, ...headers }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
      })
      .on('error', reject);
  });
}

async function setup(overrides: Parameters<typeof startTestService>[0] extends infer T ? Partial<T> : never = {}) {
  const db = await createDatabase(pg);
  const seed = await Seeder.connect(db.url);
  // Not 127.0.0.1: the test client would be our own load balancer, whose hops are never redirected.
  await seed.region(REGION_A, '192.0.2.10');
  const vm: Backend = await startBackend('vm');
  await seed.route({ name: 'app.example', regionId: REGION_A, vmPort: vm.port });
  await seed.route({ name: 'plain.example', regionId: REGION_A, vmPort: vm.port });
  const start = (more: typeof overrides = {}) =>
    startTestService({
      databaseUrl: db.url,
      httpsAddr: { host: '127.0.0.1', port: 0 },
      tlsStorageKey: KEY,
      httpsRedirect: true,
      ...overrides,
      ...more,
    });
  const proxy: TestService = await start();
  await eventually('first route table load', () => proxy.store.ready);
  const others: TestService[] = [];
  return {
    db,
    seed,
    vm,
    proxy,
    async another(more: typeof overrides) {
      const p = await start(more);
      others.push(p);
      await eventually('first route table load', () => p.store.ready);
      return p;
    },
    async close() {
      for (const p of [proxy, ...others]) await p.stop('test done');
      await vm.close();
      await seed.close();
      await db.drop();
    },
  };
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

describe('certificates from Postgres', () => {
  it('a certificate stored by anyone is served by every proxy: streamed within 1 s, and by a polling proxy after its poll', async () => {
    const t = await setup();
    try {
      const polling = await t.another({ syncMode: 'poll', updateIntervalMs: 200 });
      await assert.rejects(servedFor(t.proxy.httpsPort!, 'app.example'), /unrecognized name/);
      const cert = makeCertificate(['app.example']);
      const committed = performance.now();
      await storeCertificate(t.seed.client, KEY, cert);
      await eventually(
        'the streaming proxy serves it',
        () => t.proxy.store.current!.tls.certificates.lookup('app.example', Date.now()) !== undefined,
        1000,
      );
      const streamedMs = performance.now() - committed;
      assert.equal(await servedFor(t.proxy.httpsPort!, 'app.example'), fingerprint(cert.certPem));
      await eventually(
        'the polling proxy serves it',
        () => polling.store.current!.tls.certificates.lookup('app.example', Date.now()) !== undefined,
        3000,
      );
      assert.equal(await servedFor(polling.httpsPort!, 'app.example'), fingerprint(cert.certPem));
      assert.ok(streamedMs < 1000, `streamed in ${streamedMs} ms`);
    } finally {
      await t.close();
    }
  });

  it('a renewed certificate replaces the old one for new handshakes; deleting it leaves the older one', async () => {
    const t = await setup();
    try {
      const older = makeCertificate(['app.example'], { days: 10 });
      const newer = makeCertificate(['app.example'], { days: 90 });
      await storeCertificate(t.seed.client, KEY, older);
      await eventually('served', async () => (await servedFor(t.proxy.httpsPort!, 'app.example')) === fingerprint(older.certPem));
      const newerId = await storeCertificate(t.seed.client, KEY, newer);
      await eventually('renewed', async () => (await servedFor(t.proxy.httpsPort!, 'app.example')) === fingerprint(newer.certPem));
      await t.seed.query('DELETE FROM edgeproxy_certificates WHERE id = $1', [newerId]);
      await eventually(
        'back to the older',
        async () => (await servedFor(t.proxy.httpsPort!, 'app.example')) === fingerprint(older.certPem),
      );
    } finally {
      await t.close();
    }
  });

  it('a proxy with another storage key, or none, serves no stored certificate and says why once, without the key', async () => {
    const t = await setup();
    try {
      const id = await storeCertificate(t.seed.client, KEY, makeCertificate(['app.example']));
      const other = await t.another({ tlsStorageKey: makeStorageKeyText() });
      const none = await t.another({ tlsStorageKey: undefined });
      const line = await other.waitForLog((l) => l.msg === 'certificate not served' && l.certificate === id);
      assert.equal(line.code, 'TLS_KEY_OTHER_STORAGE_KEY');
      const noneLine = await none.waitForLog((l) => l.msg === 'certificate not served' && l.certificate === id);
      assert.equal(noneLine.code, 'TLS_KEY_NO_STORAGE_KEY');
      await assert.rejects(servedFor(other.httpsPort!, 'app.example'), /unrecognized name/);
      await assert.rejects(servedFor(none.httpsPort!, 'app.example'), /unrecognized name/);
      await other.resync();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(other.logs.filter((l) => l.msg === 'certificate not served').length, 1, 'once, not at every load');
      for (const p of [other, none]) {
        const text = JSON.stringify(p.logs);
        assert.ok(!text.includes('PRIVATE KEY') && !text.includes(KEY), 'no key in any log line');
      }
    } finally {
      await t.close();
    }
  });
});

describe('the plain HTTP port', () => {
  it('answers an HTTP-01 token of a running order, from the snapshot, until it expires or is removed', async () => {
    const t = await setup();
    try {
      await t.seed.query(
        `INSERT INTO edgeproxy_acme_challenges (token, key_authorization, name, expires_at) VALUES ('tok_1', 'tok_1.thumb', 'app.example', now() + interval '5 minutes'),
                ('tok_old', 'tok_old.thumb', 'app.example', now() - interval '1 second')`,
      );
      await eventually('streamed', () => t.proxy.store.current!.tls.challenges.has('tok_1'));
      const r = await plainGet(t.proxy.port, 'app.example', '/.well-known/acme-challenge/tok_1');
      assert.deepEqual([r.status, r.body, r.headers['content-type']], [200, 'tok_1.thumb', 'text/plain']);
      assert.equal(t.vm.proxied().length, 0, 'answered by the proxy, not the VM');
      // An expired or unknown token is the VM's business (it may run its own ACME client).
      assert.equal((await plainGet(t.proxy.port, 'app.example', '/.well-known/acme-challenge/tok_old')).status, 200);
      assert.equal((await plainGet(t.proxy.port, 'app.example', '/.well-known/acme-challenge/nope')).status, 200);
      assert.equal(t.vm.proxied().length, 2);
      await t.seed.query(`DELETE FROM edgeproxy_acme_challenges WHERE token = 'tok_1'`);
      await eventually('removed', () => !t.proxy.store.current!.tls.challenges.has('tok_1'));
      await plainGet(t.proxy.port, 'app.example', '/.well-known/acme-challenge/tok_1');
      assert.equal(t.vm.proxied().length, 3);
    } finally {
      await t.close();
    }
  });

  it('redirects with 308 a name that has a certificate, and only those; not a hop from our other regions', async () => {
    const t = await setup();
    try {
      await storeCertificate(t.seed.client, KEY, makeCertificate(['app.example']));
      await eventually('streamed', () => t.proxy.store.current!.tls.certificates.size > 0);
      const r = await plainGet(t.proxy.port, 'App.Example', '/path?q=1');
      assert.equal(r.status, 308);
      assert.equal(r.headers.location, `https://app.example:${t.proxy.httpsPort}/path?q=1`);
      assert.equal((await plainGet(t.proxy.port, 'plain.example', '/')).status, 200, 'no certificate: proxied');
      assert.equal(
        (await plainGet(t.proxy.port, 'app.example', '/', { 'x-forwarded-proto': 'https' })).status,
        308,
        "a client's own claim",
      );
      // From a trusted peer (here: a configured proxy; our regions' load balancers alike), its X-Forwarded-Proto says.
      const behind = await t.another({ trustedProxies: ['127.0.0.1/32'] });
      await eventually('streamed', () => behind.store.current!.tls.certificates.size > 0);
      assert.equal((await plainGet(behind.port, 'app.example', '/', { 'x-forwarded-proto': 'https' })).status, 200);
      assert.equal((await plainGet(behind.port, 'app.example', '/', { 'x-forwarded-proto': 'http' })).status, 308);
      assert.equal((await plainGet(behind.port, 'app.example', '/')).status, 200, 'a trusted peer that says nothing is not redirected');
      const off = await t.another({ httpsRedirect: false });
      assert.equal((await plainGet(off.port, 'app.example', '/')).status, 200, 'EDGEPROXY_HTTPS_REDIRECT=off');
      const mapped = await t.another({ httpsRedirect: 443 });
      await eventually('streamed', () => mapped.store.current!.tls.certificates.size > 0);
      const m = await plainGet(mapped.port, 'app.example', '/x');
      assert.deepEqual([m.status, m.headers.location], [308, 'https://app.example/x']);
    } finally {
      await t.close();
    }
  });
});

describe('edgeproxy certs and the certificate metrics', () => {
  it('lists every stored certificate with its state, soonest to expire first; the metrics count them by state', async () => {
    const t = await setup();
    try {
      const proxy = await t.another({ adminAddr: { host: '127.0.0.1', port: 0 } });
      const serving = await storeCertificate(t.seed.client, KEY, makeCertificate(['app.example', '*.app.example'], { days: 90 }));
      const standby = await storeCertificate(t.seed.client, KEY, makeCertificate(['app.example'], { days: 30 }));
      const unusable = await storeCertificate(t.seed.client, makeStorageKeyText(), makeCertificate(['plain.example']));
      await eventually('streamed', () => proxy.store.current!.tls.stored.length === 3);
      const r = await runCli(['certs', '--json', '--admin-addr', `127.0.0.1:${proxy.adminPort}`]);
      assert.equal(r.code, 0, describeRun(r));
      const view = JSON.parse(r.stdout) as CertificatesView;
      assert.deepEqual(
        view.certificates.map((c) => [c.id, c.state, c.problem]),
        [
          [standby, 'standby', null],
          [serving, 'serving', null],
          [unusable, 'unusable', 'TLS_KEY_OTHER_STORAGE_KEY'],
        ],
      );
      assert.deepEqual(view.certificates[1]!.names, ['app.example', '*.app.example']);
      const text = await runCli(['certs', '--name', 'app.example', '--admin-addr', `127.0.0.1:${proxy.adminPort}`]);
      assert.match(text.stdout, /^NAMES +ISSUER +NOT AFTER +STATE +ID\n/);
      assert.match(text.stdout, /\n2 certificates naming app\.example\n$/);
      const metrics = (await proxy.metrics.exposition()).body;
      assert.match(metrics, /^edgeproxy_tls_certificates\{state="serving"\} 1$/m);
      assert.match(metrics, /^edgeproxy_tls_certificates\{state="standby"\} 1$/m);
      assert.match(metrics, /^edgeproxy_tls_certificates\{state="unusable"\} 1$/m);
      const soonest = Number(/^edgeproxy_tls_certificate_soonest_expiry_timestamp_seconds (\S+)$/m.exec(metrics)?.[1]);
      assert.ok(Math.abs(soonest - (Date.now() / 1000 + 90 * 86400)) < 86400 + 60, `soonest expiry ${soonest}: the served one`);
    } finally {
      await t.close();
    }
  });
});
