import pg from 'pg';
import type { Logger } from '../log/logger.js';
import { describePgError } from './errors.js';

export interface PoolOptions {
  readonly databaseUrl: string;
  /** Shown in pg_stat_activity so operators can tell proxies apart. */
  readonly applicationName: string;
  /**
   * Upper bound for one query, so a stuck reload cannot stall the loader forever. pg's client-side
   * query_timeout, since a frozen backend never runs statement_timeout. Measured: the timed-out
   * client still holds its query, so the pool removes it and destroys its socket (client.end() with
   * a query active), and the next query opens a new connection.
   */
  readonly queryTimeoutMs: number;
  readonly logger: Logger;
}

/**
 * A small pool for the loader's queries. The request path never touches it.
 * Idle-client errors (a restarted server, a killed backend) are logged, not thrown: the next
 * query reconnects.
 */
export function createPool(opts: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.databaseUrl,
    application_name: opts.applicationName,
    max: 2,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: Math.min(opts.queryTimeoutMs, 10_000),
    query_timeout: opts.queryTimeoutMs,
    keepAlive: true,
  });
  pool.on('error', (err) => {
    opts.logger.warn({ err: describePgError(err) }, 'idle database connection failed');
  });
  return pool;
}
