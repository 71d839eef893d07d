// Memory per worker thread at 1,000,000 routes (issue 14): `edgeproxy serve` from its bin (the
// shipped Node flags) streaming from a real PostgreSQL seeded in the issue-13 shape (N domains over
// 1,000 deployments and VMs in one region, bench/support/scale-seed.ts), with EDGEPROXY_WORKERS=1
// and =2 (and each --young given, as EDGEPROXY_WORKER_YOUNG_GENERATION), alternated per round.
//
//   npm run build && npm exec -- node --import tsx bench/worker-scale.ts \
//     [--routes 1000000] [--workers 1,2] [--young 48] [--rounds 1] [--baseline DIR] \
//     [--rate 50] [--seconds 10] [--burst 5] [--changes 30]
//
// --baseline DIR: another checkout's build (e.g. one from before the option) also run with the
// largest --workers, as `base`. Per run: RSS idle (3 s after the stream started), after a paced
// load (fresh connections, random domains, --rate for --seconds) and after a short keep-alive
// burst at full speed (autocannon, --burst s, 32 connections: the req/s); GC pauses of every
// thread in both; health probes per VM per second during the paced load (the VMs count the
// probes they answer) and during 5 s more at the same rate on the domains of 10 VMs only;
// commit → routed on every worker for --changes single-domain moves (the time until
// GET /workers shows every worker at the new generation, then the route is checked).
// Then the RSS each extra worker adds, in MiB and % of the one-worker RSS. A run takes 60-80 s at
// 1M on 2 busy cores, seeding 1M 30-50 s: the default (1 and 2 workers) about 3.5 minutes.
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { ROOT, type LongRun } from '../test/support/cli.js';
import { createDatabase, startPostgres } from '../test/support/postgres.js';
import { autocannon } from './support/autocannon.js';
import { gcBuckets, gcDelta, get, keepAlive, pacedLoad, rssMiB, sleep, summary } from './support/scale-probes.js';
import { host, REGION, seed, startVms, uuid, VMS, vmIp } from './support/scale-seed.js';
import { serveBuiltBin } from './support/serve-bin.js';

const { values: args } = parseArgs({
  options: {
    routes: { type: 'string', default: '1000000' },
    workers: { type: 'string', default: '1,2' },
    young: { type: 'string', default: '48' },
    rounds: { type: 'string', default: '1' },
    baseline: { type: 'string' },
    rate: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '10' },
    burst: { type: 'string', default: '5' },
    changes: { type: 'string', default: '30' },
  },
});
const N = Number(args.routes);
const WORKERS = args.workers.split(',').map(Number);
const YOUNG = args.young.split(',').map(Number);
const ROUNDS = Number(args.rounds);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const BURST = Number(args.burst);
const CHANGES = Number(args.changes);
/** The VMs of the second paced phase, and how long it lasts (s). */
const HOT = 10;
const HOT_SECONDS = 5;

const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

interface Variant {
  readonly name: string;
  readonly root: string;
  readonly workers: number;
  readonly young: number | undefined;
}

/** 1 worker (the main thread serves: the young generation does not apply), then each count × each --young. */
const variants: Variant[] = [];
for (const w of WORKERS) {
  if (w === 1) variants.push({ name: '1w', root: ROOT, workers: 1, young: undefined });
  else for (const y of YOUNG) variants.push({ name: `${w}w young ${y}`, root: ROOT, workers: w, young: y });
}
if (args.baseline !== undefined) {
  const w = Math.max(...WORKERS);
  variants.push({ name: `base ${w}w`, root: resolve(args.baseline), workers: w, young: undefined });
}

interface Workers {
  readonly generation: number;
  readonly workers: { worker: number; generation: number; requests: number; healthAsks: number }[];
}

async function workersView(adminPort: number): Promise<Workers> {
  return JSON.parse((await get(adminPort, '/workers', '127.0.0.1', keepAlive)).body) as Workers;
}

/** Every thread that serves: the workers, or the main thread when there are none. */
const servingGenerations = (v: Workers) => (v.workers.length === 0 ? [v.generation] : v.workers.map((w) => w.generation));

