// 10,000 client connections held at once against `edgeproxy serve` (a real process): new clients
// are still answered at about their usual latency, memory per connection is reported, and the
// idle timeout closes the idle ones. The fd limit is raised here, for this process and the proxy
// it starts (children inherit it).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { spawnLong, type LongRun } from './support/cli.js';
import { openAnswered, pacedLoad } from './support/connections.js';
import { startBackend, type Backend } from './support/backend.js';
import { timeNewRequests } from './support/latency.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';
import { openFilesLimit, procStats, raiseOpenFilesLimit } from './support/proc.js';
import { Seeder } from './support/seed.js';
import { eventually, REGION_A } from './support/service.js';

const CONNECTIONS = 10_000;
const ACTIVE_EVERY = 20; // every 20th held connection keeps sending requests: 500 active
const ACTIVE_RATE_PER_S = 1000; // paced: the point is many connections, not saturating 2 cores
const IDLE_TIMEOUT_S = 12;
const HOST = 'flood.example';
/** Both this process and the proxy hold one descriptor per connection, plus their own (2,000 is plenty). */
const FD_LIMIT = CONNECTIONS + 2000;

let pg: PgServer;
let db: TestDatabase;
let vm: Backend;
let proxy: LongRun;
let port: number;
before(async () => {
  const limit = raiseOpenFilesLimit(FD_LIMIT);
  console.log(`# open files limit: ${limit.soft}:${limit.hard} (${limit.raisedBy})`);
  assert.ok(
    limit.soft >= FD_LIMIT,
    `this test needs an open-files limit of ${FD_LIMIT} (ulimit -n; above the hard limit only with CAP_SYS_RESOURCE); it is ${limit.soft}`,
  );
  pg = await startPostgres();
  db = await createDatabase(pg);
  const seed = await Seeder.connect(db.url);
  vm = await startBackend('vm');
  await seed.region(REGION_A);
  await seed.route({ name: HOST, regionId: REGION_A, vmPort: vm.port });
  await seed.close();
  proxy = spawnLong(['src/cli/bin.ts', 'serve'], {
    EDGEPROXY_DATABASE_URL: db.url,
    EDGEPROXY_REGION_ID: REGION_A,
    EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
    EDGEPROXY_ADMIN_ADDR: 'off',
    EDGEPROXY_IDLE_TIMEOUT: `${IDLE_TIMEOUT_S}s`,
  });
  port = (await proxy.waitFor((l) => l.msg === 'listening')).port as number;
  await proxy.waitFor((l) => l.msg === 'route table loaded');
});
after(async () => {
  proxy?.child.kill('SIGKILL');
  await vm?.close();
  await db?.drop();
  await pg?.stop();
});

describe('10,000 concurrent client connections', () => {
  it('new requests keep their latency, memory per connection is small, the idle timeout reclaims them', async () => {
    const pid = proxy.child.pid!;
    const limit = openFilesLimit(pid);
    assert.ok(limit.soft >= FD_LIMIT, `the proxy's open-files limit is ${limit.soft}`);
    // Warm up (JIT, upstream pool, health cache), then the baseline a new client meets.
    await timeNewRequests(port, HOST, 100);
    const base = procStats(pid);
    const baseline = await timeNewRequests(port, HOST, 300);
    assert.deepEqual(baseline.failures, []);

    const t0 = performance.now();
    const conns = await openAnswered(port, HOST, CONNECTIONS);
    const openMs = performance.now() - t0;
    const held = procStats(pid);
    const active = pacedLoad(
      conns.filter((_, i) => i % ACTIVE_EVERY === 0),
      [HOST],
      ACTIVE_RATE_PER_S,
    );
    const during = await timeNewRequests(port, HOST, 1000);
    const load = await active.stop();
    const measuredMs = performance.now() - t0;
    const still = conns.filter((c) => !c.isClosed).length;
    const peak = procStats(pid);

    const perConnKb = (held.rssBytes - base.rssBytes) / CONNECTIONS / 1024;
    console.log(
      `# ${CONNECTIONS} connections opened and answered in ${Math.round(openMs)} ms; proxy fds ${base.fds} -> ${held.fds}, ` +
        `RSS ${(base.rssBytes / 2 ** 20).toFixed(1)} -> ${(held.rssBytes / 2 ** 20).toFixed(1)} MiB = ${perConnKb.toFixed(1)} KiB per connection`,
    );
    console.log(
      `# new-request latency (ms): baseline p50 ${baseline.latency.p50} p99 ${baseline.latency.p99}; ` +
        `with ${still} held (${conns.length / ACTIVE_EVERY} active at ~${ACTIVE_RATE_PER_S} req/s) p50 ${during.latency.p50} p99 ${during.latency.p99} max ${during.latency.max}; ` +
        `active connections: ${load.ok} requests answered 200, ${load.failures.length} failed`,
    );
    assert.equal(still, CONNECTIONS, `all ${CONNECTIONS} connections were still open ${Math.round(measuredMs)} ms in`);
    assert.ok(peak.fds >= base.fds + CONNECTIONS, `the proxy held them all (fds ${peak.fds})`);
    assert.deepEqual(during.failures, [], 'every new request was answered 200');
    assert.deepEqual(load.failures, [], 'every request on an active connection was answered 200');
    // Generous (the machine is shared): within 5x the baseline p99, or 50 ms above it.
    const bound = Math.max(5 * baseline.latency.p99, baseline.latency.p99 + 50);
    assert.ok(during.latency.p99 <= bound, `new-request p99 ${during.latency.p99} ms > ${bound} ms`);

    // The idle timeout closes every one of them; the proxy's descriptors come back to the baseline.
    const idleStart = performance.now();
    await eventually('the idle timeout to close every held connection', () => conns.every((c) => c.isClosed), (IDLE_TIMEOUT_S + 15) * 1000);
    const closedMs = performance.now() - idleStart;
    const left = await eventually(
      'the proxy to release their descriptors',
      () => {
        const s = procStats(pid);
        return s.fds <= base.fds + 10 ? s : undefined;
      },
      10_000,
    );
    console.log(
      `# all closed by the proxy ${Math.round(closedMs)} ms after the load stopped; proxy fds back to ${left.fds} (baseline ${base.fds})`,
    );
    assert.equal((await timeNewRequests(port, HOST, 20)).failures.length, 0, 'still answering afterwards');
  });
});
