import type { Logger } from '../log/logger.js';
import type { Transaction } from '../replication/transaction.js';
import type { RowState } from '../table/row-state.js';
import type { TlsFeed } from '../tls/tls-feed.js';
import type { TlsRows } from '../tls/tls-tables.js';
import type { RouteStore } from './route-store.js';
import type { StreamReports } from './row-reports.js';

/** Where the stream stands, kept across sessions for the status and the metrics. */
export interface StreamPosition {
  /** End LSN of the last transaction published (or the consistent point of the last bootstrap). */
  lsn: string | undefined;
  /**
   * Since when the table is known to match the server (epoch ms): the latest of the bootstrap's
   * snapshot, the commit time of the last transaction published, and the last keepalive that
   * arrived with nothing left to apply. The replication lag is the time since then.
   */
  currentAt: number | undefined;
  /** Transactions applied since start. */
  transactions: number;
}

/** What the applier tells the server about (the session's replication stream). */
export interface AppliedSink {
  applied(lsn: string): void;
}

export interface StreamApplierOptions {
  readonly store: RouteStore;
  readonly logger: Logger;
  readonly position: StreamPosition;
  readonly reports: StreamReports;
  /** The certificate and challenge rows, published with the routes of the same transaction. */
  readonly tls: TlsFeed;
}

interface Batch {
  last: Transaction;
  transactions: number;
  changedRoutes: number;
}

/**
 * One stream session's apply step: each committed transaction is applied to the row state as it
 * arrives, and whatever arrived in one event-loop turn is published as one snapshot, whose LSN is
 * then reported to the server. Transactions that arrive while the bootstrap snapshot is still being
 * built are queued and applied once it is published.
 */
export class StreamApplier {
  readonly #o: StreamApplierOptions;
  #queue: Transaction[] | undefined = [];
  #rows: RowState | undefined;
  #sink: AppliedSink | undefined;
  #regionAddresses: ReadonlySet<string> = new Set();
  #batch: Batch | undefined;
  #publishScheduled = false;
  #closed = false;

  constructor(opts: StreamApplierOptions) {
    this.#o = opts;
  }

  /** Publishes the bootstrap snapshot at the slot's consistent point, then applies what queued meanwhile. */
  start(rows: RowState, tlsRows: TlsRows | undefined, sink: AppliedSink, consistentPoint: string, snapshotAt: number): void {
    this.#rows = rows;
    this.#sink = sink;
    this.#regionAddresses = rows.regionAddresses();
    this.#o.store.publish(rows.routes, 'stream', {
      regionAddresses: this.#regionAddresses,
      position: { lsn: consistentPoint, commitTime: undefined },
      ...(tlsRows === undefined ? {} : { tls: this.#o.tls.replaceAll(tlsRows) }),
    });
    this.#o.position.lsn = consistentPoint;
    this.#o.position.currentAt = snapshotAt;
    const queued = this.#queue ?? [];
    this.#queue = undefined;
    for (const tx of queued) this.receive(tx);
  }

  /** One committed transaction from the stream. Throws RowError when it cannot be applied (the stream resyncs). */
  receive(tx: Transaction): void {
    if (this.#closed) return;
    if (this.#queue !== undefined) {
      this.#queue.push(tx);
      return;
    }
    const result = this.#rows!.apply(tx.changes);
    this.#rows = result.state;
    this.#o.tls.apply(tx.tlsChanges);
    if (tx.changes.some((c) => c.table === 'regions')) this.#regionAddresses = result.state.regionAddresses();
    this.#o.reports.applied(
      result.problems,
      result.touchedHosts.size > 0 ? result.state.duplicates(result.touchedHosts) : [],
      result.touchedHosts,
    );
    this.#o.position.transactions += 1;
    const batch = (this.#batch ??= { last: tx, transactions: 0, changedRoutes: 0 });
    batch.last = tx;
    batch.transactions += 1;
    batch.changedRoutes += result.changedHosts.length;
    if (!this.#publishScheduled) {
      this.#publishScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Publishes what was applied and not yet published (also before a failure: it is committed data). */
  flush(): void {
    this.#publishScheduled = false;
    const batch = this.#batch;
    const rows = this.#rows;
    if (batch === undefined || rows === undefined || this.#closed) return;
    this.#batch = undefined;
    const tx = batch.last;
    this.#o.store.publish(rows.routes, 'stream', {
      regionAddresses: this.#regionAddresses,
      position: { lsn: tx.endLsn, commitTime: tx.commitTimeMs },
      tls: this.#o.tls.snapshot,
    });
    this.#sink?.applied(tx.endLsn);
    const position = this.#o.position;
    position.lsn = tx.endLsn;
    position.currentAt = Math.max(position.currentAt ?? 0, tx.commitTimeMs);
    const lagMs = Math.max(0, Date.now() - tx.commitTimeMs);
    this.#o.logger.debug(
      {
        lsn: tx.endLsn,
        transactions: batch.transactions,
        changedRoutes: batch.changedRoutes,
        lagMs: Math.round(lagMs * 10) / 10,
        routes: rows.routes.size,
      },
      'applied transactions',
    );
  }

  /** A keepalive found the stream caught up at `atMs`: the table matched the server then. */
  caughtUp(atMs: number): void {
    if (this.#closed || this.#rows === undefined) return;
    this.#o.position.currentAt = Math.max(this.#o.position.currentAt ?? 0, atMs);
  }

  /** The session ended: nothing is published from it any more. */
  close(): void {
    this.#closed = true;
    this.#queue = undefined;
  }
}
