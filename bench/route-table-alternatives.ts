// Three ways to hold the published route table, at 1,000,000 routes shaped like the scale bench
// (1,000 targets, a deployment's 1,000 hosts moving together), each in a fresh process with the
// bin's Node flags (decision 0015):
//   persistent  the ShardedMap of routes before issue 13 (shards copied on write, shared otherwise)
//   mutable     two native Maps behind the published reference: a batch is written into the one
//               not published, that one is published, and the batch is replayed onto the other
//               (a sketch for this comparison: readers of the previous version must be done by then)
//   compact     RouteTable (src/table/route-table.ts): buffers, an overlay, interned targets
//
//   npm exec -- node --import tsx bench/route-table-alternatives.ts [--routes 1000000] [--moves 200] [--rounds 2]
import { spawnSync } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Route } from '../src/table/route.js';
import { RouteTable } from '../src/table/route-table.js';
import { ShardedMap } from '../src/table/sharded-map.js';

const { values: args } = parseArgs({
  options: {
    routes: { type: 'string', default: '1000000' },
    moves: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '2' },
    alt: { type: 'string' },
  },
});
const N = Number(args.routes);
const MOVES = Number(args.moves);
const TARGETS = 1000;
const ALTS = ['persistent', 'mutable', 'compact'] as const;
type Alt = (typeof ALTS)[number];

interface Table {
  get(host: string): Route | undefined;
  /** One batch: these hosts to these routes, published as one version. */
  apply(writes: readonly (readonly [string, Route])[]): void;
}

function persistent(entries: readonly (readonly [string, Route])[]): Table {
  let map = ShardedMap.from(entries);
  return {
    get: (h) => map.get(h),
    apply(writes) {
      const e = map.edit();
      for (const [h, r] of writes) e.set(h, r);
      map = e.commit();
    },
  };
}

function mutable(entries: readonly (readonly [string, Route])[]): Table {
  let front = new Map(entries);
  let back = new Map(entries);
  return {
    get: (h) => front.get(h),
    apply(writes) {
      for (const [h, r] of writes) back.set(h, r);
      [front, back] = [back, front];
      for (const [h, r] of writes) back.set(h, r);
    },
  };
}

function compact(entries: readonly (readonly [string, Route])[]): Table {
  let table = RouteTable.from(entries, entries.length);
  return {
    get: (h) => table.get(h),
    apply(writes) {
      const e = table.edit();
      for (const [h, r] of writes) e.set(h, r);
      table = e.commit();
    },
  };
}

const gc = (() => {
  v8.setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();
const fresh = (s: string) => (' ' + s).slice(1);
const host = (i: number) => `d${i}.scale.test`;
const target = (t: number, h: string): Route => ({
  host: h,
  vmIp: `127.1.${Math.floor(t / 250)}.${(t % 250) + 1}`,
  vmPort: 8080,
  vmRegionId: '0a000000-0000-4000-8000-00000000000a',
  regionPublicIp: '127.0.0.1',
});
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(p * xs.length) - 1)]!;
const r2 = (x: number) => Math.round(x * 100) / 100;

async function child(alt: Alt): Promise<void> {
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const externalBefore = process.memoryUsage().external + process.memoryUsage().arrayBuffers;
  // One Route object per host, as a build from rows makes them.
  const entries: [string, Route][] = [];
  for (let i = 0; i < N; i++) {
    const h = fresh(host(i));
    entries.push([h, target(i % TARGETS, h)]);
  }
  let t = performance.now();
  const table = { persistent, mutable, compact }[alt](entries);
  const buildMs = performance.now() - t;
  entries.length = 0; // the input rows go, as a bootstrap releases them
  gc();
  const m = process.memoryUsage();
  const bytesPerRoute = (m.heapUsed - heapBefore + (m.external + m.arrayBuffers - externalBefore)) / N;
  // Moves: deployment d's hosts (i ≡ d mod 1000) to another target, one batch each.
  const pauses: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) pauses.push(e.duration);
  });
  obs.observe({ entryTypes: ['gc'] });
  const moveMs: number[] = [];
  for (let k = 0; k < MOVES; k++) {
    const d = (k * 7) % TARGETS;
    const to = (d + 1 + k) % TARGETS;
    const writes: [string, Route][] = [];
    for (let i = d; i < N; i += TARGETS) writes.push([host(i), target(to, host(i))]);
    t = performance.now();
    table.apply(writes);
    moveMs.push(performance.now() - t);
    await new Promise((r) => setImmediate(r)); // one batch per event-loop turn, as the stream publishes
  }
  // The observer reports asynchronously: give it time.
  await new Promise((r) => setTimeout(r, 200));
  {
    obs.disconnect();
    const keys = Array.from({ length: 200_000 }, (_, i) => fresh(host((i * 4999) % N)));
    t = performance.now();
    for (const k of keys) if (table.get(k) === undefined) throw new Error(`lost ${k}`);
    const lookupNs = ((performance.now() - t) * 1e6) / keys.length;
    console.log(
      JSON.stringify({
        alt,
        routes: N,
        buildMs: Math.round(buildMs),
        bytesPerRoute: Math.round(bytesPerRoute),
        moveMs: { p50: r2(pct(moveMs, 0.5)), p99: r2(pct(moveMs, 0.99)), max: r2(Math.max(...moveMs)) },
        gcPausesDuringMoves: {
          n: pauses.length,
          over10ms: pauses.filter((p) => p > 10).length,
          max: r2(Math.max(0, ...pauses)),
          totalMs: Math.round(pauses.reduce((a, b) => a + b, 0)),
        },
        lookupNs: Math.round(lookupNs),
      }),
    );
  }
}

if (args.alt !== undefined) await child(args.alt as Alt);
else {
  const rows: Record<string, unknown>[] = [];
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const alt of round % 2 === 0 ? ALTS : [...ALTS].reverse()) {
      const r = spawnSync(
        process.execPath,
        [
          '--max-semi-space-size=32',
          '--import',
          'tsx',
          'bench/route-table-alternatives.ts',
          '--alt',
          alt,
          '--routes',
          String(N),
          '--moves',
          String(MOVES),
        ],
        { encoding: 'utf8', maxBuffer: 1 << 20 },
      );
      const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
      if (line === undefined) throw new Error(`${alt}: ${r.stderr.slice(-2000)}`);
      console.log(line);
      rows.push(JSON.parse(line) as Record<string, unknown>);
    }
  }
  console.log(
    '\n| structure | build | heap + buffers per route | 1,000-route batch p50 / p99 / max | GC pauses in the moves: count, > 10 ms, max, total | lookup |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const r of rows as {
    alt: string;
    buildMs: number;
    bytesPerRoute: number;
    moveMs: { p50: number; p99: number; max: number };
    gcPausesDuringMoves: { n: number; over10ms: number; max: number; totalMs: number };
    lookupNs: number;
  }[]) {
    const g = r.gcPausesDuringMoves;
    console.log(
      `| ${r.alt} | ${r.buildMs} ms | ${r.bytesPerRoute} B | ${r.moveMs.p50} / ${r.moveMs.p99} / ${r.moveMs.max} ms | ${g.n}, ${g.over10ms}, ${g.max} ms, ${g.totalMs} ms | ${r.lookupNs} ns |`,
    );
  }
}
