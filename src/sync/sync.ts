import type pg from 'pg';
import type { SyncMode } from '../config/config.js';
import { failure } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { ReplicationStream, StreamError, type StreamStart } from '../replication/stream.js';
import type { Transaction } from '../replication/transaction.js';
import { diffRoutes, isEmptyDiff } from '../table/diff.js';
import type { Duplicate } from '../table/query-routes.js';
import { RowState } from '../table/row-state.js';
import { Poller } from './poller.js';
import type { RouteStore } from './route-store.js';
import { logDuplicates, logSkippedRows } from './row-reports.js';
import type { ResyncOutcome, StreamState, SyncStatus } from './status.js';

export interface SyncOptions {
  readonly mode: SyncMode;
  readonly databaseUrl: string;
  readonly publication: string;
  readonly pool: pg.Pool;
  readonly store: RouteStore;
  readonly intervalMs: number;
  readonly logger: Logger;
  /** Bound on one stream setup (slot creation waits for open transactions). Default 30 s. */
  readonly setupTimeoutMs?: number;
  /** Status updates to the server. Default 1 s (longer gaps stall delivery on standbys). */
  readonly statusIntervalMs?: number;
  /** Backoff between failed bootstraps: first delay and cap. Defaults 500 ms and 30 s. */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** In mode auto, how often a server that cannot stream is checked again. Default 60 s. */
  readonly unavailableRecheckMs?: number;
  /** Randomness for jitter (tests pin it). */
  readonly random?: () => number;
}

/** Startup cannot go on: the message says what to do (it may carry SQL to run). */
export class SyncStartError extends Error {
  override name = 'SyncStartError';
}

/**
 * Keeps the route table following the database. In mode `poll`, only the Poller. In `auto` and
 * `replication`, a replication stream: bootstrap from a snapshot, then apply each committed
 * transaction, publishing one snapshot per batch of transactions that arrived together. When the
 * stream fails, the last table keeps serving; `auto` polls until a new bootstrap succeeds
 * (capped exponential backoff with jitter), `replication` only retries the stream.
 */
export class Sync {
  readonly #o: Required<Omit<SyncOptions, 'random'>> & { random: () => number };
  readonly poller: Poller;
  #stream: ReplicationStream | undefined;
  #state: RowState | undefined;
  /** Transactions that arrived while the bootstrap snapshot was being turned into a RowState. */
  #queue: Transaction[] | undefined;
  #regionAddresses: ReadonlySet<string> = new Set();
  #streamState: StreamState;
  #reason: string | undefined;
  #failures = 0;
  #bootstraps = 0;
  #transactions = 0;
  #lsn: string | undefined;
  #lagMs: number | undefined;
  #pending: Transaction | undefined;
  #pendingChanged = 0;
  #pendingCount = 0;
  #publishScheduled = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #bootstrapping: Promise<void> | undefined;
  #stopped = false;
  /** Aborts a stream setup in progress when stopping. */
  readonly #abort = new AbortController();
  #warnedUnavailable: string | undefined;
  #lastFullLoadAt: number | undefined;
  #lastFullLoadMs: number | undefined;
  /** Duplicate names already warned about: host → what was said (warn again only when it changes). */
  #duplicates = new Map<string, string>();
  #bootstrapProblemsKey = '';

