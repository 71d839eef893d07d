import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { createIssuance, type Issuance, type IssuanceConfig } from '../src/acme/issuance.js';
import { DEFAULTS } from '../src/config/config.js';
import { readStorageKey } from '../src/tls/storage-key-source.js';
import { firstTable, servingOptions, startAcmeWorld, type AcmeWorld } from './support/acme-world.js';
import { captureLogs } from './support/log-capture.js';
import { makeCertificate, makeStorageKeyText, storeCertificate } from './support/certificates.js';
import { eventually, startTestService, type TestService } from './support/service.js';

// Renewal of a short-lived certificate from the real test CA (5 minutes: the least smallstep
// issues), through the real proxy. The renewal's clock is moved 4 minutes on (the only thing not
// real: time); the proxy's handshakes use the real clock throughout.

const NAME = 'renew.renewal.test';
const GONE = 'gone.renewal.test';
const KEY = makeStorageKeyText();
const storageKey = readStorageKey(KEY, undefined)!;
const FIVE_MINUTES = 5 * 60_000;

let world: AcmeWorld;
let ca: AcmeWorld['ca'];
let db: AcmeWorld['db'];
let seed: AcmeWorld['seed'];
let proxy: TestService;
const issuances: Issuance[] = [];
const captured = captureLogs('debug');
const logger = captured.logger;

before(async () => {
  world = await startAcmeWorld({ ca: { names: [NAME, GONE] }, routes: [{ name: NAME }, { name: GONE }] });
  ({ ca, db, seed } = world);
  // The proxy streams certificates and answers HTTP-01; it issues nothing itself here.
  proxy = await startTestService({ ...servingOptions(world, KEY), httpAddr: { host: ca.hostAddress, port: 80 } });
  await firstTable([proxy], NAME);
});
after(async () => {
  for (const i of issuances) await i.stop();
  await proxy?.stop('test done');
  await world?.stop();
});

function issuance(more: { renewalNow?: () => number; lifetimeMs?: number } = {}): Issuance {
  const config: IssuanceConfig = {
    ...DEFAULTS,
    primaryDatabaseUrl: db.url,
    acmeDirectoryUrl: ca.directoryUrl,
    acmeCaRootsFile: ca.rootsFile,
    acmeEmail: undefined,
  };
  const i = createIssuance(config, { view: proxy.store, storageKey, logger, renewalIntervalMs: 3_600_000, ...more })!;
  issuances.push(i);
  return i;
}

function served(servername: string): Promise<{ fingerprint: string; notAfter: number }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: proxy.httpsPort!, servername, ca: ca.rootPem }, () => {
      const cert = socket.getPeerX509Certificate()!;
      socket.end();
      resolve({ fingerprint: cert.fingerprint256, notAfter: Date.parse(cert.validTo) });
    });
    socket.on('error', reject);
  });
}

/** Handshakes one after the other until stopped: every failure and every certificate seen. */
function handshakeLoop(servername: string) {
  const seen = new Set<string>();
  const failures: string[] = [];
  let running = true;
  let count = 0;
  const done = (async () => {
    while (running) {
      try {
        seen.add((await served(servername)).fingerprint);
      } catch (err) {
        failures.push(String(err));
      }
      count += 1;
    }
  })();
  return {
    seen,
    failures,
    count: () => count,
    async stop() {
      running = false;
      await done;
    },
  };
}

const fourMinutesOn = () => Date.now() + 4 * 60_000;