/** Domain d moves to another VM; ms from the commit until every serving thread has the version, then its route is checked. */
async function commitToRoutedEverywhere(writer: pg.Client, port: number, adminPort: number, vmOf: Map<number, number>): Promise<number> {
  const d = Math.floor(Math.random() * N);
  const from = vmOf.get(d) ?? d % VMS;
  const to = (from + 1 + Math.floor(Math.random() * (VMS - 1))) % VMS;
  vmOf.set(d, to);
  const before = Math.max(...servingGenerations(await workersView(adminPort)));
  await writer.query('UPDATE domains SET deployment_id = $1 WHERE id = $2', [uuid(3, to), uuid(4, d)]);
  const since = performance.now();
  for (;;) {
    if (Math.min(...servingGenerations(await workersView(adminPort))) > before) break;
    if (performance.now() - since > 30_000) throw new Error(`generation ${before} still served 30 s after a commit`);
    // A gap between asks, as routedAfter's (scale-probes.ts): back to back, the asks kept the main
    // thread, which applies the change, answering them.
    await sleep(1);
  }
  const ms = performance.now() - since;
  const r = await get(port, '/', host(d), false);
  if (r.body !== vmIp(to)) throw new Error(`${host(d)} answered from ${r.body}, not ${vmIp(to)}, once every thread had the new version`);
  return ms;
}

async function run(v: Variant, url: string, vms: Awaited<ReturnType<typeof startVms>>, vmOf: Map<number, number>) {
  const env: Record<string, string> = {
    EDGEPROXY_DATABASE_URL: url,
    EDGEPROXY_REGION_ID: REGION,
    EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
    EDGEPROXY_HTTPS_ADDR: 'off',
    EDGEPROXY_ADMIN_ADDR: '127.0.0.1:0',
    EDGEPROXY_SYNC_MODE: 'replication',
    EDGEPROXY_WORKERS: String(v.workers),
    EDGEPROXY_LOG_LEVEL: 'info',
  };
  if (v.young !== undefined) env.EDGEPROXY_WORKER_YOUNG_GENERATION = String(v.young);
  const svc: LongRun = serveBuiltBin(env, v.root);
  try {
    const port = (await svc.waitFor((l) => l.msg === 'listening', 120_000)).port as number;
    const adminPort = (await svc.waitFor((l) => l.msg === 'admin API listening', 120_000)).port as number;
    await svc.waitFor((l) => l.msg === 'replication stream started', 300_000);
    const pid = svc.child.pid!;
    await sleep(3000);
    const rssIdle = rssMiB(pid);
    const loadIdle = load();
    // Every VM probed once, so the paced load measures the steady state, not first probes.
    for (let vm = 0; vm < VMS; vm++) await get(port, '/', host(vm), keepAlive);
    const gc0 = await gcBuckets(adminPort);
    const probes0 = vms.probes();
    const t0 = performance.now();
    // On a loaded machine a probe can time out (503 "VM not responding"): counted, not fatal.
    const failures = new Map<number, number>();
    const latency = summary(await pacedLoad(port, N, RATE * SECONDS, RATE, failures));
    const probesPerVmPerS = (vms.probes() - probes0) / VMS / ((performance.now() - t0) / 1000);
    const gc1 = await gcBuckets(adminPort);
    const rssPaced = rssMiB(pid);
    const loadPaced = load();
    // The same rate on the domains of HOT VMs only (domain d is on VM d % 1,000): each sees more
    // requests than one per health TTL, so its probes are what the TTL allows, and whether they
    // grow with the workers shows.
    const hotProbes0 = vms.probes();
    const tHot = performance.now();
    await pacedLoad(port, HOT, RATE * HOT_SECONDS, RATE, failures);
    const hotProbesPerVmPerS = (vms.probes() - hotProbes0) / HOT / ((performance.now() - tHot) / 1000);
    const burst = await autocannon({ url: `http://127.0.0.1:${port}/`, host: host(0), connections: 32, seconds: BURST, rate: 0 });
    const gc2 = await gcBuckets(adminPort);
    const rssBurst = rssMiB(pid);
    const writer = new pg.Client({ connectionString: url });
    await writer.connect();
    const routed: number[] = [];
    try {
      for (let i = 0; i < CHANGES; i++) routed.push(await commitToRoutedEverywhere(writer, port, adminPort, vmOf));
    } finally {
      await writer.end();
    }
    const view = await workersView(adminPort);
    return {
      variant: v.name,
      workers: v.workers,
      young: v.young ?? null,
      rssIdleMiB: Math.round(rssIdle),
      rssAfterPacedMiB: Math.round(rssPaced),
      rssAfterBurstMiB: Math.round(rssBurst),
      load: { idle: loadIdle, paced: loadPaced, end: load() },
      pacedMs: latency,
      pacedFailures: Object.fromEntries(failures),
      probesPerVmPerS: Math.round(probesPerVmPerS * 1000) / 1000,
      hotProbesPerVmPerS: Math.round(hotProbesPerVmPerS * 1000) / 1000,
      gcPaced: gcDelta(gc0, gc1),
      burst: { rps: Math.round(burst.rps), p99: burst.p99, errors: burst.errors + burst.non2xx },
      gcBurst: gcDelta(gc1, gc2),
      commitToRoutedEveryWorkerMs: summary(routed),
      requestsPerWorker: view.workers.map((w) => w.requests),
      healthAsksPerWorker: view.workers.map((w) => w.healthAsks),
    };
  } finally {
    svc.child.kill('SIGTERM');
    await svc.exited;
  }
}

