// Routing-table scale: bootstrap time, memory per route, single-row change latency, lookup cost.
// Run: node --expose-gc --import tsx bench/table-scale.ts [routes]   (default 1,000,000)
// Prints a readable table, then one JSON line.
//
// Wall-clock figures on a shared machine include time other processes take from this one. The
// report gives the load average before and after, and apply latencies also without the applies
// that overlapped a GC pause or during which the process was involuntarily descheduled
// (getrusage's involuntary context switches: process-wide, so an upper bound on the latter).
//
// Data: N domains, each with its own deployment and VM (all routable), VMs spread over 5 regions,
// random v4 UUIDs. Column values are fresh strings per row (made by JSON.parse, as `pg` makes a
// new string for every value it parses), so shared-string effects do not flatter the memory figures.
import { randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { routesFromQueryRows } from '../src/table/query-routes.js';
import type { Route } from '../src/table/route.js';
import { RowState, type TableRows } from '../src/table/row-state.js';
import { type Columns, type RowChange, rowValues } from '../src/table/rows.js';
import { RouteTable } from '../src/table/route-table.js';

const N = Number(process.argv[2] ?? 1_000_000);
if (!Number.isInteger(N) || N < 10) throw new Error(`usage: bench/table-scale.ts [routes >= 10], got ${process.argv[2]}`);
const REGIONS = 5;
const CHANGES = 2000;
const LOOKUPS = 1_000_000;

const gc: () => void =
  typeof globalThis.gc === 'function'
    ? (globalThis.gc as () => void)
    : (() => {
        console.error('(no --expose-gc: enabling gc through v8 flags)');
        v8.setFlagsFromString('--expose-gc');
        return runInNewContext('gc') as () => void;
      })();

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

// Deterministic PRNG for the choices (the UUIDs themselves are random).
let seed = 12345;
function rand(): number {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randInt = (n: number) => Math.floor(rand() * n);
const pick = <T>(items: readonly T[]): T => items[randInt(items.length)]!;

const WORDS = [
  'blue',
  'fast',
  'quiet',
  'brave',
  'shop',
  'api',
  'app',
  'cloud',
  'data',
  'green',
  'lunar',
  'pixel',
  'rapid',
  'solar',
  'tiny',
  'urban',
];
const SUFFIXES = ['com', 'io', 'dev', 'app', 'de', 'co.uk', 'net', 'zeitwork.app'];
function domainName(i: number): string {
  return `${pick(WORDS)}-${pick(WORDS)}-${i.toString(36)}.${pick(SUFFIXES)}`;
}
const privateIp = (i: number) => `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;

/** Fresh copies of every string in the objects, the way a database driver hands them over. */
function freshRows<T>(rows: T[], chunk = 20_000): T[] {
  const out: T[] = [];
  for (let i = 0; i < rows.length; i += chunk) {
    for (const row of JSON.parse(JSON.stringify(rows.slice(i, i + chunk))) as T[]) out.push(row);
  }
  return out;
}

/** A string with the same characters that is not the same heap object (and has no cached hash). */
function freshString(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 3 : 1)} ms`;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/** Node's randomUUID returns a concatenation tree; flatten it so the baseline heap is what it seems. */
const uuid = () => freshString(randomUUID());
const regionIds = Array.from({ length: REGIONS }, uuid);
const regionIps = regionIds.map((_, i) => `203.0.113.${10 + i}`);
const vmIds: string[] = [];
const depIds: string[] = [];
const domainIds: string[] = [];
const names: string[] = [];
const vmRegion: number[] = [];
const vmPort: number[] = [];
for (let i = 0; i < N; i++) {
  vmIds.push(uuid());
  depIds.push(uuid());
  domainIds.push(uuid());
  names.push(freshString(domainName(i))); // flat, like a driver's string (a template literal is a cons-string tree)
  vmRegion.push(i % REGIONS);
  vmPort.push(3000 + randInt(6000));
}
const verifiedAt = new Date('2025-01-01T00:00:00Z');

function buildTables(): TableRows {
  const regions = freshRows(regionIds.map((id, i) => ({ id, public_ipv4: regionIps[i] })));
  const vms = freshRows(
    vmIds.map((id, i) => ({ id, private_ip: privateIp(i), port: vmPort[i], region_id: regionIds[vmRegion[i]!], status: 'running' })),
  );
  const deployments = freshRows(depIds.map((id, i) => ({ id, status: 'ready', vm_id: vmIds[i] })));
  const domains = freshRows(domainIds.map((id, i) => ({ id, name: names[i], deployment_id: depIds[i], verified_at: null as Date | null })));
  for (const d of domains) d.verified_at = new Date(verifiedAt.getTime()); // timestamptz arrives as a Date
  // As the bootstrap reads them: one array of values per row.
  return {
    domains: domains.map((r) => rowValues('domains', r)),
    deployments: deployments.map((r) => rowValues('deployments', r)),
    vms: vms.map((r) => rowValues('vms', r)),
    regions: regions.map((r) => rowValues('regions', r)),
  };
}

function buildQueryRows(): Columns[] {
  return freshRows(
    names.map((name, i) => ({
      domain_name: name,
      vm_private_ip: privateIp(i),
      vm_port: vmPort[i],
      vm_region_id: regionIds[vmRegion[i]!],
      region_public_ip: regionIps[vmRegion[i]!],
    })),
  );
}

// ---------------------------------------------------------------------------------------------
// 1. RowState.load and its memory
// ---------------------------------------------------------------------------------------------

/** Builds the input rows and loads them; the rows are garbage once this returns. */
function bootstrap(into: { state: RowState }): { buildMs: number; loadMs: number; loadCpuMs: number } {
  const t0 = performance.now();
  const tables = buildTables();
  const t1 = performance.now();
  const cpu0 = process.cpuUsage();
  const loaded = RowState.load(tables);
  const t2 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  if (loaded.problems.length > 0) throw new Error(`unexpected load problems: ${JSON.stringify(loaded.problems.slice(0, 3))}`);
  if (loaded.state.routes.size !== N) throw new Error(`expected ${N} routes, got ${loaded.state.routes.size}`);
  into.state = loaded.state;
  return { buildMs: t1 - t0, loadMs: t2 - t1, loadCpuMs: (cpu.user + cpu.system) / 1000 };
}

const loadAvgStart = loadavg();
const base0 = heapAfterGc();
// Only the current state stays referenced (as in the service): a retained first version would pin
// every shard copied since.
const current = { state: RowState.empty() };
const { buildMs: buildTablesMs, loadMs, loadCpuMs } = bootstrap(current);
const stateBytes = heapAfterGc() - base0;

// ---------------------------------------------------------------------------------------------
// 2. routesFromQueryRows (the polling path) and its memory
// ---------------------------------------------------------------------------------------------

function queryPhase(): { ms: number; bytes: number } {
  const base = heapAfterGc();
  const { ms, routes } = (() => {
    const rows = buildQueryRows();
    const start = performance.now();
    const result = routesFromQueryRows(rows);
    return { ms: performance.now() - start, routes: result.routes };
  })();
  const bytes = heapAfterGc() - base; // the query rows are garbage here, the route map is not
  if (routes.size !== N) throw new Error(`expected ${N} query routes, got ${routes.size}`);
  return { ms, bytes };
}
const { ms: queryMs, bytes: queryBytes } = queryPhase();

// ---------------------------------------------------------------------------------------------
// 3. Single-row changes through apply
// ---------------------------------------------------------------------------------------------

type Kind = 'vm status flip' | 'deployment re-point' | 'domain rename' | 'domain insert';
const KINDS: readonly Kind[] = ['vm status flip', 'deployment re-point', 'domain rename', 'domain insert'];
const vmRunning = new Uint8Array(N).fill(1);
const depVm = Int32Array.from({ length: N }, (_, i) => i);
const latencies = new Map<Kind, number[]>(KINDS.map((k) => [k, []]));
const all: number[] = [];
let changedHostsTotal = 0;
let renamed = 0;
// Which applies overlapped a main-thread GC pause (the observer reports after the loop).
const gcPauses: { start: number; end: number }[] = [];
const gcObserver = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcPauses.push({ start: e.startTime, end: e.startTime + e.duration });
});
gcObserver.observe({ entryTypes: ['gc'] });
const applyWindows: { start: number; end: number }[] = [];
/** Involuntary context switches during each apply (read outside the timed window). */
const preempted: boolean[] = [];
gc();
// Fixed cost of a transaction that touches nothing (editors for every map, commits).
const emptyApply: number[] = [];
for (let i = 0; i < 200; i++) {
  const start = performance.now();
  current.state = current.state.apply([]).state;
  emptyApply.push(performance.now() - start);
}
/** The next change of `kind` (c numbers it, for unique names). */
function makeChange(c: number, kind: Kind): RowChange {
  let change: RowChange;
  switch (kind) {
    case 'vm status flip': {
      const i = randInt(N);
      vmRunning[i] = vmRunning[i] === 1 ? 0 : 1;
      change = {
        op: 'update',
        table: 'vms',
        row: {
          id: freshString(vmIds[i]!),
          private_ip: privateIp(i),
          port: vmPort[i],
          region_id: freshString(regionIds[vmRegion[i]!]!),
          status: vmRunning[i] ? 'running' : 'stopped',
        },
      };
      break;
    }
    case 'deployment re-point': {
      const j = randInt(N);
      depVm[j] = randInt(N);
      change = {
        op: 'update',
        table: 'deployments',
        row: { id: freshString(depIds[j]!), status: 'ready', vm_id: freshString(vmIds[depVm[j]!]!) },
      };
      break;
    }
    case 'domain rename': {
      const d = randInt(N);
      change = {
        op: 'update',
        table: 'domains',
        row: {
          id: freshString(domainIds[d]!),
          name: `renamed-${renamed++}.example.com`,
          deployment_id: freshString(depIds[d]!),
          verified_at: new Date(verifiedAt.getTime()),
        },
      };
      break;
    }
    case 'domain insert': {
      change = {
        op: 'insert',
        table: 'domains',
        row: { id: uuid(), name: `new-${c}.example.com`, deployment_id: freshString(depIds[randInt(N)]!), verified_at: new Date() },
      };
      break;
    }
  }
  return change;
}

