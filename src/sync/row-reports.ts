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

/**
 * The stream's warnings, said only when they change: every re-bootstrap finds the same bad rows and
 * duplicate names again, and a change that touches a duplicated host must not repeat its warning.
 */
export class StreamReports {
  readonly #logger: Logger;
  #bootstrapProblemsKey = '';
  /** Duplicate names already warned about: host → what was said. */
  readonly #duplicates = new Map<string, string>();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** After a bootstrap: its bad rows (when they differ from the last bootstrap's) and every duplicate. */
  bootstrap(problems: readonly RowProblem[], duplicates: readonly Duplicate[]): void {
    const key = JSON.stringify(problems);
    if (key !== this.#bootstrapProblemsKey) logSkippedRows(this.#logger, problems);
    this.#bootstrapProblemsKey = key;
    this.#duplicates.clear();
    this.#reportDuplicates(duplicates, undefined);
  }

  /** After a transaction: its bad rows, and the duplicates among the hosts it touched (the others there are forgotten). */
  applied(problems: readonly RowProblem[], duplicates: readonly Duplicate[], touched: Iterable<string>): void {
    logSkippedRows(this.#logger, problems);
    this.#reportDuplicates(duplicates, touched);
  }

  #reportDuplicates(found: readonly Duplicate[], checked: Iterable<string> | undefined): void {
    if (checked !== undefined) {
      const still = new Set(found.map((d) => d.host));
      for (const host of checked) if (!still.has(host)) this.#duplicates.delete(host);
    }
    const changed = found.filter((d) => {
      const key = JSON.stringify([d.chosen, d.others]);
      if (this.#duplicates.get(d.host) === key) return false;
      this.#duplicates.set(d.host, key);
      return true;
    });
    logDuplicates(this.#logger, changed);
  }
}
