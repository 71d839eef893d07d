/**
 * The delay before the next stream bootstrap after `failures` failures in a row: doubling from
 * `minMs` up to `maxMs`, with jitter that keeps at least half of each step (so a fleet of proxies
 * that lost the same server do not all come back in the same millisecond).
 */
export function retryDelayMs(failures: number, minMs: number, maxMs: number, random: () => number): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(failures, 1) - 1, 20));
  return Math.round(cap / 2 + (random() * cap) / 2);
}
