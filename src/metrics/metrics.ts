/**
 * Prometheus metrics (prom-client) on a registry of their own, so that several services can run
 * in one process (the tests do). Request and probe figures are pushed by the request path through
 * the ProxyObserver; table and sync figures are read from the running service at scrape time.
 * Every metric is listed in the README ("Admin API and metrics").
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { SYNC_MODES } from '../config/config.js';
import type { ProxyObserver, RouteKind } from '../proxy/observer.js';
import { parseLsn } from '../replication/lsn.js';
import type { ResyncOutcome } from '../sync/status.js';
import type { RouteSnapshot } from '../sync/route-store.js';
import type { StreamState, SyncStatus } from '../sync/status.js';
import { VERSION } from '../version.js';

/** What the scrape-time metrics read. */
export interface MetricsSource {
  snapshot(): RouteSnapshot | undefined;
  status(): SyncStatus;
}

/** What asked for a resync. */
export type ResyncTrigger = 'admin' | 'sighup';

const FEEDING: readonly SyncStatus['feeding'][] = ['poll', 'stream', 'none'];
const STREAM_STATES: readonly StreamState[] = ['disabled', 'bootstrapping', 'streaming', 'backoff', 'unavailable'];
const ROUTE_KINDS: readonly RouteKind[] = ['same-region', 'cross-region', 'not-found', 'not-ready', 'loop', 'rejected'];

