// The route table at scale, black box: `edgeproxy serve` started from its bin (with the shipped
// Node flags), streaming from a real PostgreSQL seeded with N domains over 1,000 deployments and
// 1,000 VMs in the proxy's region, for each checkout given, alternated, side by side (issue 13).
//
//   npm run build && npm exec -- node --import tsx bench/route-scale.ts \
//     [--sizes 10000,100000,1000000] [--checkouts after=.,before=/tmp/edgeproxy-main] [--rounds 1] [--workers N]
//     [--resyncs 3] [--resync-only] [--single 100] [--moves 50] [--warm-up 5] [--changes 1000]
//
// A checkout is a folder holding a built EdgeProxy (`dist/src/cli/bin.js`). Per size and checkout:
// start to first routed request; RSS net of an empty table, per route, and its growth while
// serving (the paced load) and over the changes (from the RSS after serving to the RSS after
// them); request latency under a paced load, a fresh connection per request; commit → routed for
// one domain and for a move of 1,000 routes (after --warm-up untimed changes of each kind); GC
// pauses from /metrics (perf_hooks) while the changes stream in; the longest event-loop hold
// while GET /routes pages and during a resync (a fresh bootstrap while serving), and the
// re-bootstrap stall: over `--resyncs` resyncs, the longest wait of a probe of the main thread and
// the slowest of requests paced through the proxy meanwhile, then the same for as long without a
// resync (what this machine's noise alone gives those clients).
// `--resync-only` measures start, memory and the resyncs alone (no load, changes or paging).
// One JSON line per run, then a table.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createDatabase, startPostgres, type PgServer } from '../test/support/postgres.js';
import { gcBuckets, gcDelta, get, getOnce, keepAlive, pacedLoad, routedAfter, rssMiB, sleep, summary } from './support/scale-probes.js';
import { host, REGION, seed, startVms, uuid, VMS, vmIp } from './support/scale-seed.js';

const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10000,100000,1000000' },
    checkouts: { type: 'string', default: 'after=.' },
    rounds: { type: 'string', default: '1' },
    requests: { type: 'string', default: '2000' },
    rate: { type: 'string', default: '200' },
    single: { type: 'string', default: '100' },
    moves: { type: 'string', default: '50' },
    // Changes of each kind made first and not timed: the first applies after start run code the
    // JIT has not compiled yet (the VMs are probed once before the timed requests for the same reason).
    'warm-up': { type: 'string', default: '5' },
    changes: { type: 'string', default: '1000' },
    pages: { type: 'string', default: '20' },
    resyncs: { type: 'string', default: '3' },
    'resync-only': { type: 'boolean', default: false },
    // EDGEPROXY_WORKERS for the service; unset: its default (the cores this process may use).
    workers: { type: 'string' },
  },
});
const SIZES = args.sizes.split(',').map(Number);
const CHECKOUTS = args.checkouts.split(',').map((c) => {
  const [name, dir] = c.split('=') as [string, string];
  return { name, dir: resolve(dir) };
});
const ROUNDS = Number(args.rounds);
const REQUESTS = Number(args.requests);
const RATE = Number(args.rate);
const SINGLE = Number(args.single);
const MOVES = Number(args.moves);
const WARM_UP = Number(args['warm-up']);
const CHANGES = Number(args.changes);
const PAGES = Number(args.pages);
const RESYNCS = Number(args.resyncs);
const RESYNC_ONLY = args['resync-only'];
// ---------------------------------------------------------------------------------------------
// The service, as users start it
// ---------------------------------------------------------------------------------------------

