import type pg from 'pg';
import { DEFAULTS, type SyncMode } from '../config/config.js';
import { EdgeProxyError, failure, type Failure } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { ReplicationStream, StreamError, type StreamStart } from '../replication/stream.js';
import { diffRoutesSliced, isEmptyDiff, type RouteDiff } from '../table/diff.js';
import { RowState } from '../table/row-state.js';
import { TlsFeed } from '../tls/tls-feed.js';
import { retryDelayMs } from './backoff.js';
import { Poller } from './poller.js';
import type { RouteStore } from './route-store.js';
import { StreamReports } from './row-reports.js';
import type { ResyncOutcome, SyncStatus } from './status.js';
import { StreamApplier, type StreamPosition } from './stream-apply.js';
import { failureEvent, feedingOf, nextTransition, resyncPolls, type SyncAction, type SyncEvent, type SyncState } from './sync-state.js';

export interface SyncOptions {
  readonly mode: SyncMode;
  readonly databaseUrl: string;
  readonly publication: string;
  /** EDGEPROXY_REGION_ADDRESS_COLUMN, for the poller's query and the stream's snapshot and decoder. */
  readonly regionAddressColumn: string;
  readonly pool: pg.Pool;
  readonly store: RouteStore;
  readonly intervalMs: number;
  readonly logger: Logger;
  /** Bound on one stream setup (slot creation waits for open transactions). Default 30 s. */
  readonly setupTimeoutMs?: number;
  /** Silence on the stream after which it is dead (EDGEPROXY_REPLICATION_TIMEOUT). Default: the option table's. */
  readonly replicationTimeoutMs?: number;
  /** Status updates to the server. Default 1 s (longer gaps stall delivery on standbys). */
  readonly statusIntervalMs?: number;
  /** Backoff between failed bootstraps: first delay and cap. Defaults 500 ms and 30 s. */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** In mode auto, how often a server that cannot stream is checked again. Default 60 s. */
  readonly unavailableRecheckMs?: number;
  /** Randomness for jitter (tests pin it). */
  readonly random?: () => number;
  /** Where certificate and challenge rows go (its storage key opens the certificates' keys). Default: one without a storage key. */
  readonly tls?: TlsFeed;
}

/** Startup cannot go on: the message says what to do (it may carry SQL to run). */
export class SyncStartError extends EdgeProxyError {
  override name = 'SyncStartError';

  constructor(message: string, options: ErrorOptions = {}) {
    super('SYNC_START_FAILED', message, options);
  }
}

/** One replication session: the stream and the applier that publishes what it delivers. */
interface Session {
  readonly stream: ReplicationStream;
  readonly applier: StreamApplier;
}

/**
 * Keeps the route table following the database: the poller, the replication stream, or both in
 * turn, as the state machine of src/sync/sync-state.ts says. Each event (the stream bootstrapped,
 * failed, needs a resync, a retry is due, an operator resync, stop) picks the next state and the
 * work to start from the mode's transition table; this class only carries that work out.
 * When the stream fails, the last table keeps serving.
 */
export class Sync {
  readonly #o: Required<Omit<SyncOptions, 'random' | 'tls'>> & { random: () => number; tls: TlsFeed };
  readonly poller: Poller;
  readonly #reports: StreamReports;
  #state: SyncState = 'starting';
  #session: Session | undefined;
  #bootstrapping: Promise<void> | undefined;
  #shutdown: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  /** Delay the retry timer was last set to (for the failure's log line). */
  #retryInMs = 0;
  /** Failed bootstraps and lost streams in a row (the backoff); 0 after a success. */
  #consecutiveFailures = 0;
  /** Totals since start, for the status and the metrics: they never decrease. */
  readonly #totals = { bootstraps: 0, bootstrapFailures: 0 };
  readonly #position: StreamPosition = { lsn: undefined, currentAt: undefined, transactions: 0 };
  #lastError: Failure | undefined;
  #lastBootstrap: { at: number; ms: number } | undefined;
  /**
   * The last bootstrap's table compared with the one it replaced (in slices), computed once for
   * both its log line and a resync's answer: at a million routes each comparison is ~0.5 s of work.
   */
  #bootstrapDiff: Promise<RouteDiff> | undefined;
  #warnedUnavailable: string | undefined;
  #startError: SyncStartError | undefined;
  /** Aborts a stream setup in progress when stopping. */
  readonly #abort = new AbortController();

