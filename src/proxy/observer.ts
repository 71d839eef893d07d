/**
 * What the request path reports about each request and probe, for metrics. The proxy calls
 * these synchronously on the hot path: implementations must be cheap and must not throw.
 */

/** How a request was routed (or why it was not). */
export type RouteKind = 'same-region' | 'cross-region' | 'not-found' | 'not-ready' | 'loop' | 'rejected';

export interface ProxyObserver {
  /**
   * One finished request: the status sent to the client, the whole duration, and the time to the
   * upstream's response headers when an upstream was contacted.
   */
  request(kind: RouteKind, status: number, durationSeconds: number, upstreamSeconds: number | undefined): void;
  /** One health probe finished (not a cache hit). */
  probe(healthy: boolean, durationSeconds: number): void;
}

export const NO_OBSERVER: ProxyObserver = {
  request: () => undefined,
  probe: () => undefined,
};
