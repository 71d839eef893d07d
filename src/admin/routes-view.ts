/**
 * The route table as the admin API shows it: the whole table (GET /routes) and how one host would
 * be routed right now, and why (GET /routes/<host>). Pure apart from reading the health cache.
 */
import { decide, formatUpstream, routeTarget, type Decision } from '../proxy/decide.js';
import type { HealthChecker, HealthSnapshot } from '../proxy/health.js';
import type { RouteSnapshot } from '../sync/route-store.js';
import type { SyncStatus } from '../sync/status.js';
import type { Route } from '../table/route.js';
import type { RouteTable } from '../table/route-table.js';

export interface RoutingContext {
  readonly regionId: string;
  readonly crossRegionPort: number;
}

export type RouteKindView = 'same-region' | 'cross-region';

export interface RouteView {
  readonly host: string;
  readonly kind: RouteKindView;
  /** Where requests go: the VM (same region) or the region's load balancer (cross region). */
  readonly target: string;
  readonly vmIp: string;
  readonly vmPort: number;
  readonly vmRegionId: string;
  readonly regionPublicIp: string;
}

export interface TableView {
  readonly ready: boolean;
  readonly regionId: string;
  readonly generation: number | null;
  readonly source: string | null;
  readonly publishedAt: string | null;
  readonly position: { readonly lsn: string; readonly commitTime: string | null } | null;
  readonly sync: SyncStatusView;
  /** Routes in the table (matching `contains`, when given). */
  readonly count: number;
  /** The first `limit` of them by host name. */
  readonly routes: readonly RouteView[];
  /** True when `count` > `routes.length`. */
  readonly truncated: boolean;
}

export interface TableQuery {
  /** At most this many routes in the answer (the smallest host names). */
  readonly limit: number;
  /** Only hosts containing this (already lowercase) text. */
  readonly contains: string | undefined;
  /** Only hosts after this one by name: the next page (`after` = the last host of the previous page). */
  readonly after?: string | undefined;
}

/** Default and maximum of `limit`: a million-route table must not be serialised in one go on the event loop. */
export const DEFAULT_ROUTE_LIMIT = 1000;
export const MAX_ROUTE_LIMIT = 100_000;

export type SyncStatusView = Omit<SyncStatus, 'lastFullLoadAt'> & { readonly lastFullLoadAt: string | null };

export interface HealthView {
  /** `unknown`: no probe yet (the first request will probe). */
  readonly state: 'healthy' | 'unhealthy' | 'unknown';
  readonly status: number | null;
  readonly reason: string | null;
  readonly ageMs: number | null;
}

