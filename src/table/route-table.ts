import { hashKey } from './sharded-map.js';
import { compareRoutes, type Route } from './route.js';
import { bufferOf } from './text-arena.js';
import { TargetPack, TargetView, type PackedTargets, type Target } from './target-pack.js';

/**
 * The route table the request path reads, in a few large buffers instead of a million objects
 * (decision 0015): the garbage collector has nothing per route to visit, move or copy.
 *
 * - Host names: their bytes one after another in one arena (`bytes`), host id `i` from
 *   `starts[i]` to `starts[i + 1]`; hosts are never removed (a host whose route went away keeps
 *   its id, with no route), so the arena and `starts` only grow at their end.
 * - Host → id: an open-addressing hash table (`slots`, linear probing, id + 1 per slot, 0 empty,
 *   at most half full). Only empty slots are ever written, so a lookup in an older version just
 *   skips ids it does not have.
 * - Id → route: `pages` of PAGE_SIZE target numbers (0: no route, else the target's index + 1),
 *   under an `overlay` of the ids changed since the pages were last written (64 small
 *   open-addressing tables of id, target pairs, by the id's low bits). A commit copies only the
 *   overlay tables it writes (2 KB each when the overlay is full); past OVERLAY_LIMIT ids, the
 *   pages holding most of them are folded (copied with their ids written in, in one new buffer).
 *   So a commit's work and garbage follow what it changed, not the table's size; untouched pages
 *   and tables are shared between versions.
 * - Targets: the distinct (VM address, port, region, load balancer) a route points at, interned
 *   (a million routes over a thousand VMs have a thousand).
 *
 * A `RouteTable` is one version, immutable: what it reads (its host count, slot array, page list
 * and overlay) is fixed when it is committed, and every later write goes where it does not look.
 * The buffers are SharedArrayBuffers, targets included (target-pack.ts), so another thread can be
 * handed one version without a copy (issue 14): `describe()` is a plain value `postMessage` shares,
 * `RouteTable.open()` reads it in the other thread (read-only: it cannot be edited there).
 */
export interface RouteReader {
  readonly size: number;
  get(host: string): Route | undefined;
  has(host: string): boolean;
  entries(): IterableIterator<[string, Route]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<Route>;
  forEach(fn: (route: Route, host: string) => void): void;
}

/** Where a version's targets come from: the store's own objects, or a thread's view of them. */
interface Targets {
  at(index: number): Target;
}

const PAGE_BITS = 12;
/** Hosts per page of targets: 4,096 × 4 bytes, so a copied page is 16 KB. */
export const PAGE_SIZE = 1 << PAGE_BITS;
const PAGE_MASK = PAGE_SIZE - 1;

function u32(length: number): Uint32Array {
  return new Uint32Array(new SharedArrayBuffer(length * 4));
}

function i32(length: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(length * 4));
}

function u8(length: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(length));
}

function slotCountFor(hosts: number): number {
  let n = 16;
  while (n < hosts * 2) n <<= 1;
  return n;
}

/**
 * What the versions of one table share: the host arena, the slot array and the targets. Only
 * the newest version (`tip`) may append to it; an editor of an older version copies it first.
 */
class Store {
  bytes: Uint8Array;
  starts: Uint32Array;
  slots: Int32Array;
  /** Bytes used in the arena, and hosts listed. */
  used = 0;
  hosts = 0;
  readonly targets: Target[] = [];
  /** The targets again, in shared buffers, for other threads. */
  readonly pack = new TargetPack();
  /** VM address → port → the targets with both (usually one): interning without building a key string per route. */
  readonly #byAddress = new Map<string, Map<number, number[]>>();
  tip: RouteTable | undefined;

  constructor(hostHint: number, byteHint: number) {
    this.bytes = u8(Math.max(64, byteHint));
    this.starts = u32(Math.max(16, hostHint) + 1);
    this.slots = i32(slotCountFor(hostHint));
  }

