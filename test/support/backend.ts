import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { DEFAULTS } from '../../src/config/config.js';
import { createLogger } from '../../src/log/logger.js';
import { Forwarder, type ForwarderOptions } from '../../src/proxy/forward.js';
import { HealthChecker } from '../../src/proxy/health.js';
import type { ProxyObserver } from '../../src/proxy/observer.js';
import { ProxyServer, type ProxyServerOptions } from '../../src/proxy/server.js';
import { RouteStore } from '../../src/sync/route-store.js';
import { RouteTable } from '../../src/table/route-table.js';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly health: boolean;
}

export interface Backend {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly requests: SeenRequest[];
  /** Requests other than health probes. */
  proxied(): SeenRequest[];
  probes(): SeenRequest[];
  /** What `GET /` health probes get (default 200). */
  healthStatus: number;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, backend: Backend) => void;

/**
 * A real HTTP server standing in for a VM or a region's load balancer. By default it answers
 * every request with `200 <name> <method> <url>`; health probes (User-Agent edgeproxy-health)
 * get `healthStatus`.
 */
export async function startBackend(name: string, handler?: Handler, host = '127.0.0.1', port = 0): Promise<Backend> {
  const requests: SeenRequest[] = [];
  const backend: Backend = {
    name,
    host,
    port: 0,
    requests,
    healthStatus: 200,
    proxied: () => requests.filter((r) => !r.health),
    probes: () => requests.filter((r) => r.health),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const health = String(req.headers['user-agent'] ?? '').startsWith('edgeproxy-health');
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, health });
    if (health) {
      res.writeHead(backend.healthStatus, { 'content-type': 'text/plain' });
      res.end('health');
      return;
    }
    if (handler !== undefined) {
      handler(req, res, backend);
      return;
    }
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
      res.end(`${name} ${req.method} ${req.url}`);
    });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  (backend as { port: number }).port = (server.address() as AddressInfo).port;
  return backend;
}

/** A port that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** One request through a fresh connection (no agent), so tests never share sockets by accident. */
export function request(
  port: number,
  opts: {
    host?: string;
    path?: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    timeoutMs?: number;
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.host !== undefined) headers.host = opts.host;
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: opts.path ?? '/',
        method: opts.method ?? 'GET',
        headers,
        agent: false,
        setHost: opts.host === undefined,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(new Error('test request timed out')));
    req.end(opts.body);
  });
}

/**
 * A listening port whose owner never accepts: a worker thread listens with a backlog of 1 and then
 * blocks its event loop. Once the kernel's accept queue holds two connections, further connects
 * hang (SYNs dropped), like an overloaded or firewalled host. Call `fill()` before use.
 */
export async function startBlackhole(): Promise<{ port: number; close(): Promise<void> }> {
  const { Worker } = await import('node:worker_threads');
  const worker = new Worker(
    `const net = require('node:net'); const { parentPort } = require('node:worker_threads');
     const s = net.createServer(); s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
       parentPort.postMessage(s.address().port);
       setTimeout(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0), 20);
     });`,
    { eval: true },
  );
  const port = await new Promise<number>((resolve) => worker.once('message', resolve));
  await new Promise((r) => setTimeout(r, 100));
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    fillers.push(s);
  }
  await new Promise((r) => setTimeout(r, 100));
  return {
    port,
    close: async () => {
      for (const s of fillers) s.destroy();
      await worker.terminate();
    },
  };
}

/**
 * Writes raw bytes to `port` (each chunk after `gapMs`) and resolves with everything received
 * until the server closes the connection or `timeoutMs` passes (`closed` says which). With
 * `untilResponse`, it also resolves as soon as one whole response (head and Content-Length body)
 * is in, for answers that keep the connection open.
 */
export function rawExchange(
  port: number,
  chunks: (string | Buffer)[],
  opts: { gapMs?: number; timeoutMs?: number; host?: string; untilResponse?: boolean } = {},
): Promise<{ text: string; closed: boolean; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, opts.host ?? '127.0.0.1');
    let text = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closed, ms: Date.now() - started });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 5000);
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (opts.untilResponse === true && wholeResponse(text)) finish(false);
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', () => {
      let i = 0;
      const next = () => {
        if (done || socket.destroyed) return;
        if (i >= chunks.length) return;
        socket.write(chunks[i++]!);
        if (i < chunks.length) setTimeout(next, opts.gapMs ?? 0);
      };
      next();
    });
  });
}

/** One whole response with a Content-Length body (or none) is in `text`. */
function wholeResponse(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const length = /\r\ncontent-length: *(\d+)\r\n/i.exec(text.slice(0, end + 2));
  return text.length - (end + 4) >= Number(length?.[1] ?? 0);
}

