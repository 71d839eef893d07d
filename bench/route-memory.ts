// Memory and full-load time of the request path's route table at several sizes, and the cost of
// one routing decision (Host parsing + lookup) at each: one fresh process per size.
//
//   node --import tsx bench/route-memory.ts [10000,100000,1000000]
//
// Each process builds N rows shaped like the documented query's (fresh strings, as `pg` makes
// them), runs the full-load path (`routesFromQueryRows` → `RouteStore.publish`, as a poll reload
// does), then reports RSS and heap after a GC with the rows dropped (bench/targets/edgeproxy.ts).
import { spawnSync } from 'node:child_process';

const sizes = (process.argv[2] ?? '10000,100000,1000000').split(',').map(Number);
console.log('| routes | full load (rows → snapshot) | RSS | heap used | heap for the table | per route | routing decision |');
console.log('|---|---|---|---|---|---|---|');
for (const n of sizes) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/targets/edgeproxy.ts', '--routes', String(n), '--no-listen'], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  const line = r.stdout.split('\n').find((l) => l.includes('"ready"'));
  if (line === undefined) {
    console.log(`| ${n} | failed: ${r.stderr.slice(0, 200)} |`);
    continue;
  }
  const j = JSON.parse(line) as { loadMs: number; rssMiB: number; heapMiB: number; tableHeapMiB: number; decideNs: number };
  const perRoute = Math.round((j.tableHeapMiB * 1048576) / n);
  console.log(
    `| ${n.toLocaleString('en')} | ${j.loadMs} ms | ${j.rssMiB} MiB | ${j.heapMiB} MiB | ${j.tableHeapMiB} MiB | ${perRoute} B | ${j.decideNs} ns |`,
  );
}
