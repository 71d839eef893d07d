import { isIP } from 'node:net';

/** One routable host: what the documented query returns for it, validated and normalised. */
export interface Route {
  /** Normalised host name (lowercase ASCII, no trailing dot). */
  readonly host: string;
  /** VM private address, IPv4 or IPv6, without brackets or prefix length. */
  readonly vmIp: string;
  readonly vmPort: number;
  /** Region the VM runs in (lowercase UUID). */
  readonly vmRegionId: string;
  /** That region's load balancer address (IPv4). */
  readonly regionPublicIp: string;
}

/** A database value that could not be turned into a route, with enough context to find the row. */
export interface RowProblem {
  readonly domain: string;
  readonly field: string;
  readonly value: string;
  readonly reason: string;
}

export type RouteResult = { readonly ok: true; readonly route: Route } | { readonly ok: false; readonly problem: RowProblem };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function describe(value: unknown): string {
  if (typeof value === 'string') return value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return String(value);
}

/** inet values print as `10.0.0.1` or `10.0.0.1/24`: the host address is the part before the slash. */
export function parseIp(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const slash = value.indexOf('/');
  const ip = (slash >= 0 ? value.slice(0, slash) : value).toLowerCase();
  return isIP(ip) === 0 ? undefined : ip;
}

export function parsePort(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^[0-9]{1,5}$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : undefined;
}

export function parseUuid(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const id = value.toLowerCase();
  return UUID.test(id) ? id : undefined;
}

// The last VM address, region id and address validated, with the result: routes come in runs of
// one VM (a deployment moved: its thousand routes) or of a few regions (a million routes, three
// regions), and these values are equal (usually the same strings) in a run.
let lastVmIp: { readonly value: unknown; readonly parsed: string | undefined } = { value: undefined, parsed: undefined };
let lastRegion: { readonly value: unknown; readonly parsed: string | undefined } = { value: undefined, parsed: undefined };
let lastLb: { readonly value: unknown; readonly parsed: string | undefined } = { value: undefined, parsed: undefined };

/**
 * Validates the four target columns of a route for an already normalised host. Shared by the
 * query loader and the row-state model so that both reject exactly the same rows.
 */
export function makeRoute(
  host: string,
  rawName: string,
  vmIp: unknown,
  vmPort: unknown,
  vmRegionId: unknown,
  regionPublicIp: unknown,
): RouteResult {
  if (vmIp !== lastVmIp.value) lastVmIp = { value: vmIp, parsed: parseIp(vmIp) };
  const ip = lastVmIp.parsed;
  if (ip === undefined) return fail(rawName, 'vm_private_ip', vmIp, 'not an IP address');
  const port = parsePort(vmPort);
  if (port === undefined) return fail(rawName, 'vm_port', vmPort, 'not a port number 1-65535');
  if (vmRegionId !== lastRegion.value) lastRegion = { value: vmRegionId, parsed: parseUuid(vmRegionId) };
  const region = lastRegion.parsed;
  if (region === undefined) return fail(rawName, 'vm_region_id', vmRegionId, 'not a UUID');
  if (regionPublicIp !== lastLb.value) lastLb = { value: regionPublicIp, parsed: parseIp(regionPublicIp) };
  const lb = lastLb.parsed;
  if (lb === undefined) return fail(rawName, 'region_public_ip', regionPublicIp, 'not an IP address');
  return { ok: true, route: Object.freeze({ host, vmIp: ip, vmPort: port, vmRegionId: region, regionPublicIp: lb }) };
}

function fail(domain: string, field: string, value: unknown, reason: string): RouteResult {
  return { ok: false, problem: { domain, field, value: describe(value), reason } };
}

/**
 * The duplicate-domain rule: when several rows route the same host, the one with the smallest
 * (vm_region_id, vm_private_ip, vm_port, region_public_ip) wins. It uses only columns the
 * documented query returns, so polling and streaming agree, and every edge host picks the same
 * row whatever order the database returns them in. See docs/decisions/0002-duplicate-domains.md.
 */
export function compareRoutes(a: Route, b: Route): number {
  return cmp(a.vmRegionId, b.vmRegionId) || cmp(a.vmIp, b.vmIp) || a.vmPort - b.vmPort || cmp(a.regionPublicIp, b.regionPublicIp);
}

/** Whether `route` wins over `best` by the duplicate rule (anything wins over none). */
export function preferred(route: Route, best: Route | undefined): boolean {
  return best === undefined || compareRoutes(route, best) < 0;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function sameRoute(a: Route | undefined, b: Route | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  return a.host === b.host && compareRoutes(a, b) === 0;
}
