import { hashKey } from './sharded-map.js';
import type { Route } from './route.js';

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
 *   copied on write: a change copies the pages it writes (16 KB each, outside the JS heap) and
 *   shares the rest with the previous version.
 * - Targets: the distinct (VM address, port, region, load balancer) a route points at, interned
 *   (a million routes over a thousand VMs have a thousand).
 *
 * A `RouteTable` is one version, immutable: what it reads (its host count, slot array and page
 * list) is fixed when it is committed, and every later write goes where it does not look. The
 * buffers are SharedArrayBuffers, so another thread can be handed one version (issue 14).
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

/** One route's target, without the host (shared by every host routed to it). */
interface Target {
  readonly vmIp: string;
  readonly vmPort: number;
  readonly vmRegionId: string;
  readonly regionPublicIp: string;
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

function targetKey(r: Target): string {
  return `${r.vmIp}|${r.vmPort}|${r.vmRegionId}|${r.regionPublicIp}`;
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
  readonly targetIds = new Map<string, number>();
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
    s.targets.push(...from.targets);
    from.targetIds.forEach((id, key) => s.targetIds.set(key, id));
    return s;
  }

  intern(route: Target): number {
    const key = targetKey(route);
    let id = this.targetIds.get(key);
    if (id === undefined) {
      id = this.targets.length;
      const { vmIp, vmPort, vmRegionId, regionPublicIp } = route;
      this.targets.push(Object.freeze({ vmIp, vmPort, vmRegionId, regionPublicIp }));
      this.targetIds.set(key, id);
    }
    return id;
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
interface Version {
  readonly store: Store;
  readonly bytes: Uint8Array;
  readonly starts: Uint32Array;
  readonly slots: Int32Array;
  readonly hosts: number;
  readonly pages: readonly Uint32Array[];
  readonly size: number;
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
  static commitVersion(v: Version): RouteTable {
    const table = new RouteTable(v);
    v.store.tip = table;
    return table;
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
    const { bytes, starts } = this.#v;
    return latin1(bytes, starts[id]!, starts[id + 1]!);
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
    return this.#v.pages[id >>> PAGE_BITS]![id & PAGE_MASK]!;
  }

  #route(id: number, host: string): Route | undefined {
    const t = this.#targetOf(id);
    if (t === 0) return undefined;
    const target = this.#v.store.targets[t - 1]!;
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

function latin1(bytes: Uint8Array, from: number, to: number): string {
  return String.fromCharCode.apply(null, bytes.subarray(from, to) as unknown as number[]);
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
    if (this.#built) throw new Error('RouteTableBuilder used after build()');
    const s = this.#store;
    let id = findId(s, host);
    if (id < 0) {
      checkHost(host);
      id = s.addHost(host);
    }
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
      bytes: s.bytes,
      starts: s.starts,
      slots: s.slots,
      hosts: s.hosts,
      pages: this.#pages,
      size: this.#size,
    });
  }
}

/**
 * A batch of changes to one version. Nothing shared is written before `commit()`: new hosts wait
 * in a small map, changed pages are private copies. An editor that wrote nothing commits to its
 * base version, the same object.
 */
export class RouteTableEditor {
  readonly #base: RouteTable;
  readonly #v: Version;
  #pages: Uint32Array[] | undefined;
  readonly #copied = new Set<number>();
  /** Hosts not in the base, with their route (undefined: set, then deleted). */
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
    if (this.#pages === undefined) return this.#base.routeAt(id);
    const t = this.#pages[id >>> PAGE_BITS]![id & PAGE_MASK]!;
    return t === 0 ? undefined : { host, ...this.#v.store.targets[t - 1]! };
  }

  set(host: string, route: Route): void {
    this.#write(host, route);
  }

  delete(host: string): void {
    this.#write(host, undefined);
  }

  commit(): RouteTable {
    if (this.#committed) throw new Error('RouteTableEditor.commit() called twice');
    this.#committed = true;
    if (this.#pages === undefined && this.#added.size === 0) return this.#base;
    const v = this.#v;
    let store = v.store;
    if (store.tip !== this.#base || store.hosts !== v.hosts) store = Store.fork(this.#base, v.hosts, v.starts[v.hosts]!, store);
    const pages = this.#pages ?? v.pages.slice();
    for (const [host, route] of this.#added) {
      if (route === undefined) continue; // added and deleted again: never listed
      const id = store.addHost(host);
      const page = id >>> PAGE_BITS;
      while (pages.length <= page) pages.push(u32(PAGE_SIZE));
      if (!this.#copied.has(page) && page < v.pages.length) {
        pages[page] = copyPage(pages[page]!);
        this.#copied.add(page);
      }
      pages[page]![id & PAGE_MASK] = store.intern(route) + 1;
    }
    return RouteTable.commitVersion({
      store,
      bytes: store.bytes,
      starts: store.starts,
      slots: store.slots,
      hosts: store.hosts,
      pages,
      size: this.#size,
    });
  }

  #write(host: string, route: Route | undefined): void {
    if (this.#committed) throw new Error('RouteTableEditor used after commit()');
    const id = this.#base.idOf(host);
    if (id < 0) {
      if (route !== undefined) checkHost(host);
      const had = this.#added.get(host) !== undefined;
      this.#size += (route === undefined ? 0 : 1) - (had ? 1 : 0);
      if (route !== undefined || this.#added.has(host)) this.#added.set(host, route);
      return;
    }
    const pages = (this.#pages ??= this.#v.pages.slice());
    const page = id >>> PAGE_BITS;
    if (!this.#copied.has(page)) {
      pages[page] = copyPage(pages[page]!);
      this.#copied.add(page);
    }
    const cell = pages[page]!;
    const had = cell[id & PAGE_MASK] !== 0;
    this.#size += (route === undefined ? 0 : 1) - (had ? 1 : 0);
    cell[id & PAGE_MASK] = route === undefined ? 0 : this.#v.store.intern(route) + 1;
  }
}

function copyPage(page: Uint32Array): Uint32Array {
  const copy = u32(PAGE_SIZE);
  copy.set(page);
  return copy;
}
