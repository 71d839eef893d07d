import { type IdSet, idSetAdd, idSetDelete, idSetHas, idSetValues } from './id-set.js';
import type { BaseLookup } from './layered-map.js';
import { ShardedMap, type ShardedMapEditor } from './sharded-map.js';

/** What changed under one parent since the base: children added, base children removed. */
interface Delta {
  readonly added: IdSet | undefined;
  readonly removed: IdSet | undefined;
}

const NO_DELTA: Delta = Object.freeze({ added: undefined, removed: undefined });

/**
 * A persistent reverse index (parent → child ids) made of an immutable base (the bootstrap's,
 * domain-base.ts) and, per parent changed since, the children added and removed. A change to one
 * child of a deployment with a thousand domains stores that one id, not a copy of the thousand.
 * Callers add only a child not listed and remove only a listed one (as RowState links rows).
 */
export class DeltaIndex {
  readonly #base: BaseLookup<IdSet>;
  readonly #deltas: ShardedMap<Delta>;

  constructor(base: BaseLookup<IdSet>, deltas: ShardedMap<Delta> = ShardedMap.empty()) {
    this.#base = base;
    this.#deltas = deltas;
  }

  get(parent: string): IdSet | undefined {
    return combine(this.#base.get(parent), this.#deltas.get(parent));
  }

  /** Calls `fn` for each parent changed since the base, then for each of `baseKeys` not changed since. */
  forEachOf(baseKeys: Iterable<string>, fn: (children: IdSet | undefined, parent: string) => void): void {
    this.#deltas.forEach((_, parent) => fn(this.get(parent), parent));
    for (const parent of baseKeys) if (!this.#deltas.has(parent)) fn(this.#base.get(parent), parent);
  }

  edit(): DeltaIndexEditor {
    return new DeltaIndexEditor(this, this.#base, this.#deltas.edit());
  }
}

export class DeltaIndexEditor {
  readonly #from: DeltaIndex;
  readonly #base: BaseLookup<IdSet>;
  readonly #deltas: ShardedMapEditor<Delta>;

  constructor(from: DeltaIndex, base: BaseLookup<IdSet>, deltas: ShardedMapEditor<Delta>) {
    this.#from = from;
    this.#base = base;
    this.#deltas = deltas;
  }

  get(parent: string): IdSet | undefined {
    return combine(this.#base.get(parent), this.#deltas.get(parent));
  }

  /** Lists `child` (not listed) under `parent`. */
  add(parent: string, child: string): void {
    const d = this.#deltas.get(parent) ?? NO_DELTA;
    if (idSetHas(d.removed, child)) this.#put(parent, d.added, idSetDelete(d.removed, child));
    else this.#put(parent, idSetAdd(d.added, child), d.removed);
  }

  /** Takes `child` (listed) from under `parent`. */
  delete(parent: string, child: string): void {
    const d = this.#deltas.get(parent) ?? NO_DELTA;
    if (idSetHas(d.added, child)) this.#put(parent, idSetDelete(d.added, child), d.removed);
    else this.#put(parent, d.added, idSetAdd(d.removed, child));
  }

  /** The next version; an editor that wrote nothing gives back the version it edits. */
  commit(): DeltaIndex {
    if (!this.#deltas.changed) {
      this.#deltas.commit();
      return this.#from;
    }
    return new DeltaIndex(this.#base, this.#deltas.commit());
  }

  #put(parent: string, added: IdSet | undefined, removed: IdSet | undefined): void {
    if (added === undefined && removed === undefined) this.#deltas.delete(parent);
    else this.#deltas.set(parent, Object.freeze({ added, removed }));
  }
}

/** The base's children less those removed, and those added. */
function combine(base: IdSet | undefined, delta: Delta | undefined): IdSet | undefined {
  if (delta === undefined) return base;
  const ids: string[] = [];
  for (const id of idSetValues(base)) if (!idSetHas(delta.removed, id)) ids.push(id);
  for (const id of idSetValues(delta.added)) ids.push(id);
  return ids.length === 0 ? undefined : ids.length === 1 ? ids[0] : Object.freeze(ids);
}
