import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { makeStorageKeyText } from './support/certificates.js';
import { eventually, REGION_A, startTestService, type TestService } from './support/service.js';
import { firstTable, issuingOptions, startAcmeWorld, type AcmeWorld } from './support/acme-world.js';

// On-demand issuance end to end: the real proxy (HTTP-01 answered on its plain port, certificates
// streamed into its snapshot), a real ACME CA (Caddy in a network namespace), real PostgreSQL.

const NEW = 'first.ondemand.test';
const H2 = 'h2.ondemand.test';
const CROWD = 'crowd.ondemand.test';
const BOTH = 'both.ondemand.test';
const DOWN = 'down.ondemand.test';
const UNVERIFIED = 'unverified.ondemand.test';
const UNKNOWN = 'unknown.ondemand.test';
const KEY = makeStorageKeyText();

let world: AcmeWorld;
let ca: AcmeWorld['ca'];
let seed: AcmeWorld['seed'];
let vm: AcmeWorld['vm'];
let proxyA: TestService;
let proxyB: TestService;

function startProxy(httpHost: string, more: Partial<Parameters<typeof startTestService>[0]> = {}): Promise<TestService> {
  return startTestService({ ...issuingOptions(world, KEY, httpHost), acmeEmail: 'ops@ondemand.test', ...more });
}

before(async () => {
  world = await startAcmeWorld({
    ca: { names: [NEW, H2, CROWD, DOWN, UNVERIFIED, UNKNOWN], namesOnSecond: [BOTH] },
    routes: [...[NEW, H2, CROWD, BOTH, DOWN].map((name) => ({ name })), { name: UNVERIFIED, verified: false }],
  });
  ({ ca, seed, vm } = world);
  proxyA = await startProxy(ca.hostAddress);
  proxyB = await startProxy(ca.secondHostAddress);
  await firstTable([proxyA, proxyB], DOWN);
});
after(async () => {
  await proxyA?.stop('test done');
  await proxyB?.stop('test done');
  await world?.stop();
});

interface Served {
  readonly fingerprint: string;
  readonly issuer: string;
}

/** A TLS handshake to `proxy` for `servername`, verifying against the test CA's root. */
function handshake(proxy: TestService, servername: string): Promise<Served> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: proxy.httpsPort!, servername, ca: ca.rootPem }, () => {
      const cert = socket.getPeerX509Certificate()!;
      socket.end();
      resolve({ fingerprint: cert.fingerprint256, issuer: cert.issuer });
    });
    socket.on('error', reject);
  });
}

const ordersStarted = (p: TestService, name: string) => p.logs.filter((l) => l.msg === 'ACME order started' && l.name === name).length;

async function certificateRows(name: string): Promise<number> {
  const { rows } = await seed.client.query('SELECT count(*)::int AS n FROM edgeproxy_certificates WHERE $1 = ANY (names)', [name]);
  return rows[0].n as number;
}

/** Counts the queries the issuance sends to the primary from now on (the pool wrapped, not replaced). */
function countQueries(pool: pg.Pool): { readonly sql: string[]; stop(): void } {
  const sql: string[] = [];
  const original = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  (pool as { query: unknown }).query = (...args: unknown[]) => {
    sql.push(typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: string }).text));
    return original(...args);
  };
  return { sql, stop: () => ((pool as { query: unknown }).query = original) };
}

