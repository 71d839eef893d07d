import { normaliseHost } from './host.js';
import type { IdSet } from './id-set.js';
import type { RowProblem } from './route.js';
import { type DomainRow, duplicateIdProblem, readRow, type RowValues } from './rows.js';
import { TextArena, TextSlots } from './text-arena.js';

/** A domain row's host: its name normalised, or undefined when the name is not a host. */
export function hostOf(row: DomainRow | undefined): string | undefined {
  return row !== undefined && typeof row.name === 'string' ? normaliseHost(row.name) : undefined;
}

const VERIFIED = 1;
/** The row's name is exactly its host (the usual case): the name is not kept apart. */
const NAME_IS_HOST = 2;

/**
 * The domain rows of a bootstrap in columns, with their two reverse indexes (host → rows,
 * deployment → rows), in typed arrays: row `r`'s id is string `r` of one arena, its host a host
 * number (hosts in a second arena), its deployment a deployment number, its verified bit a flag.
 * A million rows are a few buffers, not a million objects with their strings and map entries.
 *
 * Immutable once built: the versions of `RowState` read it through an overlay of the rows changed
 * since (layered-map.ts), so nothing here is ever written after `build()`.
 */
export class DomainBase {
  readonly #ids: TextArena;
  readonly #idSlots: TextSlots;
  readonly #hosts: TextArena;
  readonly #hostSlots: TextSlots;
  readonly #c: Columns;
  /** Deployment number → id, and the rows of deployment d: `byDeployment[deploymentStart[d] .. deploymentStart[d + 1]]`. */
  readonly #deploymentIds: readonly string[];
  readonly #deploymentNumbers: ReadonlyMap<string, number>;
  readonly #deploymentStart: Int32Array;
  readonly #byDeployment: Int32Array;
  /** Hosts more than one row names. */
  readonly multiHosts: readonly string[];

  /** Internal: made by DomainBaseBuilder.build. */
  constructor(b: Built) {
    this.#ids = b.ids;
    this.#idSlots = b.idSlots;
    this.#hosts = b.hosts;
    this.#hostSlots = b.hostSlots;
    this.#c = b.columns;
    this.#deploymentIds = b.deploymentIds;
    this.#deploymentNumbers = b.deploymentNumbers;
    this.#deploymentStart = b.byDeployment.start;
    this.#byDeployment = b.byDeployment.rows;
    this.multiHosts = b.multiHosts;
  }

  static empty(): DomainBase {
    return new DomainBaseBuilder(0).build();
  }

  get size(): number {
    return this.#ids.count;
  }

  /** The row with primary key `id`, or undefined. */
  get(id: string): DomainRow | undefined {
    const r = this.#idSlots.find(id);
    return r < 0 ? undefined : this.#row(r);
  }

  /** The ids of the rows whose name is `host` (normalised). */
  hostRows(host: string): IdSet | undefined {
    const h = this.#hostSlots.find(host);
    if (h < 0) return undefined;
    const { hostFirst, nextOfHost } = this.#c;
    const first = hostFirst[h]!;
    if (nextOfHost[first]! < 0) return this.#ids.at(first);
    const ids: string[] = [];
    for (let r = first; r >= 0; r = nextOfHost[r]!) ids.push(this.#ids.at(r));
    return Object.freeze(ids);
  }

  /** The ids of the rows pointing at deployment `id`. */
  deploymentRows(id: string): IdSet | undefined {
    const d = this.#deploymentNumbers.get(id);
    if (d === undefined) return undefined;
    const from = this.#deploymentStart[d]!;
    const to = this.#deploymentStart[d + 1]!;
    if (to - from === 1) return this.#ids.at(this.#byDeployment[from]!);
    const ids = new Array<string>(to - from);
    for (let k = from; k < to; k++) ids[k - from] = this.#ids.at(this.#byDeployment[k]!);
    return Object.freeze(ids);
  }

  /**
   * Calls `fn` for rows `from` to `to` - 1 in order, with the row's host and whether it is the
   * first row of that host (the bootstrap's pass that computes the routes).
   */
  forEachIn(from: number, to: number, fn: (row: DomainRow, host: string | undefined, firstOfHost: boolean) => void): void {
    const { host, hostFirst } = this.#c;
    for (let r = from; r < Math.min(to, this.size); r++) {
      const h = host[r]!;
      fn(this.#row(r), h < 0 ? undefined : this.#hosts.at(h), h >= 0 && hostFirst[h] === r);
    }
  }

  #row(r: number): DomainRow {
    const c = this.#c;
    const flags = c.flags[r]!;
    const d = c.deployment[r]!;
    return Object.freeze({
      id: this.#ids.at(r),
      name: (flags & NAME_IS_HOST) !== 0 ? this.#hosts.at(c.host[r]!) : c.names.get(r),
      deploymentId: d < 0 ? null : this.#deploymentIds[d]!,
      verified: (flags & VERIFIED) !== 0,
    });
  }
}

interface Columns {
  /** Per row: its host number (-1: the name is not a host), deployment number (-1: NULL), flags, next row of the same host (-1: none). */
  host: Int32Array;
  deployment: Int32Array;
  flags: Uint8Array;
  nextOfHost: Int32Array;
  /** Per host number: its first row. */
  hostFirst: Int32Array;
  /** Names that are not exactly their host (another case, a trailing dot, not a host, not a string). */
  readonly names: Map<number, unknown>;
}

interface Built {
  readonly ids: TextArena;
  readonly idSlots: TextSlots;
  readonly hosts: TextArena;
  readonly hostSlots: TextSlots;
  readonly columns: Columns;
  readonly deploymentIds: readonly string[];
  readonly deploymentNumbers: ReadonlyMap<string, number>;
  readonly multiHosts: readonly string[];
  /** The rows by deployment (byGroup of the deployment column). */
  readonly byDeployment: { readonly start: Int32Array; readonly rows: Int32Array };
}

/** What `DomainBaseBuilder.add` did with a row. */
export const ADDED = { duplicate: 0, firstOfHost: 1, more: 2 } as const;
export type Added = (typeof ADDED)[keyof typeof ADDED];

/**
 * The domain rows of a bootstrap as they are received (the snapshot load hands each row over as
 * the driver parses it, so a million rows are never held as a million arrays): each row read as
 * `rowFromValues` reads it, a row without a usable id or repeating an earlier row's id reported
 * and skipped (the first row kept).
 */
export class DomainRowsReader {
  readonly problems: RowProblem[] = [];
  readonly #builder: DomainBaseBuilder;
  /** Rows received, kept or not. */
  count = 0;

