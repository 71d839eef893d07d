/**
 * The main thread's side of the worker threads (EDGEPROXY_WORKERS > 1): starts them (the first
 * on the configured ports, the others on the ports it got, all with reusePort), sends each
 * published snapshot to every one (with the served certificates when TLS changed), answers their
 * health questions from the one HealthChecker and their on-demand asks from the one issuance,
 * relays their log lines, collects their metrics, restarts one that dies (with backoff: only the
 * requests it had in flight fail) and drains them on stop.
 */
import type tls from 'node:tls';
import { Worker } from 'node:worker_threads';
import type { Config } from '../config/config.js';
import type { Logger } from '../log/logger.js';
import type { MetricsJson } from '../metrics/summed.js';
import type { HealthChecker } from '../proxy/health.js';
import { retryDelayMs } from '../sync/backoff.js';
import type { RouteSnapshot } from '../sync/route-store.js';
import type { LoadedCertificate } from '../tls/certificate.js';
import type { TlsSnapshot } from '../tls/tls-state.js';
import type { HealthBoard } from './health-board.js';
import type { FromWorker, SnapshotMessage, ToWorker, WorkerInit } from './messages.js';
import { workerCertificate, workerTls } from './worker-tls.js';
import { workerResourceLimits } from './young-generation.js';

export interface WorkerPoolOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Where the workers' log lines are written (the main logger's destination). */
  readonly writeLog: (line: string) => void;
  readonly health: HealthChecker;
  readonly board: HealthBoard;
  /** The session ticket keys now: a (re)started worker begins with them; setTicketKeys() sends each new set. */
  readonly ticketKeys: () => Buffer;
  /** EDGEPROXY_TLS_DEFAULT_CERT and _KEY, read and checked here. */
  readonly defaultCertificate: LoadedCertificate | undefined;
  /** On-demand issuance, asked for a worker's handshake (undefined: this proxy issues nothing). */
  readonly issue: ((name: string) => Promise<tls.SecureContext | undefined> | undefined) | undefined;
  /** The newest snapshot, sent to a worker as soon as it listens. */
  readonly current: () => RouteSnapshot | undefined;
}

/** One worker as the admin API shows it. */
export interface WorkerStatus {
  readonly worker: number;
  readonly threadId: number;
  /** The last table generation the worker said it swapped in. */
  readonly generation: number;
  /** Requests it answered since it (re)started. */
  readonly requests: number;
  /** Health questions it sent the main thread (the rest it read from the board). */
  readonly healthAsks: number;
  /** Certificates it serves in the last version it swapped in (every worker serves the same once current). */
  readonly certificates: number;
  /** On-demand questions it sent the main thread (handshakes for a routed name it had no certificate for). */
  readonly certificateAsks: number;
  readonly restarts: number;
}

/** Restart delays: doubling from 100 ms to 10 s; a worker that served for a minute starts the count again. */
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 10_000;
const STABLE_MS = 60_000;
/** How long a scrape or GET /workers waits for a worker's answer (one that does not answer: its last metrics, its last known view). */
const ANSWER_WAIT_MS = 2_000;

/** A worker's answer to a question the pool asked (`ask`). */
type Answer = Extract<FromWorker, { type: 'metrics' | 'status' }>;

const entry = new URL(import.meta.url.endsWith('.ts') ? './worker-main.ts' : './worker-main.js', import.meta.url);

class WorkerSlot {
  worker: Worker | undefined;
  startedAt = 0;
  failures = 0;
  restarts = 0;
  generation = 0;
  requests = 0;
  healthAsks = 0;
  certificates = 0;
  certificateAsks = 0;
  lastTls: TlsSnapshot | undefined;
  /** Metrics of this slot's earlier lives (a restart starts its counters at 0; the process's must not go back). */
  retired: MetricsJson[] = [];
  last: MetricsJson | undefined;
  restartTimer: NodeJS.Timeout | undefined;
  constructor(readonly id: number) {}
}

export class WorkerPool {
  readonly #opts: WorkerPoolOptions;
  readonly #workerConfig: Config;
  readonly #slots: WorkerSlot[];
  /** Questions posted to workers and waiting for their answer, by ask number. */
  readonly #asks = new Map<number, (m: Answer) => void>();
  #port = 0;
  #httpsPort: number | undefined;
  #asked = 0;
  #stopping = false;

  constructor(opts: WorkerPoolOptions) {
    this.#opts = opts;
    // A worker never connects to the database nor opens a sealed key: it is not given their secrets.
    this.#workerConfig = { ...opts.config, databaseUrl: '', primaryDatabaseUrl: undefined, tlsStorageKey: undefined };
    this.#slots = Array.from({ length: opts.config.workers }, (_, i) => new WorkerSlot(i + 1));
  }

