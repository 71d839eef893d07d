import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer, type ProxyServer as HttpProxy } from 'http-proxy-3';
import { Agent as UndiciAgent, type Dispatcher } from 'undici';
import type { Logger } from '../log/logger.js';
import { formatUpstream, type Upstream } from './decide.js';
import { connectionTokens } from './headers.js';
import type { ForwardErrorInfo, ProxyResponse } from './exchange.js';

/**
 * Plain HTTP requests go through `undici` (measured 1.9–2.4× the throughput of http-proxy-3 on
 * Node's http client, docs/decisions/0006) or through http-proxy-3; WebSocket upgrades always go
 * through http-proxy-3.
 */
export type ForwardEngine = 'undici' | 'http-proxy';

export interface ForwarderOptions {
  readonly logger: Logger;
  readonly engine?: ForwardEngine;
  /** Connecting to the upstream (then 502). Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** From the request fully sent to the response headers (then 504). Default 60 s. */
  readonly headerTimeoutMs?: number;
  /** Idle pooled upstream connections are closed after this. Default 4 s. */
  readonly idleTimeoutMs?: number;
}

/** What the forwarder tells the server when an upgrade fails before the upstream switched protocols. */
export interface UpgradeSink {
  upgradeFailed(info: ForwardErrorInfo, written: boolean): void;
  upgraded(): void;
}

/** Hop-by-hop response headers: they describe the upstream connection, not the response. */
const HOP_BY_HOP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'trailer', 'te']);

class UpstreamError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const PASSIVE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/** Maps an error from either engine to the status and the passive-health signal. */
export function classifyError(err: unknown, reusedSocket: boolean, responded: boolean): ForwardErrorInfo {
  const e = err as NodeJS.ErrnoException & { cause?: { code?: string } };
  let code = e.code ?? e.cause?.code ?? 'EPROXY';
  if (code === 'UND_ERR_CONNECT_TIMEOUT') code = 'UPSTREAM_CONNECT_TIMEOUT';
  if (code === 'UND_ERR_HEADERS_TIMEOUT') code = 'UPSTREAM_HEADERS_TIMEOUT';
  if (code === 'UND_ERR_SOCKET' && e.cause?.code !== undefined) code = e.cause.code;
  const status = code === 'UPSTREAM_HEADERS_TIMEOUT' ? 504 : 502;
  // A reset on a pooled connection before any response is the keep-alive race (the upstream closed
  // it as we reused it), not a sign that the VM is down.
  const connectionFailed = PASSIVE_CODES.has(code) && (code === 'ECONNREFUSED' || responded || !reusedSocket);
  return { code, message: e.message ?? String(err), status, connectionFailed };
}

/**
 * Streams a request to an upstream and the response back, on keep-alive connections. Bodies are
 * piped both ways, never buffered. Failures are reported to `res.sink.forwardFailed`, which
 * answers 502/504 (or cuts the response when its headers already went out).
 */
export class Forwarder {
  readonly engine: ForwardEngine;
  readonly agent: http.Agent;
  readonly #proxy: HttpProxy;
  readonly #undici: UndiciAgent;
  readonly #logger: Logger;
  readonly #connectTimeoutMs: number;
  readonly #headerTimeoutMs: number;

