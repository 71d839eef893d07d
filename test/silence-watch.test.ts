import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { SilenceWatch } from '../src/replication/silence.js';

// The silence watch's timing on a fake clock (node:test's mock timers); the real thing against a
// SIGSTOPped walsender is in stream-silence.test.ts.

/** Lets the watch's setImmediate (left real: it must run after pending socket reads) run. */
const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Moves the fake clock in 10 ms steps: within one tick() every timer sees the clock at the tick's end. */
function advance(ms: number): void {
  for (let done = 0; done < ms; done += 10) mock.timers.tick(Math.min(10, ms - done));
}

function watch(timeoutMs = 2000, probeAfterMs = 500) {
  const seen: string[] = [];
  const w = new SilenceWatch({
    timeoutMs,
    probeAfterMs,
    now: () => Date.now(),
    onProbe: () => seen.push(`probe@${Date.now()}`),
    onSilent: (ms) => seen.push(`silent@${Date.now()} after ${ms}`),
  });
  return { w, seen };
}

describe('SilenceWatch', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 }));
  afterEach(() => mock.timers.reset());

  it('asks for a reply every probeAfterMs of silence, then gives up at the timeout, once', async () => {
    const { seen } = watch();
    advance(1999);
    await immediate();
    assert.deepEqual(seen, ['probe@500', 'probe@1000', 'probe@1500']);
    advance(1);
    await immediate();
    assert.deepEqual(seen.slice(3), ['silent@2000 after 2000']);
    advance(10_000);
    await immediate();
    assert.equal(seen.length, 4, 'nothing after giving up');
  });

  it('anything heard restarts the silence: no probe while the server talks, and the deadline moves', async () => {
    const { w, seen } = watch();
    for (let t = 0; t < 5000; t += 400) {
      advance(400);
      w.heard();
    }
    await immediate();
    assert.deepEqual(seen, []);
    advance(600); // 600 ms after the last sign of life: one probe
    assert.deepEqual(seen, ['probe@5700']);
    w.heard(); // the keepalive it asked for
    advance(1999);
    await immediate();
    assert.deepEqual(seen, ['probe@5700', 'probe@6300', 'probe@6800', 'probe@7300']);
    advance(1);
    await immediate();
    assert.equal(seen.at(-1), 'silent@7800 after 2000');
  });

  it('a sign of life read in the same turn as the deadline (after an event-loop stall) keeps the stream', async () => {
    const { w, seen } = watch();
    advance(2000); // the deadline timer ran; the check waits for the reads of this turn
    w.heard();
    await immediate();
    assert.deepEqual(seen, ['probe@500', 'probe@1000', 'probe@1500']);
    advance(2000);
    await immediate();
    assert.equal(seen.at(-1), 'silent@4000 after 2000');
  });

  it('stop() ends it: no probe, no verdict', async () => {
    const { w, seen } = watch();
    w.stop();
    advance(10_000);
    await immediate();
    assert.deepEqual(seen, []);
  });
});
