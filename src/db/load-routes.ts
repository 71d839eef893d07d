import type pg from 'pg';
import { routesFromQueryRows, type QueryRoutes } from '../table/query-routes.js';
import { ROUTES_QUERY } from './routes-query.js';

export interface LoadedRoutes extends QueryRoutes {
  readonly rowCount: number;
  readonly durationMs: number;
}

/** Runs the documented query and turns its rows into a route map (see table/query-routes.ts). */
export async function loadRoutes(pool: pg.Pool): Promise<LoadedRoutes> {
  const started = performance.now();
  const result = await pool.query<Record<string, unknown>>(ROUTES_QUERY);
  const routes = routesFromQueryRows(result.rows);
  return { ...routes, rowCount: result.rows.length, durationMs: performance.now() - started };
}
