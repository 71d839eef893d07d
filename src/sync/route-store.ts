import { produce, castDraft } from 'immer';
import type { Route } from '../table/route.js';
import type { ShardedMap } from '../table/sharded-map.js';

export type SnapshotSource = 'poll' | 'stream';

/** What the request path reads: one immutable value, swapped whole. */
export interface RouteSnapshot {
  readonly routes: ShardedMap<Route>;
  /** Increments with every published snapshot. */
  readonly generation: number;
  readonly source: SnapshotSource;
  /** When this snapshot was published (ms since the epoch). */
  readonly publishedAt: number;
}

/**
 * Owns "the current snapshot". Requests read `current` once and keep that value for their
 * whole life; publishing swaps one reference, so a request never sees half a reload.
 */
export class RouteStore {
  #current: RouteSnapshot | undefined;

  get current(): RouteSnapshot | undefined {
    return this.#current;
  }

  /** True once a first table has been loaded; before that the proxy answers 503. */
  get ready(): boolean {
    return this.#current !== undefined;
  }

  publish(routes: ShardedMap<Route>, source: SnapshotSource, now = Date.now()): RouteSnapshot {
    const prev = this.#current;
    const next: RouteSnapshot =
      prev === undefined
        ? Object.freeze({ routes, generation: 1, source, publishedAt: now })
        : produce(prev, (draft) => {
            draft.routes = castDraft(routes);
            draft.generation += 1;
            draft.source = source;
            draft.publishedAt = now;
          });
    this.#current = next;
    return next;
  }
}
