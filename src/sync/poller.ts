import type pg from 'pg';
import { describePgError } from '../db/errors.js';
import { loadRoutes, type LoadedRoutes } from '../db/load-routes.js';
import type { Logger } from '../log/logger.js';
import { failure } from '../errors.js';
import { diffRoutes, isEmptyDiff } from '../table/diff.js';
import type { TlsFeed } from '../tls/tls-feed.js';
import type { RouteStore } from './route-store.js';
import { logDuplicates, logSkippedRows } from './row-reports.js';
import type { ResyncOutcome } from './status.js';

export interface PollerOptions {
  readonly pool: pg.Pool;
  readonly store: RouteStore;
  readonly intervalMs: number;
  readonly logger: Logger;
  /** EDGEPROXY_REGION_ADDRESS_COLUMN: where the routing query reads the region's address. */
  readonly regionAddressColumn: string;
  /** Where the certificate and challenge rows of each load go; none = they are not read. */
  readonly tls?: TlsFeed;
  /** Loads the routes; defaults to the routing query on `pool` (tests replace it to inject failures). */
  readonly load?: (pool: pg.Pool) => Promise<LoadedRoutes>;
}

const STOPPED = failure('SYNC_STOPPED', 'stopped');
const SUPERSEDED = failure('LOAD_SUPERSEDED', 'paused: the replication stream feeds the table');

/** First retry after a failed load; doubles up to the update interval. */
const RETRY_MIN_MS = 500;

/**
 * Full reloads with the documented query every interval. A failed load keeps the last good
 * snapshot and retries sooner (500 ms, doubling, capped at the interval); it never empties the
 * table. Loads never overlap: a resync requested during a load waits for it and runs next.
 */
export class Poller {
  readonly #opts: PollerOptions;
  readonly #load: (pool: pg.Pool) => Promise<LoadedRoutes>;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<ResyncOutcome> | undefined;
  #failures = 0;
  #stopped = false;
  /** While the stream feeds the table: no timer, and results of loads already running are dropped. */
  #paused = false;
  #lastReportKey = '';
  /** Totals for metrics and the admin API. */
  loads = 0;
  failures = 0;
  lastSuccessAt: number | undefined;
  lastDurationMs: number | undefined;

  constructor(opts: PollerOptions) {
    this.#opts = opts;
    this.#load = opts.load ?? ((pool) => loadRoutes(pool, opts.regionAddressColumn));
  }

  start(): void {
    this.#schedule(0);
  }

  /** Loads now (after any load already running) and reports what changed. */
  resync(): Promise<ResyncOutcome> {
    return this.#run();
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Stops reloading until resume(); resolves once no load can publish any more. */
  async pause(): Promise<void> {
    this.#paused = true;
    clearTimeout(this.#timer);
    if (this.#running !== undefined) await this.#running;
  }

  /** Reloads again: the first load after `delayMs`, then every interval. */
  resume(delayMs = 0): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#schedule(delayMs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (this.#running !== undefined) await this.#running;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped || this.#paused) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      void this.#run();
    }, delayMs);
  }

  /** Queues a load behind the one running, if any (#loadOnce never rejects). */
  #run(): Promise<ResyncOutcome> {
    const run = (this.#running ?? Promise.resolve()).then(() => this.#loadOnce());
    this.#running = run;
    void run.then(() => {
      if (this.#running === run) this.#running = undefined;
    });
    return run;
  }

  async #loadOnce(): Promise<ResyncOutcome> {
    if (this.#stopped) return STOPPED;
    if (this.#paused) return SUPERSEDED;
    clearTimeout(this.#timer);
    let loaded: LoadedRoutes;
    try {
      loaded = await this.#load(this.#opts.pool);
    } catch (err) {
      return this.#failed(err);
    }
    if (this.#stopped) return STOPPED;
    if (this.#paused) return SUPERSEDED;
    try {
      return this.#publish(loaded);
    } catch (err) {
      return this.#failed(err); // never rejects: the next load must still be scheduled
    }
  }

  /** Publishes a load, says what changed, and schedules the next one. */
  #publish(loaded: LoadedRoutes): ResyncOutcome {
    const { store, logger } = this.#opts;
    const previous = store.current;
    const diff = diffRoutes(previous?.routes, loaded.routes);
    const tls = loaded.tls === undefined ? undefined : this.#opts.tls?.replaceAll(loaded.tls);
    store.publish(loaded.routes, 'poll', { regionAddresses: loaded.regionAddresses, ...(tls === undefined ? {} : { tls }) });
    this.loads += 1;
    this.lastSuccessAt = Date.now();
    this.lastDurationMs = loaded.durationMs;
    const recovered = this.#failures > 0;
    this.#failures = 0;
    this.#report(loaded);
    const fields = {
      routes: loaded.routes.size,
      rows: loaded.rowCount,
      added: diff.added.length,
      removed: diff.removed.length,
      changed: diff.changed.length,
      durationMs: round(loaded.durationMs),
    };
    if (previous === undefined) logger.info(fields, 'route table loaded');
    else if (!isEmptyDiff(diff)) logger.info(fields, 'route table updated');
    else if (recovered) logger.info(fields, 'route table reload recovered');
    else logger.debug(fields, 'route table unchanged');
    this.#schedule(this.#opts.intervalMs);
    return { ok: true, diff, routes: loaded.routes.size, durationMs: loaded.durationMs };
  }

  /** A failed load: the last table stays; retried sooner (500 ms, doubling, capped at the interval). */
  #failed(err: unknown): ResyncOutcome {
    const outcome = failure('LOAD_FAILED', describePgError(err).message);
    if (this.#stopped || this.#paused) return outcome;
    this.#failures += 1;
    this.failures += 1;
    const retryMs = Math.min(this.#opts.intervalMs, RETRY_MIN_MS * 2 ** (this.#failures - 1));
    const current = this.#opts.store.current;
    this.#opts.logger.error(
      {
        err: describePgError(err),
        failures: this.#failures,
        retryInMs: retryMs,
        servingRoutes: current?.routes.size ?? 0,
        ready: current !== undefined,
      },
      current === undefined ? 'route table load failed; not ready yet' : 'route table reload failed; serving the last good table',
    );
    this.#schedule(retryMs);
    return outcome;
  }

  /** Bad rows and duplicate names are logged when they first appear or change, not every reload. */
  #report(loaded: LoadedRoutes): void {
    const key = JSON.stringify([loaded.problems, loaded.duplicates.map((d) => [d.host, d.others.length])]);
    if (key === this.#lastReportKey) return;
    this.#lastReportKey = key;
    logSkippedRows(this.#opts.logger, loaded.problems);
    logDuplicates(this.#opts.logger, loaded.duplicates);
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
