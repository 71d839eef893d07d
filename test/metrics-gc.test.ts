import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { WorkerMetrics } from '../src/metrics/metrics.js';

/** Total pauses a registry's GC histogram has counted. */
async function gcPauses(metrics: WorkerMetrics): Promise<number> {
  const json = await metrics.registry.getMetricsAsJSON();
  const gc = json.find((m) => m.name === 'edgeproxy_nodejs_gc_duration_seconds');
  assert.ok(gc !== undefined, 'a worker registry has edgeproxy_nodejs_gc_duration_seconds');
  return (gc.values as { metricName?: string; value: number }[])
    .filter((v) => v.metricName === 'edgeproxy_nodejs_gc_duration_seconds_count')
    .reduce((sum, v) => sum + v.value, 0);
}

describe('a worker thread reports its own GC pauses', () => {
  it('counts the collections of the thread it runs in, by kind, in the main thread buckets', async () => {
    const metrics = new WorkerMetrics();
    let keep: unknown[] = [];
    for (let round = 0; round < 200 && (await gcPauses(metrics)) === 0; round++) {
      // Young-generation garbage: a scavenge comes within a few MB.
      keep = Array.from({ length: 50_000 }, (_, i) => ({ i, s: `x${i}` }));
      await turn();
    }
    assert.ok(keep.length > 0);
    assert.ok((await gcPauses(metrics)) > 0, 'a collection was counted');
    const text = await metrics.registry.metrics();
    assert.match(text, /edgeproxy_nodejs_gc_duration_seconds_bucket\{le="0\.002",kind="(minor|major|incremental|weakcb)"\}/);
  });
});
