import http, { type IncomingMessage } from 'node:http';
import net, { BlockList, isIPv4, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Failure } from '../errors.js';
import { listenOn, type ListenOptions } from '../listen.js';
import type { Logger } from '../log/logger.js';
import type { RouteSnapshot, RouteStore } from '../sync/route-store.js';
import { decide, formatUpstream, type Decision, type Upstream } from './decide.js';
import { SharedConnectionLimit } from './connection-limit.js';
import { onExchangeClose, ProxyResponse, UpgradeExchange, type Exchange, type ExchangeSink, type PlainExchange } from './exchange.js';
import type { Forwarder } from './forward.js';
import type { H2Response } from './h2-exchange.js';
import { H2Sessions } from './h2-sessions.js';
import { clientAddress, hasLoopMark, requestIdOf, upstreamHeaders } from './headers.js';
import type { HealthResult, HealthView } from './health.js';
import { NO_OBSERVER, type ProxyObserver, type RouteKind } from './observer.js';
import { checkRequest, type RefusalCode } from './request-checks.js';
import { challengeAnswer, httpsLocation, plainForClient, sendChallenge, sendRedirect } from './plain-http.js';
import { rawResponse, type ErrorKind } from './responses.js';
import type { ForwardErrorInfo } from './upstream-errors.js';

/** Client-side timeouts (ms); see the README's configuration table. */
export interface ClientTimeouts {
  /** Idle keep-alive connection between requests. */
  readonly idleTimeoutMs: number;
  /** Receiving the request line and headers (slowloris). */
  readonly headerTimeoutMs: number;
  /** Receiving the whole request, body included; 0 = no limit. */
  readonly requestTimeoutMs: number;
}

export interface ProxyServerOptions {
  /** Where the current snapshot is read (a worker thread's holds the versions the main thread sends). */
  readonly store: Pick<RouteStore, 'current'>;
  readonly health: HealthView;
  readonly forwarder: Forwarder;
  readonly regionId: string;
  readonly crossRegionPort: number;
  readonly logger: Logger;
  /** Told about every finished request (metrics); must be cheap and must not throw. */
  readonly observer?: ProxyObserver;
  /** From the option table (EDGEPROXY_IDLE_TIMEOUT, _CLIENT_HEADER_TIMEOUT, _CLIENT_REQUEST_TIMEOUT). */
  readonly timeouts: ClientTimeouts;
  /** CIDRs whose X-Forwarded-For is trusted besides the regions' load balancers (`10.0.0.0/8`). */
  readonly trustedProxies: readonly string[];
  /**
   * Client connections accepted at once (connection-limit.ts), on this server's port and the
   * listeners added with `shareConnectionLimit` (HTTPS) together; more are closed on arrival and
   * logged. undefined = no limit.
   */
  readonly maxConnections?: number;
  /**
   * The public HTTPS port, when plain-HTTP requests for a name with a certificate are redirected
   * there (EDGEPROXY_HTTPS_REDIRECT), once it listens; undefined = no redirect. HTTP-01 tokens are answered either way.
   */
  readonly redirectToHttpsPort?: () => number | undefined;
}

/** At most one 'client connection limit reached' line per this many ms while connections keep being dropped. */
const DROP_LOG_INTERVAL_MS = 10_000;

/** What a CONNECT request (a forward-proxy tunnel, on HTTP/1.1 or HTTP/2) is told: 405 with this Allow. */
const ALLOWED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';

/**
 * While draining, connections with no request in flight are closed this often, the first time
 * this long after the drain began: a client that was between two requests when it began gets its
 * next one answered (with `Connection: close`) instead of a reset.
 */
const DRAIN_IDLE_SWEEP_MS = 1000;

/** Status reported for a request whose client went away before a response was sent (as nginx). */
export const CLIENT_CLOSED_STATUS = 499;