  constructor(opts: SyncOptions) {
    this.#o = {
      setupTimeoutMs: 30_000,
      replicationTimeoutMs: DEFAULTS.replicationTimeoutMs,
      statusIntervalMs: 1_000,
      retryMinMs: 500,
      retryMaxMs: 30_000,
      unavailableRecheckMs: 60_000,
      random: Math.random,
      ...opts,
      tls: opts.tls ?? new TlsFeed(undefined, opts.logger),
    };
    this.poller = new Poller({
      pool: opts.pool,
      store: opts.store,
      intervalMs: opts.intervalMs,
      logger: opts.logger,
      regionAddressColumn: opts.regionAddressColumn,
      tls: this.#o.tls,
    });
    this.#reports = new StreamReports(opts.logger);
  }

  get state(): SyncState {
    return this.#state;
  }

  /** A method, not a field read: TypeScript would keep a narrowed field across the awaits in between. */
  #stopped(): boolean {
    return this.#state === 'stopped';
  }

  /**
   * Starts following the database. Resolves after the first stream attempt (modes auto and
   * replication); throws SyncStartError when that attempt shows the setup can never work.
   */
  async start(): Promise<void> {
    this.#dispatch('start');
    await this.#bootstrapping;
    if (this.#startError !== undefined) {
      await this.#shutdown;
      throw this.#startError;
    }
  }

  status(): SyncStatus {
    const { mode } = this.#o;
    const poller = this.poller;
    const bootstrapAt = this.#lastBootstrap?.at ?? 0;
    const pollAt = poller.lastSuccessAt ?? 0;
    return {
      mode,
      state: this.#state,
      feeding: feedingOf(mode, this.#state),
      streamError:
        this.#state === 'streaming' || this.#lastError === undefined
          ? undefined
          : { code: this.#lastError.code, message: this.#lastError.message },
      lsn: this.#position.lsn,
      lagMs: this.#position.currentAt === undefined ? undefined : Math.max(0, Date.now() - this.#position.currentAt),
      reconnects: Math.max(0, this.#totals.bootstraps - 1),
      transactions: this.#position.transactions,
      lastFullLoadAt: Math.max(bootstrapAt, pollAt) || undefined,
      lastFullLoadMs: bootstrapAt >= pollAt ? this.#lastBootstrap?.ms : poller.lastDurationMs,
      fullLoadFailures: poller.failures + this.#totals.bootstrapFailures,
    };
  }

  /**
   * A full resync now. Where the poller feeds the table, a reload with the documented query.
   * Otherwise a fresh stream bootstrap (new slot, new snapshot): a poll would race the stream.
   */
  async resync(): Promise<ResyncOutcome> {
    if (resyncPolls(this.#o.mode, this.#state)) return this.poller.resync();
    const before = this.#o.store.current?.routes;
    const started = performance.now();
    this.#bootstrapDiff = undefined;
    this.#dispatch('resync-requested');
    await this.#bootstrapping;
    const after = this.#o.store.current;
    if (this.#state !== 'streaming' || after === undefined) {
      const why = this.#lastError ?? failure('STREAM_TRANSIENT', 'unknown');
      return failure(why.code, `stream bootstrap failed: ${why.message}`);
    }
    // What the bootstrap changed (its table against the one serving until it was published),
    // or, had it ended before this asked, the table now against the one then.
    const diff = await (this.#bootstrapDiff ?? diffRoutesSliced(before, after.routes));
    return { ok: true, diff, routes: after.routes.size, durationMs: performance.now() - started };
  }

  async stop(): Promise<void> {
    this.#dispatch('stop');
    await this.#shutdown;
  }

  // ---- the state machine -------------------------------------------------------------------

  /** Takes the transition the mode's table gives for `event` in the current state, and starts its work. */
  #dispatch(event: SyncEvent): void {
    const from = this.#state;
    const next = nextTransition(this.#o.mode, from, event);
    if (next === undefined) {
      // Late events after stopping are expected (a stream failing as it closes); anything else is a bug.
      if (from !== 'stopped') this.#o.logger.error({ state: from, event }, 'sync event without a transition; ignored');
      return;
    }
    this.#state = next.to;
    if (next.to !== from) this.#o.logger.info({ from, to: next.to, event }, 'sync state changed');
    this.#run(next.run);
  }

  #run(action: SyncAction): void {
    switch (action) {
      case 'none':
        return;
      case 'poll-and-bootstrap':
        this.poller.start();
        void this.#bootstrap();
        return;
      case 'bootstrap':
        void this.#bootstrap();
        return;
      case 'poll':
        this.poller.start();
        return;
      case 'poll-and-retry-later':
        this.poller.resume(0);
        this.#retryLater(this.#backoffMs());
        return;
      case 'retry-later':
        this.#retryLater(this.#backoffMs());
        return;
      case 'poll-and-recheck-later':
        this.poller.resume(0);
        this.#retryLater(this.#o.unavailableRecheckMs);
        return;
      case 'shut-down':
        this.#shutdown ??= this.#shutDown();
        return;
    }
  }

  #backoffMs(): number {
    return retryDelayMs(this.#consecutiveFailures, this.#o.retryMinMs, this.#o.retryMaxMs, this.#o.random);
  }

  #retryLater(ms: number): void {
    clearTimeout(this.#retryTimer);
    this.#retryInMs = ms;
    this.#retryTimer = setTimeout(() => this.#dispatch('retry-due'), ms);
  }

  async #shutDown(): Promise<void> {
    clearTimeout(this.#retryTimer);
    this.#abort.abort();
    await this.#bootstrapping?.catch(() => undefined);
    await this.#closeSession();
    await this.poller.stop();
  }

  // ---- the work ------------------------------------------------------------------------------

  /** One bootstrap at a time: asking again while one runs joins it. */
  #bootstrap(): Promise<void> {
    this.#bootstrapping ??= this.#bootstrapOnce().finally(() => {
      this.#bootstrapping = undefined;
    });
    return this.#bootstrapping;
  }

  /** A fresh session: slot and snapshot, the row state built from it, published; then event `bootstrapped` (or a failure's). */
  async #bootstrapOnce(): Promise<void> {
    clearTimeout(this.#retryTimer);
    await this.#closeSession();
    if (this.#stopped()) return;
    this.#totals.bootstraps += 1;
    const applier = new StreamApplier({
      store: this.#o.store,
      logger: this.#o.logger,
      position: this.#position,
      reports: this.#reports,
      tls: this.#o.tls,
    });
    let lost: StreamError | undefined;
    let started: StreamStart;
    try {
      started = await this.#openStream(applier, (err) => {
        if (this.#session?.applier === applier) this.#streamLost(err);
        else lost ??= err; // still bootstrapping: the load below gives up on this session
      });
    } catch (err) {
      this.#failed(err instanceof StreamError ? err : new StreamError('check_server', 'transient', String(err)), 'bootstrap');
      return;
    }
    const t0 = performance.now();
    const { state: rows, problems } = await RowState.loadAsync(started.snapshot.tables, undefined, { release: true });
    const buildMs = performance.now() - t0;
    // The poller must not publish after this point: its result could be older than the stream.
    if (this.#state !== 'stopped' && lost === undefined) await this.poller.pause();
    if (this.#stopped() || lost !== undefined) {
      applier.close();
      await started.stream.close();
      if (lost !== undefined) this.#failed(lost, 'bootstrap');
      return;
    }
    const previous = this.#o.store.current;
    this.#session = { stream: started.stream, applier };
    applier.start(rows, started.snapshot.tls, started.stream, started.consistentPoint, started.snapshotAt);
    this.#lastBootstrap = { at: Date.now(), ms: started.snapshot.durationMs + buildMs };
    this.#consecutiveFailures = 0;
    this.#lastError = undefined;
    this.#warnedUnavailable = undefined;
    this.#reports.bootstrap(problems, rows.duplicates());
    // A first table is compared with nothing: no diff (at a million routes, a list of every host).
    const diff = previous === undefined ? undefined : diffRoutesSliced(previous.routes, rows.routes);
    this.#bootstrapDiff = diff;
    // At once for a first table; after a re-bootstrap, once the comparison with the previous
    // table (done in slices) is ready.
    void this.#logStarted(started, rows, buildMs, diff);
    this.#dispatch('bootstrapped');
  }

  #openStream(applier: StreamApplier, onFailure: (err: StreamError) => void): Promise<StreamStart> {
    return ReplicationStream.open({
      databaseUrl: this.#o.databaseUrl,
      publication: this.#o.publication,
      regionAddressColumn: this.#o.regionAddressColumn,
      logger: this.#o.logger,
      setupTimeoutMs: this.#o.setupTimeoutMs,
      statusIntervalMs: this.#o.statusIntervalMs,
      silenceTimeoutMs: this.#o.replicationTimeoutMs,
      onTransaction: (tx) => applier.receive(tx),
      onCaughtUp: (atMs) => applier.caughtUp(atMs),
      onFailure,
      signal: this.#abort.signal,
    });
  }

  async #closeSession(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    session?.applier.close();
    await session?.stream.close();
  }

  /** The live session's stream stopped: publish what it applied (committed data), then the failure. */
  #streamLost(err: StreamError): void {
    const session = this.#session;
    this.#session = undefined;
    session?.applier.flush();
    session?.applier.close();
    this.#failed(err, 'stream');
  }

  /** A bootstrap or the stream failed: counts it, picks its event, and says so once the next state is known. */
  #failed(err: StreamError, during: 'bootstrap' | 'stream'): void {
    if (this.#stopped()) return;
    const { mode } = this.#o;
    const event = failureEvent(err.kind, this.#state, mode);
    this.#lastError = failure(err.code, err.message);
    const quietlyPolled = event === 'unavailable' && mode === 'auto';
    if (event === 'fatal') {
      this.#startError = new SyncStartError(
        err.kind === 'unavailable' ? `streaming is unavailable (EDGEPROXY_SYNC_MODE=replication): ${err.message}` : err.message,
        { cause: err },
      );
    } else if (event !== 'resync-needed' && !quietlyPolled) {
      this.#consecutiveFailures += 1;
      if (during === 'bootstrap') this.#totals.bootstrapFailures += 1;
    }
    this.#dispatch(event);
    if (event === 'resync-needed') this.#logResyncNeeded(err);
    else if (quietlyPolled) this.#warnUnavailable(err);
    else if (event !== 'fatal') this.#logFailure(err, during);
  }

  // ---- log lines -----------------------------------------------------------------------------

  async #logStarted(started: StreamStart, rows: RowState, buildMs: number, comparison: Promise<RouteDiff> | undefined): Promise<void> {
    const { logger } = this.#o;
    const diff = await comparison;
    logger.info(
      {
        slot: started.slotName,
        lsn: started.consistentPoint,
        routes: rows.routes.size,
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
    if (diff !== undefined && !isEmptyDiff(diff)) {
      logger.debug(
        { added: diff.added.slice(0, 20), removed: diff.removed.slice(0, 20), changed: diff.changed.slice(0, 20) },
        'bootstrap changed routes',
      );
    }
  }

  #logResyncNeeded(err: StreamError): void {
    this.#o.logger.info(
      { reason: err.message, code: err.code, lsn: this.#position.lsn, state: this.#state },
      'replication stream needs a fresh bootstrap',
    );
  }

  #warnUnavailable(err: StreamError): void {
    // Once per problem: the diagnosis code when it is a known one, else the message.
    const key = err.diagnosis ?? err.message;
    if (this.#warnedUnavailable === key) return;
    this.#warnedUnavailable = key;
    this.#o.logger.warn(
      {
        reason: err.message,
        code: err.diagnosis ?? err.code,
        step: err.step,
        recheckInMs: this.#retryInMs,
        updateIntervalMs: this.#o.intervalMs,
        state: this.#state,
      },
      'logical replication unavailable; polling the database instead (set EDGEPROXY_SYNC_MODE=poll to silence this)',
    );
  }

  #logFailure(err: StreamError, during: 'bootstrap' | 'stream'): void {
    this.#o.logger.warn(
      {
        err: {
          message: err.message,
          code: err.code,
          ...(err.diagnosis === undefined ? {} : { diagnosis: err.diagnosis }),
          step: err.step,
          kind: err.kind,
          ...(err.fixSql ? { fixSql: err.fixSql } : {}),
        },
        failures: this.#consecutiveFailures,
        retryInMs: this.#retryInMs,
        servingRoutes: this.#o.store.current?.routes.size ?? 0,
        lsn: this.#position.lsn,
        polling: feedingOf(this.#o.mode, this.#state) === 'poll',
        state: this.#state,
      },
      during === 'stream' ? 'replication stream lost; serving the last table' : 'replication bootstrap failed',
    );
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
