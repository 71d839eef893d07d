import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { viewTable } from '../src/admin/routes-view.js';
import type { RouteSnapshot } from '../src/sync/route-store.js';
import type { SyncStatus } from '../src/sync/status.js';
import { RouteTable } from '../src/table/route-table.js';
import { EMPTY_TLS } from '../src/tls/tls-state.js';

// The admin API's table page: the first `limit` hosts by name, chosen without sorting the table.

const REGION = '0a000000-0000-4000-8000-00000000000a';
const STATUS: SyncStatus = {
  mode: 'poll',
  feeding: 'poll',
  state: 'polling',
  streamError: undefined,
  lsn: undefined,
  lagMs: undefined,
  reconnects: 0,
  transactions: 0,
  lastFullLoadAt: undefined,
  lastFullLoadMs: undefined,
  fullLoadFailures: 0,
};

function snapshot(hosts: string[]): RouteSnapshot {
  const routes = RouteTable.from(
    hosts.map((host, i) => [host, { host, vmIp: '10.0.0.1', vmPort: 1000 + i, vmRegionId: REGION, regionPublicIp: '192.0.2.1' }]),
  );
  return { routes, regionAddresses: new Set(), tls: EMPTY_TLS, generation: 1, source: 'poll', publishedAt: 0, position: undefined };
}

/** Deterministic pseudo-random host names. */
function hosts(n: number, seed: number): string[] {
  let x = seed;
  const out = new Set<string>();
  while (out.size < n) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    out.add(`h${x.toString(36)}.example`);
  }
  return [...out];
}

describe('viewTable', () => {
  for (const [n, limit] of [
    [0, 5],
    [3, 5],
    [500, 1],
    [500, 37],
    [500, 499],
    [500, 500],
    [2000, 1000],
  ] as const) {
    it(`${n} routes, limit ${limit}: the ${Math.min(n, limit)} smallest host names, sorted; count and truncated`, async () => {
      const all = hosts(n, n + limit);
      const view = await viewTable(snapshot(all), STATUS, { regionId: REGION, crossRegionPort: 80 }, { limit, contains: undefined });
      assert.deepEqual(
        view.routes.map((r) => r.host),
        [...all].sort().slice(0, limit),
      );
      assert.equal(view.count, n);
      assert.equal(view.truncated, n > limit);
    });
  }

  it('contains filters before the limit; count is the number of matches', async () => {
    const all = hosts(300, 7);
    const view = await viewTable(snapshot(all), STATUS, { regionId: REGION, crossRegionPort: 80 }, { limit: 5, contains: 'a' });
    const matching = all.filter((h) => h.includes('a')).sort();
    assert.equal(view.count, matching.length);
    assert.deepEqual(
      view.routes.map((r) => r.host),
      matching.slice(0, 5),
    );
  });

  it('after gives the next page: paging by the last host of each page lists every host once, in order', async () => {
    const all = hosts(5000, 11);
    const ctx = { regionId: REGION, crossRegionPort: 80 };
    const snap = snapshot(all);
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const view = await viewTable(snap, STATUS, ctx, { limit: 700, contains: undefined, after });
      assert.equal(view.count, all.length - seen.length);
      if (view.routes.length === 0) break;
      seen.push(...view.routes.map((r) => r.host));
      after = view.routes[view.routes.length - 1]!.host;
    }
    assert.deepEqual(seen, [...all].sort());
  });
});
