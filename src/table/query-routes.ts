import { normaliseHost } from './host.js';
import { makeRoute, preferred, type Route, type RowProblem } from './route.js';
import { RouteTable } from './route-table.js';

/** Several rows of the documented query for one host: which one won and which lost. */
export interface Duplicate {
  readonly host: string;
  readonly chosen: Route;
  readonly others: readonly Route[];
}

export interface QueryRoutes {
  readonly routes: RouteTable;
  readonly problems: readonly RowProblem[];
  readonly duplicates: readonly Duplicate[];
  /** Public IPs of the regions the rows name (the poll path only sees regions with routes). */
  readonly regionAddresses: ReadonlySet<string>;
}

/**
 * Turns the documented query's rows into the route map: names normalised, values validated
 * (a bad row is reported and skipped, the others still load), duplicates resolved by
 * `compareRoutes`.
 */
export function routesFromQueryRows(rows: readonly Readonly<Record<string, unknown>>[]): QueryRoutes {
  const byHost = new Map<string, Route>();
  const losers = new Map<string, Route[]>();
  const problems: RowProblem[] = [];
  const regionAddresses = new Set<string>();
  for (const row of rows) {
    const name = row.domain_name;
    const host = typeof name === 'string' ? normaliseHost(name) : undefined;
    if (host === undefined) {
      problems.push({ domain: String(name), field: 'domain_name', value: String(name), reason: 'not a valid host name' });
      continue;
    }
    const result = makeRoute(host, name as string, row.vm_private_ip, row.vm_port, row.vm_region_id, row.region_public_ip);
    if (!result.ok) {
      problems.push(result.problem);
      continue;
    }
    regionAddresses.add(result.route.regionPublicIp);
    const current = byHost.get(host);
    if (current === undefined) {
      byHost.set(host, result.route);
      continue;
    }
    const [win, lose] = preferred(result.route, current) ? [result.route, current] : [current, result.route];
    byHost.set(host, win);
    const list = losers.get(host);
    if (list === undefined) losers.set(host, [lose]);
    else list.push(lose);
  }
  const duplicates: Duplicate[] = [];
  for (const [host, others] of losers) duplicates.push({ host, chosen: byHost.get(host)!, others });
  return { routes: RouteTable.from(byHost, byHost.size), problems, duplicates, regionAddresses };
}