export interface ExplainView {
  /** As asked. */
  readonly query: string;
  /** Normalised, as looked up; null when the name is not a valid host. */
  readonly host: string | null;
  readonly decision: 'not-ready' | 'not-found' | RouteKindView;
  /** One sentence for people. */
  readonly reason: string;
  readonly route: RouteView | null;
  readonly health: HealthView | null;
  readonly generation: number | null;
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

export function viewStatus(s: SyncStatus): SyncStatusView {
  return { ...s, lastFullLoadAt: iso(s.lastFullLoadAt) };
}

export function viewRoute(route: Route, ctx: RoutingContext): RouteView {
  const d = routeTarget(route, ctx.regionId, ctx.crossRegionPort);
  return {
    host: route.host,
    kind: d.kind,
    target: formatUpstream(d.upstream),
    vmIp: route.vmIp,
    vmPort: route.vmPort,
    vmRegionId: route.vmRegionId,
    regionPublicIp: route.regionPublicIp,
  };
}

/** Host ids scanned between two checks of the clock, and the work between two event-loop turns. */
const SCAN_BATCH = 2048;
const SCAN_SLICE_MS = 5;

/**
 * The table (or the hosts containing `contains`, or after `after`), the first `limit` by host
 * name. The snapshot is one immutable version, so the scan gives the event loop a turn every
 * few milliseconds (a million routes take longer than a request may wait) and still reads one table.
 */
export async function viewTable(
  snapshot: RouteSnapshot | undefined,
  status: SyncStatus,
  ctx: RoutingContext,
  query: TableQuery,
): Promise<TableView> {
  let count = 0;
  const smallest = new SmallestK<Route>(query.limit);
  const table = snapshot?.routes;
  // Hosts are compared in the table's bytes: the name and the route are made only for a host
  // that enters the page (or must be searched for `contains`), not for a million others per page.
  const offer = (t: RouteTable, id: number) => {
    if (!t.routedAt(id)) return;
    if (query.after !== undefined && t.compareHostAt(id, query.after) <= 0) return;
    const host = query.contains === undefined ? undefined : t.hostAt(id);
    if (host !== undefined && !host.includes(query.contains!)) return;
    count += 1;
    const bound = smallest.bound;
    if (bound !== undefined && (host === undefined ? t.compareHostAt(id, bound) : host < bound ? -1 : 1) >= 0) return;
    const name = host ?? t.hostAt(id);
    smallest.offer(name, t.routeAt(id)!);
  };
  let sliceStart = performance.now();
  for (let from = 0; table !== undefined && from < table.hostCount; from += SCAN_BATCH) {
    for (let id = from; id < Math.min(from + SCAN_BATCH, table.hostCount); id++) offer(table, id);
    if (performance.now() - sliceStart >= SCAN_SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
  const routes = smallest.sorted().map((r) => viewRoute(r, ctx));
  return {
    ready: snapshot !== undefined,
    regionId: ctx.regionId,
    generation: snapshot?.generation ?? null,
    source: snapshot?.source ?? null,
    publishedAt: iso(snapshot?.publishedAt),
    position: snapshot?.position === undefined ? null : { lsn: snapshot.position.lsn, commitTime: iso(snapshot.position.commitTime) },
    sync: viewStatus(status),
    count,
    routes,
    truncated: count > routes.length,
  };
}

/**
 * The k entries with the smallest keys, in O(n log k) over n offers: a max-heap of size k, so a
 * page of a million-route table does not sort the whole table.
 */
class SmallestK<T> {
  readonly #heap: { key: string; value: T }[] = [];
  constructor(readonly k: number) {}

  /** Once k entries are held, the largest key: only a smaller one gets in. */
  get bound(): string | undefined {
    return this.#heap.length < this.k ? undefined : this.#heap[0]?.key;
  }

  offer(key: string, value: T): void {
    const h = this.#heap;
    if (h.length < this.k) {
      h.push({ key, value });
      this.#up(h.length - 1);
    } else if (this.k > 0 && key < h[0]!.key) {
      h[0] = { key, value };
      this.#down(0);
    }
  }

  sorted(): T[] {
    return [...this.#heap].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((e) => e.value);
  }

  #up(i: number): void {
    const h = this.#heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.key >= h[i]!.key) return;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  #down(i: number): void {
    const h = this.#heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let largest = i;
      if (l < h.length && h[l]!.key > h[largest]!.key) largest = l;
      if (r < h.length && h[r]!.key > h[largest]!.key) largest = r;
      if (largest === i) return;
      [h[largest], h[i]] = [h[i]!, h[largest]!];
      i = largest;
    }
  }
}

/** How a request with this Host would be routed now, with the reason; uses the proxy's own decision. */
export function explainHost(
  query: string,
  snapshot: RouteSnapshot | undefined,
  health: Pick<HealthChecker, 'last'>,
  ctx: RoutingContext,
): ExplainView {
  const d = decide(snapshot, query, ctx.regionId, ctx.crossRegionPort);
  const base = { query, generation: snapshot?.generation ?? null };
  switch (d.kind) {
    case 'not-ready':
      return {
        ...base,
        host: null,
        decision: 'not-ready',
        reason: 'the route table is not loaded yet: every request gets 503',
        route: null,
        health: null,
      };
    case 'not-found':
      return { ...base, ...explainNotFound(d), decision: 'not-found', route: null, health: null };
    case 'same-region': {
      const route = viewRoute(d.route, ctx);
      const hv = healthView(health.last(d.upstream));
      const reason = `the VM is in this proxy's region (${ctx.regionId}): proxied directly to ${route.target} after a health check; last health check: ${healthText(hv)}`;
      return { ...base, host: d.route.host, decision: 'same-region', reason, route, health: hv };
    }
    case 'cross-region': {
      const route = viewRoute(d.route, ctx);
      const reason = `the VM is in region ${d.route.vmRegionId}, not this proxy's (${ctx.regionId}): proxied to that region's load balancer ${route.target} with the Host header unchanged`;
      return { ...base, host: d.route.host, decision: 'cross-region', reason, route, health: null };
    }
  }
}

function explainNotFound(d: Extract<Decision, { kind: 'not-found' }>): Pick<ExplainView, 'host' | 'reason'> {
  if (d.code === 'NO_ROUTE') {
    return {
      host: d.host,
      reason: `no route for ${d.host}: the documented query returns no row for it (no such domain, not verified, deployment not ready, or VM not running); requests get 404`,
    };
  }
  return { host: null, reason: `not a valid host name (${d.message}); requests get 404` };
}

function healthView(last: HealthSnapshot | undefined): HealthView {
  if (last === undefined) return { state: 'unknown', status: null, reason: null, ageMs: null };
  return {
    state: last.result.healthy ? 'healthy' : 'unhealthy',
    status: last.result.status ?? null,
    reason: last.result.healthy ? null : last.result.reason,
    ageMs: Math.round(last.ageMs),
  };
}

function healthText(hv: HealthView): string {
  if (hv.state === 'unknown') return 'not probed yet (the next request probes it)';
  if (hv.state === 'healthy') return `healthy (status ${hv.status}) ${formatAge(hv.ageMs!)} ago`;
  return `unhealthy (${hv.reason}) ${formatAge(hv.ageMs!)} ago, so requests get 503 until a probe succeeds`;
}

function formatAge(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