export interface TestProxy {
  readonly port: number;
  readonly proxy: ProxyServer;
  readonly store: RouteStore;
  readonly health: HealthChecker;
  readonly forwarder: Forwarder;
  readonly logs: Record<string, unknown>[];
  /** Resolves with the first log line matching `pred` (past or future), or rejects after `timeoutMs`. */
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Every observer call, in order. */
  readonly observed: {
    requests: { kind: string; status: number; seconds: number; upstreamSeconds: number | undefined }[];
    probes: { healthy: boolean; seconds: number }[];
  };
  /** Replaces the route table (routes: host → target). */
  routes(routes: Record<string, { vmPort: number; vmIp?: string; region?: string; regionIp?: string }>, regionAddresses?: string[]): void;
  close(): Promise<void>;
}

export const PROXY_REGION = '0a000000-0000-4000-8000-00000000000a';
export const OTHER_REGION = '0b000000-0000-4000-8000-00000000000b';

/** The forwarder's options from the option table's defaults, as `edgeproxy serve` would use them. */
export function defaultForwarderOptions(): ForwarderOptions {
  return {
    connectTimeoutMs: DEFAULTS.upstreamConnectTimeoutMs,
    headerTimeoutMs: DEFAULTS.upstreamHeaderTimeoutMs,
    idleTimeoutMs: DEFAULTS.upstreamIdleTimeoutMs,
  };
}

/** The server's client-side options from the option table's defaults. */
export const DEFAULT_SERVER_OPTIONS: Pick<ProxyServerOptions, 'timeouts' | 'trustedProxies' | 'crossRegionPort'> = {
  timeouts: {
    idleTimeoutMs: DEFAULTS.idleTimeoutMs,
    headerTimeoutMs: DEFAULTS.clientHeaderTimeoutMs,
    requestTimeoutMs: DEFAULTS.clientRequestTimeoutMs,
  },
  trustedProxies: DEFAULTS.trustedProxies,
  crossRegionPort: DEFAULTS.crossRegionPort,
};

/**
 * The request path on its own, without PostgreSQL: a RouteStore filled by the test, the real
 * HealthChecker, Forwarder and ProxyServer on an ephemeral port, logs captured (debug). Every
 * option the test does not set is the option table's default (`DEFAULTS`).
 */
export async function startProxy(
  opts: {
    crossRegionPort?: number;
    healthCacheTtlMs?: number;
    healthTimeoutMs?: number;
    forwarder?: Partial<ForwarderOptions>;
    server?: Partial<ProxyServerOptions>;
    logLevel?: 'debug' | 'info';
  } = {},
): Promise<TestProxy> {
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger(opts.logLevel ?? 'debug', { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) });
  const observed: TestProxy['observed'] = { requests: [], probes: [] };
  const observer: ProxyObserver = {
    request: (kind, status, seconds, upstreamSeconds) => void observed.requests.push({ kind, status, seconds, upstreamSeconds }),
    probe: (healthy, seconds) => void observed.probes.push({ healthy, seconds }),
    connectionDropped: () => undefined,
  };
  const store = new RouteStore();
  const health = new HealthChecker({
    timeoutMs: opts.healthTimeoutMs ?? DEFAULTS.healthTimeoutMs,
    cacheTtlMs: opts.healthCacheTtlMs ?? DEFAULTS.healthCacheTtlMs,
    logger,
    observer,
  });
  const forwarder = new Forwarder({ ...defaultForwarderOptions(), ...opts.forwarder });
  const proxy = new ProxyServer({
    ...DEFAULT_SERVER_OPTIONS,
    store,
    health,
    forwarder,
    regionId: PROXY_REGION,
    crossRegionPort: opts.crossRegionPort ?? DEFAULTS.crossRegionPort,
    logger,
    observer,
    ...opts.server,
  });
  const { port } = await proxy.listen('127.0.0.1', 0);
  return {
    port,
    proxy,
    store,
    health,
    forwarder,
    logs,
    observed,
    async waitFor(pred, timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = logs.find(pred);
        if (found !== undefined) return found;
        if (Date.now() > deadline)
          throw new Error(
            `no matching log line within ${timeoutMs} ms; last: ${logs
              .slice(-3)
              .map((l) => JSON.stringify(l))
              .join('\n')}`,
          );
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    routes(routes, regionAddresses = ['127.0.0.1']) {
      const entries = Object.entries(routes).map(
        ([host, r]) =>
          [
            host,
            {
              host,
              vmIp: r.vmIp ?? '127.0.0.1',
              vmPort: r.vmPort,
              vmRegionId: r.region ?? PROXY_REGION,
              regionPublicIp: r.regionIp ?? '127.0.0.1',
            },
          ] as const,
      );
      store.publish(RouteTable.from(entries), 'poll', { regionAddresses: new Set(regionAddresses) });
    },
    async close() {
      await proxy.drain(100);
      forwarder.close();
      health.close();
    },
  };
}