  /** A copy holding what `version` reads, for an editor that forks an older version. */
  static fork(version: RouteTable, hosts: number, used: number, from: Store): Store {
    const s = new Store(hosts, used);
    s.bytes.set(from.bytes.subarray(0, used));
    s.starts.set(from.starts.subarray(0, hosts + 1));
    s.used = used;
    s.hosts = hosts;
    s.slots = version.slotsForFork();
    for (const t of from.targets) s.intern(t); // distinct: the same ids, in order
    return s;
  }

  intern(route: Target): number {
    const { vmIp, vmPort, vmRegionId, regionPublicIp } = route;
    let ports = this.#byAddress.get(vmIp);
    if (ports === undefined) this.#byAddress.set(vmIp, (ports = new Map()));
    let ids = ports.get(vmPort);
    if (ids === undefined) ports.set(vmPort, (ids = []));
    for (const id of ids) {
      const t = this.targets[id]!;
      if (t.vmRegionId === vmRegionId && t.regionPublicIp === regionPublicIp) return id;
    }
    const id = this.targets.length;
    const target = Object.freeze({ vmIp, vmPort, vmRegionId, regionPublicIp });
    this.targets.push(target);
    this.pack.append(target);
    ids.push(id);
    return id;
  }

  at(index: number): Target {
    return this.targets[index]!;
  }

  /** Appends `host` (known to be absent) and lists it in the slots; returns its id. */
  addHost(host: string): number {
    const id = this.hosts;
    this.#ensure(host.length);
    const bytes = this.bytes;
    let at = this.used;
    for (let i = 0; i < host.length; i++) bytes[at++] = host.charCodeAt(i);
    this.used = at;
    this.hosts = id + 1;
    this.starts[id + 1] = at;
    this.#list(id, hashKey(host));
    return id;
  }

  #ensure(length: number): void {
    if (this.used + length > this.bytes.length) {
      const bytes = u8(Math.max(this.bytes.length * 2, this.used + length));
      bytes.set(this.bytes.subarray(0, this.used));
      this.bytes = bytes;
    }
    if (this.hosts + 2 > this.starts.length) {
      const starts = u32(this.starts.length * 2);
      starts.set(this.starts.subarray(0, this.hosts + 1));
      this.starts = starts;
    }
    // Growing the slots makes a new array: older versions keep reading the one they had.
    if ((this.hosts + 1) * 2 > this.slots.length) this.#rehash(this.slots.length * 2);
  }

  #rehash(count: number): void {
    this.slots = i32(count);
    for (let id = 0; id < this.hosts; id++) this.#list(id, hashOfId(this.bytes, this.starts, id));
  }

  #list(id: number, hash: number): void {
    const slots = this.slots;
    const mask = slots.length - 1;
    let i = hash & mask;
    while (slots[i] !== 0) i = (i + 1) & mask;
    slots[i] = id + 1;
  }
}