interface Service {
  readonly child: ChildProcess;
  readonly startedAt: number;
  port(): Promise<number>;
  adminPort(): Promise<number>;
  line(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

function serve(dir: string, databaseUrl: string): Service {
  const bin = join(dir, 'dist/src/cli/bin.js');
  // "#!/usr/bin/env -S node --max-semi-space-size=32": the flags after `node`, as the bin runs.
  const shebang = readFileSync(bin, 'utf8').split('\n', 1)[0]!.split(/\s+/);
  const flags = shebang.slice(shebang.indexOf('node') + 1);
  const env = {
    PATH: process.env.PATH ?? '',
    EDGEPROXY_DATABASE_URL: databaseUrl,
    EDGEPROXY_REGION_ID: REGION,
    EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
    EDGEPROXY_ADMIN_ADDR: '127.0.0.1:0',
    EDGEPROXY_HTTPS_ADDR: 'off', // the default :8443 may be taken on a shared machine
    EDGEPROXY_SYNC_MODE: 'replication',
    // Probes out of the picture: the table is what this bench measures.
    EDGEPROXY_HEALTH_CACHE_TTL: '1h',
    ...(args.workers === undefined ? {} : { EDGEPROXY_WORKERS: args.workers }),
  };
  const startedAt = performance.now();
  const child = spawn(process.execPath, [...flags, bin, 'serve'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      try {
        lines.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      } catch {
        // not a log line
      }
      buf = buf.slice(nl + 1);
    }
    for (const w of waiters) w();
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err = (err + c).slice(-4000)));
  let gone = false;
  const exited = new Promise<void>((r) =>
    child.on('exit', () => {
      gone = true;
      r();
      for (const w of waiters) w();
    }),
  );
  const line = (msg: string, timeoutMs = 300_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const found = lines.find((l) => l.msg === msg);
        if (found === undefined && gone) {
          waiters.delete(check);
          clearTimeout(timer);
          reject(new Error(`edgeproxy exited before "${msg}": ${JSON.stringify(lines.slice(-3))} ${err}`));
        }
        if (found === undefined) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no "${msg}" line within ${timeoutMs} ms; stderr: ${err}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  return {
    child,
    startedAt,
    line,
    port: async () => (await line('listening')).port as number,
    adminPort: async () => (await line('admin API listening')).port as number,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

async function firstRouted(svc: Service): Promise<number> {
  const port = await svc.port();
  for (;;) {
    const r = await get(port, '/', host(0), false).catch(() => ({ status: 0, body: '' }));
    if (r.status === 200) return performance.now() - svc.startedAt;
    await sleep(20);
  }
}

/** Polls (keep-alive) until `h` answers from `ip`; ms since `since`. */

/**
 * Requests paced at `rate`/s, each on a fresh connection, to random hosts, until `done()`:
 * latencies in ms, and the requests that failed (a reset or a non-200 answer: counted, not thrown,
 * so one bad answer does not end a run of several minutes).
 */
async function pacedUntil(port: number, n: number, rate: number, done: () => boolean): Promise<{ latencies: number[]; failed: number }> {
  const out: number[] = [];
  let failed = 0;
  const inflight: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; !done(); i++) {
    const wait = start + (i * 1000) / rate - performance.now();
    if (wait > 0) await sleep(wait);
    const h = host(Math.floor(Math.random() * n));
    const t = performance.now();
    inflight.push(
      get(port, '/', h, false).then(
        (r) => void (r.status === 200 ? out.push(performance.now() - t) : (failed += 1)),
        () => void (failed += 1),
      ),
    );
  }
  await Promise.all(inflight);
  return { latencies: out, failed };
}

/** POST /resync on the admin API: undefined when it answered 200, else what it answered (a failed bootstrap's code and message). */
async function resync(adminPort: number): Promise<string | undefined> {
  const { status, body } = await getOnce(adminPort, '/resync', '127.0.0.1', false, 'POST');
  return status === 200 ? undefined : `${status} ${body.slice(0, 300)}`;
}

/**
 * The re-bootstrap stall: `count` resyncs one after another, each while the main thread's probe
 * runs (holdDuring) and requests go through the proxy at 100/s on fresh connections; per resync
 * the probe's longest wait, the slowest request and the resync's duration (ms). Then as long
 * again with the same probe and requests and no resync (`quiet`): what the same clients see of
 * this machine without one, so that a stall is told from the noise of two busy cores.
 */
async function resyncStalls(port: number, adminPort: number, n: number, count: number) {
  const out: {
    holdMs: number;
    worstRequestMs: number;
    requests: number;
    failedRequests: number;
    resyncMs: number;
    quiet: { holdMs: number; worstRequestMs: number };
    failed?: string;
  }[] = [];
  for (let i = 0; i < count; i++) {
    let done = false;
    const t = performance.now();
    const requests = pacedUntil(port, n, 100, () => done);
    let answer: string | undefined;
    const holdMs = await holdDuring(adminPort, async () => void (answer = await resync(adminPort)));
    const resyncMs = performance.now() - t;
    done = true;
    const { latencies, failed } = await requests;
    let quietDone = false;
    const quietRequests = pacedUntil(port, n, 100, () => quietDone);
    const quietHold = await holdDuring(adminPort, async () => void (await sleep(resyncMs)));
    quietDone = true;
    const quiet = await quietRequests;
    out.push({
      holdMs: Math.round(holdMs * 10) / 10,
      worstRequestMs: Math.round(Math.max(0, ...latencies) * 10) / 10,
      requests: latencies.length,
      failedRequests: failed,
      resyncMs: Math.round(resyncMs),
      quiet: { holdMs: Math.round(quietHold * 10) / 10, worstRequestMs: Math.round(Math.max(0, ...quiet.latencies) * 10) / 10 },
      ...(answer === undefined ? {} : { failed: answer }),
    });
    if (answer !== undefined) console.error(`resync failed: ${answer}`);
    await sleep(1000);
  }
  return out;
}

/** Runs `work` while a probe asks the admin API's /healthz every 2 ms; the probe's longest wait. */
async function holdDuring(adminPort: number, work: () => Promise<void>): Promise<number> {
  let done = false;
  let max = 0;
  const probe = (async () => {
    while (!done) {
      const t = performance.now();
      await get(adminPort, '/healthz', '127.0.0.1', keepAlive);
      max = Math.max(max, performance.now() - t);
      await sleep(2);
    }
  })();
  await work();
  done = true;
  await probe;
  return max;
}

/** The main thread's heap by space and its external memory (MiB), from /metrics: where RSS growth sits. */
async function heapMiB(adminPort: number): Promise<Record<string, number>> {
  const text = (await get(adminPort, '/metrics', '127.0.0.1', keepAlive)).body;
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^edgeproxy_nodejs_heap_space_size_total_bytes\{space="([^"]+)"\} (\S+)$/gm)) {
    out[m[1]!] = Math.round(Number(m[2]) / 1048576);
  }
  const external = /^edgeproxy_nodejs_external_memory_bytes (\S+)$/m.exec(text);
  if (external !== null) out.external = Math.round(Number(external[1]) / 1048576);
  return out;
}

// ---------------------------------------------------------------------------------------------
// One run: one checkout at one size
// ---------------------------------------------------------------------------------------------

/**
 * The control plane's writes: one connection, opened again if the server drops it (a long run
 * on a shared machine once lost it to an administrator command; the write is then retried once).
 */
class Writer {
  #client: pg.Client | undefined;
  constructor(readonly url: string) {}

