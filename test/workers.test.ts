import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request, startBackend, type Backend } from './support/backend.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';
import { Seeder } from './support/seed.js';
import { REGION_A, eventually, startTestService, type TestService } from './support/service.js';
import type { WorkerStatus } from '../src/workers/worker-pool.js';
import { sample } from './support/prometheus.js';

// EDGEPROXY_WORKERS=2 on a real service (real Postgres, streaming; real sockets and backends):
// two worker threads listen on the public port with reusePort and route from the one table the
// main thread keeps; health probes stay on the main thread; /metrics sums the workers; a worker
// that dies is restarted while the other keeps serving.

let pg: PgServer;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

describe('worker threads (EDGEPROXY_WORKERS=2)', () => {
  let db: TestDatabase;
  let seed: Seeder;
  let vmA: Backend;
  let vmB: Backend;
  let svc: TestService;
  /** Requests answered 200 by the proxy so far (all same-region): what /metrics must sum to. */
  let served = 0;

  before(async () => {
    db = await createDatabase(pg);
    seed = await Seeder.connect(db.url);
    vmA = await startBackend('vm-a');
    vmB = await startBackend('vm-b');
    await seed.region(REGION_A, '127.0.0.1');
    await seed.route({ name: 'a.example', regionId: REGION_A, vmPort: vmA.port });
    // A long health TTL: one probe per VM for the whole test, however many workers ask.
    svc = await startTestService({
      databaseUrl: db.url,
      workers: 2,
      syncMode: 'auto',
      updateIntervalMs: 60_000,
      healthCacheTtlMs: 600_000,
      adminAddr: { host: '127.0.0.1', port: 0 },
    });
    await svc.waitForLog((l) => l.msg === 'route table loaded', 20_000);
  });
  after(async () => {
    await svc.stop('test');
    await vmA.close();
    await vmB.close();
    await seed.close();
    await db.drop();
  });

  async function workers(): Promise<WorkerStatus[]> {
    const r = await request(svc.adminPort!, { path: '/workers' });
    assert.equal(r.status, 200);
    return (JSON.parse(r.body) as { workers: WorkerStatus[] }).workers;
  }

  /** `n` requests for `host`, each on a new connection (the kernel spreads connections, not requests). */
  async function burst(host: string, n: number): Promise<string[]> {
    const bodies: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await request(svc.port, { host, path: `/${i}` });
      assert.equal(r.status, 200, `${host} request ${i}: ${r.status} ${r.body}`);
      served += 1;
      bodies.push(r.body);
    }
    return bodies;
  }

  /** Both workers have swapped in the main thread's current table. */
  async function bothCurrent(): Promise<WorkerStatus[]> {
    const generation = svc.store.current!.generation;
    return eventually('both workers on the current generation', async () => {
      const ws = await workers();
      return ws.length === 2 && ws.every((w) => w.generation === generation) ? ws : undefined;
    });
  }

  it('both workers listen on the one port and log with their id; the main thread does not listen on it', async () => {
    const listening = svc.logs.filter((l) => l.msg === 'worker listening');
    assert.deepEqual(listening.map((l) => l.worker).sort(), [1, 2]);
    for (const l of listening) assert.equal(l.port, svc.port);
    assert.equal(svc.proxy.server.listening, false);
    assert.equal(svc.logs.find((l) => l.msg === 'listening')?.workers, 2);
  });

  it('both workers route from the shared table (each answers requests, all to the right VM)', async () => {
    const before = await bothCurrent();
    const bodies = await burst('a.example', 40);
    assert.ok(bodies.every((b) => b.startsWith('vm-a GET /')));
    const after = await workers();
    for (const w of after) {
      const was = before.find((b) => b.worker === w.worker)!;
      assert.ok(w.requests > was.requests, `worker ${w.worker} answered none of 40 new connections`);
    }
  });

  it('a route committed in the database is routed by both workers', async () => {
    const generation = svc.store.current!.generation;
    await seed.route({ name: 'b.example', regionId: REGION_A, vmPort: vmB.port });
    await eventually('the new route published', () => svc.store.current!.routes.has('b.example'), 10_000);
    assert.ok(svc.store.current!.generation > generation);
    const before = await bothCurrent();
    const bodies = await burst('b.example', 40);
    assert.ok(bodies.every((b) => b.startsWith('vm-b GET /')));
    const after = await workers();
    for (const w of after)
      assert.ok(w.requests > before.find((b) => b.worker === w.worker)!.requests, `worker ${w.worker} served no b.example`);
  });

  it('probes run on the main thread only: one per VM, however many workers asked; workers read results from the board', async () => {
    assert.equal(vmA.probes().length, 1);
    assert.equal(vmB.probes().length, 1);
    // Each worker asked about each VM about once (concurrent first requests join one question); the other requests read the board.
    for (const w of await workers()) assert.ok(w.healthAsks <= 4, `worker ${w.worker} asked ${w.healthAsks} times for 2 VMs`);
  });

  it('/metrics sums the workers request counters and histograms', async () => {
    const r = await request(svc.adminPort!, { path: '/metrics' });
    assert.equal(r.status, 200);
    assert.equal(sample(r.body, 'edgeproxy_requests_total{kind="same-region",status="200"}'), served);
    assert.equal(sample(r.body, 'edgeproxy_request_duration_seconds_count{kind="same-region"}'), served);
    assert.equal(sample(r.body, 'edgeproxy_health_probes_total{result="healthy"}'), 2);
    // What only the main thread has is there once, as it is.
    assert.equal(sample(r.body, 'edgeproxy_routes'), 2);
    assert.ok((sample(r.body, 'edgeproxy_process_start_time_seconds') ?? 0) > 0);
  });

  it('a worker that dies is restarted; the other serves meanwhile, and its counts stay in /metrics', async () => {
    let failed = 0;
    let ok = 0;
    let stop = false;
    const load = (async () => {
      while (!stop) {
        try {
          const r = await request(svc.port, { host: 'a.example', timeoutMs: 5_000 });
          if (r.status === 200) ok += 1;
          else failed += 1;
        } catch {
          failed += 1; // a request in flight on the worker that died
        }
      }
    })();
    await eventually('some requests before', () => ok >= 10, 10_000);
    await svc.workers!.terminate(1);
    await svc.waitForLog((l) => l.msg === 'worker restarted' && l.worker === 1, 20_000);
    const restarted = await bothCurrent();
    assert.equal(restarted.find((w) => w.worker === 1)!.restarts, 1);
    const okAtRestart = ok;
    await eventually('requests after the restart', () => ok >= okAtRestart + 20, 20_000);
    stop = true;
    await load;
    assert.ok(failed <= 2, `${failed} requests failed; only those in flight on the dead worker may`);
    assert.ok(svc.logs.some((l) => l.msg === 'worker exited; restarting it' && l.worker === 1));
    served += ok;
    const r = await request(svc.adminPort!, { path: '/metrics' });
    // Worker 1's counts before it died were scraped above; what it answered after that and before dying is lost.
    const total = sample(r.body, 'edgeproxy_requests_total{kind="same-region",status="200"}')!;
    assert.ok(total <= served && total >= served - ok, `summed ${total}, served ${served}`);
  });
});
