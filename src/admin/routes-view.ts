/**
 * The route table as the admin API shows it: the whole table (GET /routes) and how one host would
 * be routed right now, and why (GET /routes/<host>). Pure apart from reading the health cache.
 */
import { decide, formatUpstream } from '../proxy/decide.js';
import type { HealthChecker } from '../proxy/health.js';
import type { RouteSnapshot } from '../sync/route-store.js';
import type { SyncStatus } from '../sync/status.js';
import type { Route } from '../table/route.js';

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
  readonly count: number;
  readonly routes: readonly RouteView[];
}

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
  const same = route.vmRegionId === ctx.regionId;
  return {
    host: route.host,
    kind: same ? 'same-region' : 'cross-region',
    target: same ? formatUpstream({ ip: route.vmIp, port: route.vmPort }) : formatUpstream({ ip: route.regionPublicIp, port: ctx.crossRegionPort }),
    vmIp: route.vmIp,
    vmPort: route.vmPort,
    vmRegionId: route.vmRegionId,
    regionPublicIp: route.regionPublicIp,
  };
}

/** The whole table, sorted by host. */
export function viewTable(snapshot: RouteSnapshot | undefined, status: SyncStatus, ctx: RoutingContext): TableView {
  const routes = snapshot === undefined ? [] : [...snapshot.routes.values()].map((r) => viewRoute(r, ctx));
  routes.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  return {
    ready: snapshot !== undefined,
    regionId: ctx.regionId,
    generation: snapshot?.generation ?? null,
    source: snapshot?.source ?? null,
    publishedAt: iso(snapshot?.publishedAt),
    position: snapshot?.position === undefined ? null : { lsn: snapshot.position.lsn, commitTime: iso(snapshot.position.commitTime) },
    sync: viewStatus(status),
    count: routes.length,
    routes,
  };
}

/** How a request with this Host would be routed now, with the reason; uses the proxy's own decision. */
export function explainHost(query: string, snapshot: RouteSnapshot | undefined, health: Pick<HealthChecker, 'last'>, ctx: RoutingContext): ExplainView {
  const d = decide(snapshot, query, ctx.regionId, ctx.crossRegionPort);
  const generation = snapshot?.generation ?? null;
  switch (d.kind) {
    case 'not-ready':
      return { query, host: null, decision: 'not-ready', reason: 'the route table is not loaded yet: every request gets 503', route: null, health: null, generation };
    case 'not-found': {
      const valid = d.reason === 'no route for host';
      return {
        query,
        host: valid ? d.host : null,
        decision: 'not-found',
        reason: valid
          ? `no route for ${d.host}: the documented query returns no row for it (no such domain, not verified, deployment not ready, or VM not running); requests get 404`
          : `not a valid host name (${d.reason}); requests get 404`,
        route: null,
        health: null,
        generation,
      };
    }
    case 'same-region': {
      const route = viewRoute(d.route, ctx);
      const last = health.last(d.upstream);
      const hv: HealthView =
        last === undefined
          ? { state: 'unknown', status: null, reason: null, ageMs: null }
          : {
              state: last.result.healthy ? 'healthy' : 'unhealthy',
              status: last.result.status ?? null,
              reason: last.result.healthy ? null : last.result.reason,
              ageMs: Math.round(last.ageMs),
            };
      const healthText =
        hv.state === 'unknown'
          ? 'not probed yet (the next request probes it)'
          : hv.state === 'healthy'
            ? `healthy (status ${hv.status}) ${formatAge(hv.ageMs!)} ago`
            : `unhealthy (${hv.reason}) ${formatAge(hv.ageMs!)} ago, so requests get 503 until a probe succeeds`;
      return {
        query,
        host: d.route.host,
        decision: 'same-region',
        reason: `the VM is in this proxy's region (${ctx.regionId}): proxied directly to ${route.target} after a health check; last health check: ${healthText}`,
        route,
        health: hv,
        generation,
      };
    }
    case 'cross-region': {
      const route = viewRoute(d.route, ctx);
      return {
        query,
        host: d.route.host,
        decision: 'cross-region',
        reason: `the VM is in region ${d.route.vmRegionId}, not this proxy's (${ctx.regionId}): proxied to that region's load balancer ${route.target} with the Host header unchanged`,
        route,
        health: null,
        generation,
      };
    }
  }
}

function formatAge(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
