/**
 * Each worker thread's young generation (EDGEPROXY_WORKER_YOUNG_GENERATION; decision 0025).
 *
 * The bin starts Node with `--max-semi-space-size=32` for the main thread's request path
 * (decision 0007). That is a process-wide V8 flag: every isolate created later reads it, and it
 * wins over a Worker's `resourceLimits.maxYoungGenerationSizeMb`, so each worker would reserve the
 * same large young generation. Before the first worker starts, the flag is set back to 0 (unset):
 * the isolates created from then on size their young generation from their resource limits; the
 * main isolate, created already, keeps its own.
 */
import v8 from 'node:v8';
import type { ResourceLimits } from 'node:worker_threads';

let inheritedFlagCleared = false;

/** The Worker constructor's `resourceLimits` for a young generation of `youngGenerationMb` MiB. */
export function workerResourceLimits(youngGenerationMb: number): ResourceLimits {
  if (!inheritedFlagCleared) {
    v8.setFlagsFromString('--max-semi-space-size=0');
    inheritedFlagCleared = true;
  }
  return { maxYoungGenerationSizeMb: youngGenerationMb };
}