  async query(sql: string, params: unknown[] = []): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        this.#client ??= await this.#connect();
        await this.#client.query(sql, params);
        return;
      } catch (err) {
        this.#client = undefined;
        if (attempt > 0) throw err;
        console.error(`writer: ${(err as Error).message}; connecting again`);
      }
    }
  }

  async #connect(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: this.url });
    c.on('error', () => (this.#client = undefined));
    await c.connect();
    return c;
  }

  async end(): Promise<void> {
    await this.#client?.end().catch(() => {});
  }
}

interface Fixture {
  readonly n: number;
  readonly url: string;
  readonly writer: Writer;
  /** Which VM each deployment is on now (moves change it). */
  readonly vmOf: number[];
  /** Which deployment each domain points at, where a change moved it. */
  readonly depOf: Map<number, number>;
}

const deploymentOf = (f: Fixture, d: number) => f.depOf.get(d) ?? d % VMS;

async function singleChange(f: Fixture, port: number): Promise<number> {
  const d = Math.floor(Math.random() * f.n);
  const from = deploymentOf(f, d);
  const to = (from + 1 + Math.floor(Math.random() * (VMS - 1))) % VMS;
  if (f.vmOf[to] === f.vmOf[from]) return singleChange(f, port);
  f.depOf.set(d, to);
  await f.writer.query(`UPDATE domains SET deployment_id = $1 WHERE id = $2`, [uuid(3, to), uuid(4, d)]);
  return routedAfter(port, host(d), vmIp(f.vmOf[to]!), performance.now());
}

