import pg from 'pg';
import { ROUTES_QUERY } from '../../src/db/routes-query.js';
import { routesFromQueryRows } from '../../src/table/query-routes.js';
import type { RouteStore } from '../../src/sync/route-store.js';
import type { RouteTable } from '../../src/table/route-table.js';

/** host → "ip|port|region|lb", sorted: a form in which two route tables compare with deepEqual. */
export function tableOf(routes: RouteTable | undefined): [string, string][] {
  if (routes === undefined) return [];
  return [...routes.entries()]
    .map(([h, r]): [string, string] => [h, `${r.vmIp}|${r.vmPort}|${r.vmRegionId}|${r.regionPublicIp}`])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** The route table the documented query gives right now. */
export async function queryTable(db: pg.ClientBase | pg.Pool): Promise<[string, string][]> {
  const { rows } = await db.query<Record<string, unknown>>(ROUTES_QUERY);
  return tableOf(routesFromQueryRows(rows).routes);
}

/**
 * Waits until the store's table equals the documented query's result; throws with the
 * difference when it does not within `timeoutMs`.
 */
export async function waitForQueryTable(store: RouteStore, db: pg.ClientBase | pg.Pool, timeoutMs = 5000): Promise<number> {
  const expected = JSON.stringify(await queryTable(db));
  const started = performance.now();
  for (;;) {
    const actual = tableOf(store.current?.routes);
    if (JSON.stringify(actual) === expected) return performance.now() - started;
    if (performance.now() - started > timeoutMs) {
      const want = new Map(JSON.parse(expected) as [string, string][]);
      const have = new Map(actual);
      const diff: string[] = [];
      for (const [h, v] of want) if (have.get(h) !== v) diff.push(`${h}: want ${v}, have ${have.get(h) ?? '(none)'}`);
      for (const [h, v] of have) if (!want.has(h)) diff.push(`${h}: want (none), have ${v}`);
      throw new Error(`route table differs from the documented query after ${timeoutMs} ms:\n${diff.slice(0, 20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}
