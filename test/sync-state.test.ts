import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SYNC_MODES, type SyncMode } from '../src/config/config.js';
import {
  failureEvent,
  feedingOf,
  nextTransition,
  SYNC_STATES,
  SYNC_TRANSITIONS,
  type SyncEvent,
  type SyncState,
} from '../src/sync/sync-state.js';

// The sync's state machine on its own: every transition, as the docs describe it (docs/streaming.md).
// The behaviour each one starts is exercised against real PostgreSQL in stream*.test.ts and sync-backoff.test.ts.

/** Every transition of each mode: `state --event--> next / work`. */
const EXPECTED: Record<SyncMode, string[]> = {
  auto: [
    'starting --start--> starting / poll-and-bootstrap',
    'starting --bootstrapped--> streaming / none',
    'starting --resync-needed--> starting / bootstrap',
    'starting --unavailable--> polling / poll-and-recheck-later',
    'starting --lost--> polling-stream-retrying / poll-and-retry-later',
    'starting --fatal--> stopped / shut-down',
    'starting --stop--> stopped / shut-down',
    'streaming --resync-needed--> resyncing / bootstrap',
    'streaming --resync-requested--> resyncing / bootstrap',
    'streaming --unavailable--> polling / poll-and-recheck-later',
    'streaming --lost--> polling-stream-retrying / poll-and-retry-later',
    'streaming --stop--> stopped / shut-down',
    'resyncing --bootstrapped--> streaming / none',
    'resyncing --resync-needed--> resyncing / bootstrap',
    'resyncing --resync-requested--> resyncing / none',
    'resyncing --unavailable--> polling / poll-and-recheck-later',
    'resyncing --lost--> polling-stream-retrying / poll-and-retry-later',
    'resyncing --stop--> stopped / shut-down',
    'polling-stream-retrying --retry-due--> polling-stream-retrying / bootstrap',
    'polling-stream-retrying --bootstrapped--> streaming / none',
    'polling-stream-retrying --resync-needed--> polling-stream-retrying / bootstrap',
    'polling-stream-retrying --unavailable--> polling / poll-and-recheck-later',
    'polling-stream-retrying --lost--> polling-stream-retrying / poll-and-retry-later',
    'polling-stream-retrying --stop--> stopped / shut-down',
    'polling --retry-due--> polling / bootstrap',
    'polling --bootstrapped--> streaming / none',
    'polling --resync-needed--> polling / bootstrap',
    'polling --unavailable--> polling / poll-and-recheck-later',
    'polling --lost--> polling-stream-retrying / poll-and-retry-later',
    'polling --stop--> stopped / shut-down',
  ],
  replication: [
    'starting --start--> starting / bootstrap',
    'starting --bootstrapped--> streaming / none',
    'starting --resync-needed--> starting / bootstrap',
    'starting --resync-requested--> starting / none',
    'starting --lost--> stream-retrying / retry-later',
    'starting --fatal--> stopped / shut-down',
    'starting --stop--> stopped / shut-down',
    'streaming --resync-needed--> resyncing / bootstrap',
    'streaming --resync-requested--> resyncing / bootstrap',
    'streaming --unavailable--> stream-retrying / retry-later',
    'streaming --lost--> stream-retrying / retry-later',
    'streaming --stop--> stopped / shut-down',
    'resyncing --bootstrapped--> streaming / none',
    'resyncing --resync-needed--> resyncing / bootstrap',
    'resyncing --resync-requested--> resyncing / none',
    'resyncing --unavailable--> stream-retrying / retry-later',
    'resyncing --lost--> stream-retrying / retry-later',
    'resyncing --stop--> stopped / shut-down',
    'stream-retrying --retry-due--> stream-retrying / bootstrap',
    'stream-retrying --resync-requested--> stream-retrying / bootstrap',
    'stream-retrying --bootstrapped--> streaming / none',
    'stream-retrying --resync-needed--> stream-retrying / bootstrap',
    'stream-retrying --unavailable--> stream-retrying / retry-later',
    'stream-retrying --lost--> stream-retrying / retry-later',
    'stream-retrying --stop--> stopped / shut-down',
  ],
  poll: ['starting --start--> polling / poll', 'starting --stop--> stopped / shut-down', 'polling --stop--> stopped / shut-down'],
};

function listed(mode: SyncMode): string[] {
  const out: string[] = [];
  for (const state of SYNC_STATES) {
    for (const [event, t] of Object.entries(SYNC_TRANSITIONS[mode][state])) out.push(`${state} --${event}--> ${t.to} / ${t.run}`);
  }
  return out;
}

