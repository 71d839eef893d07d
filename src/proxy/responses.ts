import type { ServerResponse } from 'node:http';

/**
 * Error responses. Statuses and bodies are the service description's error table, verbatim;
 * `not-ready` is ours: before the first route table is loaded the proxy cannot know a site is
 * missing, so it answers 503 with Retry-After instead of 404.
 */
export const ERRORS = {
  'not-found': { status: 404, body: 'Service Not Found' },
  unhealthy: { status: 503, body: 'Service Unavailable - VM not responding' },
  'bad-gateway': { status: 502, body: 'Bad Gateway' },
  internal: { status: 500, body: 'Internal Server Error' },
  'not-ready': { status: 503, body: 'Service Unavailable - routes not loaded yet' },
} as const;

export type ErrorKind = keyof typeof ERRORS;

/** Seconds a client should wait before retrying while the route table is not loaded. */
export const NOT_READY_RETRY_AFTER_S = 1;

const BODIES = Object.fromEntries(Object.entries(ERRORS).map(([k, v]) => [k, Buffer.from(v.body)])) as Record<ErrorKind, Buffer>;

/**
 * Writes one error response, unless headers already went out (then the connection is cut, which
 * is the only honest signal left to the client).
 */
export function sendError(res: ServerResponse, kind: ErrorKind): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (res.writableEnded) return;
  const body = BODIES[kind];
  const headers: Record<string, string | number> = {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': body.length,
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
  };
  if (kind === 'not-ready') headers['retry-after'] = NOT_READY_RETRY_AFTER_S;
  res.writeHead(ERRORS[kind].status, headers);
  res.end(body);
}
