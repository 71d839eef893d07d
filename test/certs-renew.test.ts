import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { RenewResponse } from '../src/admin/certificate-renewal.js';
import { describeRun, runCli } from './support/cli.js';
import { firstTable, issuingOptions, servingOptions, startAcmeWorld, type AcmeWorld } from './support/acme-world.js';
import { makeStorageKeyText } from './support/certificates.js';
import { eventually, startTestService, type TestService } from './support/service.js';

// `edgeproxy certs renew NAME` end to end: the CLI as a process, the admin API of a real proxy that
// issues (HTTP-01 on its plain port), a second proxy on the same database that issues nothing, a
// real ACME CA (Caddy in a network namespace), real PostgreSQL.

const NAME = 'shop.renew.test';
/** Resolves (for the CA) to the second address, where nothing listens: its validation is refused. */
const UNREACHABLE = 'dark.renew.test';
const KEY = makeStorageKeyText();
const ADMIN = { host: '127.0.0.1', port: 0 };

let world: AcmeWorld;
let ca: AcmeWorld['ca'];
let seed: AcmeWorld['seed'];
/** Issues: the primary, the storage key, the test CA. */
let issuing: TestService;
/** Serves what the stream brings; issues nothing (ACME off). */
let serving: TestService;

before(async () => {
  world = await startAcmeWorld({ ca: { names: [NAME], namesOnSecond: [UNREACHABLE] }, routes: [{ name: NAME }, { name: UNREACHABLE }] });
  ({ ca, seed } = world);
  issuing = await startTestService({ ...issuingOptions(world, KEY, ca.hostAddress), adminAddr: ADMIN });
  serving = await startTestService({ ...servingOptions(world, KEY), adminAddr: ADMIN });
  await firstTable([issuing, serving], NAME);
});
after(async () => {
  await issuing?.stop('test done');
  await serving?.stop('test done');
  await world?.stop();
});

/** The not-after (ms) of the certificate `proxy` serves for `servername`, verified against the test CA. */
function servedNotAfter(proxy: TestService, servername: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: proxy.httpsPort!, servername, ca: ca.rootPem }, () => {
      const cert = socket.getPeerX509Certificate()!;
      socket.end();
      resolve(Date.parse(cert.validTo));
    });
    socket.on('error', reject);
  });
}

const renew = (proxy: TestService, name: string, ...more: string[]) =>
  runCli(['certs', 'renew', name, '--admin-addr', `127.0.0.1:${proxy.adminPort}`, ...more]);

async function renewOverApi(proxy: TestService, name: string): Promise<{ status: number; body: RenewResponse }> {
  const res = await fetch(`http://127.0.0.1:${proxy.adminPort}/certificates/${encodeURIComponent(name)}/renew`, { method: 'POST' });
  return { status: res.status, body: (await res.json()) as RenewResponse };
}

async function certificateRows(name: string): Promise<number> {
  const { rows } = await seed.client.query('SELECT count(*)::int AS n FROM edgeproxy_certificates WHERE $1 = ANY (names)', [name]);
  return rows[0].n as number;
}

