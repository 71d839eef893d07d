/**
 * A database outage under load, shared by test/db-outage.test.ts (short) and bench/db-outage.ts
 * (60 s): `edgeproxy serve` streams from a throwaway PostgreSQL while keep-alive requests flow to
 * existing routes; the server is stopped (fast shutdown) for `outageMs` and started again on the
 * same port and data folder; a route committed right after it is back must then be routed, and
 * the stream must come back. Returns the figures; the caller judges them.
 */
import { request, startBackend, type Backend } from './backend.js';
import type { LongRun } from './cli.js';
import { openAnswered, pacedLoad, type HeldConnection, type LoadResult } from './connections.js';
import { percentiles } from './latency.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './postgres.js';
import { Seeder } from './seed.js';
import { eventually, REGION_A } from './service.js';

export interface OutageOptions {
  readonly outageMs: number;
  /** EDGEPROXY_UPDATE_INTERVAL, in ms: how often the proxy polls while the stream is down. */
  readonly updateIntervalMs: number;
  /** Requests per second in all, over `connections` keep-alive connections. */
  readonly perSecond: number;
  readonly connections: number;
  /** Load before the outage and after recovery, each. */
  readonly steadyMs: number;
  /** Starts `edgeproxy serve` with this environment (from source in tests, the built bin in the bench). */
  readonly serve: (env: Record<string, string>) => LongRun;
}

export interface PhaseFigures {
  readonly requests: number;
  readonly failed: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** What the admin API said while the database was down. */
export interface OutageView {
  readonly state: string;
  readonly feeding: string;
  readonly streamErrorCode: string | undefined;
  readonly readyzStatus: number;
  readonly syncStateMetric: string | undefined;
  /** edgeproxy_full_load_failures_total at the start and at the end of the outage. */
  readonly fullLoadFailures: readonly [number, number];
}

export interface OutageReport {
  readonly outageMs: number;
  readonly phases: { readonly before: PhaseFigures; readonly during: PhaseFigures; readonly after: PhaseFigures };
  readonly failures: LoadResult['failures'];
  /** Database stopped → the proxy's sync state is no longer `streaming`. */
  readonly noticedMs: number;
  readonly duringOutage: OutageView;
  /** A route committed as soon as the database accepts connections again → routed by the proxy. */
  readonly catchUpMs: number;
  /** The sync state when that route was first routed (what fed it). */
  readonly caughtUpIn: string;
  /** Database back → the sync state is `streaming` again. */
  readonly streamingAgainMs: number;
  /** Database back → when the bootstrap retry pending then was due (the backoff), from the proxy's log. */
  readonly retryDueMs: number;
  readonly reconnects: number;
}

const HOSTS = ['outage-a.example', 'outage-b.example', 'outage-c.example', 'outage-d.example'];
const FRESH_HOST = 'outage-fresh.example';

export async function runDbOutage(opts: OutageOptions): Promise<OutageReport> {
  const pg = await startPostgres();
  const vms: Backend[] = [];
  let db: TestDatabase | undefined;
  let proxy: LongRun | undefined;
  let conns: HeldConnection[] = [];
  try {
    db = await createDatabase(pg);
    vms.push(await startBackend('vm-a'), await startBackend('vm-b'));
    await seedRoutes(db.url, vms, HOSTS);
    proxy = opts.serve({
      EDGEPROXY_DATABASE_URL: db.url,
      EDGEPROXY_REGION_ID: REGION_A,
      EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
      EDGEPROXY_ADMIN_ADDR: '127.0.0.1:0',
      EDGEPROXY_UPDATE_INTERVAL: `${opts.updateIntervalMs}ms`,
    });
    const port = (await proxy.waitFor((l) => l.msg === 'listening')).port as number;
    const admin = new AdminProbe((await proxy.waitFor((l) => l.msg === 'admin API listening')).port as number);
    await proxy.waitFor((l) => l.msg === 'replication stream started', 30_000);
    conns = await openAnswered(port, HOSTS[0]!, opts.connections, opts.connections);
    const load = pacedLoad(conns, HOSTS, opts.perSecond);
    const loadStart = performance.now();
    await sleep(opts.steadyMs);
    const outage = await outageOf(pg, admin, opts.outageMs);
    const back = { at: performance.now(), wall: Date.now() };
    const caughtUp = await commitAndWaitRouted(db.url, vms[1]!, port, admin);
    await eventually('the stream to come back', async () => (await admin.sync()).state === 'streaming', 90_000);
    const streamingAgainMs = performance.now() - back.at;
    await sleep(opts.steadyMs);
    const result = await load.stop();
    const downAt = outage.downAt - loadStart;
    const upAt = back.at - loadStart;
    return {
      outageMs: back.at - outage.downAt,
      phases: {
        before: phase(result, (t) => t < downAt),
        during: phase(result, (t) => t >= downAt && t < upAt),
        after: phase(result, (t) => t >= upAt),
      },
      failures: result.failures,
      noticedMs: outage.noticedMs,
      duringOutage: outage.view,
      catchUpMs: caughtUp.ms,
      caughtUpIn: caughtUp.state,
      streamingAgainMs,
      retryDueMs: retryDue(proxy, back.wall),
      reconnects: await admin.metric('edgeproxy_stream_reconnects_total'),
    };
  } finally {
    for (const c of conns) c.socket.destroy();
    proxy?.child.kill('SIGTERM');
    await proxy?.exited;
    for (const vm of vms) await vm.close();
    await db?.drop().catch(() => undefined);
    await pg.stop();
  }
}

async function seedRoutes(url: string, vms: Backend[], hosts: string[]): Promise<void> {
  const seed = await Seeder.connect(url);
  await seed.region(REGION_A);
  for (const [i, name] of hosts.entries()) await seed.route({ name, regionId: REGION_A, vmPort: vms[i % vms.length]!.port });
  await seed.close();
}

/** Stops the server for `outageMs`, reading what the admin API says meanwhile. */
async function outageOf(
  pg: PgServer,
  admin: AdminProbe,
  outageMs: number,
): Promise<{ downAt: number; noticedMs: number; view: OutageView }> {
  let downAt = 0;
  let noticedMs = 0;
  let view: OutageView | undefined;
  await pg.restart(async () => {
    downAt = performance.now();
    await eventually('the proxy to notice the outage', async () => (await admin.sync()).state !== 'streaming', outageMs);
    noticedMs = performance.now() - downAt;
    // One poll interval or so into the outage, as an operator would look.
    const firstFailures = await admin.metric('edgeproxy_full_load_failures_total');
    await sleep(Math.max(0, outageMs / 2 - (performance.now() - downAt)));
    const sync = await admin.sync();
    const metrics = await admin.metrics();
    const readyz = await request(admin.port, { path: '/readyz' });
    await sleep(Math.max(0, outageMs - (performance.now() - downAt)));
    view = {
      state: String(sync.state),
      feeding: String(sync.feeding),
      streamErrorCode: (sync.streamError as { code?: string } | undefined)?.code,
      readyzStatus: readyz.status,
      syncStateMetric: /^edgeproxy_sync_state\{state="([^"]+)"\} 1$/m.exec(metrics)?.[1],
      fullLoadFailures: [firstFailures, await admin.metric('edgeproxy_full_load_failures_total')],
    };
  });
  return { downAt, noticedMs, view: view! };
}

