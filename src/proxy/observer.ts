/**
 * What the request path reports about each request and probe, for metrics. The proxy calls
 * these synchronously on the hot path: implementations must be cheap and must not throw.
 */

/** How a request was routed (or why it was not). */
export type RouteKind =
  'same-region' | 'cross-region' | 'not-found' | 'not-ready' | 'loop' | 'rejected' | 'draining' | 'acme-challenge' | 'https-redirect';

/**
 * Every route kind with what it counts (a metric's help text). `satisfies` makes a kind added to
 * RouteKind but not listed here a compile error, so the metrics never miss one.
 */
export const ROUTE_KIND_HELP = {
  'same-region': 'proxied to a VM in this region (after its health check)',
  'cross-region': "proxied to another region's load balancer",
  'not-found': 'no route for the Host, or an invalid Host (404)',
  'not-ready': 'the route table is not loaded yet (503)',
  loop: 'marked by one of our proxies and would cross regions again (508)',
  rejected: 'refused before routing: a bad request target or Host, a non-WebSocket upgrade, CONNECT, a malformed or slow client',
  draining: 'a WebSocket upgrade refused while the proxy shuts down (503)',
  'acme-challenge': "an HTTP-01 token of a running certificate order answered on the plain port (200, the CA's request)",
  'https-redirect': 'a plain-HTTP request for a name that has a certificate, sent to https (308)',
} as const satisfies Record<RouteKind, string>;

/** The route kinds, in a stable order (metrics pre-create their label values from it). */
export const ROUTE_KINDS: readonly RouteKind[] = Object.keys(ROUTE_KIND_HELP) as RouteKind[];

export interface ProxyObserver {
  /**
   * One finished request: the status sent to the client, the whole duration, and the time to the
   * upstream's response headers when an upstream was contacted.
   */
  request(kind: RouteKind, status: number, durationSeconds: number, upstreamSeconds: number | undefined): void;
  /** One health probe finished (not a cache hit). */
  probe(healthy: boolean, durationSeconds: number): void;
  /** A client connection was closed on arrival: the client connection limit was reached. */
  connectionDropped(): void;
}

export const NO_OBSERVER: ProxyObserver = {
  request: () => undefined,
  probe: () => undefined,
  connectionDropped: () => undefined,
};
