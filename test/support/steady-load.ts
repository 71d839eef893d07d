/**
 * A steady load that counts every failure: loops of GETs, some over keep-alive connections (one
 * shared http.Agent, as a Node client holds them), some on a new connection each
 * (`Connection: close`), and over TLS some on HTTP/2 sessions of their own (a new session once
 * the server sent GOAWAY, as browsers do). A loop sends its next request as soon as the last one
 * is answered (after `pauseMs`); a request fails on an error, a status other than 200, or no
 * answer in 10 s. Nothing is retried, but for what HTTP/2 says is safe to: a stream the server
 * refused (REFUSED_STREAM: not processed, RFC 9113 §8.7) is sent again once on a new session, as
 * browsers and curl do, and counted (`h2Refused`).
 */
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';

type Mode = 'keep-alive' | 'fresh' | 'h2';

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
  /** Over TLS: loops each on an HTTP/2 session (ALPN h2). */
  readonly h2Loops?: number;
  /** Wait between a loop's requests (paces the load on a shared machine). */
  readonly pauseMs: number;
}

export interface SteadyLoadReport {
  readonly ok: number;
  readonly okByMode: Readonly<Record<Mode, number>>;
  /** HTTP/2 streams refused unprocessed (REFUSED_STREAM) and sent again on a new session. */
  readonly h2Refused: number;
  /** Each failure: when it was sent (ms since the load started), over which mode, and what happened. */
  readonly failures: readonly { readonly atMs: number; readonly mode: Mode; readonly what: string }[];
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
  const okByMode: Record<Mode, number> = { 'keep-alive': 0, fresh: 0, h2: 0 };
  const failures: { atMs: number; mode: Mode; what: string }[] = [];
  const mod = opts.ca === undefined ? http : https;
  const keepAlive = new mod.Agent({ keepAlive: true, maxSockets: opts.keepAliveLoops, ca: opts.ca } as https.AgentOptions);
  const fresh = new mod.Agent({ keepAlive: false, ca: opts.ca } as https.AgentOptions);
  const h2 = Array.from({ length: opts.h2Loops ?? 0 }, () => new H2Client(opts));
  let stopped = false;
  const loop = async (mode: Mode, send: () => Promise<string>): Promise<void> => {
    while (!stopped) {
      const atMs = performance.now() - started;
      const what = await send();
      if (what !== '200') failures.push({ atMs, mode, what });
      else okByMode[mode] += 1;
      await new Promise((r) => setTimeout(r, opts.pauseMs));
    }
  };
  const loops = [
    ...Array.from({ length: opts.keepAliveLoops }, () => loop('keep-alive', () => get(mod, opts, keepAlive, false))),
    ...Array.from({ length: opts.freshLoops }, () => loop('fresh', () => get(mod, opts, fresh, true))),
    ...h2.map((c) => loop('h2', () => c.get())),
  ];
  return {
    elapsed: () => performance.now() - started,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      keepAlive.destroy();
      fresh.destroy();
      for (const c of h2) c.close();
      const ok = okByMode['keep-alive'] + okByMode.fresh + okByMode.h2;
      const h2Refused = h2.reduce((n, c) => n + c.refused, 0);
      return { ok, okByMode, h2Refused, failures, durationMs: performance.now() - started };
    },
  };
}

/** One HTTP/2 session at a time; after GOAWAY (or its end) the next request opens a new one. */
class H2Client {
  #session: http2.ClientHttp2Session | undefined;
  #usable = false;

  constructor(readonly opts: SteadyLoadOptions) {}

  /** Streams refused unprocessed and sent again. */
  refused = 0;

  async get(): Promise<string> {
    const first = await this.#once();
    if (first !== 'refused') return first;
    this.refused += 1;
    this.#usable = false;
    const again = await this.#once();
    return again === 'refused' ? 'REFUSED_STREAM twice' : again;
  }

  /** One stream: the status, 'refused', or what went wrong. */
  #once(): Promise<string> {
    if (!this.#usable || this.#session === undefined) this.#connect();
    return new Promise((resolve) => {
      const stream = this.#session!.request({ ':path': '/', ':authority': this.opts.host });
      stream.setTimeout(REQUEST_DEADLINE_MS, () => stream.close(http2.constants.NGHTTP2_CANCEL));
      let status = 0;
      stream.on('response', (headers) => (status = Number(headers[':status'])));
      stream.on('error', (err: NodeJS.ErrnoException) =>
        resolve(stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM ? 'refused' : `${err.code ?? 'error'}: ${err.message}`),
      );
      stream.on('close', () => resolve(status === 0 ? `stream closed without a response (code ${stream.rstCode})` : String(status)));
      stream.resume();
      stream.end();
    });
  }

  close(): void {
    this.#session?.close();
  }

  #connect(): void {
    this.#session?.close();
    const session = http2.connect(`https://127.0.0.1:${this.opts.port}`, { ca: this.opts.ca, servername: this.opts.host });
    session.on('error', () => undefined); // the streams say what failed
    session.on('goaway', () => (this.#usable = false));
    session.on('close', () => (this.#usable = false));
    this.#session = session;
    this.#usable = true;
  }
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
