/**
 * One exposition for the whole process when worker threads serve requests: each worker keeps its
 * request metrics in a registry of its own and sends `getMetricsAsJSON()` when asked; they are
 * summed here with the main thread's (prom-client's AggregatorRegistry, as for cluster workers).
 * A metric only the main thread has (the table, the sync, the process) is taken as it is: the
 * aggregator would otherwise drop some of prom-client's defaults (`omit`) or sum gauges.
 */
import { AggregatorRegistry, type Registry } from 'prom-client';

/** What `registry.getMetricsAsJSON()` gives: plain values, so a worker can post them. */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

export async function summedExposition(main: Registry, workers: readonly MetricsJson[]): Promise<{ contentType: string; body: string }> {
  const fromWorkers = new Set(workers.flatMap((list) => list.map((m) => m.name)));
  const own = (await main.getMetricsAsJSON()).map((m) => ({ ...m, aggregator: fromWorkers.has(m.name) ? 'sum' : 'first' }));
  const summed = AggregatorRegistry.aggregate([own, ...workers]);
  return { contentType: main.contentType, body: await summed.metrics() };
}
