// PostgreSQL stopped for 10 s under load (bench/db-outage.ts does 60 s): requests to existing
// routes never fail, the admin API shows the outage, a change committed as soon as the database
// is back is routed within one poll interval, and the stream comes back after its backoff.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { spawnLong } from './support/cli.js';
import { runDbOutage } from './support/db-outage.js';

const UPDATE_INTERVAL_MS = 2000;

describe('a database outage under load', () => {
  it('serves every request, shows the outage, catches up within a poll interval, streams again', async () => {
    const r = await runDbOutage({
      outageMs: 10_000,
      updateIntervalMs: UPDATE_INTERVAL_MS,
      perSecond: 200,
      connections: 16,
      steadyMs: 1500,
      serve: (env) => spawnLong(['src/cli/bin.ts', 'serve'], env),
    });
    console.log(`# ${JSON.stringify(r)}`);
    assert.deepEqual(r.failures, [], 'no request to an existing route failed');
    assert.ok(r.phases.during.requests > 1000, `requests flowed during the outage (${r.phases.during.requests})`);
    assert.ok(r.phases.after.requests > 100, `and after it (${r.phases.after.requests})`);
    assert.equal(r.duringOutage.state, 'polling-stream-retrying');
    assert.equal(r.duringOutage.feeding, 'poll');
    assert.equal(r.duringOutage.syncStateMetric, 'polling-stream-retrying');
    assert.equal(r.duringOutage.readyzStatus, 200, 'still ready: the last table serves');
    assert.ok(r.duringOutage.streamErrorCode !== undefined, 'the stream failure is shown with its code');
    assert.ok(r.duringOutage.fullLoadFailures[1] > r.duringOutage.fullLoadFailures[0], 'failed polls are counted');
    // One poll interval, plus a second for the poll itself on a shared machine.
    assert.ok(r.catchUpMs <= UPDATE_INTERVAL_MS + 1000, `the new route was routed ${Math.round(r.catchUpMs)} ms after its commit`);
    // The bootstrap retry pending when the database came back, plus time for the bootstrap itself.
    assert.ok(
      r.streamingAgainMs <= Math.max(0, r.retryDueMs) + 5000,
      `streaming again ${Math.round(r.streamingAgainMs)} ms after the database was back (retry due at ${Math.round(r.retryDueMs)} ms)`,
    );
    assert.ok(r.reconnects >= 1);
  });
});
