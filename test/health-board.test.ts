import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../src/log/logger.js';
import { HealthChecker, type HealthTarget } from '../src/proxy/health.js';
import { HealthBoard, SharedHealth, type HealthAsk } from '../src/workers/health-board.js';
import { startBackend, type Backend } from './support/backend.js';

// The board between a real HealthChecker (probing a real backend) and a worker's view of it,
// wired in one thread as worker-pool.ts and worker-main.ts wire them across two.

describe('HealthBoard and SharedHealth', () => {
  let vm: Backend;
  before(async () => {
    vm = await startBackend('vm');
  });
  after(async () => {
    await vm.close();
  });

  function wire(ttlMs: number) {
    const board = new HealthBoard();
    const checker = new HealthChecker({ timeoutMs: 2_000, cacheTtlMs: ttlMs, logger: createLogger('error'), onRecord: board.record });
    let asks = 0;
    const ask: HealthAsk = {
      check: async (t) => {
        asks += 1;
        const result = await checker.check(t);
        return { result, slot: board.slotOf(t, checker.last(t)) };
      },
      mark: (t, reason) => checker.markUnhealthy(t, reason),
    };
    const views = [new SharedHealth(board.buffer, ask, ttlMs, 2_000), new SharedHealth(board.buffer, ask, ttlMs, 2_000)];
    return { checker, views, asks: () => asks };
  }

  it('a worker asks once, then reads fresh results from the board; two workers share one probe', async () => {
    const { checker, views, asks } = wire(60_000);
    const target: HealthTarget = { ip: '127.0.0.1', port: vm.port };
    const probesBefore = vm.probes().length;
    assert.equal(views[0]!.peek(target), undefined);
    const [a, b] = await Promise.all([views[0]!.check(target), views[1]!.check(target)]);
    assert.deepEqual(a, { healthy: true, status: 200 });
    assert.deepEqual(b, a);
    assert.equal(vm.probes().length - probesBefore, 1, 'one probe for both workers');
    for (const v of views) assert.deepEqual(v.peek(target), { healthy: true, status: 200 });
    assert.equal(asks(), 2);
    // A passive mark from one worker reaches the other through the board.
    views[0]!.markUnhealthy(target, 'ECONNREFUSED');
    const seen = views[1]!.peek(target);
    assert.equal(seen?.healthy, false);
    checker.close();
  });

  it('with TTL 0 (probe per request) nothing is read from the board', async () => {
    const { checker, views } = wire(0);
    const target: HealthTarget = { ip: '127.0.0.1', port: vm.port };
    const probesBefore = vm.probes().length;
    await views[0]!.check(target);
    assert.equal(views[0]!.peek(target), undefined);
    await views[0]!.check(target);
    assert.equal(vm.probes().length - probesBefore, 2);
    checker.close();
  });
});
