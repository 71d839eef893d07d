import { failure, type Failure } from '../errors.js';
import type { RouteSnapshot } from '../sync/route-store.js';
import { parseHostHeader } from '../table/host.js';
import type { Route } from '../table/route.js';

export interface Upstream {
  readonly ip: string;
  readonly port: number;
}

export type NotFoundCode = 'NO_ROUTE' | 'HOST_IP_LITERAL' | Extract<ReturnType<typeof parseHostHeader>, { ok: false }>['code'];

export type Decision =
  | { readonly kind: 'not-ready' }
  /** `code` says why: NO_ROUTE, HOST_IP_LITERAL, or what is wrong with the Host header. */
  | ({ readonly kind: 'not-found'; readonly host: string } & Failure<NotFoundCode>)
  | { readonly kind: 'same-region'; readonly route: Route; readonly upstream: Upstream }
  | { readonly kind: 'cross-region'; readonly route: Route; readonly upstream: Upstream };

const NO_ROUTE = failure('NO_ROUTE', 'no route for host');

/**
 * The routing decision, pure: which upstream a request with this Host goes to, from one snapshot.
 * Same region → the VM itself (after a health check); another region → that region's load
 * balancer on `crossRegionPort`, with the Host preserved.
 */
export function decide(
  snapshot: RouteSnapshot | undefined,
  hostHeader: string | undefined,
  regionId: string,
  crossRegionPort: number,
): Decision {
  if (snapshot === undefined) return { kind: 'not-ready' };
  const parsed = parseHostHeader(hostHeader);
  if (!parsed.ok) return { kind: 'not-found', host: hostHeader ?? '', ...parsed };
  // Sites are reached by name; an address in Host is a scanner or a misconfiguration.
  if (parsed.ipLiteral) return { kind: 'not-found', host: parsed.host, ...failure('HOST_IP_LITERAL', 'IP address in Host header') };
  const route = snapshot.routes.get(parsed.host);
  if (route === undefined) return { kind: 'not-found', host: parsed.host, ...NO_ROUTE };
  return routeTarget(route, regionId, crossRegionPort);
}

/** Where a route is proxied from this proxy's region: the VM itself, or its region's load balancer. */
export function routeTarget(route: Route, regionId: string, crossRegionPort: number): Extract<Decision, { route: Route }> {
  if (route.vmRegionId === regionId) return { kind: 'same-region', route, upstream: { ip: route.vmIp, port: route.vmPort } };
  return { kind: 'cross-region', route, upstream: { ip: route.regionPublicIp, port: crossRegionPort } };
}

/** `ip:port`, IPv6 bracketed, as used in URLs, logs and Host headers. */
export function formatUpstream(u: Upstream): string {
  return u.ip.includes(':') ? `[${u.ip}]:${u.port}` : `${u.ip}:${u.port}`;
}
