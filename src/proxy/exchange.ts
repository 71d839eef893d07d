import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Upstream } from './decide.js';
import type { RouteKind } from './observer.js';

/** How forwarding failed, for the status, the log line and the passive health signal. */
export interface ForwardErrorInfo {
  /** e.g. ECONNREFUSED, ECONNRESET, UPSTREAM_CONNECT_TIMEOUT, UPSTREAM_HEADERS_TIMEOUT, UPSTREAM_INVALID_RESPONSE */
  readonly code: string;
  readonly message: string;
  /** 502, or 504 when the upstream did not send its response headers in time. */
  readonly status: 502 | 504;
  /** Refused or reset by the upstream: the VM is marked unhealthy at once (passive health). */
  readonly connectionFailed: boolean;
}

/** Receives what the forwarder learns about one exchange (implemented by ProxyServer). */
export interface ExchangeSink {
  forwardFailed(res: ProxyResponse, info: ForwardErrorInfo): void;
  finished(res: ProxyResponse): void;
}

/**
 * The server's response object, carrying the per-request state as plain fields so the hot path
 * needs no closures or side tables (`http.createServer({ ServerResponse: ProxyResponse })`).
 */
export class ProxyResponse extends ServerResponse<IncomingMessage> {
  /** performance.now() when the request arrived. */
  started = 0;
  kind: RouteKind = 'rejected';
  /** performance.now() when forwarding started / the upstream's response headers arrived (0 = not yet). */
  forwardStarted = 0;
  upstreamAt = 0;
  requestId = '';
  routeHost = '';
  upstream: Upstream | undefined = undefined;
  /** Forwarding attempts so far (a stale pooled connection allows one retry). */
  attempts = 0;
  /** The request's upstream ClientRequest (http-proxy engine), for its reused-socket flag. */
  upstreamRequest: { reusedSocket: boolean } | undefined = undefined;
  sink: ExchangeSink | undefined = undefined;
  /** Aborts the upstream request when the client leaves first (undici engine). */
  cancel: { cancel(): void } | undefined = undefined;
}

/** `close` listener shared by every response (no per-request closure). */
export function onExchangeClose(this: ProxyResponse): void {
  this.sink?.finished(this);
}
