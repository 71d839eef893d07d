import { EdgeProxyError, type EdgeProxyErrorOptions } from '../errors.js';

/** The codes of the errors the forwarders raise themselves (docs/errors.md, "Requests"). */
export type UpstreamErrorCode =
  | 'UPSTREAM_CONNECT_TIMEOUT'
  | 'UPSTREAM_HEADERS_TIMEOUT'
  | 'UPSTREAM_INVALID_RESPONSE'
  | 'UPSTREAM_CLOSED'
  | 'UPSTREAM_FAILED'
  | 'CLIENT_CLOSED';

/** A failure of one exchange with an upstream that EdgeProxy detected or caused itself. */
export class UpstreamError extends EdgeProxyError {
  override name = 'UpstreamError';
  declare readonly code: UpstreamErrorCode;

  constructor(code: UpstreamErrorCode, message: string, options?: EdgeProxyErrorOptions) {
    super(code, message, options);
  }
}

/** How forwarding failed, for the status, the `proxy error` log line and the passive health signal. */
export interface ForwardErrorInfo {
  /** An UpstreamErrorCode, or the system error's own (ECONNREFUSED, ECONNRESET, EPIPE, UND_ERR_SOCKET). */
  readonly code: string;
  readonly message: string;
  /** 502, or 504 when the upstream did not send its response headers in time. */
  readonly status: 502 | 504;
  /** Refused or reset by the upstream: the VM is marked unhealthy at once (passive health). */
  readonly connectionFailed: boolean;
}

/** undici's own codes for what our UpstreamErrorCodes name. */
const UNDICI_CODES: Readonly<Record<string, UpstreamErrorCode>> = {
  UND_ERR_CONNECT_TIMEOUT: 'UPSTREAM_CONNECT_TIMEOUT',
  UND_ERR_HEADERS_TIMEOUT: 'UPSTREAM_HEADERS_TIMEOUT',
};

/** The connection was refused, reset or dropped: a dead or crashing VM, not a slow one. */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UPSTREAM_CLOSED']);

/** Lost connections that are not a refusal: once the response has started they are UPSTREAM_CLOSED. */
const DROPPED_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/**
 * Maps an error from either forwarder to its code, the client's status and the passive-health
 * signal. `responded`: the upstream's response headers had arrived, so the connection dropped
 * mid-response (UPSTREAM_CLOSED, the underlying code kept in the message).
 */
export function classifyUpstreamError(err: unknown, responded: boolean): ForwardErrorInfo {
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown } } | null | undefined;
  const own = typeof e?.code === 'string' ? e.code : undefined;
  const cause = typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
  // undici wraps the system error of a broken socket in UND_ERR_SOCKET; the cause says which.
  let code = (own === 'UND_ERR_SOCKET' ? cause : undefined) ?? own ?? cause ?? 'UPSTREAM_FAILED';
  code = UNDICI_CODES[code] ?? code;
  let message = typeof e?.message === 'string' ? e.message : String(err);
  if (responded && DROPPED_CODES.has(code)) {
    message = `upstream closed the connection mid-response (${code}: ${message})`;
    code = 'UPSTREAM_CLOSED';
  }
  return { code, message, status: code === 'UPSTREAM_HEADERS_TIMEOUT' ? 504 : 502, connectionFailed: CONNECTION_CODES.has(code) };
}
