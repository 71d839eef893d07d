/** One wrk run (keep-alive, one thread) and its figures parsed from wrk's text output. */
import { spawnSync } from 'node:child_process';

export interface WrkFigures {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
}

export function parseWrkMs(s: string): number {
  const m = /([0-9.]+)(us|ms|s)/.exec(s);
  if (m === null) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

export function parseWrk(out: string): WrkFigures {
  const rps = Number(/Requests\/sec:\s+([0-9.]+)/.exec(out)?.[1]);
  const p50 = parseWrkMs(/\n\s+50%\s+(\S+)/.exec(out)?.[1] ?? '');
  const p99 = parseWrkMs(/\n\s+99%\s+(\S+)/.exec(out)?.[1] ?? '');
  const errs = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = Number(errs?.[1] ?? 0) + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  return { rps, p50, p99, errors };
}

/** `wrk -t1 -c<connections> -d<seconds>s --latency -H 'Host: <host>' <url>`; `pinTo`: run it on that CPU only (`taskset -c`). */
export function wrk(url: string, host: string, connections: number, seconds: number, pinTo?: number): WrkFigures {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-H', `Host: ${host}`, url];
  const r = spawnSync(pinTo === undefined ? 'wrk' : 'taskset', pinTo === undefined ? args : ['-c', String(pinTo), 'wrk', ...args], {
    encoding: 'utf8',
  });
  return parseWrk(r.stdout);
}
