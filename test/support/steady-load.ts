/**
 * A steady load that counts every failure: loops of GETs, some over keep-alive connections (one
 * shared http.Agent, as a Node client holds them), some on a new connection each
 * (`Connection: close`). A loop sends its next request as soon as the last one is answered
 * (after `pauseMs`); a request fails on an error, a status other than 200, or no answer in 10 s.
 * Nothing is retried: a failure is what the client saw.
 */
import http from 'node:http';
import https from 'node:https';

export interface SteadyLoadOptions {
  readonly port: number;
  /** The Host (and, over TLS, the SNI name) of every request. */
  readonly host: string;
  /** Over TLS, trusting this CA; plain HTTP when undefined. */
  readonly ca?: string;
  /** Loops sharing a keep-alive agent (one connection each at most). */
  readonly keepAliveLoops: number;
  /** Loops opening a new connection per request. */
  readonly freshLoops: number;
  /** Wait between a loop's requests (paces the load on a shared machine). */
  readonly pauseMs: number;
}

export interface SteadyLoadReport {
  readonly ok: number;
  readonly okByMode: { readonly keepAlive: number; readonly fresh: number };
  /** Each failure: when it was sent (ms since the load started), over which mode, and what happened. */
  readonly failures: readonly { readonly atMs: number; readonly mode: 'keep-alive' | 'fresh'; readonly what: string }[];
  readonly durationMs: number;
}

const REQUEST_DEADLINE_MS = 10_000;

export interface SteadyLoad {
  /** Ms since the load started (the clock of `failures[].atMs`). */
  elapsed(): number;
  /** Ends the loops (those in flight finish) and reports. */
  stop(): Promise<SteadyLoadReport>;
}

export function steadyLoad(opts: SteadyLoadOptions): SteadyLoad {
  const started = performance.now();
  const okByMode = { keepAlive: 0, fresh: 0 };
  const failures: { atMs: number; mode: 'keep-alive' | 'fresh'; what: string }[] = [];
  const mod = opts.ca === undefined ? http : https;
  const keepAlive = new mod.Agent({ keepAlive: true, maxSockets: opts.keepAliveLoops, ca: opts.ca } as https.AgentOptions);
  const fresh = new mod.Agent({ keepAlive: false, ca: opts.ca } as https.AgentOptions);
  let stopped = false;
  const loop = async (mode: 'keep-alive' | 'fresh'): Promise<void> => {
    while (!stopped) {
      const atMs = performance.now() - started;
      const what = await get(mod, opts, mode === 'keep-alive' ? keepAlive : fresh, mode === 'fresh');
      if (what !== '200') failures.push({ atMs, mode, what });
      else if (mode === 'keep-alive') okByMode.keepAlive += 1;
      else okByMode.fresh += 1;
      await new Promise((r) => setTimeout(r, opts.pauseMs));
    }
  };
  const loops = [
    ...Array.from({ length: opts.keepAliveLoops }, () => loop('keep-alive')),
    ...Array.from({ length: opts.freshLoops }, () => loop('fresh')),
  ];
  return {
    elapsed: () => performance.now() - started,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      keepAlive.destroy();
      fresh.destroy();
      return { ok: okByMode.keepAlive + okByMode.fresh, okByMode, failures, durationMs: performance.now() - started };
    },
  };
}

/** One GET; resolves with '200' or what went wrong (never rejects). */
function get(mod: typeof http | typeof https, opts: SteadyLoadOptions, agent: http.Agent, close: boolean): Promise<string> {
  return new Promise((resolve) => {
    const req = mod.request(
      {
        host: '127.0.0.1',
        port: opts.port,
        path: '/',
        agent,
        servername: opts.ca === undefined ? undefined : opts.host,
        headers: { host: opts.host, ...(close ? { connection: 'close' } : {}) },
        timeout: REQUEST_DEADLINE_MS,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.statusCode)));
        res.on('error', (err) => resolve(`response cut: ${err.message}`));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer in ${REQUEST_DEADLINE_MS} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`${err.code ?? 'error'}: ${err.message}`));
    req.end();
  });
}
