// Full stream bootstrap at scale: slot + exported snapshot, the four tables loaded under it, and
// RowState built from them (RowState.loadAsync, as the proxy does) — what a proxy does at start
// and after every reconnect.
//
// Run: node --max-semi-space-size=32 --expose-gc --import tsx bench/stream-bootstrap.ts [--routes 1000000] [--runs 3]
// (the young-generation size the edgeproxy binary runs with, decision 0007). Prints one JSON line
// per run: run 1 is a start-up, later runs re-bootstrap while holding the previous table.
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { ReplicationStream } from '../src/replication/stream.js';
import { RowState } from '../src/table/row-state.js';
import { applyMigrations, createDatabase, startPostgres } from '../test/support/postgres.js';

const { values: args } = parseArgs({ options: { routes: { type: 'string', default: '1000000' }, runs: { type: 'string', default: '3' } } });
const ROUTES = Number(args.routes);
const RUNS = Number(args.runs);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
const mb = (n: number) => Math.round(n / 1048576);

const server = await startPostgres({ settings: { shared_buffers: '512MB' } });
const db = await createDatabase(server, { migrate: false });
await applyMigrations(db.url);
const c = new pg.Client({ connectionString: db.url });
await c.connect();
const t0 = performance.now();
// One region per 1,000 VMs' worth of rows is irrelevant to cost; 3 regions like a real fleet.
await c.query(
  `INSERT INTO regions (id, name, code, public_ipv4) SELECT gen_random_uuid(), 'r' || g, 'r' || g, ('10.0.0.' || g)::inet FROM generate_series(1, 3) g`,
);
await c.query(
  `
  INSERT INTO vms (id, region_id, status, private_ip, port)
  SELECT md5('vm' || g)::uuid, (SELECT id FROM regions ORDER BY id LIMIT 1 OFFSET g % 3), 'running',
         ('10.' || (g >> 16) % 256 || '.' || (g >> 8) % 256 || '.' || g % 256)::inet, 3000 + g % 1000
  FROM generate_series(1, $1) g`,
  [ROUTES],
);
await c.query(
  `INSERT INTO deployments (id, status, vm_id) SELECT md5('dep' || g)::uuid, 'ready', md5('vm' || g)::uuid FROM generate_series(1, $1) g`,
  [ROUTES],
);
await c.query(
  `INSERT INTO domains (id, name, deployment_id, verified_at) SELECT md5('dom' || g)::uuid, 'site' || g || '.example.com', md5('dep' || g)::uuid, now() FROM generate_series(1, $1) g`,
  [ROUTES],
);
await c.query('VACUUM ANALYZE');
await c.query('CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms, regions');
console.error(`# seeded ${ROUTES} routes in ${Math.round(performance.now() - t0)} ms`);

// Run 1 is a proxy starting up. Later runs are re-bootstraps (after a lost stream): the proxy
// still holds, and serves, the previous table while it builds the next one, so this does too.
let previous: RowState | undefined;
for (let run = 1; run <= RUNS; run++) {
  gc();
  const before = process.memoryUsage();
  const started = performance.now();
  const s = await ReplicationStream.open({
    databaseUrl: db.url,
    publication: 'edgeproxy',
    regionAddressColumn: 'public_ipv4',
    logger: pino({ level: 'silent' }),
    setupTimeoutMs: 300_000,
    statusIntervalMs: 1000,
    onTransaction: () => undefined,
    onFailure: () => undefined,
  });
  const opened = performance.now();
  const peakAfterLoad = process.memoryUsage();
  // What a proxy that already serves sees: the longest the event loop waited during the build.
  let maxGapMs = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
  }, 1);
  const { state } = await RowState.loadAsync(s.snapshot.tables, undefined, { release: true });
  clearInterval(ticker);
  const built = performance.now();
  const routes = state.routes.size;
  await s.stream.close();
  (s.snapshot as { tables: unknown }).tables = undefined; // let the raw rows go; keep the state
  gc();
  const after = process.memoryUsage();
  console.log(
    JSON.stringify({
      run,
      scenario: previous === undefined ? 'startup' : 'rebootstrap',
      routes,
      rows: s.snapshot.rowCount,
      setupAndLoadMs: Math.round(opened - started),
      loadMs: Math.round(s.snapshot.durationMs),
      buildMs: Math.round(built - opened),
      totalMs: Math.round(built - started),
      buildMaxEventLoopStallMs: Math.round(maxGapMs),
      rssAfterLoadMB: mb(peakAfterLoad.rss),
      heapAfterLoadMB: mb(peakAfterLoad.heapUsed),
      retainedHeapMB: mb(after.heapUsed - before.heapUsed),
      retainedBytesPerRoute: Math.round((after.heapUsed - before.heapUsed) / routes),
    }),
  );
  previous = state;
}
await c.end();
await server.stop();
