/** Latency samples and their percentiles (nearest rank), for the load tests and benches. */
import { request } from './backend.js';

export interface Percentiles {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export function percentiles(samplesMs: readonly number[]): Percentiles {
  const s = [...samplesMs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? NaN;
  const r = (x: number) => Math.round(x * 100) / 100;
  return { n: s.length, p50: r(at(0.5)), p99: r(at(0.99)), max: r(s.at(-1) ?? NaN) };
}

/**
 * `n` requests one after the other, each on a new connection (what a new client meets): their
 * latencies, and the statuses other than 200 (with their count).
 */
export async function timeNewRequests(port: number, host: string, n: number): Promise<{ latency: Percentiles; failures: string[] }> {
  const samples: number[] = [];
  const failures: string[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    try {
      const reply = await request(port, { host });
      if (reply.status !== 200) failures.push(`status ${reply.status}`);
    } catch (err) {
      failures.push(String(err));
    }
    samples.push(performance.now() - t0);
  }
  return { latency: percentiles(samples), failures };
}