  /** Starts every worker; resolves with the public ports once all listen, rejects if one cannot. */
  async start(): Promise<{ port: number; httpsPort: number | undefined }> {
    const { httpAddr, httpsAddr } = this.#opts.config;
    this.#port = httpAddr.port;
    this.#httpsPort = httpsAddr?.port;
    ({ port: this.#port, httpsPort: this.#httpsPort } = await this.#spawn(this.#slots[0]!));
    await Promise.all(this.#slots.slice(1).map((s) => this.#spawn(s)));
    return { port: this.#port, httpsPort: this.#httpsPort };
  }

  /** New session ticket keys (a rotation, src/tls/ticket-keys.ts): every worker's HTTPS listener takes them. */
  setTicketKeys(keys: Buffer): void {
    for (const slot of this.#slots) this.#post(slot, { type: 'ticket-keys', keys });
  }

  /** Every worker swaps to `snapshot` (the same shared buffers; only the version's small parts are sent). */
  publish(snapshot: RouteSnapshot): void {
    for (const slot of this.#slots) if (slot.worker !== undefined) this.#send(slot, snapshot);
  }

  /**
   * Each worker's view, asked now (the generation it routes from, requests answered) for
   * GET /workers: a round trip per worker that reads its view, not its metrics, so polling it
   * (bench/worker-scale.ts probes commit → routed on every worker this way) costs little.
   */
  async status(): Promise<WorkerStatus[]> {
    await Promise.all(this.#slots.map((s) => (s.worker === undefined ? undefined : this.#ask(s, (ask) => ({ type: 'status', ask })))));
    return this.#slots.map((s) => ({
      worker: s.id,
      threadId: s.worker?.threadId ?? -1,
      generation: s.generation,
      requests: s.requests,
      healthAsks: s.healthAsks,
      certificates: s.certificates,
      certificateAsks: s.certificateAsks,
      restarts: s.restarts,
    }));
  }

  /** Each worker's request metrics (this life's and its earlier lives'), for the main thread's /metrics. */
  async collect(): Promise<MetricsJson[]> {
    const lives = await Promise.all(this.#slots.map((s) => this.#metricsOf(s)));
    return lives.flat();
  }

  /** Ends worker `id`'s thread as a crash would (tests: a worker that dies is restarted). */
  async terminate(id: number): Promise<void> {
    await this.#slots[id - 1]?.worker?.terminate();
  }

  /**
   * Stops the workers' listeners and lets their requests finish for up to `timeoutMs`: `closed`
   * resolves once every worker has closed its listener, `drained` true when all requests finished.
   */
  drain(timeoutMs: number): { closed: Promise<void>; drained: Promise<boolean> } {
    this.#stopping = true;
    const each = this.#slots.map((s) => this.#drainOne(s, timeoutMs));
    return {
      closed: Promise.all(each.map((e) => e.closed)).then(() => undefined),
      drained: Promise.all(each.map((e) => e.drained)).then((results) => results.every(Boolean)),
    };
  }

  #spawn(slot: WorkerSlot): Promise<{ port: number; httpsPort: number | undefined }> {
    const o = this.#opts;
    const init: WorkerInit = {
      id: slot.id,
      config: this.#workerConfig,
      port: this.#port,
      httpsPort: this.#httpsPort,
      ticketKeys: o.ticketKeys(),
      defaultCertificate: o.defaultCertificate === undefined ? undefined : workerCertificate(o.defaultCertificate),
      onDemand: o.issue !== undefined,
      healthBoard: o.board.buffer,
    };
    const worker = new Worker(entry, { workerData: init, resourceLimits: workerResourceLimits(o.config.workerYoungGenerationMb) });
    slot.worker = worker;
    slot.startedAt = performance.now();
    slot.lastTls = undefined;
    return new Promise((resolve, reject) => {
      let listening = false;
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'listening') {
          listening = true;
          const snapshot = o.current();
          if (snapshot !== undefined) this.#send(slot, snapshot);
          resolve({ port: m.port, httpsPort: m.httpsPort });
        } else this.#onMessage(slot, m);
      });
      worker.on('error', (err) => {
        if (!listening) reject(err);
        else o.logger.error({ worker: slot.id, err }, 'worker failed');
      });
      worker.on('exit', (code) => this.#onExit(slot, worker, code, listening));
    });
  }

  #onMessage(slot: WorkerSlot, m: FromWorker): void {
    const o = this.#opts;
    switch (m.type) {
      case 'log':
        return o.writeLog(m.line);
      case 'applied':
        slot.generation = m.generation;
        slot.requests = m.requests;
        slot.certificates = m.certificates;
        return;
      case 'certificate-ask':
        slot.certificateAsks += 1;
        return this.#issue(slot, m.ask, m.name);
      case 'health-check': {
        const target = { ip: m.ip, port: m.port };
        slot.healthAsks += 1;
        void o.health.check(target).then((result) => {
          const answer = { type: 'health', ask: m.ask, result, slot: o.board.slotOf(target, o.health.last(target)) } as const;
          this.#post(slot, answer);
        });
        return;
      }
      case 'health-mark':
        return o.health.markUnhealthy({ ip: m.ip, port: m.port }, m.reason);
      case 'metrics':
        slot.requests = m.requests;
        slot.last = m.metrics;
        return this.#answered(m);
      case 'status':
        slot.generation = m.generation;
        slot.requests = m.requests;
        slot.certificates = m.certificates;
        return this.#answered(m);
      case 'listening':
      case 'closed':
      case 'drained':
        return;
    }
  }

  #answered(m: Answer): void {
    this.#asks.get(m.ask)?.(m);
    this.#asks.delete(m.ask);
  }

