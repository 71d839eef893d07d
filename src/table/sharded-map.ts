import { freeze } from 'immer';

/**
 * Entries per shard the table aims for. Every change copies the shards it writes, and in a
 * persistent map those copies stay live, so the young-generation GC must copy them too: 128
 * rather than 256 halved both the garbage and the GC pause work per change at a million entries.
 */
export const TARGET_SHARD_SIZE = 128;
/** A shard is allowed to grow this much past the target before the map is re-sharded. */
const MAX_SHARD_SIZE = TARGET_SHARD_SIZE * 4;
const MAX_SHARDS = 1 << 16;
/**
 * Shards are listed in chunks of 64, so a write copies one chunk and the list of chunks (64 + 64
 * pointers at a million entries) rather than a list of every shard (4,096 pointers, 32 KB without
 * pointer compression). That list copy, made for every touched map, was most of each change's garbage.
 */
const CHUNK_BITS = 6;
const CHUNK_MASK = (1 << CHUNK_BITS) - 1;

type Shard<V> = ReadonlyMap<string, V>;
type Chunk<V> = readonly Shard<V>[];

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

/** A copy of a shard. forEach, not `new Map(shard)`: the iterator protocol allocates a pair per entry (40 KB vs 15 KB at 244 entries). */
function copyShard<V>(shard: Shard<V>): Map<string, V> {
  const copy = new Map<string, V>();
  shard.forEach((value, key) => copy.set(key, value));
  return copy;
}

function chunked<V>(shards: Shard<V>[]): Chunk<V>[] {
  const chunks: Chunk<V>[] = [];
  for (let i = 0; i < shards.length; i += CHUNK_MASK + 1) chunks.push(shards.slice(i, i + CHUNK_MASK + 1));
  return chunks;
}

/**
 * An immutable string-keyed map split into shards. Changing it copies only the shards it touches
 * and shares the rest with the previous version, so one changed row costs one shard copy
 * (a few hundred entries) whether the map holds a thousand entries or a million.
 * Shards are frozen (immer's `freeze` makes a Map's mutators throw).
 */
export class ShardedMap<V> {
  readonly #mask: number;
  readonly #chunks: readonly Chunk<V>[];

  /**
   * Internal: takes ownership of `chunks` (a power-of-two count of frozen shards, 64 per chunk;
   * a single chunk when there are fewer). Use `from`, `builder` or `edit`.
   */
  constructor(
    chunks: readonly Chunk<V>[],
    readonly size: number,
  ) {
    this.#chunks = chunks;
    this.#mask = (chunks.length === 1 ? chunks[0]!.length : chunks.length << CHUNK_BITS) - 1;
  }

  static empty<V>(): ShardedMap<V> {
    return new ShardedMap<V>([[freeze(new Map<string, V>())]], 0);
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
    return this.#mask + 1;
  }

  /** The shards, 64 per chunk: for tests and diagnostics that check freezing and sharing (never mutate them). */
  get chunkList(): readonly (readonly ReadonlyMap<string, V>[])[] {
    return this.#chunks;
  }

