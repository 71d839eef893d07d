import { compareRoutes } from './route.js';
import type { RouteTable } from './route-table.js';

export interface RouteDiff {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly string[];
}

/** Which hosts differ between two route maps. Linear in the table size: used per full reload, not per change. */
export function diffRoutes(before: RouteTable | undefined, after: RouteTable): RouteDiff {
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  for (const [host, route] of after.entries()) {
    const old = before?.get(host);
    if (old === undefined) added.push(host);
    else if (old !== route && compareRoutes(old, route) !== 0) changed.push(host);
  }
  if (before !== undefined) for (const host of before.keys()) if (!after.has(host)) removed.push(host);
  return { added, removed, changed };
}

/** Host ids compared between two looks at the clock. */
const DIFF_BATCH = 2048;

/**
 * `diffRoutes` giving the event loop a turn every `sliceMs` of work: at a million routes the
 * whole comparison takes longer than a request may wait (a re-bootstrap diffs the new table
 * against the one serving). Both tables are immutable versions, so the slices compare one pair.
 */
export async function diffRoutesSliced(before: RouteTable | undefined, after: RouteTable, sliceMs = 2): Promise<RouteDiff> {
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  let sliceStart = performance.now();
  const turn = async () => {
    if (performance.now() - sliceStart < sliceMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    sliceStart = performance.now();
  };
  for (let from = 0; from < after.hostCount; from += DIFF_BATCH) {
    after.forEachIn(from, from + DIFF_BATCH, (route, host) => {
      const old = before?.get(host);
      if (old === undefined) added.push(host);
      else if (compareRoutes(old, route) !== 0) changed.push(host);
    });
    await turn();
  }
  for (let from = 0; before !== undefined && from < before.hostCount; from += DIFF_BATCH) {
    before.forEachIn(from, from + DIFF_BATCH, (_route, host) => {
      if (!after.has(host)) removed.push(host);
    });
    await turn();
  }
  return { added, removed, changed };
}

export function isEmptyDiff(d: RouteDiff): boolean {
  return d.added.length === 0 && d.removed.length === 0 && d.changed.length === 0;
}
