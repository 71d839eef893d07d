import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FIRST_STEP,
  REPLICATION_CONNECTION_STEPS,
  runSetup,
  SETUP_TRANSITIONS,
  type SetupRun,
  type SetupStep,
} from '../src/replication/setup.js';
import { StreamError } from '../src/replication/stream-error.js';

// The setup's runner and its transition table, without a server: the real-PostgreSQL runs are in
// stream*.test.ts.

const CHAIN: SetupStep[] = [];
for (let s: SetupStep | undefined = FIRST_STEP; s !== undefined; s = SETUP_TRANSITIONS[s]) CHAIN.push(s);

/** Steps that record that they ran; `behave` overrides one step's work. */
function recorder(behave: Partial<Record<SetupStep, () => Promise<void>>> = {}) {
  const ran: SetupStep[] = [];
  const entered: SetupStep[] = [];
  const classified: [SetupStep, unknown][] = [];
  const steps = Object.fromEntries(
    CHAIN.map((step) => [
      step,
      async () => {
        ran.push(step);
        await behave[step]?.();
      },
    ]),
  ) as Record<SetupStep, () => Promise<void>>;
  const run: SetupRun = {
    timeoutMs: 5_000,
    onStep: (step) => entered.push(step),
    classify: (step, err) => {
      classified.push([step, err]);
      return err instanceof StreamError ? err : new StreamError(step, 'transient', String(err), undefined, { cause: err });
    },
  };
  return { ran, entered, classified, steps, run };
}

const never = () => new Promise<void>(() => undefined);

describe('setup runner', () => {
  it('runs each step once, in the order the table gives, announcing each before it runs', async () => {
    const r = recorder();
    await runSetup(r.steps, r.run);
    assert.deepEqual(r.ran, CHAIN);
    assert.deepEqual(r.entered, CHAIN);
    assert.equal(CHAIN.length, 7);
  });

  for (const failing of CHAIN) {
    it(`a failure in ${failing} names ${failing}, and no later step runs`, async () => {
      const boom = new Error(`${failing} broke`);
      const r = recorder({
        [failing]: () => Promise.reject(boom),
      });
      await assert.rejects(runSetup(r.steps, r.run), (err: unknown) => {
        assert.ok(err instanceof StreamError);
        assert.equal(err.step, failing);
        assert.equal(err.cause, boom);
        return true;
      });
      const upTo = CHAIN.slice(0, CHAIN.indexOf(failing) + 1);
      assert.deepEqual(r.ran, upTo);
      assert.deepEqual(r.entered, upTo);
      assert.deepEqual(r.classified, [[failing, boom]]);
    });
  }

  it('a step that does not finish in time fails as transient in that step; the rest never start', async () => {
    const r = recorder({ create_slot: never });
    await assert.rejects(runSetup(r.steps, { ...r.run, timeoutMs: 30 }), (err: unknown) => {
      assert.ok(err instanceof StreamError);
      assert.equal(err.step, 'create_slot');
      assert.equal(err.kind, 'transient');
      assert.equal(err.code, 'STREAM_TRANSIENT');
      assert.equal(err.message, 'setup did not finish within 30 ms (slot creation waits for transactions open on the primary)');
      return true;
    });
    assert.deepEqual(r.ran, ['check_server', 'check_publication', 'connect_replication', 'create_slot']);
  });

  it('an abort (shutdown) ends the step waiting at once', async () => {
    const abort = new AbortController();
    const r = recorder({
      load_snapshot: () => {
        setImmediate(() => abort.abort());
        return never();
      },
    });
    await assert.rejects(runSetup(r.steps, { ...r.run, signal: abort.signal }), (err: unknown) => {
      assert.ok(err instanceof StreamError);
      assert.equal(err.step, 'load_snapshot');
      assert.equal(err.message, 'setup aborted (shutting down)');
      return true;
    });
    assert.equal(r.ran.at(-1), 'load_snapshot');
  });

  it('an abort before the start runs no step', async () => {
    const abort = new AbortController();
    abort.abort();
    const r = recorder();
    await assert.rejects(runSetup(r.steps, { ...r.run, signal: abort.signal }), {
      step: 'check_server',
      message: 'setup aborted (shutting down)',
    });
    assert.deepEqual(r.ran, []);
    assert.deepEqual(r.entered, []);
  });

  it("the owner's interruption (the session broke) ends the step waiting, with the owner's error", async () => {
    let interrupt: (err: unknown) => void = () => undefined;
    const interrupted = new Promise<never>((_, reject) => (interrupt = reject));
    const lost = new StreamError('start_streaming', 'resync', 'TRUNCATE of domains');
    const r = recorder({
      start_streaming: () => {
        setImmediate(() => interrupt(lost));
        return never();
      },
    });
    await assert.rejects(runSetup(r.steps, { ...r.run, interrupted }), (err: unknown) => err === lost);
    assert.deepEqual(r.classified, [['start_streaming', lost]]);
    assert.ok(!r.ran.includes('streaming'));
  });

  it('leaves no timer behind, whether it succeeds or fails', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const ok = recorder();
    await runSetup(ok.steps, { ...ok.run, timeoutMs: 60_000 });
    const failing = recorder({ create_slot: () => Promise.reject(new Error('no')) });
    await assert.rejects(runSetup(failing.steps, { ...failing.run, timeoutMs: 60_000 }));
    assert.equal(timers(), before);
  });
});

describe('setup steps and connections', () => {
  it('only the steps after connect_replication use the replication connection, load_snapshot excepted', () => {
    assert.deepEqual(
      CHAIN.filter((s) => REPLICATION_CONNECTION_STEPS.has(s)),
      ['connect_replication', 'create_slot', 'start_streaming', 'streaming'],
    );
  });
});
