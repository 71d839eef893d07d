import { ShardedMap } from './sharded-map.js';

/**
 * A persistent set of row ids for the reverse indexes (deployment → domains, vm → deployments,
 * region → vms). Most parents have one child, so one id is stored as the string itself; small
 * sets are frozen arrays; large ones (a region with a million VMs) are sharded maps, so adding one
 * child never copies a million-entry array.
 */
export type IdSet = string | readonly string[] | ShardedMap<true>;

const ARRAY_LIMIT = 64;
/** A sharded set shrinks back to an array at half the limit, so a set near the limit does not flip on every change. */
const SHRINK_LIMIT = ARRAY_LIMIT / 2;

export function idSetHas(set: IdSet | undefined, id: string): boolean {
  if (set === undefined) return false;
  if (typeof set === 'string') return set === id;
  if (set instanceof ShardedMap) return set.has(id);
  return set.includes(id);
}

export function idSetAdd(set: IdSet | undefined, id: string): IdSet {
  if (set === undefined) return id;
  if (typeof set === 'string') return set === id ? set : Object.freeze([set, id]);
  if (set instanceof ShardedMap) {
    if (set.has(id)) return set;
    const editor = set.edit();
    editor.set(id, true);
    return editor.commit();
  }
  if (set.includes(id)) return set;
  if (set.length < ARRAY_LIMIT) return Object.freeze([...set, id]);
  return ShardedMap.from([...set, id].map((x) => [x, true] as const));
}

/** Removes `id`; an empty set is `undefined`, so the caller can drop the index entry. */
export function idSetDelete(set: IdSet | undefined, id: string): IdSet | undefined {
  if (set === undefined) return undefined;
  if (typeof set === 'string') return set === id ? undefined : set;
  if (set instanceof ShardedMap) {
    if (!set.has(id)) return set;
    if (set.size <= SHRINK_LIMIT + 1) {
      const rest: string[] = [];
      for (const x of set.keys()) if (x !== id) rest.push(x);
      return rest.length === 0 ? undefined : rest.length === 1 ? rest[0] : Object.freeze(rest);
    }
    const editor = set.edit();
    editor.delete(id);
    return editor.commit();
  }
  if (!set.includes(id)) return set;
  const rest = set.filter((x) => x !== id);
  return rest.length === 0 ? undefined : rest.length === 1 ? rest[0] : Object.freeze(rest);
}

export function* idSetValues(set: IdSet | undefined): IterableIterator<string> {
  if (set === undefined) return;
  if (typeof set === 'string') yield set;
  else if (set instanceof ShardedMap) yield* set.keys();
  else yield* set;
}

/** Builds an IdSet from ids known to be distinct (bootstrap). */
export function idSetOf(ids: readonly string[]): IdSet | undefined {
  if (ids.length === 0) return undefined;
  if (ids.length === 1) return ids[0];
  if (ids.length <= ARRAY_LIMIT) return Object.freeze(ids.slice());
  const builder = ShardedMap.builder<true>(ids.length);
  builder.setAll(ids, true);
  return builder.build();
}

/**
 * An id set while a bootstrap builds it: a string or an array grown in place (no copy per added
 * child), turned into an IdSet by `idSetFinish` once its final size is known. Never visible
 * outside `RowState.load`.
 */
export type IdSetDraft = string | string[];

/** Adds an id known not to be in the draft yet; returns the draft to store. */
export function idSetDraftAdd(draft: IdSetDraft | undefined, id: string): IdSetDraft {
  if (draft === undefined) return id;
  if (typeof draft === 'string') return [draft, id];
  draft.push(id);
  return draft;
}

export function idSetFinish(draft: IdSetDraft): IdSet {
  if (typeof draft === 'string') return draft;
  // idSetOf copies: an array grown by push keeps spare capacity, and the draft stays mutable.
  return idSetOf(draft)!;
}