/** Moves enough deployments to change 1,000 routes, in one transaction. */
async function move(f: Fixture, port: number): Promise<number> {
  const perDeployment = f.n / VMS;
  const k = Math.max(1, Math.round(1000 / perDeployment));
  const first = Math.floor(Math.random() * VMS);
  const deps = Array.from({ length: k }, (_, i) => (first + i) % VMS);
  const shift = 1 + Math.floor(Math.random() * (VMS - 1));
  const targets = deps.map((dep) => (f.vmOf[dep]! + shift) % VMS);
  const sql = `UPDATE deployments SET vm_id = v.vm::uuid FROM (VALUES ${deps.map((_, i) => `($${2 * i + 1}, $${2 * i + 2})`).join(', ')}) AS v(id, vm) WHERE deployments.id = v.id::uuid`;
  const sample = deps[0]!; // domain `sample` points at deployment `sample` unless a single change moved it
  const probeHost = [...Array(perDeployment).keys()].map((j) => sample + j * VMS).find((d) => !f.depOf.has(d))!;
  await f.writer.query(
    sql,
    deps.flatMap((dep, i) => [uuid(3, dep), uuid(2, targets[i]!)]),
  );
  const since = performance.now();
  deps.forEach((dep, i) => (f.vmOf[dep] = targets[i]!));
  return routedAfter(port, host(probeHost), vmIp(targets[0]!), since);
}

/** The paced load, the changes (timed, then 1,000 more and the memory they left) and GET /routes paging. */
async function changesAndPaging(f: Fixture, port: number, adminPort: number, pid: number) {
  const gcBeforeLoad = await gcBuckets(adminPort);
  const latency = summary(await pacedLoad(port, f.n, REQUESTS, RATE));
  const gcBefore = await gcBuckets(adminPort);
  const gcLoad = gcDelta(gcBeforeLoad, gcBefore);
  // The baseline of the growth over changes: a proxy that has served (its pools, code and young
  // generation warm), measured as the RSS after the changes is, after 3 s of quiet.
  await sleep(3000);
  const rssBeforeChanges = rssMiB(pid);
  for (let i = 0; i < WARM_UP; i++) await singleChange(f, port);
  if (f.n >= VMS) for (let i = 0; i < WARM_UP; i++) await move(f, port);
  const single: number[] = [];
  for (let i = 0; i < SINGLE; i++) single.push(await singleChange(f, port));
  const moves: number[] = [];
  if (f.n >= VMS) for (let i = 0; i < MOVES; i++) moves.push(await move(f, port));
  const gc = gcDelta(gcBefore, await gcBuckets(adminPort));
  // 1,000 more changes as fast as the writer commits them, then the memory they left.
  for (let i = 0; i < CHANGES; i++) {
    const d = Math.floor(Math.random() * f.n);
    const to = Math.floor(Math.random() * VMS);
    f.depOf.set(d, to);
    await f.writer.query(`UPDATE domains SET deployment_id = $1 WHERE id = $2`, [uuid(3, to), uuid(4, d)]);
  }
  await sleep(3000);
  const rssAfter = rssMiB(pid);
  const heapAfter = await heapMiB(adminPort);
  const pageMs: number[] = [];
  const pagingHold = await holdDuring(adminPort, async () => {
    let after = '';
    for (let p = 0; p < PAGES; p++) {
      const t = performance.now();
      const r = await get(adminPort, `/routes?limit=1000&after=${encodeURIComponent(after)}`, '127.0.0.1', keepAlive);
      pageMs.push(performance.now() - t);
      const routes = (JSON.parse(r.body) as { routes: { host: string }[] }).routes;
      if (routes.length === 0) break;
      after = routes[routes.length - 1]!.host;
    }
  });
  const idleHold = await holdDuring(adminPort, async () => void (await sleep(1000)));
  return {
    rssBeforeChangesMiB: Math.round(rssBeforeChanges),
    rssAfterChangesMiB: Math.round(rssAfter),
    heapAfterChanges: heapAfter,
    requestMs: latency,
    singleCommitToRoutedMs: summary(single),
    moveCommitToRoutedMs: moves.length === 0 ? undefined : summary(moves),
    gcDuringRequests: gcLoad,
    gcWhileChanging: gc,
    routesPageMs: summary(pageMs),
    holdWhilePagingMs: Math.round(pagingHold * 10) / 10,
    holdIdleMs: Math.round(idleHold * 10) / 10,
  };
}

