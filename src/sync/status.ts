import type { SyncMode } from '../config/config.js';
import type { ErrorCode, Failure } from '../errors.js';
import type { RouteDiff } from '../table/diff.js';
import type { SyncState } from './sync-state.js';

export type { SyncState } from './sync-state.js';

/** What a full resync (operator, SIGHUP) did: what changed, or why it failed. */
export type ResyncOutcome = { readonly ok: true; readonly diff: RouteDiff; readonly routes: number; readonly durationMs: number } | Failure;

/** A point-in-time view of how the route table follows the database, for the admin API and metrics. */
export interface SyncStatus {
  /** The configured mode. */
  readonly mode: SyncMode;
  /** The sync's state (src/sync/sync-state.ts): everything else here is read beside it. */
  readonly state: SyncState;
  /** What feeds the route table in that state: the poller, the stream, or nothing (the last table serves). */
  readonly feeding: 'poll' | 'stream' | 'none';
  /** The last stream failure while the stream is not streaming: its code and message. */
  readonly streamError: { readonly code: ErrorCode; readonly message: string } | undefined;
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
  /** Full loads (polls and stream bootstraps) that failed since start; never decreases. */
  readonly fullLoadFailures: number;
}
