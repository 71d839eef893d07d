/**
 * What the request path pushes: requests by route kind and status, their latency, and health
 * probes. Built as the ProxyObserver the server and the health checker call on the hot path:
 * label children are resolved once, so a request costs a Map lookup and two observations.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { ROUTE_KINDS, type ProxyObserver, type RouteKind } from '../proxy/observer.js';

/** Seconds; from a fast local hop to a slow upload. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const PROBE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5];

interface Observe {
  observe(value: number): void;
}

/** A histogram by route kind, with a child per kind made up front (the series exist from the first scrape). */
function histogramByKind(registry: Registry, name: string, help: string): ReadonlyMap<RouteKind, Observe> {
  const h = new Histogram({ name, help, labelNames: ['kind'] as const, buckets: LATENCY_BUCKETS, registers: [registry] });
  for (const kind of ROUTE_KINDS) h.zero({ kind });
  return new Map(ROUTE_KINDS.map((k) => [k, h.labels(k)]));
}

/** Requests counted by kind and status; a child per pair, made on first use (statuses are open-ended). */
function requestCounter(registry: Registry): (kind: RouteKind, status: number) => void {
  const requests = new Counter({
    name: 'edgeproxy_requests_total',
    help: 'Requests answered on the public port, by how they were routed and the status sent',
    labelNames: ['kind', 'status'] as const,
    registers: [registry],
  });
  const children = new Map<string, { inc(): void }>();
  return (kind, status) => {
    const key = `${kind}|${status}`;
    let child = children.get(key);
    if (child === undefined) {
      child = requests.labels(kind, String(status));
      children.set(key, child);
    }
    child.inc();
  };
}

function probeRecorder(registry: Registry): (healthy: boolean, seconds: number) => void {
  const probes = new Counter({
    name: 'edgeproxy_health_probes_total',
    help: 'Health probes sent to same-region VMs (cache hits are not probes), by result',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'edgeproxy_health_probe_duration_seconds',
    help: 'Duration of health probes',
    buckets: PROBE_BUCKETS,
    registers: [registry],
  });
  const healthy = probes.labels('healthy');
  const unhealthy = probes.labels('unhealthy');
  return (isHealthy, seconds) => {
    (isHealthy ? healthy : unhealthy).inc();
    duration.observe(seconds);
  };
}

/** The request-path metrics on `registry`, as the observer to hand to ProxyServer and HealthChecker. Never throws. */
export function requestMetrics(registry: Registry): ProxyObserver {
  const countRequest = requestCounter(registry);
  const duration = histogramByKind(
    registry,
    'edgeproxy_request_duration_seconds',
    'Whole request duration on the public port (until the response ended), by route kind',
  );
  const upstream = histogramByKind(
    registry,
    'edgeproxy_upstream_response_seconds',
    "Time from forwarding to the upstream's response headers (VM or region load balancer), by route kind",
  );
  const recordProbe = probeRecorder(registry);
  const dropped = new Counter({
    name: 'edgeproxy_client_connections_dropped_total',
    help: 'Client connections closed on arrival because the client connection limit (below the open-files limit) was reached',
    registers: [registry],
  });
  return {
    request(kind, status, durationSeconds, upstreamSeconds) {
      try {
        countRequest(kind, status);
        duration.get(kind)!.observe(durationSeconds);
        if (upstreamSeconds !== undefined) upstream.get(kind)!.observe(upstreamSeconds);
      } catch {
        // metrics must never break a request
      }
    },
    probe(isHealthy, durationSeconds) {
      try {
        recordProbe(isHealthy, durationSeconds);
      } catch {
        // idem
      }
    },
    connectionDropped() {
      try {
        dropped.inc();
      } catch {
        // idem
      }
    },
  };
}
