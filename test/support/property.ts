import type { Parameters } from 'fast-check';

/**
 * fast-check's run parameters for test/property-*.test.ts. Each property has its own default
 * size (a few seconds per file in `npm test`); for long runs or to replay a failure:
 *   EDGEPROXY_FC_RUNS  runs per property (e.g. 100000)
 *   EDGEPROXY_FC_SEED  the seed a failure printed (fast-check prints it with the counterexample)
 */
export function runs<T>(defaultRuns: number): Parameters<T> {
  const n = process.env.EDGEPROXY_FC_RUNS;
  const seed = process.env.EDGEPROXY_FC_SEED;
  const numRuns = n === undefined || n === '' ? defaultRuns : Number(n);
  if (!Number.isInteger(numRuns) || numRuns <= 0) throw new Error(`EDGEPROXY_FC_RUNS must be a positive integer, got ${JSON.stringify(n)}`);
  if (seed === undefined || seed === '') return { numRuns };
  if (!Number.isInteger(Number(seed))) throw new Error(`EDGEPROXY_FC_SEED must be an integer, got ${JSON.stringify(seed)}`);
  return { numRuns, seed: Number(seed) };
}