/** Seconds; from a fast local hop to a slow upload. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const PROBE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5];

export class Metrics {
  readonly registry = new Registry();
  /** Pass to ProxyServer and HealthChecker. Cheap and never throws. */
  readonly observer: ProxyObserver;
  #source: MetricsSource | undefined;

  readonly #resyncs: Counter<'trigger' | 'result'>;
  readonly #lastResyncAt: Gauge;
  readonly #lastResyncSeconds: Gauge;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'edgeproxy_' });
    new Gauge({ name: 'edgeproxy_build_info', help: 'Always 1; the version in a label', labelNames: ['version'], registers }).set(
      { version: VERSION },
      1,
    );

    // --- pushed by the request path -------------------------------------------------------
    const requests = new Counter({
      name: 'edgeproxy_requests_total',
      help: 'Requests answered on the public port, by how they were routed and the status sent',
      labelNames: ['kind', 'status'] as const,
      registers,
    });
    // One latency histogram per route kind, children resolved once: the hot path does a Map lookup.
    const latencyByKind = (name: string, help: string) => {
      const h = new Histogram({ name, help, labelNames: ['kind'] as const, buckets: LATENCY_BUCKETS, registers });
      return { histogram: h, children: new Map(ROUTE_KINDS.map((k) => [k, h.labels(k)])) };
    };
    const duration = latencyByKind(
      'edgeproxy_request_duration_seconds',
      'Whole request duration on the public port (until the response ended), by route kind',
    );
    const upstream = latencyByKind(
      'edgeproxy_upstream_response_seconds',
      "Time from forwarding to the upstream's response headers (VM or region load balancer), by route kind",
    );
    const probes = new Counter({
      name: 'edgeproxy_health_probes_total',
      help: 'Health probes sent to same-region VMs (cache hits are not probes), by result',
      labelNames: ['result'] as const,
      registers,
    });
    const probeDuration = new Histogram({
      name: 'edgeproxy_health_probe_duration_seconds',
      help: 'Duration of health probes',
      buckets: PROBE_BUCKETS,
      registers,
    });
    const requestChildren = new Map<string, { inc(): void }>();
    const healthy = probes.labels('healthy');
    const unhealthy = probes.labels('unhealthy');
    this.observer = {
      request(kind, status, durationSeconds, upstreamSeconds) {
        try {
          const key = `${kind}|${status}`;
          let child = requestChildren.get(key);
          if (child === undefined) {
            child = requests.labels(kind, String(status));
            requestChildren.set(key, child);
          }
          child.inc();
          (duration.children.get(kind) ?? duration.histogram.labels(kind)).observe(durationSeconds);
          if (upstreamSeconds !== undefined) (upstream.children.get(kind) ?? upstream.histogram.labels(kind)).observe(upstreamSeconds);
        } catch {
          // metrics must never break a request
        }
      },
      probe(isHealthy, durationSeconds) {
        try {
          (isHealthy ? healthy : unhealthy).inc();
          probeDuration.observe(durationSeconds);
        } catch {
          // idem
        }
      },
    };

    // --- resyncs (admin API, SIGHUP) -------------------------------------------------------
    this.#resyncs = new Counter({
      name: 'edgeproxy_resyncs_total',
      help: 'Full resyncs asked for by an operator (POST /resync, edgeproxy resync, SIGHUP), by trigger and result',
      labelNames: ['trigger', 'result'] as const,
      registers,
    });
    this.#lastResyncAt = new Gauge({
      name: 'edgeproxy_resync_last_timestamp_seconds',
      help: 'When the last successful operator resync finished (Unix time); 0 if none yet',
      registers,
    });
    this.#lastResyncSeconds = new Gauge({
      name: 'edgeproxy_resync_last_duration_seconds',
      help: 'How long the last successful operator resync took; 0 if none yet',
      registers,
    });

    // --- read at scrape time ---------------------------------------------------------------
    const source = () => this.#source;
    const fromSnapshot = (name: string, help: string, value: (s: RouteSnapshot) => number, empty = 0) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = source()?.snapshot();
          this.set(s === undefined ? empty : value(s));
        },
      });
    fromSnapshot('edgeproxy_route_table_ready', '1 once a first route table is loaded (the proxy answers 503 before)', () => 1);
    fromSnapshot('edgeproxy_routes', 'Routes (hosts) in the current table', (s) => s.routes.size);
    fromSnapshot('edgeproxy_route_table_generation', 'Snapshots published since start', (s) => s.generation);
    fromSnapshot(
      'edgeproxy_route_table_published_timestamp_seconds',
      'When the current table was published (Unix time)',
      (s) => s.publishedAt / 1000,
    );
    fromSnapshot(
      'edgeproxy_snapshot_lsn',
      'WAL position (LSN as a byte offset) of the last transaction applied from the stream; 0 when the table does not come from the stream',
      (s) => (s.position === undefined ? 0 : lsnNumber(s.position.lsn)),
    );

    const fromStatus = (name: string, help: string, value: (s: SyncStatus) => number | undefined, missing = 0) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = source()?.status();
          this.set(s === undefined ? missing : (value(s) ?? missing));
        },
      });
    const totalFromStatus = (name: string, help: string, value: (s: SyncStatus) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const s = source()?.status();
          this.reset();
          if (s !== undefined) this.inc(value(s));
        },
      });
    const enumFromStatus = <T extends string>(
      name: string,
      help: string,
      label: string,
      values: readonly T[],
      current: (s: SyncStatus) => T,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          const s = source()?.status();
          const now = s === undefined ? undefined : current(s);
          for (const v of values) this.set({ [label]: v }, v === now ? 1 : 0);
        },
      });
    enumFromStatus('edgeproxy_sync_mode', 'The configured sync mode (1 for the configured one)', 'mode', SYNC_MODES, (s) => s.mode);
    enumFromStatus('edgeproxy_sync_feeding', 'What feeds the route table now (1 for the active one)', 'source', FEEDING, (s) => s.feeding);
    enumFromStatus(
      'edgeproxy_stream_state',
      'State of the logical replication stream (1 for the current one)',
      'state',
      STREAM_STATES,
      (s) => s.streamState,
    );
    fromStatus(
      'edgeproxy_replication_lag_seconds',
      'Commit-to-applied lag of the last transaction applied from the stream; NaN when not streaming',
      (s) => (s.lagMs === undefined ? undefined : s.lagMs / 1000),
      NaN,
    );
    totalFromStatus('edgeproxy_stream_reconnects_total', 'Stream bootstraps after the first one', (s) => s.reconnects);
    totalFromStatus('edgeproxy_stream_transactions_total', 'Transactions applied from the stream', (s) => s.transactions);
    fromStatus(
      'edgeproxy_full_load_last_success_timestamp_seconds',
      'Last successful full load (poll, resync or stream bootstrap), Unix time; 0 if none',
      (s) => (s.lastFullLoadAt === undefined ? undefined : s.lastFullLoadAt / 1000),
    );
    fromStatus('edgeproxy_full_load_last_duration_seconds', 'Duration of the last successful full load', (s) =>
      s.lastFullLoadMs === undefined ? undefined : s.lastFullLoadMs / 1000,
    );
    totalFromStatus('edgeproxy_full_load_failures_total', 'Full loads that failed', (s) => s.fullLoadFailures);
  }

  /** Where the scrape-time metrics read from; set once the service is wired. */
  watch(source: MetricsSource): void {
    this.#source = source;
  }

  recordResync(trigger: ResyncTrigger, outcome: ResyncOutcome, durationMs: number): void {
    this.#resyncs.inc({ trigger, result: outcome.ok ? 'ok' : 'failed' });
    if (outcome.ok) {
      this.#lastResyncAt.set(Date.now() / 1000);
      this.#lastResyncSeconds.set(durationMs / 1000);
    }
  }

  /** The Prometheus text exposition and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** An LSN as a number of bytes (exact below 2^53, i.e. 8 PiB of WAL); 0 if unparsable. */
function lsnNumber(lsn: string): number {
  try {
    return Number(parseLsn(lsn));
  } catch {
    return 0;
  }
}
