import { produce, castDraft } from 'immer';
import type { RouteTable } from '../table/route-table.js';
import { EMPTY_TLS, type TlsSnapshot } from '../tls/tls-state.js';

export type SnapshotSource = 'poll' | 'stream';

/** Where a snapshot stands in the database's history (stream snapshots only). */
export interface SnapshotPosition {
  /** End LSN of the last transaction applied, e.g. `0/1E334D8`. */
  readonly lsn: string;
  /** Commit time of that transaction on the server (ms since the epoch). */
  readonly commitTime: number | undefined;
}

/** What the request path reads: one immutable value, swapped whole. */
export interface RouteSnapshot {
  /** The routes, in buffers (one version of a RouteTable: immutable). */
  readonly routes: RouteTable;
  /** Public IPv4 addresses of every region in the table (our own load balancers). */
  readonly regionAddresses: ReadonlySet<string>;
  /** Stored certificates and running HTTP-01 challenges, of the same database state as the routes. */
  readonly tls: TlsSnapshot;
  /** Increments with every published snapshot. */
  readonly generation: number;
  readonly source: SnapshotSource;
  /** When this snapshot was published (ms since the epoch). */
  readonly publishedAt: number;
  /** Set for snapshots built from the replication stream. */
  readonly position: SnapshotPosition | undefined;
}

export interface PublishOptions {
  readonly regionAddresses: ReadonlySet<string>;
  readonly position?: SnapshotPosition;
  /** Absent: the previous snapshot's (nothing changed in the TLS tables). */
  readonly tls?: TlsSnapshot;
  readonly now?: number;
}

/**
 * Owns "the current snapshot". Requests read `current` once and keep that value for their
 * whole life; publishing swaps one reference, so a request never sees half a reload.
 */
export class RouteStore {
  #current: RouteSnapshot | undefined;
  readonly #listeners = new Set<(snapshot: RouteSnapshot) => void>();

  get current(): RouteSnapshot | undefined {
    return this.#current;
  }

  /** True once a first table has been loaded; before that the proxy answers 503. */
  get ready(): boolean {
    return this.#current !== undefined;
  }

  /** Calls `listener` after every publish (a handshake waiting for its certificate); it must not throw. Returns the unsubscribe. */
  onPublish(listener: (snapshot: RouteSnapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  publish(routes: RouteTable, source: SnapshotSource, opts: PublishOptions): RouteSnapshot {
    const prev = this.#current;
    const now = opts.now ?? Date.now();
    const position = opts.position === undefined ? undefined : Object.freeze({ ...opts.position });
    const tls = opts.tls ?? prev?.tls ?? EMPTY_TLS;
    const next: RouteSnapshot =
      prev === undefined
        ? Object.freeze({ routes, regionAddresses: opts.regionAddresses, tls, generation: 1, source, publishedAt: now, position })
        : produce(prev, (draft) => {
            draft.routes = castDraft(routes);
            // Sets are frozen by immer on publish; reusing the same Set keeps identity stable.
            draft.regionAddresses = castDraft(opts.regionAddresses);
            draft.tls = castDraft(tls);
            draft.generation += 1;
            draft.source = source;
            draft.publishedAt = now;
            draft.position = position;
          });
    this.#current = next;
    for (const listener of this.#listeners) listener(next);
    return next;
  }
}