/** States reachable from `starting` with the mode's events. */
function reachable(mode: SyncMode): Set<SyncState> {
  const seen = new Set<SyncState>(['starting']);
  const todo: SyncState[] = ['starting'];
  while (todo.length > 0) {
    for (const t of Object.values(SYNC_TRANSITIONS[mode][todo.pop()!])) {
      if (!seen.has(t.to)) {
        seen.add(t.to);
        todo.push(t.to);
      }
    }
  }
  return seen;
}

describe('sync state machine', () => {
  for (const mode of SYNC_MODES) {
    it(`mode ${mode}: exactly the documented transitions`, () => {
      assert.deepEqual(listed(mode).sort(), [...EXPECTED[mode]].sort());
    });

    it(`mode ${mode}: stop leads to stopped from every state it can reach, and nothing leaves stopped`, () => {
      for (const state of reachable(mode)) {
        if (state === 'stopped') continue;
        assert.deepEqual(nextTransition(mode, state, 'stop'), { to: 'stopped', run: 'shut-down' }, state);
      }
      assert.ok(reachable(mode).has('stopped'));
      assert.deepEqual(Object.keys(SYNC_TRANSITIONS[mode].stopped), []);
    });

    it(`mode ${mode}: a state it cannot reach has no transitions`, () => {
      for (const state of SYNC_STATES) {
        if (!reachable(mode).has(state)) assert.deepEqual(Object.keys(SYNC_TRANSITIONS[mode][state]), [], `${state} in mode ${mode}`);
      }
    });

    it(`mode ${mode}: what a transition starts agrees with what feeds the table in the state it enters`, () => {
      for (const state of SYNC_STATES) {
        for (const t of Object.values(SYNC_TRANSITIONS[mode][state])) {
          if (t.run.startsWith('poll')) assert.equal(feedingOf(mode, t.to), 'poll', `${state} → ${t.to} / ${t.run}`);
          if (t.run === 'retry-later') assert.equal(feedingOf(mode, t.to), 'none', `${state} → ${t.to}: nothing polls`);
          if (t.to === 'streaming') assert.equal(feedingOf(mode, t.to), 'stream');
        }
      }
    });
  }

  it('mode replication never polls, mode poll never streams', () => {
    for (const t of SYNC_STATES.flatMap((s) => Object.values(SYNC_TRANSITIONS.replication[s]))) assert.ok(!t.run.startsWith('poll'), t.run);
    for (const t of SYNC_STATES.flatMap((s) => Object.values(SYNC_TRANSITIONS.poll[s])))
      assert.ok(!t.run.includes('bootstrap') && !t.run.includes('retry'), t.run);
  });

  it('every state that runs a bootstrap can take its outcome: bootstrapped, lost, resync-needed', () => {
    for (const mode of ['auto', 'replication'] as const) {
      for (const state of SYNC_STATES) {
        const runs = Object.values(SYNC_TRANSITIONS[mode][state]).filter((t) => t.run.includes('bootstrap'));
        for (const t of runs) {
          for (const outcome of ['bootstrapped', 'lost', 'resync-needed'] satisfies SyncEvent[]) {
            assert.ok(nextTransition(mode, t.to, outcome) !== undefined, `mode ${mode}: ${t.to} after a bootstrap must take ${outcome}`);
          }
        }
      }
    }
  });

  it('failureEvent: a failure kind is an event; only the first bootstrap can be fatal', () => {
    assert.equal(failureEvent('resync', 'streaming', 'auto'), 'resync-needed');
    assert.equal(failureEvent('transient', 'streaming', 'auto'), 'lost');
    assert.equal(failureEvent('unavailable', 'starting', 'auto'), 'unavailable');
    assert.equal(failureEvent('unavailable', 'starting', 'replication'), 'fatal');
    assert.equal(failureEvent('unavailable', 'streaming', 'replication'), 'unavailable');
    assert.equal(failureEvent('publication', 'starting', 'auto'), 'fatal');
    assert.equal(failureEvent('publication', 'starting', 'replication'), 'fatal');
    assert.equal(failureEvent('publication', 'stream-retrying', 'replication'), 'lost');
    assert.equal(failureEvent('publication', 'polling-stream-retrying', 'auto'), 'lost');
  });

  it('feedingOf: the stream only while streaming; the poller in the polling states and while auto starts', () => {
    assert.equal(feedingOf('auto', 'streaming'), 'stream');
    assert.equal(feedingOf('auto', 'starting'), 'poll');
    assert.equal(feedingOf('replication', 'starting'), 'none');
    assert.equal(feedingOf('auto', 'resyncing'), 'none');
    assert.equal(feedingOf('replication', 'stream-retrying'), 'none');
    assert.equal(feedingOf('auto', 'polling-stream-retrying'), 'poll');
    assert.equal(feedingOf('poll', 'polling'), 'poll');
    assert.equal(feedingOf('auto', 'stopped'), 'none');
  });
});
