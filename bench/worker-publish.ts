// What handing a route table version to worker threads costs (issue 14): a table of N routes
// (over 1,000 VMs), then single-route commits; each version is described (`RouteTable.describe`),
// posted to W real workers, opened there (`RouteTable.open`) and the changed host looked up; the
// round trip main → every worker has opened it → main is timed (then the host is checked there). Also the process's RSS before the workers, with
// the workers holding the table, and per worker: the table is shared, so a worker should add its
// isolate, not the table.
//
//   npm exec -- node --import tsx bench/worker-publish.ts [--routes 1000000] [--workers 2] [--commits 200]
import { once } from 'node:events';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { percentiles } from '../test/support/latency.js';
import { RouteTable } from '../src/table/route-table.js';
import type { Route } from '../src/table/route.js';

const { values } = parseArgs({
  options: {
    routes: { type: 'string', default: '1000000' },
    workers: { type: 'string', default: '2' },
    commits: { type: 'string', default: '200' },
  },
});
const N = Number(values.routes);
const W = Number(values.workers);
const COMMITS = Number(values.commits);
const mib = (n: number) => (n / 2 ** 20).toFixed(1);

function route(host: string, n: number): Route {
  return {
    host,
    vmIp: `10.${(n >> 8) & 255}.${n & 255}.1`,
    vmPort: 8080,
    vmRegionId: '0a000000-0000-4000-8000-00000000000a',
    regionPublicIp: '203.0.113.1',
  };
}

/** test/support/route-table-reader.ts: opens each version it is sent ({ open }), answers `get` for a version ({ version, hosts }). */
const READER = new URL('../test/support/route-table-reader.ts', import.meta.url);

function ask<T>(w: Worker, message: unknown): Promise<T> {
  const answer = once(w, 'message') as Promise<[T]>;
  w.postMessage(message);
  return answer.then(([v]) => v);
}

async function main(): Promise<void> {
  console.log(
    `# worker-publish: ${N} routes, ${W} workers, ${COMMITS} single-route commits; ${cpus().length} CPUs, Node ${process.version}, load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  const t0 = performance.now();
  let table = RouteTable.from(
    (function* () {
      for (let i = 0; i < N; i++) yield [`d${i}.example`, route(`d${i}.example`, i % 1000)] as const;
    })(),
    N,
  );
  console.log(`# built in ${Math.round(performance.now() - t0)} ms`);
  globalThis.gc?.();
  const rss0 = process.memoryUsage().rss;
  const workers = Array.from({ length: W }, () => new Worker(READER));
  /** Posts the current version to every worker; resolves with the time until all have opened it, after checking `host` there. */
  const post = async (host: string): Promise<number> => {
    const started = performance.now();
    const d = table.describe();
    const opened = await Promise.all(workers.map((w) => ask<{ opened: number }>(w, { open: d })));
    const ms = performance.now() - started;
    const expected = table.get(host) ?? null;
    for (const [i, w] of workers.entries()) {
      const got = await ask<{ routes: (Route | null)[] }>(w, { version: opened[i]!.opened, hosts: [host] });
      if (JSON.stringify(got.routes[0]) !== JSON.stringify(expected))
        throw new Error(`worker ${i} answered ${JSON.stringify(got.routes[0])} for ${host}`);
    }
    return ms;
  };
  await post('d0.example'); // the workers load the module and open the first version
  const rssWorkers = process.memoryUsage().rss;
  const times: number[] = [];
  for (let c = 0; c < COMMITS; c++) {
    const host = `d${(c * 7919) % N}.example`;
    const e = table.edit();
    e.set(host, route(host, (c + 1) % 1000));
    table = e.commit();
    times.push(await post(host));
  }
  const p = percentiles(times);
  console.log(`# commit → opened in every worker (ms): p50 ${p.p50.toFixed(2)} p99 ${p.p99.toFixed(2)} max ${p.max.toFixed(2)}`);
  console.log(
    `# RSS: ${mib(rss0)} MiB with the table, ${mib(rssWorkers)} MiB with ${W} workers holding it: +${mib((rssWorkers - rss0) / W)} MiB per worker (${(((rssWorkers - rss0) / W / rss0) * 100).toFixed(1)} % of the one-thread RSS)`,
  );
  await Promise.all(workers.map((w) => w.terminate()));
}

await main();