console.log(`# worker-scale: ${cpus().length} CPUs, Node ${process.version}, load ${load()}; ${N} routes; rounds ${ROUNDS}`);
const server = await startPostgres({ settings: { shared_buffers: '512MB', max_wal_size: '4GB', checkpoint_timeout: '30min' } });
const vms = await startVms();
const results: Awaited<ReturnType<typeof run>>[] = [];
try {
  const db = await createDatabase(server);
  const t = performance.now();
  await seed(db.url, N, vms.port);
  console.error(`seeded ${N} domains in ${Math.round(performance.now() - t)} ms (load ${load()})`);
  const vmOf = new Map<number, number>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
      const r = await run(v, db.url, vms, vmOf);
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
  await db.drop();
} finally {
  vms.close();
  keepAlive.destroy();
  await server.stop();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const one = (k: 'rssIdleMiB' | 'rssAfterPacedMiB' | 'rssAfterBurstMiB') => median(results.filter((r) => r.workers === 1).map((r) => r[k]));
const added = (r: (typeof results)[number], k: 'rssIdleMiB' | 'rssAfterPacedMiB' | 'rssAfterBurstMiB') => {
  if (r.workers === 1 || !results.some((x) => x.workers === 1)) return '—';
  const per = (r[k] - one(k)) / (r.workers - 1);
  return `${per.toFixed(0)} MiB (${((per / one(k)) * 100).toFixed(1)} %)`;
};
/** The RSS this run adds over the one with a worker fewer (same young generation; the 1-worker run for 2): idle / paced / burst. */
const marginal = (r: (typeof results)[number]) => {
  const fewer = results.filter((x) => x.workers === r.workers - 1 && (x.workers === 1 || x.young === r.young));
  if (fewer.length === 0 || r.variant.startsWith('base')) return '—';
  const k = ['rssIdleMiB', 'rssAfterPacedMiB', 'rssAfterBurstMiB'] as const;
  return k.map((key) => `${r[key] - median(fewer.map((x) => x[key]))}`).join(' / ');
};
console.log(
  '\n| run | RSS idle / paced / burst MiB | added per extra worker: idle, paced, burst | over one worker fewer MiB | paced p50 / p99 ms | probes /VM/s (all 1,000; 10 hot) | burst req/s | GC paced; burst (count, >10 ms, longest ≤ s) | commit → routed on every worker p50 / p99 / max ms | load idle → end |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  const gc = (g: ReturnType<typeof gcDelta>) => `${g.pauses}, ${g.over10ms}, ${g.longestAtMostS}`;
  const c = r.commitToRoutedEveryWorkerMs;
  console.log(
    `| ${r.variant} | ${r.rssIdleMiB} / ${r.rssAfterPacedMiB} / ${r.rssAfterBurstMiB} | ${added(r, 'rssIdleMiB')}, ${added(r, 'rssAfterPacedMiB')}, ${added(r, 'rssAfterBurstMiB')} | ${marginal(r)} | ${r.pacedMs.p50} / ${r.pacedMs.p99} | ${r.probesPerVmPerS}; ${r.hotProbesPerVmPerS} | ${r.burst.rps} | ${gc(r.gcPaced)}; ${gc(r.gcBurst)} | ${c.p50} / ${c.p99} / ${c.max} | ${r.load.idle} → ${r.load.end} |`,
  );
}