  constructor(opts: ForwarderOptions) {
    this.#logger = opts.logger;
    this.engine = opts.engine ?? 'undici';
    this.#connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.#headerTimeoutMs = opts.headerTimeoutMs ?? 60_000;
    const idle = opts.idleTimeoutMs ?? 4_000;
    // http-proxy's default (agent: false) sends `Connection: close` upstream: a new TCP connection
    // per request. LIFO keeps the warmest sockets in use; `timeout` closes idle pooled sockets.
    this.agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 1000, maxFreeSockets: 256, scheduling: 'lifo', timeout: idle });
    this.#proxy = createProxyServer({ agent: this.agent, xfwd: false, changeOrigin: false, ws: false });
    this.#proxy.on('proxyReq', (proxyReq, _req, res) => this.#onProxyReq(proxyReq, res as ProxyResponse));
    this.#proxy.on('proxyReqWs', (proxyReq) => {
      this.#armTimeouts(proxyReq);
      proxyReq.once('upgrade', clearRequestTimer);
    });
    this.#proxy.on('proxyRes', (proxyRes, req, res) => this.#onProxyRes(proxyRes, req, res as ProxyResponse));
    // Errors are handled per request by the callback; this listener only keeps a stray one from crashing us.
    this.#proxy.on('error', (err) => this.#logger.error({ err }, 'unexpected proxy error'));
    this.#undici = new UndiciAgent({
      connectTimeout: this.#connectTimeoutMs,
      headersTimeout: this.#headerTimeoutMs,
      // No limit between body chunks: SSE and long downloads stay open as long as both ends do.
      bodyTimeout: 0,
      keepAliveTimeout: idle,
      keepAliveMaxTimeout: idle,
      pipelining: 1,
    });
  }

  forward(req: IncomingMessage, res: ProxyResponse, upstream: Upstream): void {
    res.attempts += 1;
    if (this.engine === 'undici') this.#forwardUndici(req, res, upstream);
    else this.#forwardHttpProxy(req, res, upstream);
  }

  /** Proxies a WebSocket upgrade (http-proxy-3). Headers must already be prepared. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, upstream: Upstream, sink: UpgradeSink): void {
    let reused = false;
    this.#proxy.once('proxyReqWs', (proxyReq: ClientRequest) => {
      proxyReq.once('socket', () => (reused = proxyReq.reusedSocket));
      proxyReq.once('upgrade', () => sink.upgraded());
    });
    this.#proxy.ws(
      req,
      socket,
      head,
      { target: { protocol: 'http:', host: upstream.ip, hostname: upstream.ip, port: upstream.port } },
      (err) => {
        sink.upgradeFailed(classifyError(err, reused, false), (socket as Duplex & { bytesWritten?: number }).bytesWritten !== 0);
      },
    );
  }

  /** Closes every upstream connection (in-flight requests are cut). */
  close(): void {
    this.#proxy.close();
    this.agent.destroy();
    this.#undici.destroy().catch(() => undefined);
  }

  // ---- undici ------------------------------------------------------------------------------

  #forwardUndici(req: IncomingMessage, res: ProxyResponse, upstream: Upstream): void {
    const exchange = new UndiciExchange(res, this);
    res.cancel = exchange;
    this.#undici.dispatch(
      {
        origin: `http://${formatUpstream(upstream)}`,
        path: req.url ?? '/',
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        headers: req.headers,
        // A chunked upload lost its Transfer-Encoding with the hop-by-hop headers; undici re-chunks it.
        body: isBodyless(req) ? null : req,
      },
      exchange,
    );
  }

  // ---- http-proxy-3 ------------------------------------------------------------------------

  #forwardHttpProxy(req: IncomingMessage, res: ProxyResponse, upstream: Upstream): void {
    this.#proxy.web(
      req,
      res,
      { target: { protocol: 'http:', host: upstream.ip, hostname: upstream.ip, port: upstream.port } },
      this.#onHttpProxyError,
    );
  }

  readonly #onHttpProxyError = (err: Error, req: IncomingMessage, res: unknown): void => {
    const r = res as ProxyResponse;
    const info = classifyError(err, r.upstreamRequest?.reusedSocket === true, r.upstreamAt > 0);
    // The keep-alive race on a request without a body: it never reached the app, so send it again
    // once on a fresh connection (http-proxy-3 would otherwise answer 502).
    if (
      !info.connectionFailed &&
      info.code === 'ECONNRESET' &&
      r.upstreamAt === 0 &&
      r.attempts === 1 &&
      req.readableEnded &&
      canRetry(req) &&
      r.upstream !== undefined
    ) {
      this.forward(req, r, r.upstream);
      return;
    }
    r.sink?.forwardFailed(r, info);
  };

  #onProxyReq(proxyReq: ClientRequest, res: ProxyResponse): void {
    res.upstreamRequest = proxyReq;
    this.#armTimeouts(proxyReq);
  }

  /**
   * Connect timeout while the socket connects (502), then the response-headers timeout from the
   * moment the request is fully sent (504), as Go's ResponseHeaderTimeout. Nothing limits the body
   * afterwards, so SSE and long downloads are not cut. State lives on the request and the
   * listeners are shared functions: no closure per request.
   */
  #armTimeouts(proxyReq: ClientRequest): void {
    const socket = proxyReq.socket;
    if (socket === null) {
      // WebSocket requests are announced before they get a socket.
      proxyReq.once('socket', () => this.#armTimeouts(proxyReq));
      return;
    }
    const r = proxyReq as TimedRequest;
    r[kHeaderMs] = this.#headerTimeoutMs;
    r[kTimer] = undefined;
    if (socket.connecting) {
      r[kTimer] = setTimeout(onConnectTimeout, this.#connectTimeoutMs, r, this.#connectTimeoutMs);
      socket.once('connect', onSocketConnect);
    }
    if (proxyReq.writableFinished) armHeaderTimer(r);
    else proxyReq.once('finish', onRequestSent);
    proxyReq.once('response', clearRequestTimer);
    proxyReq.once('close', clearRequestTimer);
  }

  /**
   * Runs before http-proxy-3 copies the upstream response: an upstream status that Node refuses
   * to write (e.g. 099) would otherwise throw outside any handler and crash the process
   * (http-proxy #1530, still present in http-proxy-3 1.23). Such a response becomes a 502.
   */
  #onProxyRes(proxyRes: IncomingMessage, req: IncomingMessage, res: ProxyResponse): void {
    res.upstreamAt = performance.now();
    const problem = invalidResponse(proxyRes.statusCode ?? 0, proxyRes.rawHeaders);
    if (problem !== undefined) {
      this.#logger.error(
        { host: req.headers.host, url: req.url, problem, requestId: res.requestId },
        'upstream sent an invalid response; answering 502',
      );
      proxyRes.destroy();
      res.sink?.forwardFailed(res, { code: 'UPSTREAM_INVALID_RESPONSE', message: problem, status: 502, connectionFailed: false });
      return;
    }
    // Hop-by-hop headers describe the upstream connection (its keep-alive timeout is not ours).
    const h = proxyRes.headers;
    const listed = h.connection;
    if (listed !== undefined) for (const name of connectionTokens(listed)) delete h[name];
    for (const name of HOP_BY_HOP_RESPONSE) delete h[name];
    h.connection = res.shouldKeepAlive ? 'keep-alive' : 'close';
    // The upstream dropped the connection mid-body: pipe() would leave the client waiting for
    // the rest forever; cut it so the client sees the truncation.
    (proxyRes as ProxyRes)[kClientRes] = res;
    proxyRes.once('close', onProxyResClose);
  }
}

