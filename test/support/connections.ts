/**
 * Many client connections held open at once, on raw sockets (a few hundred bytes each in the test
 * process, where http.Agent would keep a request object per socket): each sends keep-alive GETs
 * one at a time and reads each response whole (a Content-Length or a chunked body).
 */
import net from 'node:net';

export class HeldConnection {
  readonly socket: net.Socket;
  /** Resolves when the server (or an error) closed the connection. */
  readonly closed: Promise<void>;
  #buf = '';
  #waiting: { resolve: (status: number) => void; reject: (err: Error) => void } | undefined;
  #isClosed = false;
  /** The head (status line and headers) of the last whole response. */
  lastHead = '';
  /** performance.now() when the last request was written: the server's idle time can only start after it. */
  lastRequestAt = performance.now();
  /** performance.now() when the close was seen; undefined while open. */
  closedAt: number | undefined;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.#onData(chunk));
    this.closed = new Promise((resolve) => {
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.#isClosed = true;
        this.closedAt = performance.now();
        this.#waiting?.reject(new Error(`connection closed before the response was whole (${JSON.stringify(this.#buf.slice(0, 100))})`));
        this.#waiting = undefined;
        resolve();
      });
    });
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** One GET on this connection; resolves with the status once the whole response is in. */
  get(host: string, path = '/'): Promise<number> {
    if (this.#waiting !== undefined) return Promise.reject(new Error('a request is already in flight on this connection'));
    if (this.#isClosed) return Promise.reject(new Error('connection already closed'));
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      this.lastRequestAt = performance.now();
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    });
  }

  #onData(chunk: string): void {
    this.#buf += chunk;
    const end = this.#buf.indexOf('\r\n\r\n');
    if (end < 0 || this.#waiting === undefined) return;
    const head = this.#buf.slice(0, end + 2);
    const bodyEnd = /\r\ntransfer-encoding: *chunked\r\n/i.test(head)
      ? chunkedEnd(this.#buf, end + 4)
      : end + 4 + Number(/\r\ncontent-length: *(\d+)\r\n/i.exec(head)?.[1] ?? 0);
    if (bodyEnd < 0 || this.#buf.length < bodyEnd) return;
    this.#buf = this.#buf.slice(bodyEnd);
    this.lastHead = head;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting.resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0));
  }
}

/** Where a chunked body starting at `from` ends (after its last chunk and trailers), or -1 while incomplete. */
function chunkedEnd(buf: string, from: number): number {
  let at = from;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', at);
    if (lineEnd < 0) return -1;
    const size = parseInt(buf.slice(at, lineEnd), 16);
    if (size === 0) {
      const trailersEnd = buf.indexOf('\r\n\r\n', lineEnd);
      return trailersEnd < 0 ? -1 : trailersEnd + 4;
    }
    at = lineEnd + 2 + size + 2;
    if (at > buf.length) return -1;
  }
}

/** Opens one connection; rejects if it cannot connect within `timeoutMs`. */
export function connect(port: number, timeoutMs = 10_000): Promise<HeldConnection> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => (socket.destroy(), reject(new Error(`connect to :${port} took over ${timeoutMs} ms`))), timeoutMs);
    socket.once('connect', () => (clearTimeout(timer), resolve(new HeldConnection(socket))));
    socket.once('error', (err) => (clearTimeout(timer), reject(err)));
  });
}

/**
 * `count` connections, `batch` at a time, each answered once (`GET host`) before the next batch:
 * the kernel's accept queue never overflows, and every one has really been served by the proxy.
 * Throws on a failed connection or a status other than 200.
 */
export async function openAnswered(port: number, host: string, count: number, batch = 250): Promise<HeldConnection[]> {
  const all: HeldConnection[] = [];
  for (let i = 0; i < count; i += batch) {
    const opened = await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, async () => {
        const c = await connect(port);
        const status = await c.get(host);
        if (status !== 200) throw new Error(`connection ${all.length + 1}: status ${status}`);
        return c;
      }),
    );
    all.push(...opened);
  }
  return all;
}

export interface LoadResult {
  /** Requests answered 200. */
  readonly ok: number;
  /** Anything else: a status other than 200, or an error; `atMs` since the load started. */
  readonly failures: { readonly atMs: number; readonly host: string; readonly what: string }[];
  /** Every request: when it was sent (ms since the load started) and how long it took. */
  readonly samples: { readonly atMs: number; readonly ms: number }[];
}

/**
 * About `perSecond` keep-alive GETs in all, spread over `conns` (one at a time on each; a busy one
 * is skipped, so a slow server gets fewer) and round-robin over `hosts`. stop() waits for those
 * in flight. A connection the server closes counts as a failure and is not replaced.
 */
export function pacedLoad(conns: readonly HeldConnection[], hosts: readonly string[], perSecond: number) {
  const started = performance.now();
  let ok = 0;
  const failures: LoadResult['failures'][number][] = [];
  const samples: LoadResult['samples'][number][] = [];
  const busy = new Set<HeldConnection>();
  let next = 0;
  const tickMs = 20;
  const send = (c: HeldConnection, host: string) => {
    busy.add(c);
    const t0 = performance.now();
    const atMs = t0 - started;
    const done = (what: string) => {
      busy.delete(c);
      samples.push({ atMs, ms: performance.now() - t0 });
      if (what === '200') ok += 1;
      else failures.push({ atMs, host, what });
    };
    c.get(host).then(
      (status) => done(String(status)),
      (err: unknown) => done(String(err)),
    );
  };
  let owed = 0;
  const timer = setInterval(() => {
    owed += (perSecond * tickMs) / 1000;
    for (; owed >= 1; owed--) {
      const c = conns[next % conns.length]!;
      const host = hosts[next % hosts.length]!;
      next += 1;
      if (!busy.has(c) && !c.isClosed) send(c, host);
    }
  }, tickMs);
  return {
    async stop(): Promise<LoadResult> {
      clearInterval(timer);
      const deadline = Date.now() + 15_000;
      while (busy.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (busy.size > 0)
        failures.push({ atMs: performance.now() - started, host: '*', what: `${busy.size} requests unanswered 15 s after the end` });
      return { ok, failures, samples };
    },
  };
}
