// A database outage under load: `edgeproxy serve` (the built bin) streams from a throwaway
// PostgreSQL while keep-alive requests flow; the server is stopped (fast shutdown) for 60 s and
// started again on the same port and data folder. Prints the figures and the targets: zero failed
// requests for existing routes, a route committed as soon as the database is back routed within
// one poll interval, the stream back within its pending backoff retry (plus 5 s for the bootstrap).
// The scenario is test/support/db-outage.ts, which test/db-outage.test.ts runs with 10 s.
//
//   npm run build && npm exec -- node --import tsx bench/db-outage.ts [--outage-s 60] [--rate 500]
//     [--connections 32] [--update-interval-ms 10000] [--steady-s 10]
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { runDbOutage } from '../test/support/db-outage.js';
import { serveBuiltBin } from './support/serve-bin.js';

const { values: args } = parseArgs({
  options: {
    'outage-s': { type: 'string', default: '60' },
    rate: { type: 'string', default: '500' },
    connections: { type: 'string', default: '32' },
    'update-interval-ms': { type: 'string', default: '10000' },
    'steady-s': { type: 'string', default: '10' },
  },
});
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
const updateIntervalMs = Number(args['update-interval-ms']);
console.log(
  `# db-outage: ${args['outage-s']} s outage, ${args.rate} req/s over ${args.connections} keep-alive connections to 4 routes, ` +
    `EDGEPROXY_UPDATE_INTERVAL ${updateIntervalMs} ms; ${cpus().length} CPUs, Node ${process.version}, load ${load()}`,
);
const r = await runDbOutage({
  outageMs: Number(args['outage-s']) * 1000,
  updateIntervalMs,
  perSecond: Number(args.rate),
  connections: Number(args.connections),
  steadyMs: Number(args['steady-s']) * 1000,
  serve: serveBuiltBin,
});
console.log(JSON.stringify(r));
const ms = (x: number) => `${Math.round(x)} ms`;
console.log('\n| phase | requests | failed | p50 ms | p99 ms | max ms |');
console.log('|---|---|---|---|---|---|');
for (const [name, p] of Object.entries(r.phases)) console.log(`| ${name} | ${p.requests} | ${p.failed} | ${p.p50} | ${p.p99} | ${p.max} |`);
const d = r.duringOutage;
console.log(
  `\noutage ${ms(r.outageMs)}; noticed after ${ms(r.noticedMs)}; during it: state ${d.state}, feeding ${d.feeding}, stream error ${d.streamErrorCode}, ` +
    `/readyz ${d.readyzStatus}, edgeproxy_sync_state{state="${d.syncStateMetric}"} 1, edgeproxy_full_load_failures_total ${d.fullLoadFailures[0]} -> ${d.fullLoadFailures[1]}`,
);
console.log(
  `after it: new route routed ${ms(r.catchUpMs)} after its commit (state ${r.caughtUpIn}); streaming again after ${ms(r.streamingAgainMs)} ` +
    `(the pending retry was due at ${ms(r.retryDueMs)}); ${r.reconnects} stream reconnects`,
);
const targets: [string, boolean][] = [
  [`failed requests to existing routes: ${r.failures.length} (target 0)`, r.failures.length === 0],
  [
    `caught up ${ms(r.catchUpMs)} after the database was back (target <= one poll interval, ${updateIntervalMs} ms)`,
    r.catchUpMs <= updateIntervalMs,
  ],
  [
    `streaming again ${ms(r.streamingAgainMs)} after (target <= the pending backoff retry ${ms(r.retryDueMs)} + 5 s)`,
    r.streamingAgainMs <= Math.max(0, r.retryDueMs) + 5000,
  ],
  [`the outage is shown: state ${d.state}, /readyz ${d.readyzStatus}`, d.state === 'polling-stream-retrying' && d.readyzStatus === 200],
];
console.log('');
for (const [what, ok] of targets) console.log(`${ok ? 'PASS' : 'FAIL'}  ${what}`);
console.log(`# load after: ${load()}`);
process.exitCode = targets.every(([, ok]) => ok) ? 0 : 1;
