/**
 * Prometheus metrics (prom-client) on a registry of their own, so that several services can run
 * in one process (the tests do). Request and probe figures are pushed by the request path through
 * the ProxyObserver (request-metrics.ts); table and sync figures are read from the running service
 * at scrape time (sync-metrics.ts). Every metric is listed in the README ("Admin API and metrics").
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ProxyObserver } from '../proxy/observer.js';
import type { ResyncOutcome } from '../sync/status.js';
import { VERSION } from '../version.js';
import { certificateMetrics } from './certificate-metrics.js';
import { requestMetrics } from './request-metrics.js';
import { scrapeMetrics, type MetricsSource } from './sync-metrics.js';
import { tlsMetrics } from './tls-metrics.js';
import { acmeMetrics, type AcmeMetrics } from './acme-metrics.js';
import { summedExposition, type MetricsJson } from './summed.js';
import { GC_PAUSE_BUCKETS, workerGcMetrics } from './gc-metrics.js';

export type { MetricsSource } from './sync-metrics.js';

/** What asked for a resync. */
export type ResyncTrigger = 'admin' | 'sighup';

/** The operator resyncs (POST /resync, edgeproxy resync, SIGHUP). */
function resyncMetrics(registry: Registry) {
  const registers = [registry];
  return {
    count: new Counter({
      name: 'edgeproxy_resyncs_total',
      help: 'Full resyncs asked for by an operator (POST /resync, edgeproxy resync, SIGHUP), by trigger and result',
      labelNames: ['trigger', 'result'] as const,
      registers,
    }),
    lastAt: new Gauge({
      name: 'edgeproxy_resync_last_timestamp_seconds',
      help: 'When the last successful operator resync finished (Unix time); 0 if none yet',
      registers,
    }),
    lastSeconds: new Gauge({
      name: 'edgeproxy_resync_last_duration_seconds',
      help: 'How long the last successful operator resync took; 0 if none yet',
      registers,
    }),
  };
}

/** A worker thread's metrics: only what its request path reports (summed into the main thread's on each scrape). */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly observer: ProxyObserver = requestMetrics(this.registry);
  /** The worker's HTTPS handshakes, summed with the main thread's (zero there when workers serve HTTPS). */
  readonly tlsHandshake: ReturnType<typeof tlsMetrics> = tlsMetrics(this.registry);

  constructor() {
    workerGcMetrics(this.registry);
  }
}

export class Metrics {
  readonly registry = new Registry();
  /** Pass to ProxyServer and HealthChecker. Cheap and never throws. */
  readonly observer: ProxyObserver;
  /** Pass to the HTTPS listener. */
  readonly tlsHandshake: ReturnType<typeof tlsMetrics>;
  /** Pass to on-demand issuance. */
  readonly acme: AcmeMetrics;
  readonly #resyncs: ReturnType<typeof resyncMetrics>;
  #source: MetricsSource | undefined;
  #workers: (() => Promise<MetricsJson[]>) | undefined;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'edgeproxy_', gcDurationBuckets: GC_PAUSE_BUCKETS });
    new Gauge({
      name: 'edgeproxy_build_info',
      help: 'Always 1; the version in a label',
      labelNames: ['version'],
      registers: [this.registry],
    }).set({ version: VERSION }, 1);
    this.observer = requestMetrics(this.registry);
    this.tlsHandshake = tlsMetrics(this.registry);
    this.acme = acmeMetrics(this.registry);
    this.#resyncs = resyncMetrics(this.registry);
    scrapeMetrics(this.registry, () => this.#source);
    certificateMetrics(this.registry, () => this.#source?.snapshot());
  }

  /** Where the scrape-time metrics read from; set once the service is wired. */
  watch(source: MetricsSource): void {
    this.#source = source;
  }

  /** Worker threads serve requests too: each scrape sums their request metrics with these (src/workers). */
  sumWorkers(collect: () => Promise<MetricsJson[]>): void {
    this.#workers = collect;
  }

  recordResync(trigger: ResyncTrigger, outcome: ResyncOutcome, durationMs: number): void {
    this.#resyncs.count.inc({ trigger, result: outcome.ok ? 'ok' : 'failed' });
    if (outcome.ok) {
      this.#resyncs.lastAt.set(Date.now() / 1000);
      this.#resyncs.lastSeconds.set(durationMs / 1000);
    }
  }

  /** The Prometheus text exposition and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    if (this.#workers !== undefined) return summedExposition(this.registry, await this.#workers());
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
