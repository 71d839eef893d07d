import type pg from 'pg';
import { routesFromQueryRows, type QueryRoutes } from '../table/query-routes.js';
import { parseIp } from '../table/route.js';
import { ROUTES_QUERY } from './routes-query.js';

export interface LoadedRoutes extends QueryRoutes {
  readonly rowCount: number;
  readonly durationMs: number;
}

/**
 * Runs the documented query and turns its rows into a route map (see table/query-routes.ts).
 * Also reads every region's address: the query only names regions that have routes, and the
 * request path trusts X-Forwarded-For from any of our regions' load balancers.
 */
export async function loadRoutes(pool: pg.Pool): Promise<LoadedRoutes> {
  const started = performance.now();
  const result = await pool.query<Record<string, unknown>>(ROUTES_QUERY);
  const regions = await pool.query<{ public_ipv4: unknown }>('SELECT public_ipv4 FROM regions');
  const routes = routesFromQueryRows(result.rows);
  const regionAddresses = new Set(routes.regionAddresses);
  for (const r of regions.rows) {
    const ip = parseIp(r.public_ipv4);
    if (ip !== undefined) regionAddresses.add(ip);
  }
  return { ...routes, regionAddresses, rowCount: result.rows.length, durationMs: performance.now() - started };
}
