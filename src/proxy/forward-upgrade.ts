import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { createProxyServer, type ProxyServer as HttpProxy, type ServerOptions } from 'http-proxy-3';
import type { UpgradeExchange } from './exchange.js';
import { classifyUpstreamError, UpstreamError } from './upstream-errors.js';

/** Upstream timeouts of WebSocket upgrades (ms); every one comes from the option table. */
export interface UpgradeForwarderOptions {
  /** Connecting to the upstream (then 502). */
  readonly connectTimeoutMs: number;
  /** From the upgrade request sent to the upstream's answer (then 504); nothing limits the session after it. */
  readonly headerTimeoutMs: number;
}

/** The per-call options carry the exchange to the `proxyReqWs` listener. */
const kExchange = Symbol('edgeproxy.upgradeExchange');
type UpgradeOptions = ServerOptions & { [kExchange]: UpgradeExchange };

/**
 * WebSocket upgrades, forwarded with http-proxy-3. Each upgrade opens its own upstream connection
 * (http-proxy-3's `agent: false`): a switched connection never returns to a pool, and a fresh one
 * cannot be a stale pooled socket, so a failure before the answer is always the upstream's.
 * A 101 switches the connection (bytes flow both ways until either side closes); any other answer
 * is relayed as is and the connection closed.
 */
export class UpgradeForwarder {
  readonly #proxy: HttpProxy;
  readonly #connectTimeoutMs: number;
  readonly #headerTimeoutMs: number;

  constructor(opts: UpgradeForwarderOptions) {
    this.#connectTimeoutMs = opts.connectTimeoutMs;
    this.#headerTimeoutMs = opts.headerTimeoutMs;
    this.#proxy = createProxyServer({ xfwd: false, changeOrigin: false, ws: false });
    this.#proxy.on('proxyReqWs', (proxyReq: ClientRequest, _req: IncomingMessage, _socket: unknown, options: ServerOptions) =>
      this.#watch(proxyReq, (options as UpgradeOptions)[kExchange]),
    );
    // Upstream failures go to the per-upgrade callback. With a callback and a target on every call,
    // http-proxy-3 emits 'error' only to re-emit the client socket's own errors (a client that
    // resets): the client's business, counted when its socket closes. The listener must exist:
    // without it http-proxy-3 throws them.
    this.#proxy.on('error', ignoreClientError);
  }

  /** Sends the upgrade (headers already prepared) to `x.upstream`. */
  forward(x: UpgradeExchange): void {
    const u = x.upstream!;
    const options: UpgradeOptions = { target: { protocol: 'http:', host: u.ip, hostname: u.ip, port: u.port }, [kExchange]: x };
    this.#proxy.ws(x.req, x.socket, x.head, options, (err: Error) => {
      // Aborted by us because the client left: nothing to answer, nothing wrong upstream.
      if (err instanceof UpstreamError && err.code === 'CLIENT_CLOSED') return;
      x.sink.forwardFailed(x, classifyUpstreamError(err, x.sentStatus !== 0));
    });
  }

  /** Stops nothing in flight: switched connections end with their client (the server cuts them when draining). */
  close(): void {
    this.#proxy.close();
  }

  /** Runs before http-proxy-3's own listeners on the upstream request. */
  #watch(proxyReq: ClientRequest, x: UpgradeExchange): void {
    armTimeouts(proxyReq, this.#connectTimeoutMs, this.#headerTimeoutMs);
    proxyReq.once('upgrade', () => x.upstreamAnswered(101));
    proxyReq.once('response', (proxyRes: IncomingMessage) => {
      x.upstreamAnswered(proxyRes.statusCode ?? 0);
      // http-proxy-3 closes the client socket after relaying a refusal; without this it would echo
      // the upgrade request's `Connection: upgrade` into the answer.
      proxyRes.headers.connection = 'close';
      delete proxyRes.headers['keep-alive'];
    });
    // A client that leaves (its connection reset or destroyed) before the upstream answered: abort
    // the upstream request. A clean FIN goes unnoticed until the answer is written (Node hands the
    // socket over half-open and unread; the header timeout bounds the wait).
    x.socket.once('close', () => {
      if (x.sentStatus === 0) proxyReq.destroy(new UpstreamError('CLIENT_CLOSED', 'client closed the connection'));
    });
  }
}

/**
 * Connect timeout while the socket connects (502), then the answer timeout from the moment the
 * request is fully sent (504), as undici's headersTimeout for plain requests. Cleared by the answer.
 */
function armTimeouts(proxyReq: ClientRequest, connectMs: number, headerMs: number): void {
  let timer: NodeJS.Timeout | undefined;
  const stop = (): void => clearTimeout(timer);
  const fail = (code: 'UPSTREAM_CONNECT_TIMEOUT' | 'UPSTREAM_HEADERS_TIMEOUT', message: string): void => {
    proxyReq.destroy(new UpstreamError(code, message));
  };
  const waitForAnswer = (): void => {
    stop();
    timer = setTimeout(fail, headerMs, 'UPSTREAM_HEADERS_TIMEOUT', `no response headers within ${headerMs} ms`);
  };
  const onSocket = (socket: Socket): void => {
    if (!socket.connecting) {
      if (proxyReq.writableFinished) waitForAnswer();
      return;
    }
    timer = setTimeout(fail, connectMs, 'UPSTREAM_CONNECT_TIMEOUT', `connect took longer than ${connectMs} ms`);
    socket.once('connect', () => {
      stop();
      if (proxyReq.writableFinished) waitForAnswer();
    });
  };
  // The socket is assigned on a later tick.
  if (proxyReq.socket === null) proxyReq.once('socket', onSocket);
  else onSocket(proxyReq.socket);
  proxyReq.once('finish', () => {
    if (proxyReq.socket?.connecting !== true) waitForAnswer();
  });
  proxyReq.once('upgrade', stop);
  proxyReq.once('response', stop);
  proxyReq.once('close', stop);
}

function ignoreClientError(): void {}