describe('renewal (real Caddy CA, real proxy, real PostgreSQL)', () => {
  it('a short-lived certificate is renewed past two thirds of its life, with no failed handshake', async () => {
    const first = await issuance({ lifetimeMs: FIVE_MINUTES }).runner.run(NAME, 'on-demand');
    assert.equal(first.kind, 'issued');
    const old = await eventually('the proxy serves the first certificate', async () => served(NAME).catch(() => undefined), 10_000);
    assert.ok(old.notAfter - Date.now() <= FIVE_MINUTES + 1000, 'short-lived');

    const loop = handshakeLoop(NAME);
    try {
      // Two proxies' renewal passes at once: the fleet lock lets one of them order.
      const passes = await Promise.all(
        [issuance({ renewalNow: fourMinutesOn }), issuance({ renewalNow: fourMinutesOn })].map((i) => i.renewal.checkOnce()),
      );
      const outcomes = passes.map((p) => p.get(NAME)).sort();
      assert.equal(outcomes.filter((o) => o === 'issued').length, 1, JSON.stringify(outcomes));
      const renewed = await eventually('the proxy serves the renewed certificate', async () => {
        const now = await served(NAME);
        return now.fingerprint !== old.fingerprint ? now : undefined;
      });
      assert.ok(renewed.notAfter > old.notAfter, 'the new one expires later');
      await eventually('some handshakes after the switch', () => loop.count() > 20);
    } finally {
      await loop.stop();
    }
    assert.deepEqual(loop.failures, []);
    assert.ok(loop.seen.has(old.fingerprint) && loop.seen.size === 2, `saw ${loop.seen.size} certificates`);
    const { rows } = await seed.client.query('SELECT count(*)::int AS n FROM edgeproxy_certificates WHERE $1 = ANY (names)', [NAME]);
    assert.equal(rows[0].n, 2, 'the old row stays until it expires; the index prefers the later one');
    // Renewed: the next pass (same moved clock) finds nothing due.
    assert.equal((await issuance({ renewalNow: fourMinutesOn }).renewal.checkOnce()).size, 0);
  });

  it('a pass removes the tokens of orders that never cleaned up (a proxy that died mid-order), and no other', async () => {
    await seed.client.query(
      `INSERT INTO edgeproxy_acme_challenges (token, key_authorization, name, expires_at)
       VALUES ('stale-token', 'stale.ka', $1, now() - interval '1 minute'), ('live-token', 'live.ka', $1, now() + interval '5 minutes')`,
      [NAME],
    );
    await issuance().renewal.checkOnce();
    const { rows } = await seed.client.query('SELECT token FROM edgeproxy_acme_challenges ORDER BY token');
    assert.deepEqual(rows, [{ token: 'live-token' }]);
    await seed.client.query('DELETE FROM edgeproxy_acme_challenges');
  });

  it('a pass deletes an expired certificate that a valid one replaces; the proxy drops it by the stream', async () => {
    const expired = await storeCertificate(seed.client, KEY, makeCertificate([NAME]));
    await seed.client.query(
      `UPDATE edgeproxy_certificates SET not_before = now() - interval '90 days', not_after = now() - interval '1 hour' WHERE id = $1`,
      [expired],
    );
    await eventually('streamed', () => proxy.store.current?.tls.stored.some((r) => r.id === expired));
    await issuance().renewal.checkOnce();
    const { rows } = await seed.client.query('SELECT id FROM edgeproxy_certificates WHERE id = $1', [expired]);
    assert.deepEqual(rows, []);
    await eventually('gone from the snapshot', () => proxy.store.current?.tls.stored.every((r) => r.id !== expired));
    const line = captured.logs.find((l) => l.msg === 'expired certificates deleted');
    assert.deepEqual(
      (line?.certificates as { id: string; names: string[] }[]).map((c) => [c.id, c.names]),
      [[expired, [NAME]]],
    );
    // The valid ones stay, and are served.
    assert.ok((await served(NAME)).notAfter > Date.now());
  });

  it('a name that lost its route is not renewed', async () => {
    assert.equal((await issuance({ lifetimeMs: FIVE_MINUTES }).runner.run(GONE, 'on-demand')).kind, 'issued');
    await seed.client.query('UPDATE domains SET verified_at = NULL WHERE name = $1', [GONE]);
    await eventually('the route gone', () => proxy.store.current?.routes.get(GONE) === undefined, 10_000);
    const pass = await issuance({ renewalNow: fourMinutesOn }).renewal.checkOnce();
    assert.equal(pass.has(GONE), false);
  });

  it("an operator's forced renewal orders at once, whatever the renewal time and the backoff say", async () => {
    const i = issuance();
    const count = async () =>
      (await seed.client.query('SELECT count(*)::int AS n FROM edgeproxy_certificates WHERE $1 = ANY (names)', [NAME])).rows[0].n as number;
    const before = await count();
    // Not due (renewed above), and backing off as after a failure: only a forced renewal orders.
    await seed.client.query(`UPDATE edgeproxy_acme_orders SET failures = 3, retry_after = now() + interval '1 hour' WHERE name = $1`, [
      NAME,
    ]);
    assert.equal((await i.runner.run(NAME, 'renewal')).kind, 'backing-off');
    assert.equal((await i.renewNow(NAME)).kind, 'issued');
    // A new row (served once it expires last: within the same second as the last renewal, their not-after may tie).
    assert.equal(await count(), before + 1);
    const { rows } = await seed.client.query('SELECT failures, retry_after FROM edgeproxy_acme_orders WHERE name = $1', [NAME]);
    assert.deepEqual(rows[0], { failures: 0, retry_after: null });
  });

  it('no key in the log lines', () => {
    const all = [captured.text(), ...proxy.logs.map((l) => JSON.stringify(l))].join('\n');
    assert.ok(all.includes('certificate issued'));
    assert.ok(!/PRIVATE KEY/.test(all));
    assert.ok(!all.includes(KEY));
  });
});
