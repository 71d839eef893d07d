import { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** One row of the error table. */
export interface ErrorAnswer {
  readonly status: number;
  readonly body: string;
  /** Sent as `Retry-After` (seconds): the condition passes on its own. */
  readonly retryAfterS?: number;
  /** The client connection is not kept for another request. */
  readonly close?: boolean;
}

/**
 * Error responses. The first four statuses and bodies are the service description's error table,
 * verbatim; the others are ours: `not-ready` (before the first route table is loaded the proxy
 * cannot know a site is missing, so 503 with Retry-After instead of 404), `gateway-timeout` (an
 * upstream too slow to answer), `loop` (a request that already crossed regions would cross again),
 * `bad-request` (a request we refuse to route, e.g. a missing Host), `draining` (a WebSocket
 * upgrade while shutting down: the long-lived connection would be cut by the drain anyway),
 * `request-timeout` (an HTTP/2 request not complete within EDGEPROXY_CLIENT_REQUEST_TIMEOUT; on
 * HTTP/1.1 Node's own timeout answers it raw, with the same status and body: rawResponse(408)).
 */
const TABLE = {
  'not-found': { status: 404, body: 'Service Not Found' },
  unhealthy: { status: 503, body: 'Service Unavailable - VM not responding' },
  'bad-gateway': { status: 502, body: 'Bad Gateway' },
  internal: { status: 500, body: 'Internal Server Error' },
  'not-ready': { status: 503, body: 'Service Unavailable - routes not loaded yet', retryAfterS: 1 },
  'gateway-timeout': { status: 504, body: 'Gateway Timeout' },
  loop: { status: 508, body: 'Loop Detected' },
  'bad-request': { status: 400, body: 'Bad Request', close: true },
  draining: { status: 503, body: 'Service Unavailable - shutting down', retryAfterS: 1, close: true },
  'request-timeout': { status: 408, body: 'Request Timeout', close: true },
} as const satisfies Record<string, ErrorAnswer>;

export type ErrorKind = keyof typeof TABLE;
export const ERRORS: Readonly<Record<ErrorKind, ErrorAnswer>> = TABLE;

const BODIES = Object.fromEntries(Object.entries(ERRORS).map(([k, v]) => [k, Buffer.from(v.body)])) as Record<ErrorKind, Buffer>;

/** What an error answer is written on: HTTP/1.1's ServerResponse or HTTP/2's Http2ServerResponse. */
export interface AnswerTarget {
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  /** ServerResponse only (an HTTP/2 response on a closed stream ignores what is written). */
  readonly destroyed?: boolean;
  destroy(): void;
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(body: Uint8Array): unknown;
}

/**
 * Writes one error response, unless headers already went out (then the connection, or the
 * HTTP/2 stream, is cut, which is the only honest signal left to the client).
 */
export function sendError(res: AnswerTarget, kind: ErrorKind): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (res.writableEnded || res.destroyed) return;
  const e = ERRORS[kind];
  const body = BODIES[kind];
  const headers: Record<string, string | number> = {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': body.length,
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
  };
  if (e.retryAfterS !== undefined) headers['retry-after'] = e.retryAfterS;
  // HTTP/2 has no such thing: its framing leaves nothing ambiguous behind a refused stream.
  if (e.close === true && res instanceof ServerResponse) res.shouldKeepAlive = false;
  res.writeHead(e.status, headers);
  res.end(body);
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  508: 'Loop Detected',
};

/**
 * A whole response written straight to a socket, then the connection closed: for requests that
 * never got a ServerResponse (malformed requests, CONNECT, WebSocket upgrades). `body` defaults
 * to the reason phrase.
 */
export function rawResponse(status: number, body?: string, extraHeaders = ''): string {
  const text = body ?? REASONS[status] ?? '';
  return (
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\n` +
    `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n` +
    `X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n${extraHeaders}\r\n${text}`
  );
}

/** The error table's response for an upgrade request, on its raw socket; then closes it. */
export function sendRawError(socket: Duplex, kind: ErrorKind): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const e = ERRORS[kind];
  // rawResponse always closes: a raw socket never carries a second request.
  socket.end(rawResponse(e.status, e.body, e.retryAfterS === undefined ? '' : `Retry-After: ${e.retryAfterS}\r\n`));
}
