/**
 * Metrics read at scrape time from the running service: the current route table snapshot and the
 * sync's status. Enumerations (mode, state, what feeds the table) are derived from their types'
 * lists, so a new state or mode has its series without anyone remembering to add it here.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { SYNC_MODES } from '../config/config.js';
import { parseLsn } from '../replication/lsn.js';
import type { RouteSnapshot } from '../sync/route-store.js';
import type { SyncStatus } from '../sync/status.js';
import { SYNC_STATES } from '../sync/sync-state.js';

/** What the scrape-time metrics read. */
export interface MetricsSource {
  snapshot(): RouteSnapshot | undefined;
  status(): SyncStatus;
}

const FEEDING_SET = { poll: true, stream: true, none: true } as const satisfies Record<SyncStatus['feeding'], true>;
const FEEDING = Object.keys(FEEDING_SET) as SyncStatus['feeding'][];

type Source = () => MetricsSource | undefined;

function snapshotGauges(registry: Registry, source: Source): void {
  const gauge = (name: string, help: string, value: (s: RouteSnapshot) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const s = source()?.snapshot();
        this.set(s === undefined ? 0 : value(s));
      },
    });
  gauge('edgeproxy_route_table_ready', '1 once a first route table is loaded (the proxy answers 503 before)', () => 1);
  gauge('edgeproxy_routes', 'Routes (hosts) in the current table', (s) => s.routes.size);
  gauge('edgeproxy_route_table_generation', 'Snapshots published since start', (s) => s.generation);
  gauge(
    'edgeproxy_route_table_published_timestamp_seconds',
    'When the current table was published (Unix time)',
    (s) => s.publishedAt / 1000,
  );
  gauge(
    'edgeproxy_snapshot_lsn',
    'WAL position (LSN as a byte offset) of the last transaction applied from the stream; 0 when the table does not come from the stream',
    (s) => (s.position === undefined ? 0 : lsnNumber(s.position.lsn)),
  );
}

/** A gauge per value of an enumeration: 1 for the current one, 0 for the others. */
function enumGauge<T extends string>(
  registry: Registry,
  source: Source,
  name: string,
  help: string,
  label: string,
  values: readonly T[],
  current: (s: SyncStatus) => T,
): void {
  new Gauge({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      const s = source()?.status();
      const now = s === undefined ? undefined : current(s);
      for (const v of values) this.set({ [label]: v }, v === now ? 1 : 0);
    },
  });
}

function statusGauge(
  registry: Registry,
  source: Source,
  name: string,
  help: string,
  value: (s: SyncStatus) => number | undefined,
  missing = 0,
): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      const s = source()?.status();
      this.set(s === undefined ? missing : (value(s) ?? missing));
    },
  });
}

/** A counter whose total the status keeps (it never decreases there, so it never decreases here). */
function statusCounter(registry: Registry, source: Source, name: string, help: string, value: (s: SyncStatus) => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const s = source()?.status();
      this.reset();
      if (s !== undefined) this.inc(value(s));
    },
  });
}

function syncMetrics(registry: Registry, source: Source): void {
  enumGauge(
    registry,
    source,
    'edgeproxy_sync_mode',
    'The configured sync mode (1 for the configured one)',
    'mode',
    SYNC_MODES,
    (s) => s.mode,
  );
  enumGauge(
    registry,
    source,
    'edgeproxy_sync_state',
    'State of the sync (1 for the current one; docs/streaming.md)',
    'state',
    SYNC_STATES,
    (s) => s.state,
  );
  enumGauge(
    registry,
    source,
    'edgeproxy_sync_feeding',
    'What feeds the route table in the current state (1 for the active one)',
    'source',
    FEEDING,
    (s) => s.feeding,
  );
  statusGauge(
    registry,
    source,
    'edgeproxy_replication_lag_seconds',
    'Seconds since the table was last known to match the server (last applied commit, last keepalive with nothing left to apply, or the bootstrap snapshot); grows while the stream is silent or down; NaN before the first stream bootstrap',
    (s) => (s.lagMs === undefined ? undefined : s.lagMs / 1000),
    NaN,
  );
  statusCounter(registry, source, 'edgeproxy_stream_reconnects_total', 'Stream bootstraps after the first one', (s) => s.reconnects);
  statusCounter(registry, source, 'edgeproxy_stream_transactions_total', 'Transactions applied from the stream', (s) => s.transactions);
  statusGauge(
    registry,
    source,
    'edgeproxy_full_load_last_success_timestamp_seconds',
    'Last successful full load (poll, resync or stream bootstrap), Unix time; 0 if none',
    (s) => (s.lastFullLoadAt === undefined ? undefined : s.lastFullLoadAt / 1000),
  );
  statusGauge(registry, source, 'edgeproxy_full_load_last_duration_seconds', 'Duration of the last successful full load', (s) =>
    s.lastFullLoadMs === undefined ? undefined : s.lastFullLoadMs / 1000,
  );
  statusCounter(
    registry,
    source,
    'edgeproxy_full_load_failures_total',
    'Full loads (polls and stream bootstraps) that failed',
    (s) => s.fullLoadFailures,
  );
}

/** The scrape-time metrics on `registry`, reading whatever `source()` returns at each scrape. */
export function scrapeMetrics(registry: Registry, source: Source): void {
  snapshotGauges(registry, source);
  syncMetrics(registry, source);
}

/** An LSN as a number of bytes (exact below 2^53, i.e. 8 PiB of WAL); 0 if unparsable. */
function lsnNumber(lsn: string): number {
  try {
    return Number(parseLsn(lsn));
  } catch {
    return 0;
  }
}