/**
 * The public HTTP server: Host → decision → (health check) → forward. It reads the current
 * snapshot once per request and never waits on the database. Plain requests and WebSocket
 * upgrades run the same flow (`#route`) over an `Exchange`, which writes the answers and takes
 * the last step for its kind.
 *
 * HTTPS connections come secured from the HTTPS listener (`acceptSecure`): HTTP/1.1 ones join
 * the same HTTP server, HTTP/2 ones (ALPN `h2`) get a session (h2-sessions.ts) whose requests run
 * the same flow over an `H2Response`.
 *
 * Draining (shutdown): a plain request is still served, on a connection that is then closed (an
 * HTTP/2 session is sent GOAWAY: its streams in flight finish, no new one is accepted); an
 * upgrade is refused with 503 `draining` (Retry-After, Connection: close), since the long-lived
 * connection it opens would be cut by the drain; at the deadline every connection left is cut,
 * upgraded ones and HTTP/2 sessions included.
 */
export class ProxyServer implements ExchangeSink {
  readonly server: http.Server;
  readonly #opts: ProxyServerOptions;
  readonly #observer: ProxyObserver;
  readonly #trusted: BlockList | undefined;
  readonly #debug: boolean;
  /** Client sockets handed over by 'upgrade': Node's closeAllConnections() no longer sees them. */
  readonly #upgradeSockets = new Set<Duplex>();
  /** HTTP/2 sessions on connections the HTTPS listener secured with ALPN `h2`. */
  readonly #h2: H2Sessions;
  readonly #limit: SharedConnectionLimit | undefined;
  #draining = false;
  /** Connections dropped since the last 'client connection limit reached' line, and when that was. */
  #dropped = 0;
  #dropLoggedAt = -Infinity;

