import { ShardedMap } from './sharded-map.js';

/**
 * A persistent set of row ids for the reverse indexes (deployment → domains, vm → deployments,
 * region → vms). Most parents have one child, so one id is stored as the string itself; small
 * sets are frozen arrays; large ones (a region with a million VMs) are sharded maps, so adding one
 * child never copies a million-entry array.
 */
export type IdSet = string | readonly string[] | ShardedMap<true>;

const ARRAY_LIMIT = 64;

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

export function idSetDelete(set: IdSet | undefined, id: string): IdSet | undefined {
  if (set === undefined) return undefined;
  if (typeof set === 'string') return set === id ? undefined : set;
  if (set instanceof ShardedMap) {
    if (!set.has(id)) return set;
    const editor = set.edit();
    editor.delete(id);
    return editor.commit();
  }
  if (!set.includes(id)) return set;
  const rest = set.filter((x) => x !== id);
  return rest.length === 1 ? rest[0] : Object.freeze(rest);
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
  return ShardedMap.from(ids.map((x) => [x, true] as const));
}