const kTimer = Symbol('edgeproxy.timer');
const kHeaderMs = Symbol('edgeproxy.headerTimeoutMs');
const kClientRes = Symbol('edgeproxy.clientResponse');
type TimedRequest = ClientRequest & { [kTimer]: NodeJS.Timeout | undefined; [kHeaderMs]: number };
type ProxyRes = IncomingMessage & { [kClientRes]: ProxyResponse };

function onConnectTimeout(r: TimedRequest, ms: number): void {
  r.destroy(new UpstreamError('UPSTREAM_CONNECT_TIMEOUT', `connect took longer than ${ms} ms`));
}

function onHeaderTimeout(r: TimedRequest): void {
  r.destroy(new UpstreamError('UPSTREAM_HEADERS_TIMEOUT', `no response headers within ${r[kHeaderMs]} ms`));
}

function armHeaderTimer(r: TimedRequest): void {
  clearTimeout(r[kTimer]);
  r[kTimer] = setTimeout(onHeaderTimeout, r[kHeaderMs], r);
}

function onSocketConnect(this: Duplex & { _httpMessage?: TimedRequest | null }): void {
  const r = this._httpMessage;
  if (r === undefined || r === null) return;
  clearTimeout(r[kTimer]);
  if (r.writableFinished) armHeaderTimer(r);
}

function onRequestSent(this: TimedRequest): void {
  if (this.socket?.connecting !== true) armHeaderTimer(this);
}

function clearRequestTimer(this: TimedRequest): void {
  clearTimeout(this[kTimer]);
}

function onProxyResClose(this: ProxyRes): void {
  const res = this[kClientRes];
  if (!this.complete && !res.destroyed) {
    res.sink?.forwardFailed(res, {
      code: 'ECONNRESET',
      message: 'upstream closed the connection mid-response',
      status: 502,
      connectionFailed: true,
    });
  }
}

