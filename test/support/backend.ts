import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

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
export async function startBackend(name: string, handler?: Handler, host = '127.0.0.1'): Promise<Backend> {
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
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
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
export function request(port: number, opts: { host?: string; path?: string; method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.host !== undefined) headers.host = opts.host;
    const req = http.request({ host: '127.0.0.1', port, path: opts.path ?? '/', method: opts.method ?? 'GET', headers, agent: false, setHost: opts.host === undefined }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('test request timed out')));
    req.end(opts.body);
  });
}
