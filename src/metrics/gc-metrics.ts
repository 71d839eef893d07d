import { constants, PerformanceObserver, type NodeGCPerformanceDetail } from 'node:perf_hooks';
import { Histogram, type Registry } from 'prom-client';

/**
 * Buckets of `edgeproxy_nodejs_gc_duration_seconds` (GC pauses from perf_hooks, by kind):
 * prom-client's default (1 ms, 10 ms, 100 ms, 1 s…) cannot tell a 2 ms scavenge from a 9 ms one,
 * and the route table's target is no pause over 10 ms (issue 13).
 */
export const GC_PAUSE_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];

const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/**
 * The GC pause histogram for a worker thread's registry: the same name, labels and buckets as the
 * main thread's (prom-client's default metrics), so /metrics sums every thread's pauses. The
 * process-wide default metrics (CPU, memory, handles) stay the main thread's alone.
 */
export function workerGcMetrics(registry: Registry): void {
  const pauses = new Histogram({
    name: 'edgeproxy_nodejs_gc_duration_seconds',
    help: 'Garbage collection duration by kind, one of major, minor, incremental or weakcb.',
    labelNames: ['kind'],
    buckets: GC_PAUSE_BUCKETS,
    registers: [registry],
  });
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as { detail?: NodeGCPerformanceDetail }).detail;
      const kind = KINDS[detail?.kind ?? -1] ?? 'unknown';
      pauses.observe({ kind }, entry.duration / 1000);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
}