  constructor(opts: SyncOptions) {
    this.#o = {
      setupTimeoutMs: 30_000,
      statusIntervalMs: 1_000,
      retryMinMs: 500,
      retryMaxMs: 30_000,
      unavailableRecheckMs: 60_000,
      random: Math.random,
      ...opts,
    };
    this.poller = new Poller({ pool: opts.pool, store: opts.store, intervalMs: opts.intervalMs, logger: opts.logger });
    this.#streamState = opts.mode === 'poll' ? 'disabled' : 'bootstrapping';
  }

  /**
   * Starts following the database. Resolves after the first stream attempt (mode auto and
   * replication); throws SyncStartError when that attempt shows the setup can never work.
   */
  async start(): Promise<void> {
    const { mode } = this.#o;
    if (mode !== 'replication') this.poller.start();
    if (mode === 'poll') return;
    await this.#bootstrap(true);
  }

  status(): SyncStatus {
    const current = this.#o.store.current;
    return {
      mode: this.#o.mode,
      feeding: current === undefined ? 'none' : current.source,
      streamState: this.#streamState,
      streamReason: this.#reason,
      lsn: this.#lsn,
      lagMs: this.#lagMs,
      reconnects: Math.max(0, this.#bootstraps - 1),
      transactions: this.#transactions,
      lastFullLoadAt: Math.max(this.#lastFullLoadAt ?? 0, this.poller.lastSuccessAt ?? 0) || undefined,
      lastFullLoadMs: (this.#lastFullLoadAt ?? 0) >= (this.poller.lastSuccessAt ?? 0) ? this.#lastFullLoadMs : this.poller.lastDurationMs,
      fullLoadFailures: this.poller.failures + this.#failures,
    };
  }

  /**
   * A full resync now. While streaming (and in mode replication), that is a fresh bootstrap (new
   * slot, new snapshot): a poll would race the stream. Otherwise a reload with the documented query.
   */
  async resync(): Promise<ResyncOutcome> {
    const { mode } = this.#o;
    // The poller answers when it is what feeds the table (mode poll, or auto while the stream is down).
    if (mode === 'poll' || this.#stopped || (mode === 'auto' && this.#stream === undefined && !this.poller.paused))
      return this.poller.resync();
    const before = this.#o.store.current?.routes;
    const started = performance.now();
    await this.#closeStream();
    this.#streamState = 'bootstrapping';
    await this.#bootstrap(false);
    const after = this.#o.store.current;
    if (this.#stream === undefined || after === undefined) {
      return failure('STREAM_TRANSIENT', `stream bootstrap failed: ${this.#reason ?? 'unknown'}`);
    }
    return { ok: true, diff: diffRoutes(before, after.routes), routes: after.routes.size, durationMs: performance.now() - started };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#abort.abort();
    await this.#bootstrapping?.catch(() => undefined);
    await this.#closeStream();
    await this.poller.stop();
  }

  async #closeStream(): Promise<void> {
    const stream = this.#stream;
    this.#stream = undefined;
    this.#queue = undefined;
    await stream?.close();
  }

  #bootstrap(startup: boolean): Promise<void> {
    this.#bootstrapping ??= this.#bootstrapOnce(startup).finally(() => {
      this.#bootstrapping = undefined;
    });
    return this.#bootstrapping;
  }

  async #bootstrapOnce(startup: boolean): Promise<void> {
    const { logger, store } = this.#o;
    clearTimeout(this.#retryTimer);
    if (this.#stopped) return;
    this.#streamState = 'bootstrapping';
    this.#bootstraps += 1;
    let started: StreamStart;
    try {
      this.#queue = [];
      started = await ReplicationStream.open({
        databaseUrl: this.#o.databaseUrl,
        publication: this.#o.publication,
        logger,
        setupTimeoutMs: this.#o.setupTimeoutMs,
        statusIntervalMs: this.#o.statusIntervalMs,
        onTransaction: (tx) => this.#receive(tx),
        onFailure: (err) => this.#onStreamFailure(err),
        signal: this.#abort.signal,
      });
    } catch (err) {
      this.#queue = undefined;
      const e = err instanceof StreamError ? err : new StreamError('check_server', 'transient', String(err));
      if (startup && (e.kind === 'publication' || (e.kind === 'unavailable' && this.#o.mode === 'replication'))) {
        await this.poller.stop();
        this.#stopped = true;
        throw new SyncStartError(
          e.kind === 'unavailable' ? `streaming is unavailable (EDGEPROXY_SYNC_MODE=replication): ${e.message}` : e.message,
        );
      }
      this.#afterFailure(e, 'bootstrap');
      return;
    }
    if (this.#stopped) {
      await started.stream.close();
      return;
    }
    const t0 = performance.now();
    const { state, problems } = await RowState.loadAsync(started.snapshot.tables, undefined, { release: true });
    if (this.#stopped) {
      await started.stream.close();
      return;
    }
    const buildMs = performance.now() - t0;
    this.#regionAddresses = state.regionAddresses();
    // The poller must not publish after this point: its result could be older than the stream.
    await this.poller.pause();
    if (this.#stopped) {
      await started.stream.close();
      return;
    }
    const queued = this.#queue ?? [];
    this.#queue = undefined;
    const previous = store.current;
    this.#state = state;
    this.#stream = started.stream;
    this.#lsn = started.consistentPoint;
    store.publish(state.routes, 'stream', {
      regionAddresses: this.#regionAddresses,
      position: { lsn: started.consistentPoint, commitTime: undefined },
    });
    this.#lastFullLoadAt = Date.now();
    this.#lastFullLoadMs = started.snapshot.durationMs + buildMs;
    this.#failures = 0;
    this.#streamState = 'streaming';
    this.#reason = undefined;
    this.#warnedUnavailable = undefined;
    // The same bad rows are found again by every re-bootstrap: say them again only if they changed.
    const problemsKey = JSON.stringify(problems);
    if (problemsKey !== this.#bootstrapProblemsKey) logSkippedRows(this.#o.logger, problems);
    this.#bootstrapProblemsKey = problemsKey;
    this.#duplicates.clear();
    this.#reportDuplicates(state.duplicates(), undefined);
    const diff = previous === undefined ? undefined : diffRoutes(previous.routes, state.routes);
    logger.info(
      {
        slot: started.slotName,
        lsn: started.consistentPoint,
        routes: state.routes.size,
        rows: started.snapshot.rowCount,
        publication: this.#o.publication,
        publicationCreated: started.publication === 'created',
        setupMs: round(started.setupMs),
        loadMs: round(started.snapshot.durationMs),
        buildMs: round(buildMs),
        ...(diff === undefined ? {} : { added: diff.added.length, removed: diff.removed.length, changed: diff.changed.length }),
      },
      'replication stream started',
    );
    if (diff !== undefined && !isEmptyDiff(diff))
      logger.debug(
        { added: diff.added.slice(0, 20), removed: diff.removed.slice(0, 20), changed: diff.changed.slice(0, 20) },
        'bootstrap changed routes',
      );
    for (const tx of queued) this.#receive(tx);
  }

  /** One committed transaction from the stream: apply now, publish with whatever else arrived this turn. */
  #receive(tx: Transaction): void {
    if (this.#queue !== undefined) {
      this.#queue.push(tx);
      return;
    }
    const state = this.#state;
    if (state === undefined) throw new Error('internal: transaction before bootstrap');
    const result = state.apply(tx.changes); // throws RowError: the stream turns that into a resync
    this.#state = result.state;
    if (tx.changes.some((c) => c.table === 'regions')) this.#regionAddresses = result.state.regionAddresses();
    logSkippedRows(this.#o.logger, result.problems);
    if (result.touchedHosts.size > 0) this.#reportDuplicates(result.state.duplicates(result.touchedHosts), result.touchedHosts);
    this.#transactions += 1;
    this.#pending = tx;
    this.#pendingChanged += result.changedHosts.length;
    this.#pendingCount += 1;
    if (!this.#publishScheduled) {
      this.#publishScheduled = true;
      setImmediate(() => this.#publish());
    }
  }

  #publish(): void {
    this.#publishScheduled = false;
    const tx = this.#pending;
    const state = this.#state;
    const stream = this.#stream;
    if (tx === undefined || state === undefined || stream === undefined) return;
    this.#o.store.publish(state.routes, 'stream', {
      regionAddresses: this.#regionAddresses,
      position: { lsn: tx.endLsn, commitTime: tx.commitTimeMs },
    });
    stream.applied(tx.endLsn);
    this.#lsn = tx.endLsn;
    this.#lagMs = Math.max(0, Date.now() - tx.commitTimeMs);
    this.#o.logger.debug(
      {
        lsn: tx.endLsn,
        transactions: this.#pendingCount,
        changedRoutes: this.#pendingChanged,
        lagMs: round(this.#lagMs),
        routes: state.routes.size,
      },
      'applied transactions',
    );
    this.#pending = undefined;
    this.#pendingChanged = 0;
    this.#pendingCount = 0;
  }

  #onStreamFailure(err: StreamError): void {
    if (this.#stopped) return;
    // Publish what was applied before the failure: it is committed data.
    if (this.#pending !== undefined) this.#publish();
    this.#stream = undefined;
    this.#afterFailure(err, 'stream');
  }

  #afterFailure(err: StreamError, during: 'bootstrap' | 'stream'): void {
    if (this.#stopped) return;
    const { logger, mode } = this.#o;
    const current = this.#o.store.current;
    this.#reason = err.message;
    let delay: number;
    if (err.kind === 'resync') {
      delay = 0;
      this.#streamState = 'bootstrapping';
      logger.info({ reason: err.message, lsn: this.#lsn }, 'replication stream needs a fresh bootstrap');
    } else if (err.kind === 'unavailable' && mode === 'auto') {
      delay = this.#o.unavailableRecheckMs;
      this.#streamState = 'unavailable';
      if (this.#warnedUnavailable !== err.message) {
        this.#warnedUnavailable = err.message;
        logger.warn(
          { reason: err.message, step: err.step, recheckInMs: delay, updateIntervalMs: this.#o.intervalMs },
          'logical replication unavailable; polling the database instead (set EDGEPROXY_SYNC_MODE=poll to silence this)',
        );
      }
    } else {
      this.#failures += 1;
      const cap = Math.min(this.#o.retryMaxMs, this.#o.retryMinMs * 2 ** Math.min(this.#failures - 1, 20));
      delay = Math.round(cap / 2 + (this.#o.random() * cap) / 2);
      this.#streamState = 'backoff';
      logger.warn(
        {
          err: { message: err.message, step: err.step, kind: err.kind, ...(err.fixSql ? { fixSql: err.fixSql } : {}) },
          failures: this.#failures,
          retryInMs: delay,
          servingRoutes: current?.routes.size ?? 0,
          lsn: this.#lsn,
          polling: mode === 'auto',
        },
        during === 'stream' ? 'replication stream lost; serving the last table' : 'replication bootstrap failed',
      );
    }
    if (mode === 'auto' && err.kind !== 'resync') this.poller.resume(0);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => void this.#bootstrap(false), delay);
  }

  /** Warns about duplicate names that are new or changed; `checked` hosts without one are forgotten. */
  #reportDuplicates(found: readonly Duplicate[], checked: Iterable<string> | undefined): void {
    if (checked !== undefined) {
      const still = new Set(found.map((d) => d.host));
      for (const host of checked) if (!still.has(host)) this.#duplicates.delete(host);
    }
    const changed = found.filter((d) => {
      const key = JSON.stringify([d.chosen, d.others]);
      if (this.#duplicates.get(d.host) === key) return false;
      this.#duplicates.set(d.host, key);
      return true;
    });
    logDuplicates(this.#o.logger, changed);
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