  get(key: string): V | undefined {
    const i = this.#mask === 0 ? 0 : hashKey(key) & this.#mask;
    return this.#chunks[i >>> CHUNK_BITS]![i & CHUNK_MASK]!.get(key);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  *entries(): IterableIterator<[string, V]> {
    for (const chunk of this.#chunks) for (const shard of chunk) yield* shard.entries();
  }

  *values(): IterableIterator<V> {
    for (const chunk of this.#chunks) for (const shard of chunk) yield* shard.values();
  }

  *keys(): IterableIterator<string> {
    for (const chunk of this.#chunks) for (const shard of chunk) yield* shard.keys();
  }

  /** Like `entries()` without a generator step per entry (bulk passes over a million entries). */
  forEach(fn: (value: V, key: string) => void): void {
    for (const chunk of this.#chunks) for (const shard of chunk) shard.forEach(fn);
  }

  /** Starts a batch of changes; nothing is visible in this map, which stays as it is. */
  edit(): ShardedMapEditor<V> {
    return new ShardedMapEditor(this.#chunks, this.size, this);
  }
}

/**
 * Copy-on-write editor: the first write to a shard copies it (and the chunk listing it, and the
 * list of chunks); `commit()` returns the new map. Nothing is copied before the first write, so
 * an editor that only reads, or writes nothing, allocates nothing and commits to its base map.
 */
export class ShardedMapEditor<V> {
  #chunks: readonly Chunk<V>[];
  /** Chunks and shards already copied by this editor (written in place from then on); made on first write. */
  #copiedChunks: Set<number> | undefined;
  #copied: Set<number> | undefined;
  readonly #mask: number;
  #committed = false;
  #size: number;
  /** What `commit()` returns if nothing was written (same object, nothing new), when given. */
  readonly #baseMap: ShardedMap<V> | undefined;

  constructor(base: readonly Chunk<V>[], size: number, baseMap?: ShardedMap<V>) {
    this.#chunks = base;
    this.#size = size;
    this.#baseMap = baseMap;
    this.#mask = (base.length === 1 ? base[0]!.length : base.length << CHUNK_BITS) - 1;
  }

  get(key: string): V | undefined {
    return this.#shard(this.#mask === 0 ? 0 : hashKey(key) & this.#mask).get(key);
  }

  set(key: string, value: V): void {
    const shard = this.#writable(this.#mask === 0 ? 0 : hashKey(key) & this.#mask);
    const before = shard.size;
    shard.set(key, value);
    this.#size += shard.size - before;
  }

  delete(key: string): void {
    const index = this.#mask === 0 ? 0 : hashKey(key) & this.#mask;
    if (!this.#shard(index).has(key)) return;
    this.#writable(index).delete(key);
    this.#size -= 1;
  }

  get changed(): boolean {
    return this.#copied !== undefined;
  }

  commit(): ShardedMap<V> {
    if (this.#committed) throw new Error('ShardedMapEditor.commit() called twice');
    this.#committed = true;
    if (this.#copied === undefined && this.#baseMap !== undefined) return this.#baseMap;
    // Re-shard when shards have grown well past the target, so copies stay small.
    if (this.#size > (this.#mask + 1) * MAX_SHARD_SIZE && this.#mask + 1 < MAX_SHARDS) {
      const builder = new ShardedMapBuilder<V>(this.#size);
      for (const chunk of this.#chunks) for (const shard of chunk) shard.forEach((value, key) => builder.set(key, value));
      return builder.build();
    }
    for (const index of this.#copied ?? []) freeze(this.#shard(index));
    return new ShardedMap(this.#chunks, this.#size);
  }

  #shard(index: number): Shard<V> {
    return this.#chunks[index >>> CHUNK_BITS]![index & CHUNK_MASK]!;
  }

  #writable(index: number): Map<string, V> {
    if (this.#committed) throw new Error('ShardedMapEditor used after commit()');
    if (this.#copied === undefined || this.#copiedChunks === undefined) {
      this.#chunks = this.#chunks.slice();
      this.#copied = new Set();
      this.#copiedChunks = new Set();
    }
    if (!this.#copied.has(index)) {
      const c = index >>> CHUNK_BITS;
      if (!this.#copiedChunks.has(c)) {
        (this.#chunks as Chunk<V>[])[c] = this.#chunks[c]!.slice();
        this.#copiedChunks.add(c);
      }
      (this.#chunks[c] as Shard<V>[])[index & CHUNK_MASK] = copyShard(this.#shard(index));
      this.#copied.add(index);
    }
    return this.#shard(index) as Map<string, V>;
  }
}

/**
 * Builds a ShardedMap in place for bootstrap: shards are sized for `sizeHint` up front and filled
 * directly, so loading a million rows makes no intermediate pair lists or grouping maps.
 * `build()` freezes the shards and hands them over; the builder is unusable afterwards.
 */
export class ShardedMapBuilder<V> {
  readonly #shards: Map<string, V>[] = [];
  readonly #mask: number;
  #built = false;

  constructor(sizeHint: number) {
    const count = shardCountFor(sizeHint);
    for (let i = 0; i < count; i++) this.#shards.push(new Map());
    this.#mask = count - 1;
  }

  get size(): number {
    let size = 0;
    for (const shard of this.#shards) size += shard.size;
    return size;
  }

  get shardCount(): number {
    return this.#shards.length;
  }

  /** Which shard `key` lands in (equal for every map with the same shard count). */
  shardOf(key: string): number {
    return this.#mask === 0 ? 0 : hashKey(key) & this.#mask;
  }

  get(key: string): V | undefined {
    return this.#shards[this.#mask === 0 ? 0 : hashKey(key) & this.#mask]!.get(key);
  }

  set(key: string, value: V): void {
    if (this.#built) throw new Error('ShardedMapBuilder used after build()');
    this.#shards[this.#mask === 0 ? 0 : hashKey(key) & this.#mask]!.set(key, value);
  }

  // The *In variants take the shard `shardOf(key)` returned, so a bootstrap that has already
  // grouped keys by shard does not hash each key again for every map it touches.

  getIn(shard: number, key: string): V | undefined {
    return this.#shards[shard]!.get(key);
  }

  setIn(shard: number, key: string, value: V): void {
    if (this.#built) throw new Error('ShardedMapBuilder used after build()');
    this.#shards[shard]!.set(key, value);
  }

  /**
   * Fills the empty `shard` with `entries` in one go (the Map's table is sized once, where one
   * `set` at a time grows it over and over). A key that repeats keeps its first value; returns
   * the positions in `entries` of the repeats, which were skipped.
   */
  fillShard(shard: number, entries: readonly (readonly [string, V])[]): number[] {
    if (this.#built) throw new Error('ShardedMapBuilder used after build()');
    if (this.#shards[shard]!.size !== 0) throw new Error('ShardedMapBuilder.fillShard: the shard is not empty');
    const map = new Map<string, V>(entries);
    this.#shards[shard] = map;
    if (map.size === entries.length) return [];
    // Rare (keys are primary keys): the last of a repeated key won; redo it keeping the first.
    map.clear();
    const repeats: number[] = [];
    entries.forEach(([key, value], i) => {
      if (map.has(key)) repeats.push(i);
      else map.set(key, value);
    });
    return repeats;
  }

  /**
   * Sets every key in `keys` to `value`, one shard after another (a counting sort by shard): at
   * a million keys, filling shards in order instead of one random shard per key halves the time.
   */
  setAll(keys: readonly string[], value: V): void {
    if (this.#built) throw new Error('ShardedMapBuilder used after build()');
    const shardOfKey = new Int32Array(keys.length);
    const start = new Int32Array(this.#shards.length + 1);
    for (let i = 0; i < keys.length; i++) {
      const g = this.shardOf(keys[i]!);
      shardOfKey[i] = g;
      start[g + 1]!++;
    }
    for (let g = 0; g < this.#shards.length; g++) start[g + 1]! += start[g]!;
    const order = new Int32Array(keys.length);
    for (let i = 0; i < keys.length; i++) order[start[shardOfKey[i]!]!++] = i;
    for (let j = 0; j < order.length; j++) {
      const i = order[j]!;
      this.#shards[shardOfKey[i]!]!.set(keys[i]!, value);
    }
  }

  build(): ShardedMap<V> {
    if (this.#built) throw new Error('ShardedMapBuilder.build() called twice');
    this.#built = true;
    let size = 0;
    for (const shard of this.#shards) {
      size += shard.size;
      freeze(shard);
    }
    return new ShardedMap(chunked(this.#shards), size);
  }
}