for (let c = 0; c < CHANGES; c++) {
  const kind = KINDS[c % KINDS.length]!;
  const change = makeChange(c, kind);
  const switchesBefore = process.resourceUsage().involuntaryContextSwitches;
  const start = performance.now();
  const result = current.state.apply([change]);
  const end = performance.now();
  preempted.push(process.resourceUsage().involuntaryContextSwitches !== switchesBefore);
  const ms = end - start;
  applyWindows.push({ start, end });
  current.state = result.state;
  changedHostsTotal += result.changedHosts.length;
  latencies.get(kind)!.push(ms);
  all.push(ms);
}
const latencyStats = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1]! };
};
const applyStats = { all: latencyStats(all), ...Object.fromEntries(KINDS.map((k) => [k, latencyStats(latencies.get(k)!)])) } as Record<
  string,
  { p50: number; p99: number; max: number }
>;
await new Promise((resolve) => setTimeout(resolve, 50));
gcObserver.disconnect();
const overlapsGc = (w: { start: number; end: number }) => gcPauses.some((g) => g.start < w.end && g.end > w.start);
const withoutGc = all.filter((_, i) => !overlapsGc(applyWindows[i]!));
applyStats['all, applies without a GC pause'] = latencyStats(withoutGc);
const quiet = all.filter((_, i) => !overlapsGc(applyWindows[i]!) && !preempted[i]);
applyStats['all, without a GC pause or a context switch'] = latencyStats(quiet);
const appliesPreempted = preempted.filter(Boolean).length;
applyStats['empty transaction (fixed cost)'] = latencyStats(emptyApply);
const appliesWithGc = all.length - withoutGc.length;
const stateBytesAfterChanges = heapAfterGc() - base0;