describe('on-demand issuance (real proxy, real Caddy CA, real PostgreSQL)', () => {
  it('the first HTTPS request to a new verified domain succeeds with a certificate from the test CA', async () => {
    const started = performance.now();
    const answer = await new Promise<{ status: number; issuer: string; firstByteMs: number }>((resolve, reject) => {
      const req = https.get(
        { host: '127.0.0.1', port: proxyA.httpsPort!, servername: NEW, headers: { host: NEW }, ca: ca.rootPem, agent: false },
        (res) => {
          const firstByteMs = performance.now() - started;
          const issuer = (res.socket as tls.TLSSocket).getPeerX509Certificate()!.issuer;
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, issuer, firstByteMs }));
        },
      );
      req.on('error', reject);
    });
    assert.equal(answer.status, 200);
    assert.match(answer.issuer, /EdgeProxy test CA/);
    assert.equal(await certificateRows(NEW), 1);
    assert.equal(ordersStarted(proxyA, NEW) + ordersStarted(proxyB, NEW), 1);
    console.log(
      `# first byte of the first HTTPS request to a new domain (order with the local CA included): ${Math.round(answer.firstByteMs)} ms`,
    );
    assert.ok(answer.firstByteMs < 8000, `first byte after ${answer.firstByteMs} ms`);
    // The other proxy serves it too, from the stream, within 1 s of the row's commit (the bound).
    const issuedAt = Date.parse(String(proxyA.logs.find((l) => l.msg === 'certificate issued' && l.name === NEW)!.time));
    await eventually('proxy B has it', () => proxyB.store.current?.tls.certificates.lookup(NEW, Date.now()) !== undefined);
    const lagMs = Date.now() - issuedAt;
    console.log(`# certificate stored by proxy A → served by proxy B: under ${lagMs} ms`);
    assert.ok(lagMs < 1000, `${lagMs} ms`);
    assert.equal((await handshake(proxyB, NEW)).fingerprint, (await handshake(proxyA, NEW)).fingerprint);
  });

  it('an HTTP/2 client gets its first answer over h2 on a certificate issued for it', async () => {
    const session = http2.connect(`https://127.0.0.1:${proxyA.httpsPort!}`, { servername: H2, ca: ca.rootPem });
    try {
      const answer = await new Promise<{ status: number; alpn: string | false | null; issuer: string }>((resolve, reject) => {
        session.on('error', reject);
        const stream = session.request({ ':path': '/', ':authority': H2 });
        stream.on('response', (headers) => {
          const socket = session.socket as tls.TLSSocket;
          resolve({ status: Number(headers[':status']), alpn: socket.alpnProtocol, issuer: socket.getPeerX509Certificate()!.issuer });
          stream.resume();
        });
        stream.on('error', reject);
        stream.end();
      });
      assert.deepEqual([answer.status, answer.alpn], [200, 'h2']);
      assert.match(answer.issuer, /EdgeProxy test CA/);
    } finally {
      session.close();
    }
  });

  it('100 concurrent handshakes for a new name make exactly one order, and all succeed', async () => {
    const results = await Promise.allSettled(Array.from({ length: 100 }, () => handshake(proxyA, CROWD)));
    const failed = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(failed, []);
    const fingerprints = new Set(results.map((r) => (r as PromiseFulfilledResult<Served>).value.fingerprint));
    assert.equal(fingerprints.size, 1);
    assert.equal(await certificateRows(CROWD), 1);
    assert.equal(ordersStarted(proxyA, CROWD), 1);
    const { body } = await proxyA.metrics.exposition();
    // NEW, H2 and CROWD: three orders of proxy A issued so far, none failed.
    assert.match(body, /^edgeproxy_acme_orders_total\{outcome="issued"\} 3$/m);
    assert.match(body, /^edgeproxy_acme_orders_total\{outcome="failed"\} 0$/m);
    assert.match(body, /^edgeproxy_acme_orders_in_flight 0$/m);
  });

  it('two proxies on one database: one order between them, both serve the certificate', async () => {
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => handshake(i % 2 === 0 ? proxyA : proxyB, BOTH)));
    assert.equal(new Set(results.map((r) => r.fingerprint)).size, 1);
    assert.equal(await certificateRows(BOTH), 1);
    assert.equal(ordersStarted(proxyA, BOTH) + ordersStarted(proxyB, BOTH), 1);
  });

  it('unverified and unknown names: no order, no query on the primary, unrecognized_name', async () => {
    const counted = [proxyA, proxyB].map((p) => countQueries(p.issuance!.pool));
    try {
      for (const name of [UNVERIFIED, UNKNOWN, 'nowhere.invalid']) {
        await assert.rejects(handshake(proxyA, name), /unrecognized name/, name);
      }
      // What the renewal pass reads in the background is not the handshakes' doing.
      const ours = counted.flatMap((c) => c.sql).filter((q) => !q.includes('DISTINCT ON (name)'));
      assert.deepEqual(ours, []);
    } finally {
      for (const c of counted) c.stop();
    }
    const { rows } = await seed.client.query('SELECT name FROM edgeproxy_acme_orders WHERE name = ANY ($1)', [[UNVERIFIED, UNKNOWN]]);
    assert.deepEqual(rows, []);
  });

  it('a CA that is down: the handshake fails cleanly, the backoff is recorded, no tight retry loop', async () => {
    await ca.pause();
    try {
      const started = performance.now();
      await assert.rejects(handshake(proxyA, DOWN), /unrecognized name/);
      assert.ok(performance.now() - started < 5000, 'fails at once, not at the handshake bound');
      const { rows } = await seed.client.query(
        `SELECT failures, last_outcome, extract(epoch FROM retry_after - now()) AS wait_s FROM edgeproxy_acme_orders WHERE name = $1`,
        [DOWN],
      );
      assert.equal(rows[0].failures, 1);
      assert.equal(rows[0].last_outcome, 'failed');
      assert.ok(rows[0].wait_s > 50 && rows[0].wait_s <= 60, `retry in ${rows[0].wait_s} s`);
      const failed = proxyA.logs.find((l) => l.msg === 'ACME order failed' && l.name === DOWN)!;
      assert.equal((failed.err as { code: string }).code, 'ACME_DIRECTORY_UNREACHABLE');
      // More handshakes, on both proxies: refused from memory or from the lock row, no second order.
      for (let i = 0; i < 10; i++) await assert.rejects(handshake(i % 2 === 0 ? proxyA : proxyB, DOWN), /unrecognized name/);
      assert.equal(ordersStarted(proxyA, DOWN) + ordersStarted(proxyB, DOWN), 1);
      const after = await seed.client.query('SELECT failures FROM edgeproxy_acme_orders WHERE name = $1', [DOWN]);
      assert.equal(after.rows[0].failures, 1);
    } finally {
      await ca.start();
    }
  });

  it('a primary that cannot be reached: the handshake fails at once, and the name is left alone (no retry per handshake)', async () => {
    const cut = await startProxy('127.0.0.1', {
      httpAddr: { host: '127.0.0.1', port: 0 },
      primaryDatabaseUrl: 'postgres://edge@127.0.0.1:1/primary',
    });
    try {
      await eventually('the table', () => cut.store.current?.routes.get(DOWN) !== undefined, 15_000);
      await seed.route({ name: 'cut.ondemand.test', regionId: REGION_A, vmPort: vm.port });
      await eventually('the new route', () => cut.store.current?.routes.get('cut.ondemand.test') !== undefined, 15_000);
      const started = performance.now();
      await assert.rejects(handshake(cut, 'cut.ondemand.test'), /unrecognized name/);
      assert.ok(performance.now() - started < 5000);
      const counted = countQueries(cut.issuance!.pool);
      try {
        for (let i = 0; i < 5; i++) await assert.rejects(handshake(cut, 'cut.ondemand.test'), /unrecognized name/);
        assert.deepEqual(
          counted.sql.filter((q) => !q.includes('DISTINCT ON (name)')),
          [],
        );
      } finally {
        counted.stop();
      }
      assert.equal(cut.logs.filter((l) => l.msg === 'ACME order lock unavailable').length, 1);
    } finally {
      await cut.stop('test done');
    }
  });

  it('no storage key: issuance off, said once at start; a routed name gets no order', async () => {
    const keyless = await startProxy('127.0.0.1', { httpAddr: { host: '127.0.0.1', port: 0 }, tlsStorageKey: undefined });
    try {
      const line = keyless.logs.find((l) => l.msg === 'on-demand certificate issuance off; serving stored certificates only');
      assert.equal(line?.level, 'warn');
      assert.match(String(line?.reason), /no storage key/);
      assert.equal(keyless.issuance, undefined);
      await eventually('the table', () => keyless.store.current?.routes.get(DOWN) !== undefined, 15_000);
      await seed.route({ name: 'keyless.ondemand.test', regionId: REGION_A, vmPort: vm.port });
      await eventually('the new route', () => keyless.store.current?.routes.get('keyless.ondemand.test') !== undefined, 15_000);
      await assert.rejects(handshake(keyless, 'keyless.ondemand.test'), /unrecognized name/);
      assert.equal(ordersStarted(keyless, 'keyless.ondemand.test'), 0);
    } finally {
      await keyless.stop('test done');
    }
  });

  it('another storage key than the fleet: stored certificates not served, and no second order for them', async () => {
    const wrong = await startProxy('127.0.0.1', { httpAddr: { host: '127.0.0.1', port: 0 }, tlsStorageKey: makeStorageKeyText() });
    try {
      await wrong.waitForLog((l) => l.msg === 'certificate not served' && l.code === 'TLS_KEY_OTHER_STORAGE_KEY', 15_000);
      const before = await certificateRows(NEW);
      await assert.rejects(handshake(wrong, NEW), /unrecognized name/);
      // The primary holds a certificate that is not due: the order stops before the CA.
      await eventually(
        'the attempt decided',
        () => wrong.metrics.exposition().then((m) => /outcome="not-needed"\} 1$/m.test(m.body)),
        10_000,
      );
      assert.equal(ordersStarted(wrong, NEW), 0);
      assert.equal(await certificateRows(NEW), before);
      // Later handshakes do not wait for a certificate this proxy cannot open.
      const started = performance.now();
      await assert.rejects(handshake(wrong, NEW), /unrecognized name/);
      assert.ok(performance.now() - started < 1000, `refused after ${Math.round(performance.now() - started)} ms`);
    } finally {
      await wrong.stop('test done');
    }
  });

  it('no private key, account key or storage key in any log line', () => {
    const lines = [...proxyA.logs, ...proxyB.logs].map((l) => JSON.stringify(l));
    assert.ok(lines.some((l) => l.includes('certificate issued')));
    for (const line of lines) {
      assert.ok(!/PRIVATE KEY/.test(line), line);
      assert.ok(!line.includes(KEY), line);
    }
  });
});
