import type { Logger } from '../log/logger.js';
import type { Duplicate } from '../table/query-routes.js';
import type { RowProblem } from '../table/route.js';

/** At most this many lines per kind and report; then one line with the count. */
const MAX_LOGGED = 100;

/** Warns about rows that cannot be routed (shared by the poller and the stream). */
export function logSkippedRows(logger: Logger, problems: readonly RowProblem[]): void {
  for (const p of problems.slice(0, MAX_LOGGED)) logger.warn({ row: p }, 'skipped a route row');
  if (problems.length > MAX_LOGGED) logger.warn({ skipped: problems.length }, `more route rows skipped (first ${MAX_LOGGED} logged)`);
}

/** Warns about hosts that several routable rows name (shared by the poller and the stream). */
export function logDuplicates(logger: Logger, duplicates: readonly Duplicate[]): void {
  for (const d of duplicates.slice(0, MAX_LOGGED))
    logger.warn({ host: d.host, chosen: d.chosen, others: d.others }, 'duplicate domain name');
  if (duplicates.length > MAX_LOGGED)
    logger.warn({ duplicates: duplicates.length }, `more duplicate domain names (first ${MAX_LOGGED} logged)`);
}
