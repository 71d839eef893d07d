/**
 * The admin API: a second HTTP listener (EDGEPROXY_ADMIN_ADDR, loopback by default), never the
 * public port. Endpoints:
 *   GET  /healthz         200 while the process runs
 *   GET  /readyz          200 once a first route table is loaded, else 503 (and 503 while stopping)
 *   GET  /metrics         Prometheus text (prom-client)
 *   GET  /routes          the table as JSON (?limit=, ?contains=), with the sync status
 *   GET  /routes/<host>   how that host would be routed now, and why
 *   POST /resync          a full resync now; answers when it is done, with what changed
 */
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ErrorCode } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { HealthChecker } from '../proxy/health.js';
import type { ResyncOutcome } from '../sync/status.js';
import type { RouteStore } from '../sync/route-store.js';
import type { SyncStatus } from '../sync/status.js';
import { DEFAULT_ROUTE_LIMIT, MAX_ROUTE_LIMIT, explainHost, viewTable, type RoutingContext, type TableQuery } from './routes-view.js';

export interface AdminServerOptions extends RoutingContext {
  readonly store: RouteStore;
  readonly health: Pick<HealthChecker, 'last'>;
  readonly metrics: Metrics;
  readonly logger: Logger;
  status(): SyncStatus;
  /** The operator resync (logged and counted); see operatorResync. */
  resync(): Promise<ResyncOutcome>;
}

/** JSON body of POST /resync. */
export type ResyncResponse =
  | {
      readonly ok: true;
      readonly routes: number;
      readonly durationMs: number;
      readonly added: readonly string[];
      readonly removed: readonly string[];
      readonly changed: readonly string[];
    }
  | { readonly ok: false; readonly code: ErrorCode; readonly error: string };

const ENDPOINTS = ['GET /healthz', 'GET /readyz', 'GET /metrics', 'GET /routes', 'GET /routes/<host>', 'POST /resync'];

export class AdminServer {
  readonly server: http.Server;
  readonly #opts: AdminServerOptions;
  #stopping = false;

  constructor(opts: AdminServerOptions) {
    this.#opts = opts;
    this.server = http.createServer({ keepAliveTimeout: 5_000 }, (req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        opts.logger.error({ err, method: req.method, url: req.url }, 'admin request failed');
        if (!res.headersSent) json(res, 500, { error: 'internal error' });
        else res.destroy();
      });
    });
  }

  async listen(host: string | undefined, port: number): Promise<{ address: string; port: number }> {
    this.server.listen({ host, port });
    await once(this.server, 'listening'); // rejects with the 'error' (EADDRINUSE...) instead
    const a = this.server.address() as AddressInfo;
    return { address: a.address, port: a.port };
  }

  /** From now on /readyz answers 503 (the proxy is draining). */
  markStopping(): void {
    this.#stopping = true;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const o = this.#opts;
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    // Only POST /resync takes a body, and it ignores it.
    req.resume();

    if (path === '/resync') {
      if (method !== 'POST') return methodNotAllowed(res, 'POST');
      const outcome = await o.resync();
      const body: ResyncResponse = outcome.ok
        ? { ok: true, routes: outcome.routes, durationMs: Math.round(outcome.durationMs * 10) / 10, ...outcome.diff }
        : { ok: false, code: outcome.code, error: outcome.message };
      return json(res, outcome.ok ? 200 : 500, body);
    }
    if (method !== 'GET' && method !== 'HEAD') {
      return ENDPOINTS.some((e) => e.endsWith(` ${path}`)) || path.startsWith('/routes/')
        ? methodNotAllowed(res, 'GET, HEAD')
        : notFound(res);
    }
    switch (path) {
      case '/healthz':
        return json(res, 200, { status: 'ok' });
      case '/readyz': {
        const snap = o.store.current;
        const { state, feeding } = o.status();
        if (this.#stopping || state === 'stopped') return json(res, 503, { ready: false, reason: 'shutting down', state });
        if (snap === undefined) return json(res, 503, { ready: false, reason: 'route table not loaded yet', state });
        return json(res, 200, { ready: true, routes: snap.routes.size, generation: snap.generation, state, feeding });
      }
      case '/metrics': {
        const { contentType, body } = await o.metrics.exposition();
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
        res.end(body);
        return;
      }
      case '/routes':
      case '/routes/': {
        const query = parseTableQuery(url.searchParams);
        if ('error' in query) return json(res, 400, { error: query.error });
        const view = viewTable(o.store.current, o.status(), o, query);
        return json(res, view.ready ? 200 : 503, view);
      }
    }
    if (path.startsWith('/routes/')) {
      let host: string;
      try {
        host = decodeURIComponent(path.slice('/routes/'.length));
      } catch {
        return json(res, 400, { error: 'the host in the path is not valid percent-encoding' });
      }
      const view = explainHost(host, o.store.current, o.health, o);
      const status = view.decision === 'not-ready' ? 503 : view.decision === 'not-found' ? 404 : 200;
      return json(res, status, view);
    }
    return notFound(res);
  }
}

/** `?limit=N` (1..100000, default 1000) and `?contains=text`. */
function parseTableQuery(params: URLSearchParams): TableQuery | { error: string } {
  const rawLimit = params.get('limit');
  let limit = DEFAULT_ROUTE_LIMIT;
  if (rawLimit !== null) {
    limit = /^[0-9]{1,6}$/.test(rawLimit) ? Number(rawLimit) : NaN;
    if (!(limit >= 1 && limit <= MAX_ROUTE_LIMIT)) return { error: `limit must be an integer from 1 to ${MAX_ROUTE_LIMIT}` };
  }
  const contains = params.get('contains');
  return { limit, contains: contains === null || contains === '' ? undefined : contains.toLowerCase() };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

function notFound(res: ServerResponse): void {
  json(res, 404, { error: 'no such endpoint', endpoints: ENDPOINTS });
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('allow', allow);
  json(res, 405, { error: `method not allowed; use ${allow}` });
}