  /** A worker's handshake waits on the main thread's issuance; the answer follows the version that brings the certificate. */
  #issue(slot: WorkerSlot, ask: number, name: string): void {
    const issuing = this.#opts.issue?.(name);
    if (issuing === undefined) return this.#post(slot, { type: 'certificate', ask, ready: false });
    void issuing.then((context) => this.#post(slot, { type: 'certificate', ask, ready: context !== undefined }));
  }

  #onExit(slot: WorkerSlot, worker: Worker, code: number, listened: boolean): void {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    if (slot.last !== undefined) slot.retired.push(slot.last);
    slot.last = undefined;
    if (this.#stopping || !listened) return;
    slot.failures = performance.now() - slot.startedAt >= STABLE_MS ? 1 : slot.failures + 1;
    const delayMs = retryDelayMs(slot.failures, RESTART_MIN_MS, RESTART_MAX_MS, Math.random);
    this.#opts.logger.error({ worker: slot.id, exitCode: code, delayMs }, 'worker exited; restarting it');
    slot.restartTimer = setTimeout(() => this.#restart(slot), delayMs);
  }

  #restart(slot: WorkerSlot): void {
    slot.restartTimer = undefined;
    if (this.#stopping) return;
    slot.restarts += 1;
    this.#spawn(slot).then(
      () => this.#opts.logger.info({ worker: slot.id, restarts: slot.restarts }, 'worker restarted'),
      (err: unknown) => this.#opts.logger.error({ worker: slot.id, err }, 'worker failed'),
    );
  }

  #send(slot: WorkerSlot, s: RouteSnapshot): void {
    const changed = s.tls === slot.lastTls ? undefined : workerTls(s.tls, slot.lastTls);
    slot.lastTls = s.tls;
    const m: SnapshotMessage = {
      type: 'snapshot',
      routes: s.routes.describe(),
      regionAddresses: s.regionAddresses,
      generation: s.generation,
      source: s.source,
      publishedAt: s.publishedAt,
      position: s.position,
      tls: changed,
    };
    this.#post(slot, m);
  }

  #post(slot: WorkerSlot, m: ToWorker): void {
    slot.worker?.postMessage(m);
  }

  async #metricsOf(slot: WorkerSlot): Promise<MetricsJson[]> {
    if (slot.worker === undefined) return slot.retired;
    const answer = await this.#ask(slot, (ask) => ({ type: 'metrics', ask }));
    const current = answer?.type === 'metrics' ? answer.metrics : slot.last;
    return current === undefined ? slot.retired : [...slot.retired, current];
  }

  /** Posts a question; its answer (already applied to the slot by #onMessage), or undefined after ANSWER_WAIT_MS. */
  #ask(slot: WorkerSlot, question: (ask: number) => ToWorker): Promise<Answer | undefined> {
    const ask = ++this.#asked;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#asks.delete(ask);
        resolve(undefined);
      }, ANSWER_WAIT_MS);
      this.#asks.set(ask, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      this.#post(slot, question(ask));
    });
  }

  #drainOne(slot: WorkerSlot, timeoutMs: number): { closed: Promise<void>; drained: Promise<boolean> } {
    clearTimeout(slot.restartTimer);
    const worker = slot.worker;
    if (worker === undefined) return { closed: Promise.resolve(), drained: Promise.resolve(true) };
    let markClosed: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => (markClosed = resolve));
    const drained = new Promise<boolean>((resolve) => {
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'closed') markClosed();
        if (m.type === 'drained') resolve(m.drained);
      });
      worker.once('exit', () => {
        markClosed();
        resolve(false);
      });
    });
    this.#post(slot, { type: 'drain', timeoutMs });
    return { closed, drained: drained.finally(() => worker.terminate()) };
  }
}