function hashOfId(bytes: Uint8Array, starts: Uint32Array, id: number): number {
  let h = 0x811c9dc5;
  for (let i = starts[id]!, end = starts[id + 1]!; i < end; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** What one version reads. */
/** The buffers and counts of one version: what a version is besides its store and targets. */
interface VersionBuffers {
  readonly bytes: Uint8Array;
  readonly starts: Uint32Array;
  readonly slots: Int32Array;
  readonly hosts: number;
  readonly pages: readonly Uint32Array[];
  /**
   * The overlay: OVERLAY_BUCKETS open-addressing tables of id + 1, target number pairs, one per
   * `id & BUCKET_MASK` (see targetOf), so a commit copies only the buckets it writes.
   */
  readonly overlay: readonly Int32Array[];
  readonly overlayCount: number;
  readonly size: number;
}

interface Version extends VersionBuffers {
  /** The store it was written in; undefined for a version opened from another thread's descriptor. */
  readonly store: Store | undefined;
  readonly targets: Targets;
  /** `bytes` as a Buffer, whose latin1 decoding of a host name is native (three times as fast as fromCharCode). */
  readonly text: Buffer;
}

/** One version as another thread is handed it (see RouteTable.describe / open): shared buffers and counts only. */
export interface RouteTableDescriptor extends VersionBuffers {
  readonly targets: PackedTargets;
}

/** Ids the overlay holds before the pages holding most of them are folded in. */
export const OVERLAY_LIMIT = 8192;
const OVERLAY_BUCKETS = 64;
const BUCKET_MASK = OVERLAY_BUCKETS - 1;
const EMPTY_BUCKET = new Int32Array(0);
const NO_OVERLAY: readonly Int32Array[] = Object.freeze(new Array<Int32Array>(OVERLAY_BUCKETS).fill(EMPTY_BUCKET));

/** The pair index where `id` is, or the empty one where it would go, in a bucket with room. */
function probe(bucket: Int32Array, id: number): number {
  const mask = (bucket.length >>> 1) - 1;
  let i = (Math.imul(id >>> 6, 0x9e3779b1) >>> 7) & mask;
  for (let key = bucket[2 * i]!; key !== 0 && key !== id + 1; key = bucket[2 * i]!) i = (i + 1) & mask;
  return i;
}

/** The target number of host id `id` in `v`: the overlay's, else the page's (0: no route). */
function targetOf(v: Version, id: number): number {
  if (v.overlayCount > 0) {
    const bucket = v.overlay[id & BUCKET_MASK]!;
    if (bucket.length > 0) {
      const i = probe(bucket, id);
      if (bucket[2 * i] !== 0) return bucket[2 * i + 1]!;
    }
  }
  const page = v.pages[id >>> PAGE_BITS];
  return page === undefined ? 0 : page[id & PAGE_MASK]!;
}

function overlayHas(v: Version, id: number): boolean {
  const bucket = v.overlay[id & BUCKET_MASK]!;
  return bucket.length > 0 && bucket[2 * probe(bucket, id)] !== 0;
}

function forEachInBucket(bucket: Int32Array, fn: (id: number, target: number) => void): void {
  for (let i = 0; i < bucket.length; i += 2) if (bucket[i] !== 0) fn(bucket[i]! - 1, bucket[i + 1]!);
}

/**
 * The pages and overlay after `writes` (id → target number) on top of `v`: the buckets written
 * copied with the writes added; past OVERLAY_LIMIT ids, the pages holding the most of them are
 * folded (copied, with their ids written in, all in one new buffer) until it is back to 7/8 of
 * the limit. So each commit does work in proportion to what it changed, whatever the table's size.
 */
function withWrites(v: Version, writes: ReadonlyMap<number, number>): Pick<Version, 'pages' | 'overlay' | 'overlayCount'> {
  let count = v.overlayCount;
  for (const id of writes.keys()) if (v.overlayCount === 0 || !overlayHas(v, id)) count += 1;
  if (count <= OVERLAY_LIMIT) return { pages: v.pages, overlay: withBuckets(v.overlay, writes), overlayCount: count };
  // Every id of the overlay and the writes once (a write replaces the overlay's entry), in two
  // arrays: plain loops over them, not callbacks and maps (a fold at a million routes took 3 ms so).
  const ids = new Int32Array(count);
  const targets = new Uint32Array(count);
  let n = 0;
  for (const bucket of v.overlayCount > 0 ? v.overlay : []) {
    for (let i = 0; i < bucket.length; i += 2) {
      const key = bucket[i]!;
      if (key !== 0 && !writes.has(key - 1)) {
        ids[n] = key - 1;
        targets[n++] = bucket[i + 1]!;
      }
    }
  }
  for (const [id, t] of writes) {
    ids[n] = id;
    targets[n++] = t;
  }
  let lastId = 0;
  for (let k = 0; k < n; k++) lastId = Math.max(lastId, ids[k]!);
  const perPage = new Int32Array(Math.max(v.pages.length, (lastId >>> PAGE_BITS) + 1));
  for (let k = 0; k < n; k++) perPage[ids[k]! >>> PAGE_BITS]!++;
  const byCount = Array.from(perPage.keys()).sort((a, b) => perPage[b]! - perPage[a]!);
  const fold = new Uint8Array(perPage.length);
  let left = n;
  const folded: number[] = [];
  for (const page of byCount) {
    if (left <= (OVERLAY_LIMIT * 7) / 8 || perPage[page] === 0) break;
    fold[page] = 1;
    folded.push(page);
    left -= perPage[page]!;
  }
  const pages = copyPages(v.pages, folded, perPage.length);
  // The ids not folded, into fresh buckets sized for them.
  const perBucket = new Int32Array(OVERLAY_BUCKETS);
  for (let k = 0; k < n; k++) {
    const id = ids[k]!;
    if (fold[id >>> PAGE_BITS] === 1) pages[id >>> PAGE_BITS]![id & PAGE_MASK] = targets[k]!;
    else perBucket[id & BUCKET_MASK]!++;
  }
  const overlay = perBucket.reduce<Int32Array[]>((out, c) => (out.push(c === 0 ? EMPTY_BUCKET : i32(slotCountFor(c) * 2)), out), []);
  for (let k = 0; k < n; k++) {
    const id = ids[k]!;
    if (fold[id >>> PAGE_BITS] !== 1) put(overlay[id & BUCKET_MASK]!, id, targets[k]!);
  }
  return { pages, overlay, overlayCount: left };
}

/** `pages` (extended to `length`) with each of `fold` replaced by a copy, all in one new buffer. */
function copyPages(pages: readonly Uint32Array[], fold: readonly number[], length: number): Uint32Array[] {
  const out = pages.slice();
  const fresh = u32(fold.length * PAGE_SIZE);
  fold.forEach((p, k) => {
    const page = fresh.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE);
    if (out[p] !== undefined) page.set(out[p]);
    out[p] = page;
  });
  // Pages past the old end that nothing was folded into (their ids are still in the overlay).
  for (let p = 0; p < length; p++) out[p] ??= u32(PAGE_SIZE);
  return out;
}

/** `overlay` with `writes` added: each bucket written is copied (grown when it must), the others shared. */
function withBuckets(overlay: readonly Int32Array[], writes: ReadonlyMap<number, number>): readonly Int32Array[] {
  const byBucket = new Map<number, number[]>();
  for (const id of writes.keys()) {
    const list = byBucket.get(id & BUCKET_MASK);
    if (list === undefined) byBucket.set(id & BUCKET_MASK, [id]);
    else list.push(id);
  }
  const out = overlay.slice();
  byBucket.forEach((ids, b) => {
    const old = overlay[b]!;
    let n = ids.length;
    forEachInBucket(old, (id) => {
      if (!writes.has(id)) n += 1;
    });
    const capacity = slotCountFor(n);
    const bucket = i32(capacity * 2);
    if (capacity * 2 === old.length) bucket.set(old);
    else forEachInBucket(old, (id, t) => put(bucket, id, t));
    for (const id of ids) put(bucket, id, writes.get(id)!);
    out[b] = bucket;
  });
  return out;
}

function put(bucket: Int32Array, id: number, target: number): void {
  const i = probe(bucket, id);
  bucket[2 * i] = id + 1;
  bucket[2 * i + 1] = target;
}

export class RouteTable implements RouteReader {
  readonly #v: Version;

  private constructor(v: Version) {
    this.#v = v;
  }

  static empty(): RouteTable {
    return new RouteTableBuilder(0).build();
  }

  /** A table of these routes (the last one given for a host wins). */
  static from(entries: Iterable<readonly [string, Route]>, sizeHint = 0): RouteTable {
    const builder = new RouteTableBuilder(sizeHint);
    for (const [host, route] of entries) builder.set(host, route);
    return builder.build();
  }

  /** Fills a new table in place (bootstrap, full reloads); `build()` makes it the first version. */
  static builder(sizeHint = 0): RouteTableBuilder {
    return new RouteTableBuilder(sizeHint);
  }

  /** Internal: the version made by a builder or an editor. */
  static commitVersion(v: Omit<Version, 'text'> & { store: Store }): RouteTable {
    const table = new RouteTable({ ...v, text: bufferOf(v.bytes) });
    v.store.tip = table;
    return table;
  }

  /**
   * Opens a version another thread described (`describe()`), read-only. `previous`: the version
   * this thread read before, whose decoded targets are reused when it came from the same store.
   */
  static open(d: RouteTableDescriptor, previous?: RouteTable): RouteTable {
    const prior = previous === undefined ? undefined : previous.#v.targets;
    const targets = new TargetView(d.targets, prior instanceof TargetView ? prior : undefined);
    return new RouteTable({ ...d, store: undefined, targets, text: bufferOf(d.bytes) });
  }

  /** This version as a plain value of shared buffers: `postMessage` shares it, nothing is copied. */
  describe(): RouteTableDescriptor {
    const { bytes, starts, slots, hosts, pages, overlay, overlayCount, size, targets } = this.#v;
    const packed = targets instanceof TargetView ? targets.packed : this.#v.store!.pack.packed();
    return { bytes, starts, slots, hosts, pages, overlay, overlayCount, size, targets: packed };
  }

  get size(): number {
    return this.#v.size;
  }

  /** Hosts listed, routed or not (ids 0 to hostCount - 1): for scans in slices. */
  get hostCount(): number {
    return this.#v.hosts;
  }

  /** Host id of `host` in this version, or -1. */
  idOf(host: string): number {
    return findId(this.#v, host);
  }

  get(host: string): Route | undefined {
    const id = this.idOf(host);
    return id < 0 ? undefined : this.#route(id, host);
  }

  has(host: string): boolean {
    const id = this.idOf(host);
    return id >= 0 && this.#targetOf(id) !== 0;
  }

  /** The host name of id `id`. */
  hostAt(id: number): string {
    const { text, starts } = this.#v;
    return text.toString('latin1', starts[id]!, starts[id + 1]!);
  }

  /** The host of id `id` against `key`, as `<` compares strings (negative, 0, positive), without making the string. */
  compareHostAt(id: number, key: string): number {
    const { bytes, starts } = this.#v;
    const from = starts[id]!;
    const length = starts[id + 1]! - from;
    for (let i = 0; i < Math.min(length, key.length); i++) {
      const d = bytes[from + i]! - key.charCodeAt(i);
      if (d !== 0) return d;
    }
    return length - key.length;
  }

  /** The route of host id `id`, or undefined when it has none in this version. */
  routeAt(id: number): Route | undefined {
    return this.#targetOf(id) === 0 ? undefined : this.#route(id, this.hostAt(id));
  }

  /** Whether host id `id` has a route in this version (no strings made). */
  routedAt(id: number): boolean {
    return this.#targetOf(id) !== 0;
  }

  /** The routes of host ids `from` to `to` - 1, in id order (a scan in slices, see forEachSlice). */
  forEachIn(from: number, to: number, fn: (route: Route, host: string) => void): void {
    for (let id = from; id < Math.min(to, this.#v.hosts); id++) {
      if (this.#targetOf(id) === 0) continue;
      const host = this.hostAt(id);
      fn(this.#route(id, host)!, host);
    }
  }

  forEach(fn: (route: Route, host: string) => void): void {
    this.forEachIn(0, this.#v.hosts, fn);
  }

  *entries(): IterableIterator<[string, Route]> {
    for (let id = 0; id < this.#v.hosts; id++) {
      if (this.#targetOf(id) === 0) continue;
      const host = this.hostAt(id);
      yield [host, this.#route(id, host)!];
    }
  }

  *keys(): IterableIterator<string> {
    for (const [host] of this.entries()) yield host;
  }

  *values(): IterableIterator<Route> {
    for (const [, route] of this.entries()) yield route;
  }

  /** Starts a batch of changes; this version stays as it is. */
  edit(): RouteTableEditor {
    if (this.#v.store === undefined) throw new Error('RouteTable.edit(): a version opened from a descriptor is read-only');
    return new RouteTableEditor(this, this.#v);
  }

  /** Internal (Store.fork): a copy of this version's slots without the ids it does not have. */
  slotsForFork(): Int32Array {
    const { slots, hosts } = this.#v;
    const copy = i32(slots.length);
    for (let i = 0; i < slots.length; i++) if (slots[i]! - 1 < hosts) copy[i] = slots[i]!;
    return copy;
  }

  #targetOf(id: number): number {
    return targetOf(this.#v, id);
  }

  #route(id: number, host: string): Route | undefined {
    const t = this.#targetOf(id);
    if (t === 0) return undefined;
    const target = this.#v.targets.at(t - 1);
    return { host, vmIp: target.vmIp, vmPort: target.vmPort, vmRegionId: target.vmRegionId, regionPublicIp: target.regionPublicIp };
  }
}

/** The id of `host` among the first `hosts` ids listed in `slots`, or -1. */
function findId(v: Pick<Version, 'bytes' | 'starts' | 'slots' | 'hosts'>, host: string): number {
  const { bytes, starts, slots, hosts } = v;
  const mask = slots.length - 1;
  for (let i = hashKey(host) & mask; ; i = (i + 1) & mask) {
    const slot = slots[i]!;
    if (slot === 0) return -1;
    const id = slot - 1;
    if (id < hosts && sameHost(bytes, starts, id, host)) return id;
  }
}

/** Hosts are stored a byte per character: normalised hosts are ASCII. */
function checkHost(host: string): void {
  for (let i = 0; i < host.length; i++) {
    if (host.charCodeAt(i) > 0x7f) throw new Error(`route table: host ${JSON.stringify(host)} is not ASCII (hosts are normalised first)`);
  }
}

function sameHost(bytes: Uint8Array, starts: Uint32Array, id: number, host: string): boolean {
  const from = starts[id]!;
  if (starts[id + 1]! - from !== host.length) return false;
  for (let i = 0; i < host.length; i++) if (bytes[from + i] !== host.charCodeAt(i)) return false;
  return true;
}

/** Writes straight into a fresh store: one version at the end. */
export class RouteTableBuilder {
  readonly #store: Store;
  readonly #pages: Uint32Array[] = [];
  #size = 0;
  #built = false;

  constructor(sizeHint: number) {
    this.#store = new Store(sizeHint, sizeHint * 24);
  }

  get(host: string): Route | undefined {
    const s = this.#store;
    const id = findId(s, host);
    const t = id < 0 ? 0 : this.#pages[id >>> PAGE_BITS]![id & PAGE_MASK]!;
    return t === 0 ? undefined : { host, ...s.targets[t - 1]! };
  }

  set(host: string, route: Route): void {
    const id = findId(this.#store, host);
    this.#put(id < 0 ? this.#newHost(host) : id, route);
  }

  /** `set` for a host known not to be in the table yet (the bootstrap knows): no lookup first. */
  add(host: string, route: Route): void {
    this.#put(this.#newHost(host), route);
  }

  #newHost(host: string): number {
    if (this.#built) throw new Error('RouteTableBuilder used after build()');
    checkHost(host);
    return this.#store.addHost(host);
  }

  #put(id: number, route: Route): void {
    const s = this.#store;
    const page = id >>> PAGE_BITS;
    while (this.#pages.length <= page) this.#pages.push(u32(PAGE_SIZE));
    const cell = this.#pages[page]!;
    if (cell[id & PAGE_MASK] === 0) this.#size += 1;
    cell[id & PAGE_MASK] = s.intern(route) + 1;
  }

  build(): RouteTable {
    if (this.#built) throw new Error('RouteTableBuilder.build() called twice');
    this.#built = true;
    const s = this.#store;
    return RouteTable.commitVersion({
      store: s,
      targets: s,
      bytes: s.bytes,
      starts: s.starts,
      slots: s.slots,
      hosts: s.hosts,
      pages: this.#pages,
      overlay: NO_OVERLAY,
      overlayCount: 0,
      size: this.#size,
    });
  }
}

/**
 * A batch of changes to one version. Nothing shared is written before `commit()`: writes wait in
 * two small maps (hosts the base lists, by id, and new hosts, by name). An editor that wrote
 * nothing commits to its base version, the same object.
 */
export class RouteTableEditor {
  readonly #base: RouteTable;
  readonly #v: Version;
  /** Host id → target number (0: no route) for hosts the base lists. */
  readonly #writes = new Map<number, number>();
  /** Hosts the base does not list, with their route (undefined: set, then deleted). */
  readonly #added = new Map<string, Route | undefined>();
  #size: number;
  #committed = false;

  constructor(base: RouteTable, v: Version) {
    this.#base = base;
    this.#v = v;
    this.#size = v.size;
  }

  get(host: string): Route | undefined {
    if (this.#added.has(host)) return this.#added.get(host);
    const id = this.#base.idOf(host);
    if (id < 0) return undefined;
    const t = this.#writes.get(id) ?? targetOf(this.#v, id);
    return t === 0 ? undefined : { host, ...this.#v.targets.at(t - 1) };
  }

  /** Sets `host`'s route; returns whether that changed what the host routes to. */
  set(host: string, route: Route): boolean {
    return this.#write(host, route);
  }

  /** Removes `host`'s route; returns whether it had one. */
  delete(host: string): boolean {
    return this.#write(host, undefined);
  }

  commit(): RouteTable {
    if (this.#committed) throw new Error('RouteTableEditor.commit() called twice');
    this.#committed = true;
    if (this.#writes.size === 0 && this.#added.size === 0) return this.#base;
    const v = this.#v;
    let store = v.store!;
    if (store.tip !== this.#base || store.hosts !== v.hosts) store = Store.fork(this.#base, v.hosts, v.starts[v.hosts]!, store);
    for (const [host, route] of this.#added) {
      if (route !== undefined) this.#writes.set(store.addHost(host), store.intern(route) + 1); // added and deleted again: never listed
    }
    const { pages, overlay, overlayCount } = withWrites(v, this.#writes);
    return RouteTable.commitVersion({
      store,
      targets: store,
      bytes: store.bytes,
      starts: store.starts,
      slots: store.slots,
      hosts: store.hosts,
      pages,
      overlay,
      overlayCount,
      size: this.#size,
    });
  }

  #write(host: string, route: Route | undefined): boolean {
    if (this.#committed) throw new Error('RouteTableEditor used after commit()');
    const id = this.#base.idOf(host);
    if (id < 0) {
      if (route !== undefined) checkHost(host);
      const before = this.#added.get(host);
      if (route === undefined ? before === undefined : before !== undefined && compareRoutes(before, route) === 0) return false;
      this.#size += (route === undefined ? 0 : 1) - (before === undefined ? 0 : 1);
      this.#added.set(host, route);
      return true;
    }
    // Targets are interned: the same target number is the same route.
    const before = this.#writes.get(id) ?? targetOf(this.#v, id);
    const after = route === undefined ? 0 : this.#v.store!.intern(route) + 1;
    if (after === before) return false;
    this.#size += (after === 0 ? 0 : 1) - (before === 0 ? 0 : 1);
    this.#writes.set(id, after);
    return true;
  }
}