async function run(f: Fixture, checkout: { name: string; dir: string }, emptyRss: number | undefined) {
  const svc = serve(checkout.dir, f.url);
  try {
    const startMs = await firstRouted(svc);
    const started = await svc.line('replication stream started');
    const port = await svc.port();
    const adminPort = await svc.adminPort();
    const pid = svc.child.pid!;
    await sleep(3000);
    const rssStart = rssMiB(pid);
    const heapStart = await heapMiB(adminPort);
    const net = emptyRss === undefined ? undefined : Math.round(((rssStart - emptyRss) * 1048576) / f.n);
    const head = {
      checkout: checkout.name,
      routes: f.n,
      startToFirstRoutedMs: Math.round(startMs),
      bootstrap: { setupMs: started.setupMs, loadMs: started.loadMs, buildMs: started.buildMs },
      rssStartMiB: Math.round(rssStart),
      netBytesPerRoute: net,
    };
    // Every VM probed once, so the requests below measure the table, not first probes.
    for (let v = 0; v < Math.min(VMS, f.n); v++) await get(port, '/', host(v), keepAlive);
    if (RESYNC_ONLY) return { ...head, resyncStalls: await resyncStalls(port, adminPort, f.n, RESYNCS) };
    const changed = await changesAndPaging(f, port, adminPort, pid);
    const stalls = await resyncStalls(port, adminPort, f.n, RESYNCS);
    return {
      ...head,
      ...changed,
      growthServingPct: emptyRss === undefined ? undefined : pctOf(changed.rssBeforeChangesMiB - rssStart, rssStart - emptyRss),
      growthOverChangesPct:
        emptyRss === undefined ? undefined : pctOf(changed.rssAfterChangesMiB - changed.rssBeforeChangesMiB, rssStart - emptyRss),
      heapMiB: { start: heapStart, afterChanges: changed.heapAfterChanges },
      holdDuringResyncMs: Math.max(...stalls.map((x) => x.holdMs)),
      resyncStalls: stalls,
    };
  } finally {
    await svc.stop();
  }
}

const pctOf = (part: number, whole: number) => Math.round((part / whole) * 1000) / 10;

async function emptyRssMiB(server: PgServer, checkout: { dir: string }, vmPort: number): Promise<number> {
  const db = await createDatabase(server);
  await seed(db.url, 0, vmPort);
  const svc = serve(checkout.dir, db.url);
  try {
    await svc.line('replication stream started');
    await sleep(3000);
    return rssMiB(svc.child.pid!);
  } finally {
    await svc.stop();
    await db.drop();
  }
}

// ---------------------------------------------------------------------------------------------

const server = await startPostgres({ settings: { shared_buffers: '512MB', max_wal_size: '4GB', checkpoint_timeout: '30min' } });
const vms = await startVms();
const results: Awaited<ReturnType<typeof run>>[] = [];
try {
  const empty = new Map<string, number>();
  for (const c of CHECKOUTS) empty.set(c.name, await emptyRssMiB(server, c, vms.port));
  for (const n of SIZES) {
    const db = await createDatabase(server);
    const t = performance.now();
    await seed(db.url, n, vms.port);
    console.error(`seeded ${n} domains in ${Math.round(performance.now() - t)} ms`);
    const writer = new Writer(db.url);
    const f: Fixture = { n, url: db.url, writer, vmOf: Array.from({ length: VMS }, (_, i) => i), depOf: new Map() };
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of round % 2 === 0 ? CHECKOUTS : [...CHECKOUTS].reverse()) {
        const r = await run(f, c, empty.get(c.name));
        results.push(r);
        console.log(JSON.stringify(r));
      }
    }
    await writer.end();
    await db.drop();
  }
} finally {
  vms.close();
  keepAlive.destroy();
  await server.stop();
}

