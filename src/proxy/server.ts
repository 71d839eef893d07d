import http, { type IncomingMessage } from 'node:http';
import { BlockList, isIPv4, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log/logger.js';
import type { RouteSnapshot, RouteStore } from '../sync/route-store.js';
import { parseHostHeader } from '../table/host.js';
import { decide, formatUpstream, type Decision, type Upstream } from './decide.js';
import { onExchangeClose, ProxyResponse, type ExchangeSink, type ForwardErrorInfo } from './exchange.js';
import type { Forwarder, UpgradeSink } from './forward.js';
import { clientAddress, hasLoopMark, requestIdOf, upstreamHeaders } from './headers.js';
import type { HealthChecker, HealthResult } from './health.js';
import { NO_OBSERVER, type ProxyObserver, type RouteKind } from './observer.js';
import { ERRORS, rawResponse, sendError, sendRawError, type ErrorKind } from './responses.js';

/** Client-side timeouts (ms); see the README's configuration table. */
export interface ClientTimeouts {
  /** Idle keep-alive connection between requests. */
  readonly idleTimeoutMs: number;
  /** Receiving the request line and headers (slowloris). */
  readonly headerTimeoutMs: number;
  /** Receiving the whole request, body included; 0 = no limit. */
  readonly requestTimeoutMs: number;
}

export const DEFAULT_CLIENT_TIMEOUTS: ClientTimeouts = { idleTimeoutMs: 30_000, headerTimeoutMs: 10_000, requestTimeoutMs: 300_000 };

export interface ProxyServerOptions {
  readonly store: RouteStore;
  readonly health: HealthChecker;
  readonly forwarder: Forwarder;
  readonly regionId: string;
  readonly crossRegionPort: number;
  readonly logger: Logger;
  /** Told about every finished request (metrics); must be cheap and must not throw. */
  readonly observer?: ProxyObserver;
  readonly timeouts?: Partial<ClientTimeouts>;
  /** CIDRs whose X-Forwarded-For is trusted besides the regions' load balancers (`10.0.0.0/8`). */
  readonly trustedProxies?: readonly string[];
}

/** Status reported for a request whose client went away before a response was sent (as nginx). */
export const CLIENT_CLOSED_STATUS = 499;

/**
 * The public HTTP server: Host → decision → (health check) → forward. It reads the current
 * snapshot once per request and never waits on the database.
 */
export class ProxyServer implements ExchangeSink {
  readonly server: http.Server;
  readonly #opts: ProxyServerOptions;
  readonly #observer: ProxyObserver;
  readonly #trusted: BlockList | undefined;
  readonly #debug: boolean;
  #draining = false;

  constructor(opts: ProxyServerOptions) {
    this.#opts = opts;
    this.#observer = opts.observer ?? NO_OBSERVER;
    this.#debug = opts.logger.isLevelEnabled('debug');
    if (opts.trustedProxies !== undefined && opts.trustedProxies.length > 0) {
      this.#trusted = new BlockList();
      for (const cidr of opts.trustedProxies) {
        const [addr, bits] = cidr.split('/') as [string, string | undefined];
        const family = isIPv4(addr) ? 'ipv4' : 'ipv6';
        this.#trusted.addSubnet(addr, bits === undefined ? (family === 'ipv4' ? 32 : 128) : Number(bits), family);
      }
    }
    const t = { ...DEFAULT_CLIENT_TIMEOUTS, ...opts.timeouts };
    const requestTimeout = t.requestTimeoutMs;
    // Node refuses a header timeout longer than the request timeout.
    const headersTimeout = requestTimeout > 0 ? Math.min(t.headerTimeoutMs, requestTimeout) : t.headerTimeoutMs;
    this.server = http.createServer(
      {
        ServerResponse: ProxyResponse as unknown as typeof http.ServerResponse,
        keepAliveTimeout: t.idleTimeoutMs,
        headersTimeout,
        requestTimeout,
        // Node checks these timeouts on a timer (default every 30 s); check often enough that a
        // 10 s header timeout means about 10 s.
        connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(Math.min(headersTimeout, requestTimeout || Infinity) / 4))),
      } as http.ServerOptions,
      (req, res) => this.#handle(req, res as unknown as ProxyResponse),
    );
    // No socket inactivity timeout: SSE, long polls and downloads stay open while both ends do.
    this.server.timeout = 0;
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#clientError(err, socket));
    this.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      // A forward-proxy tunnel is not something an edge proxy offers.
      this.#observe('rejected', 405, 0, undefined);
      socket.on('error', () => undefined);
      socket.end(rawResponse(405, 'Method Not Allowed', 'Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n'));
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head));
  }

  listen(host: string | undefined, port: number): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError);
        const a = this.server.address();
        if (a === null || typeof a === 'string') resolve({ address: String(a), port });
        else resolve({ address: a.address, port: a.port });
      });
    });
  }

  /**
   * Stops accepting, lets in-flight requests finish for up to `timeoutMs`, then cuts what is
   * left. Resolves true when everything finished in time.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.#draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const finished = await Promise.race([closed.then(() => true), timedOut]);
    clearTimeout(timer);
    if (!finished) {
      this.server.closeAllConnections();
      await closed;
    }
    return finished;
  }

  // ---- plain requests ----------------------------------------------------------------------

  #handle(req: IncomingMessage, res: ProxyResponse): void {
    res.started = performance.now();
    res.sink = this;
    res.on('close', onExchangeClose);
    // During shutdown, finish this request but do not keep the connection for another.
    if (this.#draining) res.shouldKeepAlive = false;
    try {
      const snapshot = this.#opts.store.current;
      const refusal = this.#checkRequest(req);
      if (refusal !== undefined) {
        this.#reject(req, res, refusal);
        return;
      }
      const decision = decide(snapshot, req.headers.host, this.#opts.regionId, this.#opts.crossRegionPort);
      switch (decision.kind) {
        case 'not-ready':
          res.kind = 'not-ready';
          sendError(res, 'not-ready');
          return;
        case 'not-found':
          res.kind = 'not-found';
          this.#opts.logger.warn(
            { host: decision.host, code: decision.code, reason: decision.message, method: req.method, url: req.url },
            'no route for host',
          );
          sendError(res, 'not-found');
          return;
        case 'cross-region':
        case 'same-region':
          break;
      }
      res.kind = decision.kind;
      res.routeHost = decision.route.host;
      res.upstream = decision.upstream;
      if (decision.kind === 'cross-region' && hasLoopMark(req.headers['cdn-loop'])) {
        this.#loop(req, res.routeHost, decision.upstream);
        res.kind = 'loop';
        sendError(res, 'loop');
        return;
      }
      res.requestId = this.#prepareHeaders(req, snapshot!, decision.kind === 'cross-region', false);
      if (decision.kind === 'cross-region') {
        this.#forward(req, res);
        return;
      }
      const upstream = decision.upstream;
      const fresh = this.#opts.health.peek(upstream);
      if (fresh !== undefined) {
        this.#afterHealth(req, res, fresh);
        return;
      }
      this.#opts.health.check(upstream).then(
        (result) => this.#afterHealth(req, res, result),
        (err: unknown) => this.#internalError(req, res, err),
      );
    } catch (err) {
      this.#internalError(req, res, err);
    }
  }

  #afterHealth(req: IncomingMessage, res: ProxyResponse, result: HealthResult): void {
    if (result.healthy) {
      this.#forward(req, res);
      return;
    }
    if (this.#debug) {
      this.#opts.logger.debug(
        { host: res.routeHost, target: formatUpstream(res.upstream!), reason: result.reason, status: 503, requestId: res.requestId },
        'vm unhealthy; answered 503',
      );
    }
    sendError(res, 'unhealthy');
  }

  #forward(req: IncomingMessage, res: ProxyResponse): void {
    if (res.destroyed) return; // the client left while the health check ran
    res.forwardStarted = performance.now();
    try {
      this.#opts.forwarder.forward(req, res, res.upstream!);
    } catch (err) {
      this.#internalError(req, res, err);
    }
  }

  /** ExchangeSink: the forwarder could not get a (valid, complete) response. */
  forwardFailed(res: ProxyResponse, info: ForwardErrorInfo): void {
    const upstream = res.upstream;
    this.#opts.logger.error(
      {
        host: res.routeHost,
        kind: res.kind,
        target: upstream === undefined ? null : formatUpstream(upstream),
        requestId: res.requestId,
        err: { code: info.code, message: info.message, connectionFailed: info.connectionFailed },
      },
      'proxy error',
    );
    // Refused or reset: the VM is down or crashing; skip it until a probe says otherwise.
    if (res.kind === 'same-region' && info.connectionFailed && upstream !== undefined)
      this.#opts.health.markUnhealthy(upstream, `proxy: ${info.code}`);
    try {
      sendError(res, info.status === 504 ? 'gateway-timeout' : 'bad-gateway');
    } catch {
      res.destroy();
    }
  }

  /** ExchangeSink: the response closed (finished, failed or abandoned by the client). */
  finished(res: ProxyResponse): void {
    if (!res.writableFinished) res.cancel?.cancel();
    const now = performance.now();
    const status = res.headersSent ? res.statusCode : CLIENT_CLOSED_STATUS;
    const upstreamSeconds = res.upstreamAt > 0 ? (res.upstreamAt - res.forwardStarted) / 1000 : undefined;
    this.#observe(res.kind, status, (now - res.started) / 1000, upstreamSeconds);
    if (this.#debug && res.upstream !== undefined) {
      const req = res.req;
      this.#opts.logger.debug(
        {
          host: res.routeHost,
          kind: res.kind,
          target: formatUpstream(res.upstream),
          method: req.method,
          url: req.url,
          status,
          completed: res.writableFinished,
          requestId: res.requestId,
          durationMs: Math.round((now - res.started) * 100) / 100,
        },
        'request routed',
      );
    }
  }

  // ---- checks shared by plain requests and upgrades ------------------------------------------

  /**
   * Requests refused before routing: a missing Host, and request targets other than origin-form
   * (`/path`). An absolute-form target (`GET http://a.example/x`) is accepted only when it names
   * the Host's own site, and is forwarded in origin-form; one naming another host would let a
   * client reach one site while the upstream sees another's Host.
   */
  #checkRequest(req: IncomingMessage): string | undefined {
    const host = req.headers.host;
    if (host === undefined || host === '') return 'missing Host header';
    const url = req.url ?? '';
    if (url.charCodeAt(0) === 47 /* / */) return undefined;
    const m = /^http:\/\/([^/?#]*)(.*)$/i.exec(url);
    if (m === null) return 'request target is not a path';
    const authority = parseHostHeader(m[1]);
    const hostName = parseHostHeader(host);
    if (m[1]!.includes('@') || !authority.ok || !hostName.ok || authority.host !== hostName.host)
      return 'absolute-form request target names another host';
    const rest = m[2]!;
    req.url = rest === '' ? '/' : rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest;
    return undefined;
  }

  #reject(req: IncomingMessage, res: ProxyResponse, reason: string): void {
    res.kind = 'rejected';
    res.shouldKeepAlive = false;
    this.#opts.logger.warn({ host: req.headers.host ?? null, method: req.method, url: req.url, reason, status: 400 }, 'request rejected');
    sendError(res, 'bad-request');
  }

  #loop(req: IncomingMessage, host: string, upstream: Upstream): void {
    this.#opts.logger.warn(
      {
        host,
        target: formatUpstream(upstream),
        cdnLoop: req.headers['cdn-loop'],
        via: req.headers.via ?? null,
        client: clientAddress(req),
      },
      'loop detected; answered 508',
    );
  }

  /**
   * Sets the upstream request's headers; returns the request id. X-Forwarded-For is appended to
   * only when the connecting address is one of our regions' load balancers or a configured
   * trusted proxy; anyone else's is replaced by the connecting address.
   */
  #prepareHeaders(req: IncomingMessage, snapshot: RouteSnapshot, crossRegion: boolean, upgrade: boolean): string {
    const h = req.headers;
    const client = clientAddress(req);
    let trusted = false;
    if (h['x-forwarded-for'] !== undefined || h['x-forwarded-proto'] !== undefined) {
      trusted = snapshot.regionAddresses.has(client) || (this.#trusted?.check(client, client.includes(':') ? 'ipv6' : 'ipv4') ?? false);
    }
    const requestId = requestIdOf(h['x-request-id']);
    // IncomingMessage.headers has a setter: the forwarders read the prepared headers from here.
    req.headers = upstreamHeaders(h, client, trusted, crossRegion, upgrade, requestId);
    return requestId;
  }

  #clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    // Malformed requests, oversized headers and slow clients: answer if the socket can still
    // take a whole response (not in the middle of one), never crash.
    const busy = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || busy?.headersSent === true) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    this.#observe('rejected', status, 0, undefined);
    socket.end(rawResponse(status));
    // A client that does not read its answer must not hold the socket either.
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  #observe(kind: RouteKind, status: number, seconds: number, upstreamSeconds: number | undefined): void {
    try {
      this.#observer.request(kind, status, seconds, upstreamSeconds);
    } catch (err) {
      this.#opts.logger.error({ err }, 'observer failed');
    }
  }

  // ---- WebSocket upgrades --------------------------------------------------------------------

  /** Same routing, loop, health and error rules as plain requests; errors written to the socket. */
  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const started = performance.now();
    socket.on('error', () => undefined);
    let kind: RouteKind = 'rejected';
    let status = 0;
    let upstreamAt = 0;
    let forwardStarted = 0;
    socket.once('close', () => {
      this.#observe(
        kind,
        status === 0 ? CLIENT_CLOSED_STATUS : status,
        (performance.now() - started) / 1000,
        upstreamAt > 0 ? (upstreamAt - forwardStarted) / 1000 : undefined,
      );
    });
    const fail = (k: RouteKind, e: ErrorKind) => {
      kind = k;
      status = ERRORS[e].status;
      sendRawError(socket, e);
    };
    try {
      if (this.#draining) return fail('not-ready', 'not-ready');
      const snapshot = this.#opts.store.current;
      const refusal = this.#checkRequest(req);
      if (refusal !== undefined || String(req.headers.upgrade).toLowerCase() !== 'websocket' || req.method !== 'GET') {
        this.#opts.logger.warn(
          {
            host: req.headers.host ?? null,
            method: req.method,
            url: req.url,
            reason: refusal ?? 'only WebSocket upgrades are proxied',
            status: 400,
          },
          'request rejected',
        );
        return fail('rejected', 'bad-request');
      }
      const decision: Decision = decide(snapshot, req.headers.host, this.#opts.regionId, this.#opts.crossRegionPort);
      if (decision.kind === 'not-ready') return fail('not-ready', 'not-ready');
      if (decision.kind === 'not-found') {
        this.#opts.logger.warn(
          { host: decision.host, code: decision.code, reason: decision.message, method: req.method, url: req.url },
          'no route for host',
        );
        return fail('not-found', 'not-found');
      }
      kind = decision.kind;
      const upstream = decision.upstream;
      if (decision.kind === 'cross-region' && hasLoopMark(req.headers['cdn-loop'])) {
        this.#loop(req, decision.route.host, upstream);
        return fail('loop', 'loop');
      }
      const requestId = this.#prepareHeaders(req, snapshot!, decision.kind === 'cross-region', true);
      const sink: UpgradeSink = {
        upgraded: () => {
          upstreamAt = performance.now();
          status = 101;
        },
        upgradeFailed: (info, written) => {
          this.#opts.logger.error(
            { host: decision.route.host, kind: decision.kind, target: formatUpstream(upstream), requestId, err: info },
            'proxy error',
          );
          if (decision.kind === 'same-region' && info.connectionFailed) this.#opts.health.markUnhealthy(upstream, `proxy: ${info.code}`);
          if (!written && status === 0) fail(decision.kind, info.status === 504 ? 'gateway-timeout' : 'bad-gateway');
          else socket.destroy();
        },
      };
      const go = () => {
        if (socket.destroyed) return;
        forwardStarted = performance.now();
        // A non-101 answer from the upstream is relayed as is.
        this.#opts.forwarder.upgrade(req, socket, head, upstream, sink);
      };
      if (decision.kind === 'cross-region') return go();
      this.#opts.health.check(upstream).then(
        (r) => (r.healthy ? go() : fail('same-region', 'unhealthy')),
        () => fail('same-region', 'internal'),
      );
    } catch (err) {
      this.#opts.logger.error({ err, host: req.headers.host, method: req.method, url: req.url }, 'internal error');
      fail(kind, 'internal');
    }
  }

  #internalError(req: IncomingMessage, res: ProxyResponse, err: unknown): void {
    this.#opts.logger.error({ err, host: req.headers.host, method: req.method, url: req.url }, 'internal error');
    try {
      sendError(res, 'internal');
    } catch {
      res.destroy();
    }
  }
}
