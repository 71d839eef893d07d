/**
 * What keeps the route table following the database, as one explicit state, and the transition
 * tables that drive it (after Electric's connection_setup): an event in a state picks the next
 * state and the work to start. Pure: src/sync/sync.ts carries the work out; the metrics, /readyz,
 * the admin status and the logs all read the one state.
 */
import type { SyncMode } from '../config/config.js';

/** Every state, with what it means (the metrics and the docs list these). */
export const SYNC_STATE_HELP = {
  starting: 'the first stream bootstrap is running (mode auto: the poller feeds the table meanwhile)',
  streaming: 'the replication stream feeds the table',
  resyncing: 'a fresh stream bootstrap is replacing the stream; the last table keeps serving',
  'polling-stream-retrying': 'mode auto: the stream failed; the poller feeds the table while the bootstrap is retried with backoff',
  'stream-retrying': 'mode replication: the stream failed; the last table keeps serving while the bootstrap is retried with backoff',
  polling: 'the poller feeds the table: mode poll, or mode auto on a server that cannot stream (checked again every minute)',
  stopped: 'the service stopped, or could not start: nothing feeds the table',
} as const;

export type SyncState = keyof typeof SYNC_STATE_HELP;
export const SYNC_STATES = Object.keys(SYNC_STATE_HELP) as SyncState[];

/** What can happen to the sync. */
export type SyncEvent =
  /** start() was called. */
  | 'start'
  /** A stream bootstrap succeeded: its snapshot is published and the stream feeds the table. */
  | 'bootstrapped'
  /** The stream showed something the apply step cannot follow: bootstrap afresh at once. */
  | 'resync-needed'
  /** The server cannot stream as configured (wal_level, REPLICATION, a PostgreSQL 15 standby). */
  | 'unavailable'
  /** The stream or a bootstrap failed in a way that may pass. */
  | 'lost'
  /** The first bootstrap showed the setup can never work (missing publication, mode replication on a server that cannot stream). */
  | 'fatal'
  /** The retry (or recheck) timer fired. */
  | 'retry-due'
  /** An operator asked for a full resync while the stream feeds (or should feed) the table. */
  | 'resync-requested'
  | 'stop';

/** The work a transition starts. */
export type SyncAction =
  | 'none'
  /** Start the poller, then the first bootstrap (mode auto). */
  | 'poll-and-bootstrap'
  | 'bootstrap'
  /** Start the poller (mode poll). */
  | 'poll'
  /** Let the poller feed the table and retry the bootstrap after the backoff delay. */
  | 'poll-and-retry-later'
  /** Retry the bootstrap after the backoff delay (nothing polls). */
  | 'retry-later'
  /** Let the poller feed the table and check again later whether the server can stream. */
  | 'poll-and-recheck-later'
  | 'shut-down';

export interface Transition {
  readonly to: SyncState;
  readonly run: SyncAction;
}

export type TransitionTable = { readonly [S in SyncState]: { readonly [E in SyncEvent]?: Transition } };

const STOP: Transition = { to: 'stopped', run: 'shut-down' };
const STREAMING: Transition = { to: 'streaming', run: 'none' };
const RESYNC: Transition = { to: 'resyncing', run: 'bootstrap' };
type Row = TransitionTable[SyncState];

/** What a failure leads to, per mode: auto polls meanwhile, replication only waits. */
interface OnFailure {
  readonly lost: Transition;
  readonly unavailable: Transition;
}

/** The rows the two streaming modes share: the stream feeds the table, or a fresh bootstrap replaces it. */
function streamRows(on: OnFailure): Pick<TransitionTable, 'streaming' | 'resyncing'> {
  const failures: Row = { 'resync-needed': RESYNC, unavailable: on.unavailable, lost: on.lost, stop: STOP };
  return {
    streaming: { ...failures, 'resync-requested': RESYNC },
    // The bootstrap in flight is the resync asked for.
    resyncing: { ...failures, bootstrapped: STREAMING, 'resync-requested': { to: 'resyncing', run: 'none' } },
  };
}

