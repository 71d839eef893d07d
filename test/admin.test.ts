import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ROUTE_KINDS } from '../src/proxy/observer.js';
import { SYNC_STATES } from '../src/sync/sync-state.js';
import { request, startBackend, closedPort, type Backend } from './support/backend.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';
import { Seeder } from './support/seed.js';
import { REGION_A, REGION_B, eventually, startTestService, type TestService } from './support/service.js';
import { sample } from './support/prometheus.js';

// The admin API of a real service (real Postgres, real sockets): every endpoint, that it is a
// separate listener (nothing of it on the public port), and the metrics it serves.

let pg: PgServer;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

const ADMIN = { host: '127.0.0.1', port: 0 } as const;

async function getJson(
  port: number,
  path: string,
  method = 'GET',
): Promise<{ status: number; body: Record<string, unknown>; headers: Record<string, unknown> }> {
  const r = await request(port, { path, method });
  return { status: r.status, headers: r.headers, body: JSON.parse(r.body) as Record<string, unknown> };
}

describe('admin API on a loaded service', () => {
  let db: TestDatabase;
  let seed: Seeder;
  let vm: Backend;
  let lb: Backend;
  let svc: TestService;
  let admin: number;

  before(async () => {
    db = await createDatabase(pg);
    seed = await Seeder.connect(db.url);
    vm = await startBackend('vm-a');
    lb = await startBackend('lb-b');
    await seed.region(REGION_A, '127.0.0.1');
    await seed.region(REGION_B, '127.0.0.1');
    await seed.route({ name: 'same.example', regionId: REGION_A, vmPort: vm.port });
    await seed.route({ name: 'cross.example', regionId: REGION_B, vmIp: '10.9.8.7', vmPort: 3000 });
    svc = await startTestService({ databaseUrl: db.url, adminAddr: ADMIN, crossRegionPort: lb.port, updateIntervalMs: 60_000 });
    assert.ok(svc.adminPort !== undefined && svc.adminPort > 0);
    admin = svc.adminPort;
    assert.notEqual(admin, svc.port, 'a listener of its own');
    await svc.waitForLog((l) => l.msg === 'route table loaded');
  });
  after(async () => {
    await svc.stop('test');
    await vm.close();
    await lb.close();
    await seed.close();
    await db.drop();
  });

  it('logs where it listens', () => {
    const line = svc.logs.find((l) => l.msg === 'admin API listening');
    assert.ok(line);
    assert.equal(line.port, admin);
    assert.equal(line.address, '127.0.0.1');
  });

  it('GET /healthz → 200 {status: ok}', async () => {
    const r = await getJson(admin, '/healthz');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { status: 'ok' });
    assert.match(String(r.headers['content-type']), /^application\/json/);
  });

  it('GET /readyz → 200 with the table size once loaded', async () => {
    const r = await getJson(admin, '/readyz');
    assert.equal(r.status, 200);
    assert.equal(r.body.ready, true);
    assert.equal(r.body.routes, 2);
    assert.equal(r.body.feeding, 'poll');
    assert.equal(r.body.state, 'polling');
  });

  it('GET /routes → the table sorted by host, with kind and target, and the sync status', async () => {
    const r = await getJson(admin, '/routes');
    assert.equal(r.status, 200);
    assert.equal(r.body.count, 2);
    assert.equal(r.body.regionId, REGION_A);
    assert.equal(r.body.source, 'poll');
    assert.deepEqual(r.body.routes, [
      {
        host: 'cross.example',
        kind: 'cross-region',
        target: `127.0.0.1:${lb.port}`,
        vmIp: '10.9.8.7',
        vmPort: 3000,
        vmRegionId: REGION_B,
        regionPublicIp: '127.0.0.1',
      },
      {
        host: 'same.example',
        kind: 'same-region',
        target: `127.0.0.1:${vm.port}`,
        vmIp: '127.0.0.1',
        vmPort: vm.port,
        vmRegionId: REGION_A,
        regionPublicIp: '127.0.0.1',
      },
    ]);
    assert.equal(r.body.truncated, false);
    const sync = r.body.sync as Record<string, unknown>;
    assert.equal(sync.mode, 'poll');
    assert.equal(sync.feeding, 'poll');
    assert.match(String(sync.lastFullLoadAt), /^\d{4}-\d\d-\d\dT/);
  });

  it('GET /routes?limit=&contains=: a page of the table; bad values → 400', async () => {
    const first = await getJson(admin, '/routes?limit=1');
    assert.equal(first.status, 200);
    assert.equal(first.body.count, 2);
    assert.equal(first.body.truncated, true);
    assert.deepEqual(
      (first.body.routes as { host: string }[]).map((x) => x.host),
      ['cross.example'],
    );
    const same = await getJson(admin, '/routes?contains=SAME');
    assert.equal(same.body.count, 1);
    assert.deepEqual(
      (same.body.routes as { host: string }[]).map((x) => x.host),
      ['same.example'],
    );
    for (const bad of ['0', '100001', 'ten', '1.5', '-1']) {
      const r = await getJson(admin, `/routes?limit=${bad}`);
      assert.equal(r.status, 400, bad);
      assert.match(String(r.body.error), /limit must be an integer from 1 to 100000/);
    }
  });

  it('GET /routes/<host>: same region with the last health result, cross region via the LB, not found → 404', async () => {
    const before = await getJson(admin, '/routes/SAME.example.');
    assert.equal(before.status, 200);
    assert.equal(before.body.host, 'same.example', 'normalised like a Host header');
    assert.equal(before.body.decision, 'same-region');
    assert.deepEqual(before.body.health, { state: 'unknown', status: null, reason: null, ageMs: null });

    assert.equal((await request(svc.port, { host: 'same.example' })).status, 200);
    const probed = await getJson(admin, '/routes/same.example');
    const health = probed.body.health as Record<string, unknown>;
    assert.equal(health.state, 'healthy');
    assert.equal(health.status, 200);
    assert.equal(typeof health.ageMs, 'number');
    assert.match(String(probed.body.reason), /healthy \(status 200\)/);

    vm.healthStatus = 500;
    await eventually('a failed probe', async () => {
      await request(svc.port, { host: 'same.example' });
      const r = await getJson(admin, '/routes/same.example');
      return (r.body.health as Record<string, unknown>).state === 'unhealthy' ? r : undefined;
    });
    vm.healthStatus = 200;
    await eventually('healthy again', async () => (await request(svc.port, { host: 'same.example' })).status === 200);

    const cross = await getJson(admin, '/routes/cross.example');
    assert.equal(cross.status, 200);
    assert.equal(cross.body.decision, 'cross-region');
    assert.equal((cross.body.route as Record<string, unknown>).target, `127.0.0.1:${lb.port}`);
    assert.match(String(cross.body.reason), new RegExp(`region ${REGION_B}.*load balancer 127\\.0\\.0\\.1:${lb.port}`));

    const missing = await getJson(admin, '/routes/nope.example');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.decision, 'not-found');
    assert.equal(missing.body.host, 'nope.example');

    const invalid = await getJson(admin, `/routes/${encodeURIComponent('bad host!')}`);
    assert.equal(invalid.status, 404);
    assert.equal(invalid.body.host, null);
    assert.match(String(invalid.body.reason), /not a valid host name/);
  });

  it('POST /resync reloads now and answers with what changed; a second one reports nothing', async () => {
    await seed.route({ name: 'new.example', regionId: REGION_A, vmPort: vm.port });
    await seed.query(`UPDATE vms SET port = 3001 WHERE private_ip = '10.9.8.7'`);
    const r = await getJson(admin, '/resync', 'POST');
    assert.equal(r.status, 200);
    assert.equal(r.body.ok, true);
    assert.equal(r.body.routes, 3);
    assert.deepEqual(r.body.added, ['new.example']);
    assert.deepEqual(r.body.changed, ['cross.example']);
    assert.deepEqual(r.body.removed, []);
    assert.equal((await request(svc.port, { host: 'new.example' })).status, 200, 'served at once, without waiting for the 60 s interval');
    const again = await getJson(admin, '/resync', 'POST');
    assert.deepEqual([again.body.added, again.body.removed, again.body.changed], [[], [], []]);
    assert.ok(svc.logs.some((l) => l.msg === 'resync requested' && l.trigger === 'admin'));
    assert.ok(svc.logs.some((l) => l.msg === 'resync finished' && l.added === 1 && l.changed === 1));
  });

  it('wrong method → 405 with Allow; unknown path → 404 listing the endpoints', async () => {
    const get = await getJson(admin, '/resync');
    assert.equal(get.status, 405);
    assert.equal(get.headers.allow, 'POST');
    const post = await getJson(admin, '/metrics', 'POST');
    assert.equal(post.status, 405);
    const unknown = await getJson(admin, '/admin');
    assert.equal(unknown.status, 404);
    assert.ok(Array.isArray(unknown.body.endpoints));
  });

  it('GET /metrics: Prometheus text with table, sync, resync, request and probe metrics, and process metrics', async () => {
    await request(svc.port, { host: 'nope.example' });
    const r = await request(admin, { path: '/metrics' });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const m = r.body;
    assert.equal(sample(m, 'edgeproxy_routes'), 3);
    assert.equal(sample(m, 'edgeproxy_route_table_ready'), 1);
    assert.ok((sample(m, 'edgeproxy_route_table_generation') ?? 0) >= 2);
    assert.equal(sample(m, 'edgeproxy_sync_mode{mode="poll"}'), 1);
    assert.equal(sample(m, 'edgeproxy_sync_mode{mode="auto"}'), 0);
    assert.equal(sample(m, 'edgeproxy_sync_feeding{source="poll"}'), 1);
    assert.equal(sample(m, 'edgeproxy_sync_state{state="polling"}'), 1);
    for (const state of SYNC_STATES)
      assert.notEqual(sample(m, `edgeproxy_sync_state{state="${state}"}`), undefined, `a series for ${state}`);
    assert.equal(sample(m, 'edgeproxy_snapshot_lsn'), 0, 'polled table: no stream position');
    assert.ok(Number.isNaN(sample(m, 'edgeproxy_replication_lag_seconds')));
    assert.equal(sample(m, 'edgeproxy_stream_reconnects_total'), 0);
    assert.equal(sample(m, 'edgeproxy_resyncs_total{trigger="admin",result="ok"}'), 2);
    assert.ok((sample(m, 'edgeproxy_resync_last_timestamp_seconds') ?? 0) > Date.now() / 1000 - 60);
    assert.ok((sample(m, 'edgeproxy_full_load_last_success_timestamp_seconds') ?? 0) > Date.now() / 1000 - 60);
    assert.ok((sample(m, 'edgeproxy_full_load_last_duration_seconds') ?? -1) >= 0);
    assert.equal(sample(m, 'edgeproxy_full_load_failures_total'), 0);
    assert.match(m, /^edgeproxy_process_cpu_user_seconds_total \d/m, 'default process metrics');
    assert.match(m, /^edgeproxy_build_info\{version="[^"]+"\} 1$/m);
  });

  it('GET /metrics: GC pauses from perf_hooks, in buckets fine enough to count pauses over 10 ms', async () => {
    v8.setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)(); // a full (major) collection, reported by perf_hooks
    await eventually(
      'the GC pause histogram',
      async () => {
        const m = (await request(admin, { path: '/metrics' })).body;
        const count = sample(m, 'edgeproxy_nodejs_gc_duration_seconds_count{kind="major"}') ?? 0;
        assert.ok(count >= 1, 'a major GC counted');
        for (const le of ['0.001', '0.002', '0.005', '0.01', '0.02', '0.05'])
          assert.notEqual(sample(m, `edgeproxy_nodejs_gc_duration_seconds_bucket{le="${le}",kind="major"}`), undefined, `bucket ${le}`);
        return true;
      },
      15_000,
    );
  });

  it('GET /metrics: requests by kind and status, upstream latency and probes, pushed by the request path (ProxyObserver)', async () => {
    await request(svc.port, { host: 'nope.example' });
    await request(svc.port, { host: 'same.example' });
    const m = (await request(admin, { path: '/metrics' })).body;
    assert.ok((sample(m, 'edgeproxy_requests_total{kind="same-region",status="200"}') ?? 0) >= 1, m);
    assert.ok((sample(m, 'edgeproxy_requests_total{kind="not-found",status="404"}') ?? 0) >= 1);
    assert.ok((sample(m, 'edgeproxy_upstream_response_seconds_count{kind="same-region"}') ?? 0) >= 1);
    assert.ok((sample(m, 'edgeproxy_health_probes_total{result="healthy"}') ?? 0) >= 1);
    assert.ok((sample(m, 'edgeproxy_health_probes_total{result="unhealthy"}') ?? 0) >= 1);
    assert.ok((sample(m, 'edgeproxy_health_probe_duration_seconds_count') ?? 0) >= 2);
    for (const kind of ROUTE_KINDS) {
      assert.notEqual(sample(m, `edgeproxy_request_duration_seconds_count{kind="${kind}"}`), undefined, `a duration series for ${kind}`);
    }
  });

  it('is not reachable on the public port: admin paths there are routed by Host like any request', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics', '/routes', '/routes/same.example']) {
      const r = await request(svc.port, { path, host: `127.0.0.1:${svc.port}` });
      assert.equal(r.status, 404, path);
      assert.equal(r.body, 'Service Not Found');
    }
    const resync = await request(svc.port, { path: '/resync', method: 'POST', host: 'localhost' });
    assert.equal(resync.status, 404);
    // With a routed Host, /metrics is the VM's own path.
    const proxied = await request(svc.port, { path: '/metrics', host: 'same.example' });
    assert.equal(proxied.body, 'vm-a GET /metrics');
  });
});