  /**
   * `sizeHint` rows, their ids and names `bytes` long in all (the snapshot load counts them
   * first): sized right, the arenas and slot tables are never grown (a doubling copies an arena
   * and rehashes every string, ~0.3 s at a million rows, in one turn) nor trimmed.
   */
  constructor(sizeHint = 0, bytes?: ByteHints) {
    this.#builder = new DomainBaseBuilder(sizeHint, bytes);
  }

  read(values: RowValues): void {
    this.count += 1;
    const row = readRow('domains', values, this.problems);
    if (row === undefined) return;
    if (this.#builder.add(row, hostOf(row)) === ADDED.duplicate) this.problems.push(duplicateIdProblem('domains', row.id));
  }

  build(): DomainBase {
    return this.#builder.build();
  }

  /** `build`, pausing every GROUP_BATCH rows of its passes over the rows (see buildSteps). */
  buildSteps(): Generator<void, DomainBase> {
    return this.#builder.buildSteps();
  }
}

/** Bytes the rows' ids and names take in all (an arena holds a byte per character: an upper bound). */
export interface ByteHints {
  readonly ids: number;
  readonly names: number;
}

/** Fills a DomainBase row by row (the bootstrap); `build()` once at the end. */
export class DomainBaseBuilder {
  readonly #ids: TextArena;
  readonly #idSlots: TextSlots;
  readonly #hosts: TextArena;
  readonly #hostSlots: TextSlots;
  readonly #c: Columns;
  readonly #deploymentIds: string[] = [];
  readonly #deploymentNumbers = new Map<string, number>();
  readonly #multiHosts: string[] = [];
  /** Per host number: its last row so far (where the next row of the host is chained). */
  #hostLast: Int32Array;

  constructor(sizeHint: number, bytes?: ByteHints) {
    this.#ids = new TextArena(sizeHint, bytes?.ids ?? sizeHint * 36);
    this.#idSlots = new TextSlots(this.#ids, sizeHint);
    this.#hosts = new TextArena(sizeHint, bytes?.names ?? sizeHint * 20);
    this.#hostSlots = new TextSlots(this.#hosts, sizeHint);
    const n = Math.max(16, sizeHint);
    this.#c = {
      host: new Int32Array(n),
      deployment: new Int32Array(n),
      flags: new Uint8Array(n),
      nextOfHost: new Int32Array(n),
      hostFirst: new Int32Array(n),
      names: new Map(),
    };
    this.#hostLast = new Int32Array(n);
  }

