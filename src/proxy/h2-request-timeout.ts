import http2 from 'node:http2';
import type { H2Request, H2Response } from './h2-exchange.js';

/**
 * EDGEPROXY_CLIENT_REQUEST_TIMEOUT on one HTTP/2 stream, as Node's `requestTimeout` applies it to
 * an HTTP/1.1 request: a request whose end (the client's END_STREAM) has not arrived within `ms`
 * of its HEADERS gets the error table's `408 Request Timeout` if no response has started, else
 * its stream is cut (RST_STREAM INTERNAL_ERROR, where HTTP/1.1 cuts the connection). After a 408
 * the stream is reset with NO_ERROR, which asks the client to stop sending (RFC 9113 §8.1). The
 * upstream request is aborted either way, never sent a partial body as whole. Only that stream:
 * the session keeps serving the others. `ms` 0 = no limit; a request without a body is complete
 * at once.
 */
export function limitRequestTime(req: H2Request, res: H2Response, ms: number): void {
  if (ms <= 0 || req.bodyless) return;
  const timer = setTimeout(() => expire(res), ms);
  timer.unref();
  res.stream.once('close', () => clearTimeout(timer));
}

function expire(res: H2Response): void {
  const { stream } = res;
  if (stream.destroyed || stream.state.remoteClose === 1) return;
  // First the upstream request, aborted as when the client leaves: once the 408 is written, the
  // stream's close would end the body as if it were whole (the compatibility layer's way).
  res.cancel?.cancel();
  res.answer('request-timeout');
  // Closed: a request still in the flow (a health check running) is not forwarded (clientGone).
  if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
}