// Bytes one apply allocates: heap growth across it, median of 100 applies per kind (an apply that
// spans a scavenge shows a drop and is left out). Includes ~0.2 KB for reading the heap size.
const allocated = new Map<Kind, number[]>(KINDS.map((k) => [k, []]));
for (let c = 0; c < 400; c++) {
  const kind = KINDS[c % KINDS.length]!;
  const change = makeChange(CHANGES + c, kind);
  const before = process.memoryUsage().heapUsed;
  current.state = current.state.apply([change]).state;
  const grown = process.memoryUsage().heapUsed - before;
  if (grown > 0) allocated.get(kind)!.push(grown);
}
const allocatedMedian = Object.fromEntries(
  KINDS.map((k) => [
    k,
    percentile(
      [...allocated.get(k)!].sort((a, b) => a - b),
      50,
    ),
  ]),
) as Record<Kind, number>;

// ---------------------------------------------------------------------------------------------
// 4. Lookups
// ---------------------------------------------------------------------------------------------

const routeEntries = [...current.state.routes.entries()];
function lookupNs(map: { get(key: string): Route | undefined }, keys: readonly string[]): number {
  let hits = 0;
  const start = performance.now();
  for (let i = 0; i < keys.length; i++) if (map.get(keys[i]!) !== undefined) hits++;
  const ns = ((performance.now() - start) * 1e6) / keys.length;
  if (hits !== keys.length) throw new Error(`lookup missed: ${keys.length - hits}`);
  return ns;
}
const lookupSizes = [...new Set([10_000, 100_000, routeEntries.length].filter((n) => n <= routeEntries.length))];
const lookups: { size: number; hostCount: number; freshNs: number; warmNs: number; plainMapFreshNs: number }[] = [];
for (const size of lookupSizes) {
  const entries = size === routeEntries.length ? routeEntries : routeEntries.slice(0, size);
  const sharded = size === routeEntries.length ? current.state.routes : RouteTable.from(entries);
  const plain = new Map(entries);
  const count = Math.min(LOOKUPS, 20 * size);
  const picks = Array.from({ length: count }, () => entries[randInt(entries.length)]![0]);
  // warm-up with other strings, so the JIT has settled before measuring
  lookupNs(sharded, picks.slice(0, 50_000).map(freshString));
  lookupNs(plain, picks.slice(0, 50_000).map(freshString));
  // a request's Host is a new string each time: no cached hash
  const fresh = picks.map(freshString);
  const freshNs = lookupNs(sharded, fresh);
  const warmNs = lookupNs(sharded, fresh); // same strings again: V8's string hash is cached now
  const plainMapFreshNs = lookupNs(plain, picks.map(freshString));
  lookups.push({ size, hostCount: sharded.hostCount, freshNs, warmNs, plainMapFreshNs });
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

const perRoute = (bytes: number) => bytes / N;
const loadAvgEnd = loadavg();
const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
const rows: [string, string, string][] = [
  ['routes', N.toLocaleString('en-US'), ''],
  ['build input rows (not part of load)', fmtMs(buildTablesMs), ''],
  ['RowState.load', fmtMs(loadMs), 'target: bootstrap <= 15 s'],
  // CPU time of the whole process (GC helper threads included): less sensitive than wall time to
  // other processes on a shared machine, but not the target's measure.
  ['RowState.load, process CPU time', fmtMs(loadCpuMs), ''],
  ['routesFromQueryRows', fmtMs(queryMs), ''],
  [
    'heap, RowState (rows + indexes + routes)',
    `${(stateBytes / 1048576).toFixed(0)} MB = ${perRoute(stateBytes).toFixed(0)} B/route`,
    'target: <= 1 KB/route',
  ],
  [
    'heap, RowState after 2,000 changes',
    `${(stateBytesAfterChanges / 1048576).toFixed(0)} MB = ${perRoute(stateBytesAfterChanges).toFixed(0)} B/route`,
    '',
  ],
  ['heap, query route map only', `${(queryBytes / 1048576).toFixed(0)} MB = ${perRoute(queryBytes).toFixed(0)} B/route`, ''],
];
for (const [kind, s] of Object.entries(applyStats)) {
  rows.push([
    `apply 1 row: ${kind}`,
    `p50 ${fmtMs(s.p50)}  p99 ${fmtMs(s.p99)}  max ${fmtMs(s.max)}`,
    kind === 'all' ? 'target: p99 <= 5 ms' : '',
  ]);
}
for (const kind of KINDS) rows.push([`allocated per apply: ${kind}`, `${(allocatedMedian[kind] / 1024).toFixed(1)} KB`, '']);
for (const l of lookups) {
  rows.push([
    `routes.get at ${l.size.toLocaleString('en-US')} (${l.hostCount} hosts listed)`,
    `${l.freshNs.toFixed(0)} ns fresh host, ${l.warmNs.toFixed(0)} ns repeated`,
    `plain Map: ${l.plainMapFreshNs.toFixed(0)} ns`,
  ]);
}
const w0 = Math.max(...rows.map((r) => r[0].length));
const w1 = Math.max(...rows.map((r) => r[1].length));
console.log(
  `node ${process.version}, ${CHANGES} single-row changes (${appliesWithGc} overlapped a GC pause, ${appliesPreempted} saw a context switch), ${REGIONS} regions`,
);
console.log(`load average (1/5/15 min): ${fmtLoad(loadAvgStart)} at start, ${fmtLoad(loadAvgEnd)} at end`);
for (const [a, b, c] of rows) console.log(`${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`);
console.log(
  JSON.stringify({
    bench: 'table-scale',
    node: process.version,
    routes: N,
    loadMs: Math.round(loadMs),
    loadCpuMs: Math.round(loadCpuMs),
    queryRoutesMs: Math.round(queryMs),
    stateBytesPerRoute: Math.round(perRoute(stateBytes)),
    stateBytesPerRouteAfterChanges: Math.round(perRoute(stateBytesAfterChanges)),
    queryRoutesBytesPerRoute: Math.round(perRoute(queryBytes)),
    applyMs: Object.fromEntries(
      Object.entries(applyStats).map(([k, s]) => [k, { p50: +s.p50.toFixed(3), p99: +s.p99.toFixed(3), max: +s.max.toFixed(3) }]),
    ),
    allocatedBytesPerApply: allocatedMedian,
    changedHostsTotal,
    appliesWithGcPause: appliesWithGc,
    appliesWithContextSwitch: appliesPreempted,
    loadAvgStart,
    loadAvgEnd,
    lookupNs: lookups.map((l) => ({
      size: l.size,
      fresh: +l.freshNs.toFixed(1),
      repeated: +l.warmNs.toFixed(1),
      plainMap: +l.plainMapFreshNs.toFixed(1),
    })),
  }),
);
