/**
 * One autocannon run (the devDependency, in its own process so it never shares an event loop
 * with the script that measures): keep-alive connections, an overall request rate, JSON figures.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

export interface LoadFigures {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly requests: number;
  readonly errors: number;
  readonly non2xx: number;
}

const CLI = createRequire(import.meta.url).resolve('autocannon/autocannon.js');

export function autocannon(opts: { url: string; host: string; connections: number; seconds: number; rate: number }): Promise<LoadFigures> {
  const args = [CLI, '-c', String(opts.connections), '-d', String(opts.seconds), '-j', '-H', `host=${opts.host}`];
  if (opts.rate > 0) args.push('-R', String(opts.rate));
  const child = spawn(process.execPath, [...args, opts.url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`autocannon exited ${code}: ${err.slice(-500)}`));
      const j = JSON.parse(out) as {
        requests: { average: number; total: number };
        latency: { p50: number; p99: number; max: number };
        errors: number;
        timeouts: number;
        non2xx: number;
      };
      resolve({
        rps: j.requests.average,
        p50: j.latency.p50,
        p99: j.latency.p99,
        max: j.latency.max,
        requests: j.requests.total,
        errors: j.errors + j.timeouts,
        non2xx: j.non2xx,
      });
    });
  });
}
