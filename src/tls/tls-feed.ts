import type { Logger } from '../log/logger.js';
import type { StorageKey } from './storage-key.js';
import { TlsState, type CertificateRowProblem, type TlsApplied, type TlsSnapshot } from './tls-state.js';
import type { TlsChange, TlsRows } from './tls-tables.js';

/**
 * The TLS rows as the sync keeps them, whoever feeds the table (the stream's bootstrap and
 * transactions, or a poll): one state, so that a certificate's key is opened once whatever
 * the source, and each unusable row is logged once, not at every poll.
 */
export class TlsFeed {
  #state: TlsState;
  readonly #logger: Logger;
  /** `id code` of rows already reported. */
  #reported = new Set<string>();

  constructor(storageKey: StorageKey | undefined, logger: Logger) {
    this.#state = TlsState.empty(storageKey);
    this.#logger = logger;
  }

  get snapshot(): TlsSnapshot {
    return this.#state.snapshot;
  }

  get certificateRows(): number {
    return this.#state.certificateRows;
  }

  /** The whole tables (a bootstrap or a poll). */
  replaceAll(rows: TlsRows): TlsSnapshot {
    return this.#take(this.#state.replaceAll(rows), true);
  }

  /** One transaction's changes; the same snapshot object when nothing changed. */
  apply(changes: readonly TlsChange[]): TlsSnapshot {
    return changes.length === 0 ? this.#state.snapshot : this.#take(this.#state.apply(changes), false);
  }

  #take(applied: TlsApplied, whole: boolean): TlsSnapshot {
    this.#state = applied.state;
    if (whole) this.#reported = new Set([...this.#reported].filter((k) => applied.problems.some((p) => key(p) === k)));
    for (const p of applied.problems) this.#report(p);
    return applied.state.snapshot;
  }

  #report(p: CertificateRowProblem): void {
    if (this.#reported.has(key(p))) return;
    this.#reported.add(key(p));
    this.#logger.warn({ certificate: p.id, code: p.problem.code, reason: p.problem.message }, 'certificate not served');
  }
}

function key(p: CertificateRowProblem): string {
  return `${p.id} ${p.problem.code}`;
}