  /** Adds `row`, whose normalised name is `host`, unless a row with its id was added before. */
  add(row: DomainRow, host: string | undefined): Added {
    if (this.#idSlots.find(row.id) >= 0) return ADDED.duplicate;
    const r = this.#ids.push(row.id);
    this.#idSlots.add(r);
    this.#grow(r);
    const c = this.#c;
    c.deployment[r] = row.deploymentId === null ? -1 : this.#deploymentNumber(row.deploymentId);
    c.nextOfHost[r] = -1;
    const nameIsHost = host !== undefined && row.name === host;
    c.flags[r] = (row.verified ? VERIFIED : 0) | (nameIsHost ? NAME_IS_HOST : 0);
    if (!nameIsHost) c.names.set(r, row.name);
    if (host === undefined) {
      c.host[r] = -1;
      return ADDED.more;
    }
    return this.#chain(r, host);
  }

  build(): DomainBase {
    const steps = this.buildSteps();
    for (let r = steps.next(); ; r = steps.next()) if (r.done === true) return r.value;
  }

  /**
   * `build` as a generator that pauses every GROUP_BATCH rows of the deployment sort (two
   * passes over the rows: one turn of ~90 ms at a million rows in a profile of the bin on a busy
   * machine), so a re-bootstrap's caller can give the event loop its turns.
   */
  *buildSteps(): Generator<void, DomainBase> {
    const count = this.#ids.count;
    this.#ids.trim();
    this.#hosts.trim();
    const c = this.#c;
    // The columns are sized by the hint (the rows the bootstrap read): trimmed only when a quarter of them is spare.
    const trim = <A extends Int32Array | Uint8Array>(a: A, used: number): A => (used < (a.length * 3) / 4 ? (a.slice(0, used) as A) : a);
    const columns: Columns = {
      host: trim(c.host, count),
      deployment: trim(c.deployment, count),
      flags: trim(c.flags, count),
      nextOfHost: trim(c.nextOfHost, count),
      hostFirst: trim(c.hostFirst, this.#hosts.count),
      names: c.names,
    };
    this.#hostLast = new Int32Array(0);
    const byDeployment = yield* byGroup(columns.deployment, count, this.#deploymentIds.length);
    return new DomainBase({
      ids: this.#ids,
      idSlots: this.#idSlots,
      hosts: this.#hosts,
      hostSlots: this.#hostSlots,
      columns,
      deploymentIds: this.#deploymentIds,
      deploymentNumbers: this.#deploymentNumbers,
      multiHosts: this.#multiHosts,
      byDeployment,
    });
  }

  /** Row `r` listed under `host`: a new host number, or chained after the host's last row. */
  #chain(r: number, host: string): Added {
    const c = this.#c;
    let h = this.#hostSlots.find(host);
    const first = h < 0;
    if (first) {
      h = this.#hosts.push(host);
      this.#hostSlots.add(h);
      c.hostFirst[h] = r;
    } else {
      const last = this.#hostLast[h]!;
      if (last === c.hostFirst[h]!) this.#multiHosts.push(host);
      c.nextOfHost[last] = r;
    }
    this.#hostLast[h] = r;
    c.host[r] = h;
    return first ? ADDED.firstOfHost : ADDED.more;
  }

  #deploymentNumber(id: string): number {
    let d = this.#deploymentNumbers.get(id);
    if (d === undefined) {
      d = this.#deploymentIds.push(id) - 1;
      this.#deploymentNumbers.set(id, d);
    }
    return d;
  }

  /** Room for row `r` (and host number `r`: there are never more hosts than rows). */
  #grow(r: number): void {
    const c = this.#c;
    if (r < c.host.length) return;
    const n = c.host.length * 2;
    c.host = grown(c.host, n);
    c.deployment = grown(c.deployment, n);
    c.nextOfHost = grown(c.nextOfHost, n);
    c.hostFirst = grown(c.hostFirst, n);
    this.#hostLast = grown(this.#hostLast, n);
    const flags = new Uint8Array(n);
    flags.set(c.flags);
    c.flags = flags;
  }
}

function grown(a: Int32Array, n: number): Int32Array {
  const out = new Int32Array(n);
  out.set(a);
  return out;
}

/** Rows between two pauses of byGroup's passes (a few milliseconds at most). */
const GROUP_BATCH = 65_536;

/**
 * A stable counting sort of the rows 0..count-1 by `group` (negative: left out): the rows of
 * group g are `rows[start[g] .. start[g + 1]]`. Pauses every GROUP_BATCH rows.
 */
function* byGroup(group: Int32Array, count: number, groups: number): Generator<void, { start: Int32Array; rows: Int32Array }> {
  const start = new Int32Array(groups + 1);
  for (let r = 0; r < count; r++) {
    if (r % GROUP_BATCH === GROUP_BATCH - 1) yield;
    if (group[r]! >= 0) start[group[r]! + 1]!++;
  }
  for (let g = 0; g < groups; g++) start[g + 1]! += start[g]!;
  const next = start.slice(0, groups);
  const rows = new Int32Array(start[groups]!);
  for (let r = 0; r < count; r++) {
    if (r % GROUP_BATCH === GROUP_BATCH - 1) yield;
    if (group[r]! >= 0) rows[next[group[r]!]!++] = r;
  }
  return { start, rows };
}
