import { freeze } from 'immer';

/** Entries per shard the table aims for: small enough that copying a shard is cheap (≈10 µs). */
const TARGET_SHARD_SIZE = 256;
/** A shard is allowed to grow this much past the target before the map is re-sharded. */
const MAX_SHARD_SIZE = TARGET_SHARD_SIZE * 4;
const MAX_SHARDS = 1 << 16;

function shardCountFor(size: number): number {
  let n = 1;
  while (n < MAX_SHARDS && n * TARGET_SHARD_SIZE < size) n <<= 1;
  return n;
}

/** FNV-1a over UTF-16 code units: cheap, stable across processes, good enough spread for keys. */
export function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * An immutable string-keyed map split into shards. Changing it copies only the shards it touches
 * and shares the rest with the previous version, so one changed row costs one shard copy
 * (a few hundred entries) whether the map holds a thousand entries or a million.
 * Shards are frozen (immer's `freeze` makes a Map's mutators throw).
 */
export class ShardedMap<V> {
  private readonly mask: number;

  /** Takes ownership of `shards` (a power-of-two count of frozen maps); use `from` or `edit`. */
  constructor(
    private readonly shards: readonly ReadonlyMap<string, V>[],
    readonly size: number,
  ) {
    this.mask = shards.length - 1;
  }

  static empty<V>(): ShardedMap<V> {
    return new ShardedMap<V>([freeze(new Map<string, V>())], 0);
  }

  static from<V>(entries: Iterable<readonly [string, V]>, sizeHint = 0): ShardedMap<V> {
    const list = Array.isArray(entries) ? (entries as readonly (readonly [string, V])[]) : [...entries];
    const builder = new ShardedMapBuilder<V>(Math.max(sizeHint, list.length));
    for (const [key, value] of list) builder.set(key, value);
    return builder.build();
  }

  /** A mutable map for bootstrap: filled in place, then frozen by `build()` (no pair lists, no copies). */
  static builder<V>(sizeHint = 0): ShardedMapBuilder<V> {
    return new ShardedMapBuilder<V>(sizeHint);
  }

  get shardCount(): number {
    return this.shards.length;
  }

  get(key: string): V | undefined {
    return this.shards[this.mask === 0 ? 0 : hashKey(key) & this.mask]!.get(key);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  *entries(): IterableIterator<[string, V]> {
    for (const shard of this.shards) yield* shard.entries();
  }

  *values(): IterableIterator<V> {
    for (const shard of this.shards) yield* shard.values();
  }

  *keys(): IterableIterator<string> {
    for (const shard of this.shards) yield* shard.keys();
  }

  /** Like `entries()` without a generator step per entry (bulk passes over a million entries). */
  forEach(fn: (value: V, key: string) => void): void {
    for (const shard of this.shards) shard.forEach(fn);
  }

  /** Starts a batch of changes; nothing is visible in this map, which stays as it is. */
  edit(): ShardedMapEditor<V> {
    return new ShardedMapEditor(this.shards, this.size, this);
  }
}

/**
 * Copy-on-write editor: the first write to a shard copies it; `commit()` returns the new map.
 * The shard list itself (one pointer per shard, 4,096 at a million entries) is copied only on the
 * first write, so an editor that only reads, or writes nothing, allocates nothing.
 */
export class ShardedMapEditor<V> {
  private shards: readonly ReadonlyMap<string, V>[];
  private own = false;
  private readonly copied = new Set<number>();
  private readonly mask: number;
  private committed = false;

  /** `baseMap`, when given, is what `commit()` returns if nothing was written (same object, nothing new). */
  constructor(
    base: readonly ReadonlyMap<string, V>[],
    private size: number,
    private readonly baseMap?: ShardedMap<V>,
  ) {
    this.shards = base;
    this.mask = base.length - 1;
  }

  get(key: string): V | undefined {
    return this.shards[this.mask === 0 ? 0 : hashKey(key) & this.mask]!.get(key);
  }

  set(key: string, value: V): void {
    const shard = this.writable(this.mask === 0 ? 0 : hashKey(key) & this.mask);
    const before = shard.size;
    shard.set(key, value);
    this.size += shard.size - before;
  }

  delete(key: string): void {
    const index = this.mask === 0 ? 0 : hashKey(key) & this.mask;
    if (!this.shards[index]!.has(key)) return;
    this.writable(index).delete(key);
    this.size -= 1;
  }

  get changed(): boolean {
    return this.copied.size > 0;
  }

  commit(): ShardedMap<V> {
    if (this.committed) throw new Error('ShardedMapEditor.commit() called twice');
    this.committed = true;
    if (!this.own && this.baseMap !== undefined) return this.baseMap;
    // Re-shard when shards have grown well past the target, so copies stay small.
    if (this.size > this.shards.length * MAX_SHARD_SIZE && this.shards.length < MAX_SHARDS) {
      const builder = new ShardedMapBuilder<V>(this.size);
      for (const shard of this.shards) for (const [key, value] of shard) builder.set(key, value);
      return builder.build();
    }
    for (const index of this.copied) freeze(this.shards[index]);
    return new ShardedMap(this.shards, this.size);
  }

  private writable(index: number): Map<string, V> {
    if (this.committed) throw new Error('ShardedMapEditor used after commit()');
    if (!this.own) {
      this.shards = this.shards.slice();
      this.own = true;
    }
    if (!this.copied.has(index)) {
      (this.shards as ReadonlyMap<string, V>[])[index] = new Map(this.shards[index]);
      this.copied.add(index);
    }
    return this.shards[index] as Map<string, V>;
  }
}

/**
 * Builds a ShardedMap in place for bootstrap: shards are sized for `sizeHint` up front and filled
 * directly, so loading a million rows makes no intermediate pair lists or grouping maps.
 * `build()` freezes the shards and hands them over; the builder is unusable afterwards.
 */
export class ShardedMapBuilder<V> {
  private readonly shards: Map<string, V>[] = [];
  private readonly mask: number;
  private built = false;

  constructor(sizeHint: number) {
    const count = shardCountFor(sizeHint);
    for (let i = 0; i < count; i++) this.shards.push(new Map());
    this.mask = count - 1;
  }

  get size(): number {
    let size = 0;
    for (const shard of this.shards) size += shard.size;
    return size;
  }

  get(key: string): V | undefined {
    return this.shards[this.mask === 0 ? 0 : hashKey(key) & this.mask]!.get(key);
  }

  set(key: string, value: V): void {
    if (this.built) throw new Error('ShardedMapBuilder used after build()');
    this.shards[this.mask === 0 ? 0 : hashKey(key) & this.mask]!.set(key, value);
  }

  /** Sets `key` unless it is already there; returns whether it was set (one hash for both steps). */
  add(key: string, value: V): boolean {
    if (this.built) throw new Error('ShardedMapBuilder used after build()');
    const shard = this.shards[this.mask === 0 ? 0 : hashKey(key) & this.mask]!;
    if (shard.has(key)) return false;
    shard.set(key, value);
    return true;
  }

  /** Visits every entry; `fn` may replace the value of the entry it is given (through `set`). */
  forEach(fn: (value: V, key: string) => void): void {
    for (const shard of this.shards) shard.forEach(fn);
  }

  build(): ShardedMap<V> {
    if (this.built) throw new Error('ShardedMapBuilder.build() called twice');
    this.built = true;
    let size = 0;
    for (const shard of this.shards) {
      size += shard.size;
      freeze(shard);
    }
    return new ShardedMap(this.shards, size);
  }
}
