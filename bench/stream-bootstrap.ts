// Full stream bootstrap at scale: slot + exported snapshot, the four tables loaded under it, and
// RowState built from them (RowState.loadAsync, as the proxy does) — what a proxy does at start
// and after every reconnect.
//
// Run: node --max-semi-space-size=32 --expose-gc --import tsx bench/stream-bootstrap.ts [--routes 1000000] [--vms N] [--runs 3] [--sync]
// (the young-generation size the edgeproxy binary runs with, decision 0007). Prints one JSON line
// per run: run 1 is a start-up, later runs re-bootstrap while holding the previous table.
// The event loop's holds over the whole bootstrap (setup, snapshot load, build) are measured by a
// 1 ms ticker, as wall time and as the main thread's own CPU time between two ticks: on a shared
// machine the wall time includes waiting for a core, the CPU time is the work done without a turn.
// `--sync` builds with one synchronous `RowState.load` instead (the alternative: one hold).
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { createPublicationSql } from '../src/db/publication.js';
import { tlsTablesExist } from '../src/db/tls-rows.js';
import { ReplicationStream } from '../src/replication/stream.js';
import { RowState } from '../src/table/row-state.js';
import { applyMigrations, createDatabase, startPostgres } from '../test/support/postgres.js';

const { values: args } = parseArgs({
  options: {
    routes: { type: 'string', default: '1000000' },
    // VMs and deployments (one each per VM) the domains are spread over; default one per domain.
    vms: { type: 'string' },
    runs: { type: 'string', default: '3' },
    sync: { type: 'boolean', default: false },
  },
});
const ROUTES = Number(args.routes);
const VMS = Number(args.vms ?? args.routes);
const RUNS = Number(args.runs);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
const mb = (n: number) => Math.round(n / 1048576);

/** A 1 ms ticker: per stretch, the longest gap between ticks (wall) and the most main-thread CPU in one gap. */
class Holds {
  #wall = 0;
  #cpu = 0;
  #over20 = 0;
  #last = performance.now();
  #lastCpu = process.threadCpuUsage();
  readonly #timer = setInterval(() => this.#tick(), 1);

  #tick(): void {
    const now = performance.now();
    const cpu = process.threadCpuUsage(this.#lastCpu);
    const cpuMs = (cpu.user + cpu.system) / 1000;
    this.#wall = Math.max(this.#wall, now - this.#last);
    this.#cpu = Math.max(this.#cpu, cpuMs);
    if (cpuMs > 20) this.#over20 += 1;
    this.#last = now;
    this.#lastCpu = process.threadCpuUsage();
  }

  /** The stretch since the last take (the gap in progress closed first). */
  take(): { wallMs: number; cpuMs: number; cpuOver20ms: number } {
    this.#tick();
    const out = { wallMs: Math.round(this.#wall), cpuMs: Math.round(this.#cpu), cpuOver20ms: this.#over20 };
    this.#wall = 0;
    this.#cpu = 0;
    this.#over20 = 0;
    return out;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

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
  [VMS],
);
await c.query(
  `INSERT INTO deployments (id, status, vm_id) SELECT md5('dep' || g)::uuid, 'ready', md5('vm' || g)::uuid FROM generate_series(1, $1) g`,
  [VMS],
);
await c.query(
  `INSERT INTO domains (id, name, deployment_id, verified_at) SELECT md5('dom' || g)::uuid, 'site' || g || '.example.com', md5('dep' || ((g - 1) % $2 + 1))::uuid, now() FROM generate_series(1, $1) g`,
  [ROUTES, VMS],
);
await c.query('VACUUM ANALYZE');
// The routing tables and, where they exist, the TLS tables, as the stream setup requires.
await c.query(createPublicationSql('edgeproxy', await tlsTablesExist(c)));
console.error(`# seeded ${ROUTES} routes in ${Math.round(performance.now() - t0)} ms`);

// Run 1 is a proxy starting up. Later runs are re-bootstraps (after a lost stream): the proxy
// still holds, and serves, the previous table while it builds the next one, so this does too.
let previous: RowState | undefined;
for (let run = 1; run <= RUNS; run++) {
  gc();
  const before = process.memoryUsage();
  const started = performance.now();
  // What a proxy that already serves sees: the longest the event loop waited, over the whole bootstrap.
  const holds = new Holds();
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
  const loadHolds = holds.take();
  const { state } = args.sync
    ? RowState.load(s.snapshot.tables)
    : await RowState.loadAsync(s.snapshot.tables, undefined, { release: true });
  const built = performance.now();
  const buildHolds = holds.take();
  holds.stop();
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
      build: args.sync ? 'sync' : 'sliced',
      // Longest wait between two turns (wall) and most main-thread CPU between two turns, ms.
      setupAndLoadHold: loadHolds,
      buildHold: buildHolds,
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
