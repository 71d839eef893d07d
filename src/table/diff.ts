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

export function isEmptyDiff(d: RouteDiff): boolean {
  return d.added.length === 0 && d.removed.length === 0 && d.changed.length === 0;
}
