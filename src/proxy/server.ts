import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from '../log/logger.js';
import type { RouteStore } from '../sync/route-store.js';
import { decide, formatUpstream, type Decision, type Upstream } from './decide.js';
import type { Forwarder } from './forward.js';
import type { HealthChecker } from './health.js';
import { sendError } from './responses.js';

export interface ProxyServerOptions {
  readonly store: RouteStore;
  readonly health: HealthChecker;
  readonly forwarder: Forwarder;
  readonly regionId: string;
  readonly crossRegionPort: number;
  readonly logger: Logger;
}

/**
 * The public HTTP server: Host → decision → (health check) → forward. It reads the current
 * snapshot once per request and never waits on the database.
 */
export class ProxyServer {
  readonly server: http.Server;
  readonly #opts: ProxyServerOptions;
  #draining = false;

  constructor(opts: ProxyServerOptions) {
    this.#opts = opts;
    this.server = http.createServer({ keepAliveTimeout: 5_000 }, (req, res) => this.#handle(req, res));
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      // Malformed requests: answer 400 if the socket is still writable, never crash.
      if (socket.writable && err.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
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

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const { logger } = this.#opts;
    const started = performance.now();
    // During shutdown, finish this request but do not keep the connection for another.
    if (this.#draining) res.shouldKeepAlive = false;
    let decision: Decision;
    try {
      decision = decide(this.#opts.store.current, req.headers.host, this.#opts.regionId, this.#opts.crossRegionPort);
    } catch (err) {
      this.#internalError(req, res, err);
      return;
    }
    switch (decision.kind) {
      case 'not-ready':
        sendError(res, 'not-ready');
        return;
      case 'not-found':
        logger.warn({ host: decision.host, reason: decision.reason, method: req.method, url: req.url }, 'no route for host');
        sendError(res, 'not-found');
        return;
      case 'cross-region':
        this.#forward(req, res, decision, decision.upstream, started);
        return;
      case 'same-region': {
        const upstream = decision.upstream;
        this.#opts.health.check(upstream).then(
          (result) => {
            if (result.healthy) {
              this.#forward(req, res, decision, upstream, started);
              return;
            }
            logger.debug({ host: decision.route.host, target: formatUpstream(upstream), reason: result.reason, status: 503 }, 'vm unhealthy; answered 503');
            sendError(res, 'unhealthy');
          },
          (err: unknown) => this.#internalError(req, res, err),
        );
        return;
      }
    }
  }

  #forward(req: IncomingMessage, res: ServerResponse, decision: Decision & { kind: 'same-region' | 'cross-region' }, upstream: Upstream, started: number): void {
    const { logger, health } = this.#opts;
    try {
      if (logger.isLevelEnabled('debug')) {
        res.once('close', () => {
          logger.debug(
            {
              host: decision.route.host,
              kind: decision.kind,
              target: formatUpstream(upstream),
              method: req.method,
              url: req.url,
              status: res.statusCode,
              completed: res.writableFinished,
              durationMs: Math.round((performance.now() - started) * 100) / 100,
            },
            'request routed',
          );
        });
      }
      this.#opts.forwarder.forward(req, res, upstream, (err) => {
        logger.error({ host: decision.route.host, kind: decision.kind, target: formatUpstream(upstream), err }, 'proxy error');
        // A refused connection is a certain sign the VM is down: skip probing it for a while.
        if (decision.kind === 'same-region' && err.code === 'ECONNREFUSED') health.markUnhealthy(upstream, `proxy: ${err.code}`);
      });
    } catch (err) {
      this.#internalError(req, res, err);
    }
  }

  #internalError(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    this.#opts.logger.error({ err, host: req.headers.host, method: req.method, url: req.url }, 'internal error');
    try {
      sendError(res, 'internal');
    } catch {
      res.destroy();
    }
  }
}