/** A state that waits to retry a bootstrap: the timer (or a resync) runs one, its outcome moves on. */
function retryRow(state: SyncState, on: OnFailure): Row {
  const again: Transition = { to: state, run: 'bootstrap' };
  return { 'retry-due': again, 'resync-needed': again, bootstrapped: STREAMING, unavailable: on.unavailable, lost: on.lost, stop: STOP };
}

/** The first bootstrap: it may also show the setup can never work. */
function startingRow(start: SyncAction, on: Partial<OnFailure>): Row {
  return {
    start: { to: 'starting', run: start },
    bootstrapped: STREAMING,
    'resync-needed': { to: 'starting', run: 'bootstrap' },
    ...on,
    fatal: STOP,
    stop: STOP,
  };
}

/** Mode auto: stream, poll whenever the stream is down. */
const AUTO_FAILURE: OnFailure = {
  lost: { to: 'polling-stream-retrying', run: 'poll-and-retry-later' },
  unavailable: { to: 'polling', run: 'poll-and-recheck-later' },
};
const AUTO: TransitionTable = {
  starting: startingRow('poll-and-bootstrap', AUTO_FAILURE),
  ...streamRows(AUTO_FAILURE),
  'polling-stream-retrying': retryRow('polling-stream-retrying', AUTO_FAILURE),
  'stream-retrying': {},
  polling: retryRow('polling', AUTO_FAILURE),
  stopped: {},
};

/** Mode replication: only the stream feeds the table; when it is down, the last table serves. */
const REPLICATION_FAILURE: OnFailure = {
  lost: { to: 'stream-retrying', run: 'retry-later' },
  unavailable: { to: 'stream-retrying', run: 'retry-later' },
};
const REPLICATION: TransitionTable = {
  // Unavailable at startup is fatal here (failureEvent): only a lost first bootstrap is retried.
  starting: { ...startingRow('bootstrap', { lost: REPLICATION_FAILURE.lost }), 'resync-requested': { to: 'starting', run: 'none' } },
  ...streamRows(REPLICATION_FAILURE),
  'polling-stream-retrying': {},
  'stream-retrying': {
    ...retryRow('stream-retrying', REPLICATION_FAILURE),
    'resync-requested': { to: 'stream-retrying', run: 'bootstrap' },
  },
  polling: {},
  stopped: {},
};

/** Mode poll: the poller alone. */
const POLL: TransitionTable = {
  starting: { start: { to: 'polling', run: 'poll' }, stop: STOP },
  streaming: {},
  resyncing: {},
  'polling-stream-retrying': {},
  'stream-retrying': {},
  polling: { stop: STOP },
  stopped: {},
};

export const SYNC_TRANSITIONS: { readonly [M in SyncMode]: TransitionTable } = { auto: AUTO, replication: REPLICATION, poll: POLL };

/** Where an event leads from a state in a mode; undefined when the event means nothing there. */
export function nextTransition(mode: SyncMode, state: SyncState, event: SyncEvent): Transition | undefined {
  return SYNC_TRANSITIONS[mode][state][event];
}

/** What feeds the route table in a state: the poller, the stream, or nothing (the last table serves). */
export function feedingOf(mode: SyncMode, state: SyncState): 'poll' | 'stream' | 'none' {
  switch (state) {
    case 'streaming':
      return 'stream';
    case 'polling':
    case 'polling-stream-retrying':
      return 'poll';
    case 'starting':
      return mode === 'auto' ? 'poll' : 'none';
    case 'resyncing':
    case 'stream-retrying':
    case 'stopped':
      return 'none';
  }
}

/** Whether an operator's resync is a poll (the poller feeds the table) rather than a fresh stream bootstrap. */
export function resyncPolls(mode: SyncMode, state: SyncState): boolean {
  return feedingOf(mode, state) === 'poll' || state === 'stopped';
}

/** The event a stream failure is, from its kind; `fatal` only for the first bootstrap. */
export function failureEvent(kind: 'unavailable' | 'publication' | 'resync' | 'transient', state: SyncState, mode: SyncMode): SyncEvent {
  if (state === 'starting' && (kind === 'publication' || (kind === 'unavailable' && mode === 'replication'))) return 'fatal';
  if (kind === 'resync') return 'resync-needed';
  if (kind === 'unavailable') return 'unavailable';
  return 'lost';
}