  constructor(opts: ProxyServerOptions) {
    this.#opts = opts;
    this.#observer = opts.observer ?? NO_OBSERVER;
    this.#debug = opts.logger.isLevelEnabled('debug');
    if (opts.trustedProxies.length > 0) {
      this.#trusted = new BlockList();
      for (const cidr of opts.trustedProxies) {
        const [addr, bits] = cidr.split('/') as [string, string | undefined];
        const family = isIPv4(addr) ? 'ipv4' : 'ipv6';
        this.#trusted.addSubnet(addr, bits === undefined ? (family === 'ipv4' ? 32 : 128) : Number(bits), family);
      }
    }
    const t = opts.timeouts;
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
      (_req, res) => this.#handle(res as unknown as ProxyResponse),
    );
    // No socket inactivity timeout: SSE, long polls and downloads stay open while both ends do.
    this.server.timeout = 0;
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#clientError(err, socket));
    this.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      // A forward-proxy tunnel is not something an edge proxy offers.
      this.#observe('rejected', 405, 0, undefined);
      socket.on('error', () => undefined);
      socket.end(rawResponse(405, 'Method Not Allowed', `Allow: ${ALLOWED_METHODS}\r\n`));
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head));
    this.#h2 = new H2Sessions({
      idleTimeoutMs: t.idleTimeoutMs,
      requestTimeoutMs: t.requestTimeoutMs,
      onRequest: (_req, res) => this.#handle(res),
      onConnect: (_req, res) => this.#refuseH2Connect(res),
    });
    this.#limit = opts.maxConnections === undefined ? undefined : new SharedConnectionLimit(opts.maxConnections);
    this.shareConnectionLimit(this.server);
  }

  /** Another listener that feeds this server (the HTTPS port): its connections count in the same client connection limit. */
  shareConnectionLimit(listener: Server): void {
    if (this.#limit === undefined) return;
    this.#limit.add(listener);
    listener.on('drop', () => this.#connectionDropped());
  }

  listen(host: string | undefined, port: number, opts?: ListenOptions): Promise<{ address: string; port: number }> {
    return listenOn(this.server, host, port, opts);
  }

  /**
   * Serves a connection the HTTPS listener has secured, by the protocol its handshake chose:
   * HTTP/2 on a session of its own, HTTP/1.1 (or no ALPN) on the same server as the plain port.
   * Either way the same flow and timeouts, and the drain sees it.
   */
  acceptSecure(socket: TLSSocket): void {
    // While draining too: its client connected before the listener closed, and its request is
    // answered as any other then (HTTP/1.1 with Connection: close, HTTP/2 with GOAWAY).
    if (socket.alpnProtocol === 'h2') this.#h2.accept(socket);
    else this.server.emit('connection', socket);
  }

  /** Open HTTP/2 sessions. */
  get h2Sessions(): number {
    return this.#h2.size;
  }

  /**
   * Stops accepting, lets in-flight requests (and open WebSocket connections) finish for up to
   * `timeoutMs`, then cuts what is left. Resolves true when everything finished in time.
   * `alsoClosing`: other listeners that feed this server (HTTPS), closed by the caller.
   */
  async drain(timeoutMs: number, alsoClosing: readonly Promise<void>[] = []): Promise<boolean> {
    this.#draining = true;
    // Connections the HTTPS listener hands over are not the HTTP server's own: its close() does
    // not wait for them, their listener's close (`alsoClosing`) does.
    const closed = Promise.all([this.#closeListener(), ...alsoClosing]);
    this.#h2.close();
    const sweep = setInterval(() => this.server.closeIdleConnections(), Math.min(DRAIN_IDLE_SWEEP_MS, timeoutMs));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const finished = await Promise.race([closed.then(() => true), timedOut]);
    clearTimeout(timer);
    clearInterval(sweep);
    // http.Server's own close: it also stops the timer that checks the client timeouts.
    this.server.close();
    if (!finished) {
      this.server.closeAllConnections();
      for (const socket of this.#upgradeSockets) socket.destroy();
      this.#h2.destroy();
      await closed;
    }
    return finished;
  }

  /**
   * Closes the listening socket at once, so the kernel gives new connections only to another
   * process on the port (reusePort), and resolves when the server's own connections are gone.
   * Not http.Server's close(): it also closes every idle connection at once, which resets one
   * whose client is sending its next request; the drain's sweep closes those later.
   */
  #closeListener(): Promise<void> {
    return new Promise((resolve) => net.Server.prototype.close.call(this.server, () => resolve()));
  }

  /** Draining: no new connection, every response closes its connection. */
  get draining(): boolean {
    return this.#draining;
  }

  // ---- the request flow ----------------------------------------------------------------------

  /** A plain request, on HTTP/1.1 or HTTP/2. */
  #handle(res: PlainExchange): void {
    res.started = performance.now();
    res.sink = this;
    res.on('close', onExchangeClose);
    this.#route(res);
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#upgradeSockets.add(socket);
    socket.once('close', () => this.#upgradeSockets.delete(socket));
    this.#route(new UpgradeExchange(req, socket, head, this));
  }

  /** One flow for both kinds: checks, drain rule, decision, loop guard, headers, health, forward. */
  #route(x: Exchange): void {
    try {
      if (!this.#admitted(x)) return;
      const snapshot = this.#opts.store.current;
      if (snapshot !== undefined && x instanceof ProxyResponse && this.#answeredPlain(x, snapshot)) return;
      const decision = decide(snapshot, x.req.headers.host, this.#opts.regionId, this.#opts.crossRegionPort);
      if (decision.kind === 'not-ready') this.#answer(x, 'not-ready', 'not-ready');
      else if (decision.kind === 'not-found') this.#notFound(x, decision);
      else this.#routed(x, decision, snapshot!);
    } catch (err) {
      this.#internalError(x, err);
    }
  }

  /** The request's own checks, then the drain rule; false when it has been answered. */
  #admitted(x: Exchange): boolean {
    const refusal = checkRequest(x.req, x.upgrade);
    if (refusal !== undefined) {
      this.#reject(x, refusal);
      return false;
    }
    const refused = this.#draining ? x.whileDraining() : undefined;
    if (refused !== undefined) {
      this.#refuseWhileDraining(x, refused);
      return false;
    }
    return true;
  }

  #notFound(x: Exchange, decision: Extract<Decision, { kind: 'not-found' }>): void {
    this.#opts.logger.warn(
      { host: decision.host, code: decision.code, reason: decision.message, method: x.req.method, url: x.req.url },
      'no route for host',
    );
    this.#answer(x, 'not-found', 'not-found');
  }

  /**
   * A request with a route: the redirect to https, the loop guard, the forwarded headers, then the
   * other region's load balancer at once or, in this region, the VM once its health allows.
   */
  #routed(x: Exchange, decision: Extract<Decision, { route: unknown }>, snapshot: RouteSnapshot): void {
    const req = x.req;
    if (x instanceof ProxyResponse && this.#redirected(x, snapshot, decision.route.host)) return;
    const crossRegion = decision.kind === 'cross-region';
    if (crossRegion && hasLoopMark(req.headers['cdn-loop'])) {
      this.#loop(req, decision.route.host, decision.upstream);
      this.#answer(x, 'loop', 'loop');
      return;
    }
    // From here on the request is routed: it gets a 'request routed' line when it ends.
    x.kind = decision.kind;
    x.routeHost = decision.route.host;
    x.upstream = decision.upstream;
    x.requestId = this.#prepareHeaders(x, snapshot, crossRegion);
    if (crossRegion) this.#forward(x);
    else this.#checkHealth(x, decision.upstream);
  }

  /** An HTTP-01 token asked for on the plain port: answered from the snapshot, before routing. */
  #answeredPlain(x: ProxyResponse, snapshot: RouteSnapshot): boolean {
    if (isSecure(x.req)) return false;
    const keyAuthorization = challengeAnswer(x.req.url, snapshot.tls, Date.now());
    if (keyAuthorization === undefined) return false;
    x.kind = 'acme-challenge';
    sendChallenge(x, keyAuthorization);
    return true;
  }

  /** A plain-HTTP request (as the client sent it) for a name that has a certificate: 308 to https. */
  #redirected(x: ProxyResponse, snapshot: RouteSnapshot, host: string): boolean {
    if (isSecure(x.req)) return false;
    const port = this.#opts.redirectToHttpsPort?.();
    if (port === undefined || !plainForClient(x.req, this.#trustedPeer(x.req, snapshot))) return false;
    const location = httpsLocation(host, x.req.url, snapshot.tls, port, Date.now());
    if (location === undefined) return false;
    x.kind = 'https-redirect';
    sendRedirect(x, location);
    return true;
  }

  /** The connecting address is one of our regions' load balancers or a configured trusted proxy. */
  #trustedPeer(req: Exchange['req'], snapshot: RouteSnapshot): boolean {
    const client = clientAddress(req);
    return snapshot.regionAddresses.has(client) || (this.#trusted?.check(client, client.includes(':') ? 'ipv6' : 'ipv4') ?? false);
  }

  /** The cached result when it is fresh (no promise), else a probe or the one in flight. */
  #checkHealth(x: Exchange, upstream: Upstream): void {
    const fresh = this.#opts.health.peek(upstream);
    if (fresh !== undefined) {
      this.#afterHealth(x, fresh);
      return;
    }
    this.#opts.health.check(upstream).then(
      (result) => this.#afterHealth(x, result),
      (err: unknown) => this.#internalError(x, err),
    );
  }

  #afterHealth(x: Exchange, result: HealthResult): void {
    if (result.healthy) {
      this.#forward(x);
      return;
    }
    if (this.#debug) {
      this.#opts.logger.debug(
        { host: x.routeHost, target: formatUpstream(x.upstream!), reason: result.reason, status: 503, requestId: x.requestId },
        'vm unhealthy; answered 503',
      );
    }
    x.answer('unhealthy');
  }

  #forward(x: Exchange): void {
    if (x.clientGone) return; // the client left while the health check ran
    x.forwardStarted = performance.now();
    try {
      x.forwardWith(this.#opts.forwarder);
    } catch (err) {
      this.#internalError(x, err);
    }
  }

  #answer(x: Exchange, kind: RouteKind, error: ErrorKind): void {
    x.kind = kind;
    x.answer(error);
  }

  /** ExchangeSink: the forwarder could not get a (valid, complete) response. */
  forwardFailed(x: Exchange, info: ForwardErrorInfo): void {
    const upstream = x.upstream;
    this.#opts.logger.error(
      {
        host: x.routeHost,
        kind: x.kind,
        target: upstream === undefined ? null : formatUpstream(upstream),
        requestId: x.requestId,
        err: { code: info.code, message: info.message, connectionFailed: info.connectionFailed },
      },
      'proxy error',
    );
    // Refused or reset: the VM is down or crashing; skip it until a probe says otherwise.
    if (x.kind === 'same-region' && info.connectionFailed && upstream !== undefined) this.#opts.health.markUnhealthy(upstream, info.code);
    x.answer(info.status === 504 ? 'gateway-timeout' : 'bad-gateway');
  }

  /** ExchangeSink: the exchange closed (finished, failed or abandoned by the client). */
  finished(x: Exchange): void {
    const now = performance.now();
    const status = x.sentStatus === 0 ? CLIENT_CLOSED_STATUS : x.sentStatus;
    const upstreamSeconds = x.upstreamAt > 0 ? (x.upstreamAt - x.forwardStarted) / 1000 : undefined;
    this.#observe(x.kind, status, (now - x.started) / 1000, upstreamSeconds);
    if (this.#debug && x.upstream !== undefined) {
      const req = x.req;
      this.#opts.logger.debug(
        {
          host: x.routeHost,
          kind: x.kind,
          target: formatUpstream(x.upstream),
          method: req.method,
          url: req.url,
          status,
          completed: x.completed,
          requestId: x.requestId,
          durationMs: Math.round((now - x.started) * 100) / 100,
        },
        'request routed',
      );
    }
  }

  // ---- refusals and their log lines ----------------------------------------------------------

  #reject(x: Exchange, refusal: Failure<RefusalCode>): void {
    const req = x.req;
    this.#opts.logger.warn(
      { host: req.headers.host ?? null, method: req.method, url: req.url, code: refusal.code, reason: refusal.message, status: 400 },
      'request rejected',
    );
    this.#answer(x, 'rejected', 'bad-request');
  }

  #refuseWhileDraining(x: Exchange, error: ErrorKind): void {
    if (this.#debug) {
      const req = x.req;
      this.#opts.logger.debug(
        { host: req.headers.host ?? null, method: req.method, url: req.url, code: 'UPGRADE_DRAINING', status: 503 },
        'upgrade refused: shutting down',
      );
    }
    this.#answer(x, 'draining', error);
  }

  #loop(req: Exchange['req'], host: string, upstream: Upstream): void {
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

  #internalError(x: Exchange, err: unknown): void {
    const req = x.req;
    this.#opts.logger.error({ err, host: req.headers.host, method: req.method, url: req.url }, 'internal error');
    x.answer('internal');
  }

  /**
   * Sets the upstream request's headers; returns the request id. X-Forwarded-For is appended to
   * only when the connecting address is one of our regions' load balancers or a configured
   * trusted proxy; anyone else's is replaced by the connecting address.
   */
  #prepareHeaders(x: Exchange, snapshot: RouteSnapshot, crossRegion: boolean): string {
    const req = x.req;
    const h = req.headers;
    const client = clientAddress(req);
    const trusted = (h['x-forwarded-for'] !== undefined || h['x-forwarded-proto'] !== undefined) && this.#trustedPeer(req, snapshot);
    const requestId = requestIdOf(h['x-request-id']);
    // IncomingMessage.headers has a setter: the forwarders read the prepared headers from here.
    // An upgrade keeps its Upgrade header (checkRequest has made sure it is a WebSocket one).
    const proto = isSecure(req) ? 'https' : 'http';
    req.headers = upstreamHeaders(h, client, trusted, crossRegion, x.upgrade, requestId, proto);
    return requestId;
  }

  // ---- what never reaches the flow ---------------------------------------------------------

  /** CONNECT on HTTP/2: refused as on HTTP/1.1, on its stream. */
  #refuseH2Connect(res: H2Response): void {
    this.#observe('rejected', 405, 0, undefined);
    const body = 'Method Not Allowed';
    res.writeHead(405, { allow: ALLOWED_METHODS, 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length });
    res.end(body);
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

  #connectionDropped(): void {
    this.#dropped += 1;
    try {
      this.#observer.connectionDropped();
    } catch (err) {
      this.#opts.logger.error({ err }, 'observer failed');
    }
    const now = performance.now();
    if (now - this.#dropLoggedAt < DROP_LOG_INTERVAL_MS) return;
    this.#opts.logger.warn(
      { code: 'CLIENT_CONNECTION_LIMIT', limit: this.#opts.maxConnections, dropped: this.#dropped },
      'client connection limit reached; new connections are closed',
    );
    this.#dropLoggedAt = now;
    this.#dropped = 0;
  }

  #observe(kind: RouteKind, status: number, seconds: number, upstreamSeconds: number | undefined): void {
    try {
      this.#observer.request(kind, status, seconds, upstreamSeconds);
    } catch (err) {
      this.#opts.logger.error({ err }, 'observer failed');
    }
  }
}

/** The request came over the HTTPS listener. */
function isSecure(req: Exchange['req']): boolean {
  return (req.socket as TLSSocket).encrypted === true;
}