describe('admin API on a streaming service', () => {
  it('metrics and /routes show the stream: state, LSN of the snapshot, commit-to-applied lag, transactions', async () => {
    const db = await createDatabase(pg);
    const seed = await Seeder.connect(db.url);
    await seed.region(REGION_A);
    const svc = await startTestService({ databaseUrl: db.url, adminAddr: ADMIN, syncMode: 'auto', updateIntervalMs: 60_000 });
    try {
      const admin = svc.adminPort!;
      await eventually('streaming', async () => (await getJson(admin, '/routes')).body.source === 'stream', 15_000);
      await seed.route({ name: 'streamed.example', regionId: REGION_A, vmPort: 3000 });
      const routes = await eventually(
        'the change applied',
        async () => {
          const r = await getJson(admin, '/routes');
          return r.body.count === 1 ? r.body : undefined;
        },
        10_000,
      );
      const position = routes.position as { lsn: string };
      assert.match(position.lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
      const sync = routes.sync as Record<string, unknown>;
      assert.equal(sync.feeding, 'stream');
      assert.equal(sync.state, 'streaming');
      const m = (await request(admin, { path: '/metrics' })).body;
      assert.equal(sample(m, 'edgeproxy_sync_state{state="streaming"}'), 1);
      assert.equal(sample(m, 'edgeproxy_sync_feeding{source="stream"}'), 1);
      const [hi, lo] = position.lsn.split('/').map((x) => parseInt(x, 16));
      assert.equal(sample(m, 'edgeproxy_snapshot_lsn'), hi! * 2 ** 32 + lo!);
      const lag = sample(m, 'edgeproxy_replication_lag_seconds')!;
      assert.ok(lag >= 0 && lag < 10, `lag ${lag}`);
      assert.ok((sample(m, 'edgeproxy_stream_transactions_total') ?? 0) >= 1);
    } finally {
      await svc.stop('test');
      await seed.close();
      await db.drop();
    }
  });
});

describe('admin API before the first table, and disabled', () => {
  it('/readyz, /routes and /routes/<host> answer 503 until a table is loaded; /healthz and /metrics work', async () => {
    const port = await closedPort();
    const svc = await startTestService({ databaseUrl: `postgres://postgres@127.0.0.1:${port}/nothing`, adminAddr: ADMIN });
    try {
      const admin = svc.adminPort!;
      assert.equal((await getJson(admin, '/healthz')).status, 200);
      const ready = await getJson(admin, '/readyz');
      assert.equal(ready.status, 503);
      assert.deepEqual(ready.body, { ready: false, reason: 'route table not loaded yet', state: 'polling' });
      const routes = await getJson(admin, '/routes');
      assert.equal(routes.status, 503);
      assert.equal(routes.body.ready, false);
      const host = await getJson(admin, '/routes/a.example');
      assert.equal(host.status, 503);
      assert.equal(host.body.decision, 'not-ready');
      await svc.waitForLog((l) => l.msg === 'route table load failed; not ready yet');
      const resync = await getJson(admin, '/resync', 'POST');
      assert.equal(resync.status, 500);
      assert.equal(resync.body.ok, false);
      assert.match(String(resync.body.error), /ECONNREFUSED|connect/);
      const m = (await request(admin, { path: '/metrics' })).body;
      assert.equal(sample(m, 'edgeproxy_route_table_ready'), 0);
      assert.equal(sample(m, 'edgeproxy_routes'), 0);
      assert.ok((sample(m, 'edgeproxy_full_load_failures_total') ?? 0) >= 1);
      assert.equal(sample(m, 'edgeproxy_resyncs_total{trigger="admin",result="failed"}'), 1);
    } finally {
      await svc.stop('test');
    }
  });

  it('/readyz turns 503 while the service stops; the listener is closed after', async () => {
    const db = await createDatabase(pg);
    const svc = await startTestService({ databaseUrl: db.url, adminAddr: ADMIN });
    try {
      await svc.waitForLog((l) => l.msg === 'route table loaded');
      const admin = svc.adminPort!;
      assert.equal((await getJson(admin, '/readyz')).status, 200);
      svc.admin!.markStopping();
      assert.deepEqual((await getJson(admin, '/readyz')).body, { ready: false, reason: 'shutting down', state: 'polling' });
      await svc.stop('test');
      await assert.rejects(request(admin, { path: '/healthz' }), /ECONNREFUSED/);
    } finally {
      await svc.stop('test');
      await db.drop();
    }
  });

  it('adminAddr undefined (EDGEPROXY_ADMIN_ADDR empty): no admin listener', async () => {
    const db = await createDatabase(pg);
    const svc = await startTestService({ databaseUrl: db.url, adminAddr: undefined });
    try {
      assert.equal(svc.admin, undefined);
      assert.equal(svc.adminPort, undefined);
      assert.ok(!svc.logs.some((l) => l.msg === 'admin API listening'));
    } finally {
      await svc.stop('test');
      await db.drop();
    }
  });

  it('a taken admin port: startService fails and closes what it opened (database connections included)', async () => {
    const db = await createDatabase(pg);
    const blocker = await startBackend('blocker');
    const seed = await Seeder.connect(db.url);
    try {
      await assert.rejects(startTestService({ databaseUrl: db.url, adminAddr: { host: '127.0.0.1', port: blocker.port } }), /EADDRINUSE/);
      const left = await seed.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'edgeproxy %'`);
      assert.equal((left.rows[0] as { n: number }).n, 0);
    } finally {
      await seed.close();
      await blocker.close();
      await db.drop();
    }
  });
});
