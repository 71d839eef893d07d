import { Agent as UndiciAgent, type Dispatcher } from 'undici';
import { formatUpstream } from './decide.js';
import type { ClientRequest, PlainExchange } from './exchange.js';
import { H2Request } from './h2-exchange.js';
import { connectionTokens } from './headers.js';
import { classifyUpstreamError, UpstreamError } from './upstream-errors.js';

/** Upstream timeouts of plain requests (ms); every one comes from the option table. */
export interface RequestForwarderOptions {
  /** Connecting to the upstream (then 502). */
  readonly connectTimeoutMs: number;
  /** From the request fully sent to the response headers (then 504). */
  readonly headerTimeoutMs: number;
  /** Idle pooled upstream connections are closed after this. */
  readonly idleTimeoutMs: number;
}

/**
 * Plain HTTP requests, forwarded with undici (docs/decisions/0006) as HTTP/1.1 whether the client
 * spoke HTTP/1.1 or HTTP/2: keep-alive pools per upstream, bodies streamed both ways and never
 * buffered. Failures go to `res.sink.forwardFailed`, which
 * answers 502/504 (or cuts the response when its headers already went out).
 */
export class RequestForwarder {
  readonly #agent: UndiciAgent;

  constructor(opts: RequestForwarderOptions) {
    this.#agent = new UndiciAgent({
      connectTimeout: opts.connectTimeoutMs,
      // Starts once the request is sent, as Go's ResponseHeaderTimeout.
      headersTimeout: opts.headerTimeoutMs,
      // No limit between body chunks: SSE and long downloads stay open as long as both ends do.
      bodyTimeout: 0,
      keepAliveTimeout: opts.idleTimeoutMs,
      keepAliveMaxTimeout: opts.idleTimeoutMs,
      pipelining: 1,
    });
  }

  /** Sends `res.req` (headers already prepared) to `res.upstream`. */
  forward(res: PlainExchange): void {
    res.attempts += 1;
    const exchange = new UndiciExchange(res, this);
    res.cancel = exchange;
    const req = res.req;
    this.#agent.dispatch(
      {
        origin: `http://${formatUpstream(res.upstream!)}`,
        path: req.url ?? '/',
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        headers: req.headers,
        // A chunked upload lost its Transfer-Encoding with the hop-by-hop headers; undici re-chunks it.
        body: isBodyless(req) ? null : req,
      },
      exchange,
    );
  }

  /** Closes every upstream connection (in-flight requests are cut). */
  close(): void {
    this.#agent.destroy().catch(() => undefined);
  }
}

/** Hop-by-hop response headers: they describe the upstream connection, not the response. */
const HOP_BY_HOP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'trailer', 'te']);

/** Failures before any response byte that may be the keep-alive race. */
const RACE_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * One request on undici's dispatcher, with its low-level handler interface (the one its HTTP/1.1
 * client calls directly): the response is written to the ServerResponse as it arrives, with
 * backpressure, and no promise, stream wrapper or closure per request.
 */
class UndiciExchange implements Dispatcher.DispatchHandler {
  #abort: ((err?: Error) => void) | undefined = undefined;
  #done = false;
  /** The forwarder that started this exchange, for the one resend after the keep-alive race. */
  readonly #forwarder: RequestForwarder;

  constructor(
    readonly res: PlainExchange,
    forwarder: RequestForwarder,
  ) {
    this.#forwarder = forwarder;
  }

  /** The client went away: abort the upstream request (its connection is not reused). */
  cancel(): void {
    if (this.#done) return;
    this.#done = true;
    this.#abort?.(clientClosed());
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#done) abort(clientClosed());
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx: Node already sent 100 Continue to the client itself
    const res = this.res;
    res.upstreamAt = performance.now();
    const headers = responseHeaders(rawHeaders);
    // writeHead checks the status (100–999) and every header name and value, and throws before
    // writing anything: such a response becomes a 502 instead of crashing anything.
    try {
      // HTTP/2 has no reason phrase (Node warns when given one).
      res.writeHead(statusCode, res.req instanceof H2Request ? undefined : statusText, headers);
    } catch (err) {
      throw new UpstreamError('UPSTREAM_INVALID_RESPONSE', (err as Error).message, { cause: err });
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
    const info = classifyUpstreamError(err, res.upstreamAt > 0);
    // A reset before any response byte may be the keep-alive race (the upstream closed a pooled
    // connection as we reused it; undici does not say whether it was reused): an idempotent request
    // without a body is sent once more, on a new connection. Only a second failure counts.
    if (res.upstreamAt === 0 && res.attempts === 1 && RACE_CODES.has(info.code) && canResend(res.req)) {
      this.#forwarder.forward(res);
      return;
    }
    res.sink?.forwardFailed(res, info);
  }
}

function clientClosed(): UpstreamError {
  return new UpstreamError('CLIENT_CLOSED', 'client closed the connection');
}

/** A request that can be sent again after the keep-alive race: idempotent and without a body. */
function canResend(req: ClientRequest): boolean {
  return IDEMPOTENT.has(req.method ?? '') && isBodyless(req);
}

function isBodyless(req: ClientRequest): boolean {
  // HTTP/2 says so in its framing; a body without content-length is sent to the VM chunked.
  if (req instanceof H2Request) return req.bodyless;
  const h = req.headers;
  return (h['content-length'] === undefined || h['content-length'] === '0') && !hadChunkedBody(req);
}

/** Node keeps the parsed framing on the request: chunked bodies have no Content-Length. */
function hadChunkedBody(req: ClientRequest): boolean {
  // `transfer-encoding` is deleted from the headers before forwarding; rawHeaders keeps it.
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') return true;
  }
  return false;
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
