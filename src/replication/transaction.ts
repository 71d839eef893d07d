import { EdgeProxyError } from '../errors.js';
import type { RowChange } from '../table/rows.js';
import type { TlsChange } from '../tls/tls-tables.js';

/** One committed transaction's changes to the routing tables. */
export interface Transaction {
  readonly xid: number;
  readonly changes: readonly RowChange[];
  /** Its changes to the certificate and challenge tables, in order. */
  readonly tlsChanges: readonly TlsChange[];
  /** End of the commit record: acknowledging it releases the WAL before it. */
  readonly endLsn: string;
  /** Commit time on the server, ms since the epoch. */
  readonly commitTimeMs: number;
}

/** Replication messages out of order: the stream starts over from a fresh snapshot. */
export class ProtocolError extends EdgeProxyError {
  override name = 'ProtocolError';

  constructor(message: string) {
    super('STREAM_PROTOCOL', message);
  }
}

/**
 * Collects begin … changes … commit into whole transactions, so the route table only ever sees
 * complete ones. pgoutput without `streaming` sends a transaction only after it committed, so
 * nothing here waits on the database.
 */
export class TransactionCollector {
  #open: { xid: number; changes: RowChange[]; tlsChanges: TlsChange[] } | undefined;

  get inTransaction(): boolean {
    return this.#open !== undefined;
  }

  begin(xid: number): void {
    if (this.#open !== undefined) throw new ProtocolError(`begin of ${xid} inside transaction ${this.#open.xid}`);
    this.#open = { xid, changes: [], tlsChanges: [] };
  }

  add(change: RowChange): void {
    if (this.#open === undefined) throw new ProtocolError(`${change.op} on ${change.table} outside a transaction`);
    this.#open.changes.push(change);
  }

  addTls(change: TlsChange): void {
    if (this.#open === undefined) throw new ProtocolError(`${change.op} on ${change.table} outside a transaction`);
    this.#open.tlsChanges.push(change);
  }

  commit(endLsn: string, commitTimeMs: number): Transaction {
    const open = this.#open;
    if (open === undefined) throw new ProtocolError(`commit at ${endLsn} without a begin`);
    this.#open = undefined;
    return { xid: open.xid, changes: open.changes, tlsChanges: open.tlsChanges, endLsn, commitTimeMs };
  }
}
