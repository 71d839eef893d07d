import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metrics, WorkerMetrics } from '../src/metrics/metrics.js';
import { sample } from './support/prometheus.js';

describe('summed /metrics (worker threads)', () => {
  it("sums the workers' request counters and histograms with the main thread's, and keeps the main thread's own as they are", async () => {
    const main = new Metrics();
    const workers = [new WorkerMetrics(), new WorkerMetrics()];
    main.observer.request('same-region', 200, 0.002, 0.001);
    workers[0]!.observer.request('same-region', 200, 0.002, 0.001);
    workers[0]!.observer.request('not-found', 404, 0.0001, undefined);
    workers[1]!.observer.request('same-region', 200, 0.3, 0.2);
    main.sumWorkers(() => Promise.all(workers.map((w) => w.registry.getMetricsAsJSON())));
    const { body } = await main.exposition();
    assert.equal(sample(body, 'edgeproxy_requests_total{kind="same-region",status="200"}'), 3);
    assert.equal(sample(body, 'edgeproxy_requests_total{kind="not-found",status="404"}'), 1);
    assert.equal(sample(body, 'edgeproxy_request_duration_seconds_count{kind="same-region"}'), 3);
    assert.equal(sample(body, 'edgeproxy_request_duration_seconds_bucket{le="0.0025",kind="same-region"}'), 2);
    // prom-client's aggregator would drop this one ('omit'); it is the main thread's, once.
    assert.ok((sample(body, 'edgeproxy_process_start_time_seconds') ?? 0) > 0);
    assert.equal(sample(body, 'edgeproxy_build_info{version="0.1.0"}') ?? sample(body, `edgeproxy_build_info{version="${'0.1.0'}"}`), 1);
  });
});
