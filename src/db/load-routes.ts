import type pg from 'pg';
import { routesFromQueryRows, type QueryRoutes } from '../table/query-routes.js';
import { parseIp } from '../table/route.js';
import { checkColumns } from './columns.js';
import { columnsProblem, DiagnosedError } from './diagnosis.js';
import { regionAddressesQuery, routesQuery } from './routes-query.js';
import type { TlsRows } from '../tls/tls-tables.js';
import { readTlsRows } from './tls-rows.js';

export interface LoadedRoutes extends QueryRoutes {
  readonly rowCount: number;
  readonly durationMs: number;
  /** The certificate and challenge rows; undefined when the TLS tables do not exist. */
  readonly tls?: TlsRows | undefined;
}

/**
 * Runs the routing query (the documented one, with the configured region address column) and
 * turns its rows into a route map (see table/query-routes.ts). Also reads every region's address:
 * the query only names regions that have routes, and the request path trusts X-Forwarded-For from
 * any of our regions' load balancers. And the certificate and challenge rows, when their tables exist.
 */
export async function loadRoutes(pool: pg.Pool, regionAddressColumn: string): Promise<LoadedRoutes> {
  const started = performance.now();
  let result: pg.QueryResult<Record<string, unknown>>;
  let regions: pg.QueryResult<{ region_public_ip: unknown }>;
  let tls: TlsRows | undefined;
  try {
    result = await pool.query<Record<string, unknown>>(routesQuery(regionAddressColumn));
    regions = await pool.query<{ region_public_ip: unknown }>(regionAddressesQuery(regionAddressColumn));
    tls = await readTlsRows(pool);
  } catch (err) {
    throw await explainLoadError(pool, regionAddressColumn, err);
  }
  const routes = routesFromQueryRows(result.rows);
  const regionAddresses = new Set(routes.regionAddresses);
  for (const r of regions.rows) {
    const ip = parseIp(r.region_public_ip);
    if (ip !== undefined) regionAddresses.add(ip);
  }
  return { ...routes, regionAddresses, tls, rowCount: result.rows.length, durationMs: performance.now() - started };
}

/** An undefined column (42703) is explained by the column check, in doctor's words; anything else stays as it is. */
async function explainLoadError(pool: pg.Pool, regionAddressColumn: string, err: unknown): Promise<unknown> {
  if ((err as { code?: unknown }).code !== '42703') return err;
  try {
    const d = columnsProblem(await checkColumns(pool, regionAddressColumn));
    return d === undefined ? err : new DiagnosedError(d, { cause: err });
  } catch {
    return err; // the database's own error says more than a failed look at the catalog
  }
}