const RACE_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** A request that can be sent again after the keep-alive race: idempotent and without a body. */
function canRetry(req: IncomingMessage): boolean {
  return IDEMPOTENT.has(req.method ?? '') && isBodyless(req);
}

function isBodyless(req: IncomingMessage): boolean {
  const h = req.headers;
  return (h['content-length'] === undefined || h['content-length'] === '0') && !hadChunkedBody(req);
}

/** Node keeps the parsed framing on the request: chunked bodies have no Content-Length. */
function hadChunkedBody(req: IncomingMessage): boolean {
  // `transfer-encoding` is deleted from the headers before forwarding; rawHeaders keeps it.
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') return true;
  }
  return false;
}

/** A status Node can write and header names/values it accepts, or what is wrong. */
function invalidResponse(status: number, raw: readonly string[]): string | undefined {
  if (status < 100 || status > 999) return `invalid status code ${status}`;
  for (let i = 0; i < raw.length; i += 2) {
    try {
      http.validateHeaderName(raw[i]!);
      http.validateHeaderValue(raw[i]!, raw[i + 1]!);
    } catch {
      return `invalid header ${JSON.stringify(raw[i]).slice(0, 80)}`;
    }
  }
  return undefined;
}

/**
 * One request on undici's dispatcher, with its low-level handler interface (the one its HTTP/1.1
 * client calls directly): the response is written to the ServerResponse as it arrives, with
 * backpressure, and no promise, stream wrapper or closure per request.
 */
class UndiciExchange implements Dispatcher.DispatchHandler {
  #abort: ((err?: Error) => void) | undefined = undefined;
  #done = false;
  /** The forwarder that started this exchange, for the one retry after the keep-alive race. */
  readonly #forwarder: Forwarder;

  constructor(
    readonly res: ProxyResponse,
    forwarder: Forwarder,
  ) {
    this.#forwarder = forwarder;
  }

  /** The client went away: abort the upstream request (its connection is not reused). */
  cancel(): void {
    if (this.#done) return;
    this.#done = true;
    this.#abort?.(new UpstreamError('CLIENT_CLOSED', 'client closed the connection'));
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#done) abort(new UpstreamError('CLIENT_CLOSED', 'client closed the connection'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx: Node already sent 100 Continue to the client itself
    const res = this.res;
    res.upstreamAt = performance.now();
    const headers = responseHeaders(rawHeaders);
    // writeHead checks the status (100–999) and every header name and value, and throws before
    // writing anything: such a response becomes a 502 instead of crashing anything.
    try {
      res.writeHead(statusCode, statusText, headers);
    } catch (err) {
      throw new UpstreamError('UPSTREAM_INVALID_RESPONSE', (err as Error).message);
    }
    res.on('drain', resume);
    return !res.writableNeedDrain;
  }

  onData(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }

  onComplete(): void {
    this.#done = true;
    this.res.end();
  }

  onError(err: Error): void {
    if (this.#done) return; // cancelled by us because the client left
    this.#done = true;
    const res = this.res;
    const classified = classifyError(err, false, res.upstreamAt > 0);
    // A reset before any response byte may be the keep-alive race (the upstream closed a pooled
    // connection as we reused it; undici does not say whether it was reused): an idempotent request
    // without a body is sent once more, on a new connection. Only a second failure counts.
    if (res.upstreamAt === 0 && res.attempts === 1 && RACE_CODES.has(classified.code) && res.upstream !== undefined && canRetry(res.req)) {
      this.#forwarder.forward(res.req, res, res.upstream);
      return;
    }
    res.sink?.forwardFailed(res, classified);
  }
}

/** Raw upstream headers → a flat [name, value, …] list for writeHead, without hop-by-hop ones. */
function responseHeaders(raw: Buffer[]): string[] {
  const out: string[] = [];
  let listed: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    const lower = name.length >= 2 && name.length <= 17 ? name.toLowerCase() : '';
    if (lower !== '' && HOP_BY_HOP_RESPONSE.has(lower)) {
      if (lower === 'connection') listed = raw[i + 1]!.toString('latin1');
      continue;
    }
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  if (listed !== undefined && listed !== 'keep-alive' && listed !== 'close') {
    const names = connectionTokens(listed);
    const kept: string[] = [];
    for (let i = 0; i < out.length; i += 2) if (!names.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
    return kept;
  }
  return out;
}
