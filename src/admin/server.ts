/**
 * The admin API: a second HTTP listener (EDGEPROXY_ADMIN_ADDR, loopback by default), never the
 * public port. Endpoints:
 *   GET  /healthz         200 while the process runs
 *   GET  /readyz          200 once a first route table is loaded, else 503 (and 503 while stopping)
 *   GET  /metrics         Prometheus text (prom-client)
 *   GET  /routes          the table as JSON (?limit=, ?contains=), with the sync status
 *   GET  /routes/<host>   how that host would be routed now, and why
 *   POST /resync          a full resync now; answers when it is done, with what changed
 *   GET  /certificates    the stored TLS certificates (?name=): names, issuer, validity, state
 *   POST /certificates/<name>/renew   orders a new certificate for the name now; answers with the outcome
 *   GET  /workers         the worker threads serving the public port: each one's table generation and requests
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { failure, isFailure, type ErrorCode, type Failure } from '../errors.js';
import { listenOn } from '../listen.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { HealthChecker } from '../proxy/health.js';
import type { ResyncOutcome } from '../sync/status.js';
import type { RouteStore } from '../sync/route-store.js';
import type { SyncStatus } from '../sync/status.js';
import type { RenewReply } from './certificate-renewal.js';
import type { WorkerStatus } from '../workers/worker-pool.js';
import { viewCertificates } from './certificates-view.js';
import { DEFAULT_ROUTE_LIMIT, MAX_ROUTE_LIMIT, explainHost, viewTable, type RoutingContext, type TableQuery } from './routes-view.js';

export interface AdminServerOptions extends RoutingContext {
  readonly store: RouteStore;
  readonly health: Pick<HealthChecker, 'last'>;
  readonly metrics: Metrics;
  readonly logger: Logger;
  status(): SyncStatus;
  /** The worker threads' own view, asked now; undefined when the main thread serves the public port. */
  workers?: () => Promise<readonly WorkerStatus[]>;
  /** The operator resync (logged and counted); see operatorResync. */
  resync(): Promise<ResyncOutcome>;
  /** An operator's forced renewal of one name; see renewCertificate. */
  renewCertificate(name: string): Promise<RenewReply>;
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

  listen(host: string | undefined, port: number): Promise<{ address: string; port: number }> {
    return listenOn(this.server, host, port);
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

  /** The endpoints: their methods and handlers (`/routes/<host>` is matched by its prefix). */
  readonly #endpoints: Readonly<Record<string, Endpoint>> = {
    '/healthz': { methods: 'GET, HEAD', handle: (_url, res) => json(res, 200, { status: 'ok' }) },
    '/readyz': { methods: 'GET, HEAD', handle: (_url, res) => this.#readyz(res) },
    '/metrics': { methods: 'GET, HEAD', handle: (_url, res) => this.#metrics(res) },
    '/routes': { methods: 'GET, HEAD', handle: (url, res) => this.#table(url, res) },
    '/routes/': { methods: 'GET, HEAD', handle: (url, res) => this.#table(url, res) },
    '/routes/<host>': { methods: 'GET, HEAD', handle: (url, res) => this.#explain(url, res) },
    '/resync': { methods: 'POST', handle: (_url, res) => this.#resync(res) },
    '/certificates': { methods: 'GET, HEAD', handle: (url, res) => this.#certificates(url, res) },
    '/certificates/<name>/renew': { methods: 'POST', handle: (url, res) => this.#renew(url, res) },
    '/workers': { methods: 'GET, HEAD', handle: (_url, res) => this.#workers(res) },
  };

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    // No endpoint takes a body: the POSTs ignore it.
    req.resume();
    const endpoint = this.#endpoints[url.pathname] ?? this.#endpoints[patternOf(url.pathname) ?? ''];
    if (endpoint === undefined) return notFound(res, this.#endpoints);
    if (!endpoint.methods.split(', ').includes(req.method ?? 'GET')) return methodNotAllowed(res, endpoint.methods);
    await endpoint.handle(url, res);
  }

  #readyz(res: ServerResponse): void {
    const snap = this.#opts.store.current;
    const { state, feeding, lagMs } = this.#opts.status();
    if (this.#stopping || state === 'stopped') return json(res, 503, { ready: false, reason: 'shutting down', state });
    if (snap === undefined) return json(res, 503, { ready: false, reason: 'route table not loaded yet', state });
    // Still ready while the stream is stale or lost: the poller (mode auto) keeps the table within an interval; lagMs says how stale the stream is.
    json(res, 200, { ready: true, routes: snap.routes.size, generation: snap.generation, state, feeding, lagMs });
  }

  async #metrics(res: ServerResponse): Promise<void> {
    const { contentType, body } = await this.#opts.metrics.exposition();
    res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }

  async #table(url: URL, res: ServerResponse): Promise<void> {
    const o = this.#opts;
    const query = parseTableQuery(url.searchParams);
    if (isFailure(query)) return json(res, 400, { code: query.code, error: query.message });
    const view = await viewTable(o.store.current, o.status(), o, query);
    json(res, view.ready ? 200 : 503, view);
  }

  #explain(url: URL, res: ServerResponse): void {
    const o = this.#opts;
    let host: string;
    try {
      host = decodeURIComponent(url.pathname.slice('/routes/'.length));
    } catch {
      return json(res, 400, { code: 'ADMIN_INVALID_QUERY', error: 'the host in the path is not valid percent-encoding' });
    }
    const view = explainHost(host, o.store.current, o.health, o);
    json(res, view.decision === 'not-ready' ? 503 : view.decision === 'not-found' ? 404 : 200, view);
  }

  async #workers(res: ServerResponse): Promise<void> {
    const workers = this.#opts.workers === undefined ? [] : await this.#opts.workers();
    json(res, 200, { threads: Math.max(1, workers.length), generation: this.#opts.store.current?.generation ?? 0, workers });
  }

  #certificates(url: URL, res: ServerResponse): void {
    const view = viewCertificates(this.#opts.store.current, Date.now(), url.searchParams.get('name') ?? undefined);
    json(res, view.ready ? 200 : 503, view);
  }

  async #renew(url: URL, res: ServerResponse): Promise<void> {
    let name: string;
    try {
      name = decodeURIComponent(url.pathname.slice('/certificates/'.length, -'/renew'.length));
    } catch {
      return json(res, 400, { code: 'ADMIN_INVALID_QUERY', error: 'the name in the path is not valid percent-encoding' });
    }
    const { status, body } = await this.#opts.renewCertificate(name);
    json(res, status, body);
  }

  async #resync(res: ServerResponse): Promise<void> {
    const outcome = await this.#opts.resync();
    const body: ResyncResponse = outcome.ok
      ? { ok: true, routes: outcome.routes, durationMs: Math.round(outcome.durationMs * 10) / 10, ...outcome.diff }
      : { ok: false, code: outcome.code, error: outcome.message };
    json(res, outcome.ok ? 200 : 500, body);
  }
}

interface Endpoint {
  /** As the Allow header lists them. */
  readonly methods: string;
  handle(url: URL, res: ServerResponse): void | Promise<void>;
}

/** The endpoint pattern of a path with a parameter in it, or undefined. */
function patternOf(path: string): string | undefined {
  if (path.startsWith('/routes/')) return '/routes/<host>';
  if (path.startsWith('/certificates/') && path.endsWith('/renew') && path.length > '/certificates//renew'.length) {
    return '/certificates/<name>/renew';
  }
  return undefined;
}

/** `?limit=N` (1..100000, default 1000) and `?contains=text`. */
function parseTableQuery(params: URLSearchParams): TableQuery | Failure<'ADMIN_INVALID_QUERY'> {
  const rawLimit = params.get('limit');
  let limit = DEFAULT_ROUTE_LIMIT;
  if (rawLimit !== null) {
    limit = /^[0-9]{1,6}$/.test(rawLimit) ? Number(rawLimit) : NaN;
    if (!(limit >= 1 && limit <= MAX_ROUTE_LIMIT))
      return failure('ADMIN_INVALID_QUERY', `limit must be an integer from 1 to ${MAX_ROUTE_LIMIT}`);
  }
  const contains = params.get('contains');
  const after = params.get('after');
  return {
    limit,
    contains: contains === null || contains === '' ? undefined : contains.toLowerCase(),
    after: after === null || after === '' ? undefined : after.toLowerCase(),
  };
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

function notFound(res: ServerResponse, endpoints: Readonly<Record<string, Endpoint>>): void {
  const list = Object.entries(endpoints)
    .filter(([path]) => path !== '/routes/')
    .map(([path, e]) => `${e.methods.split(', ')[0]} ${path}`);
  json(res, 404, { error: 'no such endpoint', endpoints: list });
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('allow', allow);
  json(res, 405, { error: `method not allowed; use ${allow}` });
}
