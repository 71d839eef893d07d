import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { ReadableOptions } from 'node:stream';
import { withPlainExchange, type PlainExchange } from './exchange.js';
import type { Forwarder } from './forward.js';

/**
 * An HTTP/2 request as the one request flow reads it (`http2.createServer({ Http2ServerRequest })`):
 * `headers` are HTTP/1.1's, Host taken from `:authority` (or the `host` field when there is no
 * `:authority`), no pseudo-header, so checks, routing, forwarded headers and the forwarder see
 * what they see on HTTP/1.1; `method` and `url` are `:method` and `:path`. nghttp2 has already
 * refused malformed requests with RST_STREAM (connection-specific fields, `transfer-encoding`,
 * upper-case names, two `:authority`, neither `:authority` nor `host`, a `content-length` the
 * DATA contradicts); docs/request-smuggling.md lists them.
 *
 * A stream the client resets (or nghttp2 resets on a `content-length` mismatch) makes this body
 * fail, never end: Node's compatibility layer ends a reset request's body as if it were complete,
 * which the forwarder would send to the VM as a whole (chunked) request.
 */
export class H2Request extends http2.Http2ServerRequest {
  /** Replaced by the flow with the upstream headers (as on IncomingMessage). */
  declare headers: IncomingHttpHeaders;
  /** `:authority` and a `host` field that names another host (RFC 9113 §8.3.1: malformed). */
  readonly hostConflict: boolean;
  #headers: IncomingHttpHeaders;

  constructor(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, options: ReadableOptions, rawHeaders: readonly string[]) {
    super(stream, headers, options, rawHeaders);
    const authority = headers[':authority'];
    const host = headers.host;
    this.hostConflict = authority !== undefined && host !== undefined && authority.toLowerCase() !== host.toLowerCase();
    this.#headers = h1Headers(headers, authority);
    this.on('aborted', failBody);
    // The body's failure is for whoever reads it (the forwarder); before that, nobody minds.
    this.on('error', ignore);
  }

  /** No DATA follows the HEADERS frame (END_STREAM on it): nothing to forward as a body. */
  get bodyless(): boolean {
    return this.stream.endAfterHeaders;
  }

  static {
    // The base class has only a getter; TypeScript cannot override a declared property with an accessor.
    Object.defineProperty(this.prototype, 'headers', {
      get(this: H2Request) {
        return this.#headers;
      },
      set(this: H2Request, value: IncomingHttpHeaders) {
        this.#headers = value;
      },
    });
  }
}

/** HTTP/2 request fields as HTTP/1.1 headers: pseudo-headers left out, Host from `:authority` when there is one. */
function h1Headers(h2: IncomingHttpHeaders, authority: string | undefined): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const name in h2) {
    if (name.charCodeAt(0) !== 58 /* : */) out[name] = h2[name];
  }
  if (authority !== undefined) out.host = authority;
  return out;
}

function failBody(this: H2Request): void {
  this.destroy(new Error('the client reset the HTTP/2 stream before its request body ended'));
}

/**
 * A plain request on an HTTP/2 stream (`http2.createServer({ Http2ServerResponse })`): the same
 * exchange as `ProxyResponse` on HTTP/1.1, answered on the stream. Connection-specific response
 * headers are dropped by Node's compatibility layer.
 */
export class H2Response extends withPlainExchange(http2.Http2ServerResponse<H2Request>) implements PlainExchange {
  /**
   * The forwarder's flat `[name, value, …]` list goes out as one `stream.respond`, and the body
   * ends with END_STREAM on its last DATA frame. The compatibility layer's own writeHead takes
   * such a list header by header (removeHeader, then appendHeader) and always asks for trailers
   * (`waitForTrailers`), which costs every response a `wantTrailers` event and an empty DATA
   * frame: about 20 µs of CPU a request (docs/decisions/0016). The same header object and the
   * same checks (the status by the `statusCode` setter, names and values by `respond`, which
   * throws before writing). Other forms (the error table's object) and a response that already
   * has headers set or sent take the base class's way.
   */
  override writeHead(status: number, headers?: OutgoingHttpHeaders | readonly string[]): this;
  override writeHead(status: number, statusMessage: string, headers?: OutgoingHttpHeaders | readonly string[]): this;
  override writeHead(
    status: number,
    a?: string | OutgoingHttpHeaders | readonly string[],
    b?: OutgoingHttpHeaders | readonly string[],
  ): this {
    // As the base class reads them: the third argument, else the second if it is not a string.
    const headers = b === undefined && typeof a !== 'string' ? a : b;
    if (!Array.isArray(headers) || !this.#untouched())
      return typeof a === 'string' ? super.writeHead(status, a, b) : super.writeHead(status, a ?? b);
    this.statusCode = status;
    this.stream.respond(h2ResponseHeaders(status, headers as readonly string[]));
    return this;
  }

  /** Nothing set or sent yet, and the stream still open: the fast way applies. */
  #untouched(): boolean {
    const s = this.stream;
    return !s.headersSent && !s.destroyed && !s.closed && this.getHeaderNames().length === 0;
  }

  /**
   * Cuts the stream with RST_STREAM INTERNAL_ERROR (an answer that cannot be finished, as when the
   * VM fails mid-response). Node's own destroy() without an error resets with NO_ERROR, which
   * clients (Node's among them) may take for the end of a complete response.
   */
  override destroy(error?: Error): this {
    super.destroy(error ?? new Error('the response could not be completed'));
    return this;
  }

  get clientGone(): boolean {
    return this.stream.destroyed;
  }

  /**
   * Ended by us and not reset by the client. The compatibility layer's `writableFinished` is true
   * on every closed stream, one reset mid-answer included (Node 24), so it cannot say this.
   */
  override get completed(): boolean {
    return this.writableEnded && !this.stream.aborted;
  }

  /** Served: the session has been sent GOAWAY, so no new request follows on it. */
  whileDraining(): undefined {
    return undefined;
  }

  forwardWith(forwarder: Forwarder): void {
    forwarder.requests.forward(this);
  }
}

/**
 * A flat `[name, value, …]` list as the header object the compatibility layer builds from it:
 * names in lower case, a repeated name's values in one array (Set-Cookie), no prototype (a field
 * may be called `__proto__`).
 */
function h2ResponseHeaders(status: number, list: readonly string[]): OutgoingHttpHeaders {
  const out = Object.create(null) as OutgoingHttpHeaders;
  out[':status'] = status;
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!.toLowerCase();
    const value = list[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [String(prev), value];
  }
  return out;
}

function ignore(): void {}