const cols = results.map((r) => `${r.checkout} ${r.routes.toLocaleString('en-US')}`);
type Result = (typeof results)[number];
type Full = Extract<Result, { requestMs: unknown }>;
/** A figure of the full run; '—' for a --resync-only run. */
const full = (f: (r: Full) => unknown) => (r: Result) => ('requestMs' in r ? f(r) : undefined);
const row = (label: string, f: (r: Result) => unknown) =>
  console.log(`| ${label} | ${results.map((r) => String(f(r) ?? '—')).join(' | ')} |`);
console.log(`\n| figure | ${cols.join(' | ')} |`);
console.log(`|---|${cols.map(() => '---').join('|')}|`);
row('start to first routed request', (r) => `${(r.startToFirstRoutedMs / 1000).toFixed(1)} s`);
row(
  'RSS after start / after serving / after the changes',
  (r) => `${r.rssStartMiB} / ${'rssAfterChangesMiB' in r ? `${r.rssBeforeChangesMiB} / ${r.rssAfterChangesMiB}` : '— / —'} MiB`,
);
row('RSS net of an empty table, per route', (r) => (r.netBytesPerRoute === undefined ? undefined : `${r.netBytesPerRoute} B`));
row(
  'growth while serving / over the changes (of the net)',
  full((r) => `${r.growthServingPct} / ${r.growthOverChangesPct} %`),
);
row(
  'request p50 / p99 (fresh connection, paced)',
  full((r) => `${r.requestMs.p50} / ${r.requestMs.p99} ms`),
);
row(
  'one domain, commit → routed p50 / p99',
  full((r) => `${r.singleCommitToRoutedMs.p50} / ${r.singleCommitToRoutedMs.p99} ms`),
);
row(
  'move of 1,000 routes, commit → routed p50 / p99',
  full((r) => (r.moveCommitToRoutedMs === undefined ? undefined : `${r.moveCommitToRoutedMs.p50} / ${r.moveCommitToRoutedMs.p99} ms`)),
);
row('bootstrap: snapshot load / build', (r) => `${String(r.bootstrap.loadMs)} / ${String(r.bootstrap.buildMs)} ms`);
row(
  'GC pauses during the requests: count, over 10 ms, longest ≤',
  full((r) => `${r.gcDuringRequests.pauses}, ${r.gcDuringRequests.over10ms}, ${r.gcDuringRequests.longestAtMostS} s`),
);
row(
  'GC pauses while changing: count, over 10 ms, longest ≤',
  full((r) => `${r.gcWhileChanging.pauses}, ${r.gcWhileChanging.over10ms}, ${r.gcWhileChanging.longestAtMostS} s`),
);
row(
  'GET /routes page (limit 1000) p50 / max',
  full((r) => `${r.routesPageMs.p50} / ${r.routesPageMs.max} ms`),
);
row(
  'event-loop hold: paging / idle',
  full((r) => `${r.holdWhilePagingMs} / ${r.holdIdleMs} ms`),
);
row(
  're-bootstrap stall, each resync: main-thread hold / slowest request',
  (r) => r.resyncStalls.map((x) => `${x.holdMs} / ${x.worstRequestMs}`).join(', ') + ' ms',
);
row(
  'the same without a resync, as long: hold / slowest request',
  (r) => r.resyncStalls.map((x) => `${x.quiet.holdMs} / ${x.quiet.worstRequestMs}`).join(', ') + ' ms',
);
row('resync duration, each', (r) => r.resyncStalls.map((x) => `${(x.resyncMs / 1000).toFixed(1)}`).join(', ') + ' s');
