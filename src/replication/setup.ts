import { Deferred } from './deferred.js';
import { StreamError } from './stream-error.js';

/**
 * The replication connection's setup, as named steps (after Electric's connection_setup): the
 * transition table picks the step after each one, and runSetup() runs them. An error names the
 * step it happened in.
 */
export type SetupStep =
  'check_server' | 'check_publication' | 'connect_replication' | 'create_slot' | 'load_snapshot' | 'start_streaming' | 'streaming';

export const FIRST_STEP: SetupStep = 'check_server';

/** Which step follows each; `streaming` is the last. */
export const SETUP_TRANSITIONS: { readonly [S in SetupStep]: SetupStep | undefined } = {
  check_server: 'check_publication',
  check_publication: 'connect_replication',
  connect_replication: 'create_slot',
  create_slot: 'load_snapshot',
  load_snapshot: 'start_streaming',
  start_streaming: 'streaming',
  streaming: undefined,
};

/** Steps that talk over the replication connection (the others use a normal one). */
export const REPLICATION_CONNECTION_STEPS: ReadonlySet<SetupStep> = new Set<SetupStep>([
  'connect_replication',
  'create_slot',
  'start_streaming',
  'streaming',
]);

/** Each step's work. A step finds what earlier steps made in the object that owns these functions. */
export type SetupSteps = { readonly [S in SetupStep]: () => Promise<void> };

export interface SetupRun {
  /** The whole setup must finish within this (slot creation waits for open transactions). */
  readonly timeoutMs: number;
  /** Aborts the setup (shutdown). */
  readonly signal?: AbortSignal | undefined;
  /** Rejects when the setup cannot go on whatever the running step does (the replication session broke). */
  readonly interrupted?: Promise<never>;
  /** Called as each step begins. */
  readonly onStep: (step: SetupStep) => void;
  /** What a step threw, as the StreamError naming that step. */
  readonly classify: (step: SetupStep, err: unknown) => StreamError;
}

/**
 * Runs the setup: the current step's function, then the step the table names after it, until a
 * step has none. The first failure ends it, as a StreamError naming the step that was running;
 * no later step runs. Resolves once the last step has run.
 */
export async function runSetup(steps: SetupSteps, run: SetupRun): Promise<void> {
  const stop = new Interruptions(run);
  try {
    for (let step: SetupStep | undefined = FIRST_STEP; step !== undefined; step = SETUP_TRANSITIONS[step]) {
      // A stop that came between two steps (or before the first) ends the setup before the next begins.
      if (stop.reason !== undefined) throw stepFailure(step, stop.reason.err, run.classify);
      run.onStep(step);
      await runStep(step, steps[step], stop.promise, run.classify);
    }
  } finally {
    stop.dispose();
  }
}

async function runStep(step: SetupStep, work: () => Promise<void>, stop: Promise<never>, classify: SetupRun['classify']): Promise<void> {
  try {
    // A step left behind by a stop keeps running until the owner closes its connections.
    await Promise.race([work(), stop]);
  } catch (err) {
    throw stepFailure(step, err, classify);
  }
}

function stepFailure(step: SetupStep, err: unknown, classify: SetupRun['classify']): StreamError {
  return err instanceof SetupStopped ? new StreamError(step, 'transient', err.message) : classify(step, err);
}

/** The setup ran out of time or was aborted: reported as a transient failure of the step running then. */
class SetupStopped extends Error {}

/** The timeout, the abort signal and the owner's interruption, as one promise that only ever rejects. */
class Interruptions {
  readonly #stopped = new Deferred<never>();
  #reason: { readonly err: unknown } | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.#stop(new SetupStopped('setup aborted (shutting down)'));

  constructor(run: SetupRun) {
    this.#signal = run.signal;
    run.interrupted?.catch((err: unknown) => this.#stop(err));
    const late = `setup did not finish within ${run.timeoutMs} ms (slot creation waits for transactions open on the primary)`;
    this.#timer = setTimeout(() => this.#stop(new SetupStopped(late)), run.timeoutMs);
    if (this.#signal?.aborted) this.#onAbort();
    else this.#signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Rejects with the first of them. */
  get promise(): Promise<never> {
    return this.#stopped.promise;
  }

  /** The first of them, once one happened. */
  get reason(): { readonly err: unknown } | undefined {
    return this.#reason;
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#signal?.removeEventListener('abort', this.#onAbort);
  }

  #stop(err: unknown): void {
    this.#reason ??= { err };
    this.#stopped.reject(err);
  }
}
