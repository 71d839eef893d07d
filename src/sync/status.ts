import type { SyncMode } from '../config/config.js';
import type { Failure } from '../errors.js';
import type { RouteDiff } from '../table/diff.js';

/** What a full resync (operator, SIGHUP) did: what changed, or why it failed. */
export type ResyncOutcome = { readonly ok: true; readonly diff: RouteDiff; readonly routes: number; readonly durationMs: number } | Failure;

/** State of the replication stream. */
export type StreamState =
  /** Mode `poll`: streaming is not attempted. */
  | 'disabled'
  /** Creating the slot and loading the tables under its snapshot. */
  | 'bootstrapping'
  /** Applying changes as they commit. */
  | 'streaming'
  /** The stream failed; waiting before the next bootstrap (polling meanwhile in mode auto). */
  | 'backoff'
  /** The database cannot stream (wal_level, REPLICATION attribute, PostgreSQL 15 standby...). */
  | 'unavailable';

/** A point-in-time view of how the route table follows the database, for the admin API and metrics. */
export interface SyncStatus {
  /** The configured mode. */
  readonly mode: SyncMode;
  /** What currently feeds the route table: the poller, the stream, or nothing yet. */
  readonly feeding: 'poll' | 'stream' | 'none';
  readonly streamState: StreamState;
  /** Why the stream is unavailable or backing off (the last error), if it is. */
  readonly streamReason: string | undefined;
  /** LSN of the last transaction applied from the stream. */
  readonly lsn: string | undefined;
  /** Commit-to-applied lag of the last applied transaction, in ms. */
  readonly lagMs: number | undefined;
  /** Stream bootstraps after the first one (each is a reconnect). */
  readonly reconnects: number;
  /** Transactions applied from the stream since start. */
  readonly transactions: number;
  /** Last successful full load (poll, resync or bootstrap): when (ms since epoch) and how long it took. */
  readonly lastFullLoadAt: number | undefined;
  readonly lastFullLoadMs: number | undefined;
  /** Full loads that failed since start. */
  readonly fullLoadFailures: number;
}