describe('edgeproxy certs renew (real proxies, real Caddy CA, real PostgreSQL)', () => {
  it('renews a stored certificate now: the new not-after is printed, and both proxies serve it', async () => {
    assert.equal((await issuing.issuance!.runner.run(NAME, 'on-demand')).kind, 'issued');
    const issuedAt = Date.now();
    const old = await eventually('the first certificate served', () => servedNotAfter(serving, NAME).catch(() => undefined), 10_000);
    // Not-after has whole seconds: a renewal within the same second would tie with the old one.
    await eventually('a second since the first order', () => Date.now() >= issuedAt + 1100);
    const r = await renew(issuing, NAME);
    assert.equal(r.code, 0, describeRun(r));
    const printed = /^renewed shop\.renew\.test: certificate (\S+) from .+, not after (\S+)\n$/.exec(r.stdout);
    assert.ok(printed, r.stdout);
    const notAfter = Date.parse(printed[2]!);
    assert.ok(notAfter > old, `the new one (${printed[2]}) expires later than ${new Date(old).toISOString()}`);
    for (const p of [issuing, serving]) {
      await eventually('the renewed certificate served', async () => (await servedNotAfter(p, NAME)) === notAfter, 10_000);
    }
    assert.equal(await certificateRows(NAME), 2);
    const started = issuing.logs.filter((l) => l.msg === 'ACME order started' && l.name === NAME).map((l) => l.reason);
    assert.deepEqual(started, ['on-demand', 'forced']);
  });

  it('another proxy ordering the name: says so, and orders nothing', async () => {
    await seed.client.query(
      `INSERT INTO edgeproxy_acme_orders (name, locked_by, locked_until, updated_at) VALUES ($1, 'another proxy', now() + interval '1 minute', now())
       ON CONFLICT (name) DO UPDATE SET locked_by = EXCLUDED.locked_by, locked_until = EXCLUDED.locked_until`,
      [NAME],
    );
    try {
      const before = await certificateRows(NAME);
      const { status, body } = await renewOverApi(issuing, NAME);
      assert.equal(status, 409);
      assert.ok(!body.ok && body.code === 'ACME_ORDER_LOCKED' && body.lockedUntil !== undefined, JSON.stringify(body));
      const r = await renew(issuing, NAME);
      assert.equal(r.code, 1, describeRun(r));
      assert.match(r.stderr, /shop\.renew\.test is being ordered now .*not ordered twice \(ACME_ORDER_LOCKED\)/);
      assert.equal(await certificateRows(NAME), before);
    } finally {
      await seed.client.query('UPDATE edgeproxy_acme_orders SET locked_by = NULL, locked_until = NULL WHERE name = $1', [NAME]);
    }
  });

  it("an order the CA fails: the CA's words and the code", async () => {
    // Over the API: the CA retries the refused validation for some seconds, longer than a CLI run may take here.
    const { status, body } = await renewOverApi(issuing, UNREACHABLE);
    assert.equal(status, 502);
    assert.ok(!body.ok && body.code === 'ACME_ORDER_FAILED', JSON.stringify(body));
    // The message is the client's words on what the CA said (here: the validation still pending when acme-client gave up).
    assert.match(body.error, /^the order for dark\.renew\.test failed: .+/);
    assert.equal(await certificateRows(UNREACHABLE), 0);
  });

  it('a name without a route, or not a host name: no order', async () => {
    const r = await renew(issuing, 'nowhere.renew.test', '--json');
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stderr, /nowhere\.renew\.test has no route .*\(NO_ROUTE\)/);
    const json = JSON.parse(r.stdout) as RenewResponse;
    assert.ok(!json.ok && json.code === 'NO_ROUTE' && json.name === 'nowhere.renew.test', r.stdout);
    const bad = await renewOverApi(issuing, '*.renew.test');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.ok ? undefined : bad.body.code, 'ADMIN_INVALID_QUERY');
    assert.equal(issuing.logs.filter((l) => l.msg === 'ACME order started' && l.name !== NAME && l.name !== UNREACHABLE).length, 0);
  });

  it('a proxy that issues no certificates (ACME off) says so', async () => {
    const r = await renew(serving, NAME);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stderr, /this proxy issues no certificates: .*\(ACME_ISSUANCE_OFF\)/);
    assert.equal(serving.logs.filter((l) => l.msg === 'ACME order started').length, 0);
  });

  it('no private key or storage key in any log line', () => {
    const all = [...issuing.logs, ...serving.logs].map((l) => JSON.stringify(l)).join('\n');
    assert.ok(all.includes('certificate renewal requested'));
    assert.ok(!/PRIVATE KEY/.test(all));
    assert.ok(!all.includes(KEY));
  });
});
