import { ShardedMap, type ShardedMapEditor } from './sharded-map.js';

/** What a layered map reads beneath its overlay: a lookup that never changes. */
export interface BaseLookup<V> {
  get(key: string): V | undefined;
}

/** In the overlay: the key's base entry is gone. */
const GONE = null;

/**
 * A persistent map made of an immutable base (the bootstrap's rows in columns, domain-base.ts)
 * under an overlay of the keys written since (a sharded persistent map; `null` for a base key
 * deleted). A version is the base and one overlay version, so every version stays readable after
 * later writes, and a write costs what it costs in the overlay, whatever the base's size.
 */
export class LayeredMap<V> {
  readonly #base: BaseLookup<V>;
  readonly #overlay: ShardedMap<V | typeof GONE>;

  constructor(
    base: BaseLookup<V>,
    overlay: ShardedMap<V | typeof GONE>,
    readonly size: number,
  ) {
    this.#base = base;
    this.#overlay = overlay;
  }

  get(key: string): V | undefined {
    const v = this.#overlay.get(key);
    return v === undefined ? this.#base.get(key) : (v ?? undefined);
  }

  /** Calls `fn` for each entry written since the base, then for each of `baseKeys` not written since. */
  forEachOf(baseKeys: Iterable<string>, fn: (value: V, key: string) => void): void {
    this.#overlay.forEach((v, key) => {
      if (v !== GONE) fn(v, key);
    });
    for (const key of baseKeys) {
      if (this.#overlay.has(key)) continue;
      const v = this.#base.get(key);
      if (v !== undefined) fn(v, key);
    }
  }

  edit(): LayeredMapEditor<V> {
    return new LayeredMapEditor(this, this.#base, this.#overlay.edit(), this.size);
  }
}

/** A batch of writes to one version (the overlay's editor); `commit()` gives the next version. */
export class LayeredMapEditor<V> {
  readonly #from: LayeredMap<V>;
  readonly #base: BaseLookup<V>;
  readonly #overlay: ShardedMapEditor<V | typeof GONE>;
  /**
   * The base's entries read by this editor: a transaction reads a row once to follow it to its
   * host and again to compute the host's route (a move reads a thousand rows twice), and a base
   * read makes the row from its columns each time.
   */
  readonly #read = new Map<string, V | undefined>();
  #size: number;

  constructor(from: LayeredMap<V>, base: BaseLookup<V>, overlay: ShardedMapEditor<V | typeof GONE>, size: number) {
    this.#from = from;
    this.#base = base;
    this.#overlay = overlay;
    this.#size = size;
  }

  get(key: string): V | undefined {
    const v = this.#overlay.get(key);
    return v === undefined ? this.#baseGet(key) : (v ?? undefined);
  }

  set(key: string, value: V): void {
    if (this.get(key) === undefined) this.#size += 1;
    this.#overlay.set(key, value);
  }

  delete(key: string): void {
    if (this.get(key) === undefined) return;
    this.#size -= 1;
    if (this.#baseGet(key) === undefined) this.#overlay.delete(key);
    else this.#overlay.set(key, GONE);
  }

  /** The next version; an editor that wrote nothing gives back the version it edits. */
  commit(): LayeredMap<V> {
    if (!this.#overlay.changed) {
      this.#overlay.commit();
      return this.#from;
    }
    return new LayeredMap(this.#base, this.#overlay.commit(), this.#size);
  }

  #baseGet(key: string): V | undefined {
    if (this.#read.has(key)) return this.#read.get(key);
    const v = this.#base.get(key);
    this.#read.set(key, v);
    return v;
  }
}

/** A layered map over `base` with nothing written yet. */
export function layered<V>(base: BaseLookup<V>, size: number): LayeredMap<V> {
  return new LayeredMap(base, ShardedMap.empty(), size);
}