/** Commits a new route and waits until the proxy routes it; how long that took and what fed it. */
async function commitAndWaitRouted(url: string, vm: Backend, port: number, admin: AdminProbe): Promise<{ ms: number; state: string }> {
  const seed = await Seeder.connect(url);
  await seed.route({ name: FRESH_HOST, regionId: REGION_A, vmPort: vm.port });
  await seed.close();
  const committed = performance.now();
  await eventually('the new route to be routed', async () => (await request(port, { host: FRESH_HOST })).status === 200, 60_000);
  const ms = performance.now() - committed;
  return { ms, state: String((await admin.sync()).state) };
}

/** From the proxy's last 'replication bootstrap failed' (or 'stream lost') line before `backWall`: when its retry was due, relative to it. */
function retryDue(proxy: LongRun, backWall: number): number {
  const failures = proxy.lines.filter(
    (l) =>
      (l.msg === 'replication bootstrap failed' || String(l.msg).startsWith('replication stream lost')) &&
      Date.parse(String(l.time)) <= backWall,
  );
  const last = failures.at(-1);
  return last === undefined ? NaN : Date.parse(String(last.time)) + Number(last.retryInMs) - backWall;
}

function phase(result: LoadResult, inPhase: (atMs: number) => boolean): PhaseFigures {
  const samples = result.samples.filter((s) => inPhase(s.atMs));
  const p = percentiles(samples.map((s) => s.ms));
  return { requests: samples.length, failed: result.failures.filter((f) => inPhase(f.atMs)).length, p50: p.p50, p99: p.p99, max: p.max };
}

/** The proxy's admin API: sync status (`GET /routes?limit=1`) and metrics. */
class AdminProbe {
  readonly port: number;
  constructor(port: number) {
    this.port = port;
  }
  async sync(): Promise<Record<string, unknown>> {
    const reply = await request(this.port, { path: '/routes?limit=1' });
    return (JSON.parse(reply.body) as { sync: Record<string, unknown> }).sync;
  }
  async metrics(): Promise<string> {
    return (await request(this.port, { path: '/metrics' })).body;
  }
  async metric(name: string): Promise<number> {
    return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await this.metrics())?.[1]);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
