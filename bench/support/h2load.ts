/**
 * One h2load run (nghttp2-client): keep-alive connections for a fixed time after a warm-up,
 * HTTP/1.1 (`--h1`, plain or TLS) or HTTP/2 over TLS. The URI carries the name (Host / :authority
 * and SNI); `--connect-to` sends the connections to 127.0.0.1, so the name needs no resolver.
 */
import { spawn, spawnSync } from 'node:child_process';

export interface H2loadOptions {
  readonly scheme: 'http' | 'https';
  readonly name: string;
  readonly port: number;
  readonly protocol: 'h1' | 'h2';
  readonly clients: number;
  /** Concurrent streams per connection (HTTP/2); HTTP/1.1 runs always use 1 (no pipelining). */
  readonly streams: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
}

export interface H2loadFigures {
  readonly rps: number;
  readonly succeeded: number;
  /** Requests without a 2xx answer: unanswered (errored, timed out) or answered 3xx, 4xx, 5xx. */
  readonly errors: number;
  /** Requests without an answer (h2load's `errored` and timed out: its `failed` less the 4xx and 5xx it counts in it). */
  readonly unanswered: number;
  /** Answers other than 2xx, and of them 5xx. */
  readonly non2xx: number;
  readonly status5xx: number;
  /** The protocol h2load reports it used (`h2`, `http/1.1`), or undefined if it printed none. */
  readonly protocol: string | undefined;
}

export function h2loadArgs(o: H2loadOptions): string[] {
  const args = [`-c${o.clients}`, `-D${o.seconds}`, `--warm-up-time=${o.warmupSeconds}`, `--connect-to=127.0.0.1:${o.port}`];
  if (o.protocol === 'h1') args.push('--h1', '-m1');
  else args.push(`-m${o.streams}`);
  return [...args, `${o.scheme}://${o.name}:${o.port}/`];
}

export function parseH2load(out: string): H2loadFigures {
  const rps = Number(/finished in [0-9.]+m?s, ([0-9.]+) req\/s/.exec(out)?.[1]);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const n = (m: RegExpExecArray | null, i: number) => Number(m?.[i] ?? NaN);
  // h2load's `failed` already holds the errored and timed-out requests and the 4xx and 5xx answers
  // (a 3xx counts as succeeded): adding them up counted those twice.
  const failed = n(req, 5);
  const non2xx = n(codes, 2) + n(codes, 3) + n(codes, 4);
  return {
    rps,
    succeeded: n(req, 4),
    errors: failed + n(codes, 2),
    unanswered: failed - n(codes, 3) - n(codes, 4),
    non2xx,
    status5xx: n(codes, 4),
    protocol: /Application protocol: (\S+)/.exec(out)?.[1],
  };
}

export function h2load(o: H2loadOptions): H2loadFigures {
  const r = spawnSync('h2load', h2loadArgs(o), { encoding: 'utf8' });
  const figures = parseH2load(r.stdout);
  if (!Number.isFinite(figures.rps)) throw new Error(`h2load ${h2loadArgs(o).join(' ')}: no figures\n${r.stdout}${r.stderr}`);
  return figures;
}

/** As `h2load`, without blocking this process's event loop (which may be reading a target's output). */
export function h2loadAsync(o: H2loadOptions): Promise<H2loadFigures> {
  const child = spawn('h2load', h2loadArgs(o), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', () => {
      const figures = parseH2load(out);
      if (!Number.isFinite(figures.rps)) reject(new Error(`h2load ${h2loadArgs(o).join(' ')}: no figures\n${out}`));
      else resolve(figures);
    });
  });
}
