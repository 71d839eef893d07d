import { type DomainBase, DomainRowsReader, hostOf } from './domain-base.js';
import { DeltaIndex, type DeltaIndexEditor } from './delta-index.js';
import { type IdSet, type IdSetDraft, idSetAdd, idSetDelete, idSetDraftAdd, idSetFinish, idSetValues } from './id-set.js';
import { layered, type LayeredMap, type LayeredMapEditor } from './layered-map.js';
import type { Duplicate } from './query-routes.js';
import { compareRoutes, makeRoute, parseIp, preferred, type Route, type RouteResult, type RowProblem } from './route.js';
import {
  type DeploymentRow,
  type DomainRow,
  READ_COLUMNS,
  type RegionRow,
  type RowChange,
  duplicateIdProblem,
  readRow,
  type RowValues,
  type RowTypes,
  type SharedId,
  type TableName,
  toRow,
  type VmRow,
} from './rows.js';
import { RouteTable, type RouteTableBuilder, type RouteTableEditor } from './route-table.js';
import { ShardedMap, type ShardedMapBuilder, type ShardedMapEditor } from './sharded-map.js';

/** Full table contents, each row's values in READ_COLUMNS order (see rowValues for rows by name). */
export interface TableRows {
  readonly domains: readonly RowValues[];
  readonly deployments: readonly RowValues[];
  readonly vms: readonly RowValues[];
  readonly regions: readonly RowValues[];
}

/** Full table contents with the domain rows already read as they were received (the snapshot load does). */
export interface ReceivedRows extends Omit<TableRows, 'domains'> {
  readonly domains: DomainRowsReader;
}

type AnyRows = TableRows | ReceivedRows;

export interface ApplyResult {
  readonly state: RowState;
  /** Hosts whose route was added, removed or changed. */
  readonly changedHosts: readonly string[];
  /** Every host whose route was recomputed (a superset of changedHosts). */
  readonly touchedHosts: ReadonlySet<string>;
  readonly problems: readonly RowProblem[];
}

interface Maps {
  /** The domain rows: the bootstrap's in columns (domain-base.ts), under the rows written since. */
  readonly domains: LayeredMap<DomainRow>;
  readonly deployments: ShardedMap<DeploymentRow>;
  readonly vms: ShardedMap<VmRow>;
  readonly regions: ShardedMap<RegionRow>;
  /** normalised host → domain ids with that name */
  readonly hostDomains: DeltaIndex;
  /** deployment id → domain ids pointing at it */
  readonly deploymentDomains: DeltaIndex;
  /** vm id → deployment ids pointing at it */
  readonly vmDeployments: ShardedMap<IdSet>;
  /** region id → vm ids in it */
  readonly regionVms: ShardedMap<IdSet>;
  /** normalised host → route (what the request path reads), in buffers (route-table.ts) */
  readonly routes: RouteTable;
  /** What the three layered maps read beneath what was written since the bootstrap. */
  readonly domainBase: DomainBase;
}

type Editors = {
  -readonly [K in Exclude<keyof Maps, 'domainBase'>]: Maps[K] extends ShardedMap<infer V>
    ? ShardedMapEditor<V>
    : Maps[K] extends LayeredMap<infer V>
      ? LayeredMapEditor<V>
      : Maps[K] extends DeltaIndex
        ? DeltaIndexEditor
        : Maps[K] extends RouteTable
          ? RouteTableEditor
          : never;
};

/** What a transaction writes a table's rows or an index through. */
interface Writer<V> {
  get(key: string): V | undefined;
  set(key: string, value: V): void;
  delete(key: string): void;
}

/**
 * The rows of the four tables keyed by primary key, reverse indexes, and the routes derived from
 * them. Immutable: `apply` returns a new state that shares every untouched shard with this one,
 * and recomputes only the routes the changed rows can reach.
 */
export class RowState {
  readonly #maps: Maps;

  private constructor(maps: Maps) {
    this.#maps = maps;
  }

  get routes(): RouteTable {
    return this.#maps.routes;
  }

  /**
   * Hosts that more than one routable domain row names, with the route chosen (the same rule as
   * the documented query's path) and the others, for warnings. Checks `hosts`, or every host.
   */
  duplicates(hosts?: Iterable<string>): Duplicate[] {
    const m = this.#maps;
    const out: Duplicate[] = [];
    const check = (ids: IdSet | undefined, host: string) => {
      if (ids === undefined || typeof ids === 'string') return; // one domain row
      const found: Route[] = [];
      for (const id of idSetValues(ids)) {
        const d = m.domains.get(id);
        const r = d === undefined ? undefined : domainRoute(host, d, deploymentOf(d, m), m);
        if (r?.ok === true) found.push(r.route);
      }
      if (found.length < 2) return;
      found.sort(compareRoutes);
      out.push({ host, chosen: found[0]!, others: found.slice(1) });
    };
    // Only hosts several rows name: those of the bootstrap's rows and those written since (a pass
    // over a million single-row hosts held the event loop).
    if (hosts === undefined) m.hostDomains.forEachOf(m.domainBase.multiHosts, check);
    else for (const host of hosts) check(m.hostDomains.get(host), host);
    return out;
  }

  /** The valid public addresses of all regions (our load balancers); a pass over the few region rows. */
  regionAddresses(): Set<string> {
    const out = new Set<string>();
    this.#maps.regions.forEach((r) => {
      const ip = parseIp(r.publicIpv4);
      if (ip !== undefined) out.add(ip);
    });
    return out;
  }

  get counts(): Readonly<Record<TableName, number>> {
    const m = this.#maps;
    return { domains: m.domains.size, deployments: m.deployments.size, vms: m.vms.size, regions: m.regions.size };
  }

  static empty(): RowState {
    return RowState.load({ domains: [], deployments: [], vms: [], regions: [] }).state;
  }

  /**
   * Builds the state from full table contents (bootstrap). Rows without an id, or with an id seen
   * before in the same table, are reported and skipped.
   *
   * One pass per table, parents first, straight into the shards (no pair lists or grouping maps):
   * each child row takes its parent's id string, indexes are filled as rows arrive, and each
   * domain's route is computed as the domain is read, since its parents are all in place by then.
   * Child rows are read grouped by their parent key's shard (see byParentShard), which keeps
   * the lookups of a million rows mostly in cache.
   */
  static load(tables: AnyRows): { state: RowState; problems: RowProblem[] } {
    const steps = RowState.#loadSteps(tables, false);
    for (let r = steps.next(); ; r = steps.next()) if (r.done === true) return r.value;
  }

  /**
   * `load`, giving the event loop a turn at least every `sliceMs` of work: a bootstrap while the
   * proxy already serves (a reconnect) must not stall requests for the seconds a million rows take.
   * With `release`, each table's row list is emptied once it has been read, so the raw rows (as
   * much memory as the state itself at a million routes) are not kept alive through the rest of
   * the build, next to the table that still serves.
   */
  static async loadAsync(
    tables: AnyRows,
    sliceMs = 2,
    options: { release?: boolean } = {},
  ): Promise<{ state: RowState; problems: RowProblem[] }> {
    const steps = RowState.#loadSteps(tables, options.release === true);
    let sliceStart = performance.now();
    for (let r = steps.next(); ; r = steps.next()) {
      if (r.done === true) return r.value;
      if (performance.now() - sliceStart >= sliceMs) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
    }
  }

  /** The load, as a generator that pauses every LOAD_BATCH rows (so callers may yield). */
  static *#loadSteps(tables: AnyRows, release: boolean): Generator<void, { state: RowState; problems: RowProblem[] }> {
    const load = new Bootstrap(tables, release);
    for (const table of PARENTS_FIRST) {
      yield* load.read(table, tables[table]);
      const read = tables[table];
      if (release && Array.isArray(read)) (read as RowValues[]).length = 0;
      yield;
    }
    const maps = yield* load.finish();
    return { state: new RowState(maps), problems: load.problems };
  }

  /**
   * Applies one transaction's changes atomically. Throws RowError when a change cannot be
   * understood (an update to an unknown row with unchanged columns): the caller must resync.
   */
  apply(changes: readonly RowChange[]): ApplyResult {
    const tx = new Transaction(this.#maps);
    for (const change of changes) tx.change(change);
    const touchedHosts = tx.reachedHosts();
    const changedHosts = tx.recomputeRoutes(touchedHosts);
    return { state: new RowState(tx.commit()), changedHosts, touchedHosts, problems: tx.problems };
  }
}

/**
 * One `apply` in progress: editors over every map, and what the changes touched (hosts named by
 * changed domain rows, changed parent rows to follow down to their hosts).
 */
class Transaction {
  readonly #e: Editors;
  readonly #domainBase: DomainBase;
  readonly #hosts = new Set<string>();
  readonly #deployments = new Set<string>();
  readonly #vms = new Set<string>();
  readonly #regions = new Set<string>();
  readonly problems: RowProblem[] = [];

  constructor(maps: Maps) {
    this.#e = openEditors(maps);
    this.#domainBase = maps.domainBase;
  }

  /** Replaces the change's row (removes the old one, writes the new one) in its table and indexes. */
  change(change: RowChange): void {
    const e = this.#e;
    switch (change.table) {
      case 'domains':
        return this.#replace('domains', change, e.domains, (d, add) => this.#linkDomain(d, add));
      case 'deployments':
        return this.#replace('deployments', change, e.deployments, (d, add) => this.#linkDeployment(d, add));
      case 'vms':
        return this.#replace('vms', change, e.vms, (v, add) => this.#linkVm(v, add));
      case 'regions':
        return this.#replace('regions', change, e.regions, (r) => this.#linkRegion(r));
    }
  }

  /**
   * The shape every table's change has: the row the change replaces (if any) is unlinked and
   * removed, then the new row (unless a delete) is written and linked. `link` keeps the table's
   * indexes and marks what the row reaches, for the old row and the new one alike.
   */
  #replace<T extends TableName>(
    table: T,
    change: RowChange,
    rows: Writer<RowTypes[T]>,
    link: (row: RowTypes[T], add: boolean) => void,
  ): void {
    const old = rows.get(previousId(change));
    if (old !== undefined) {
      link(old, false);
      rows.delete(old.id);
    }
    if (change.op === 'delete') return;
    // A foreign key takes the id string of the parent row as it is in this transaction.
    const row = toRow(table, change.row, old, (parent, id) => this.#e[parent].get(id)?.id ?? id);
    rows.set(row.id, row);
    link(row, true);
  }

  // The links: list a row in (or take it out of) the indexes over its columns, and mark what it reaches.
  // Methods, not arrow-function fields: fields made a closure each for every transaction, empty
  // or not, and raised the fixed cost of an apply from ~0.4 µs to ~2.3 µs.

  #linkDomain(d: DomainRow, add: boolean): void {
    const host = hostOf(d);
    if (host !== undefined) {
      relink(this.#e.hostDomains, host, d.id, add);
      this.#hosts.add(host);
    }
    if (d.deploymentId !== null) relink(this.#e.deploymentDomains, d.deploymentId, d.id, add);
  }

  #linkDeployment(d: DeploymentRow, add: boolean): void {
    if (d.vmId !== null) reindex(this.#e.vmDeployments, d.vmId, d.id, add);
    this.#deployments.add(d.id);
  }

  #linkVm(v: VmRow, add: boolean): void {
    if (v.regionId !== null) reindex(this.#e.regionVms, v.regionId, v.id, add);
    this.#vms.add(v.id);
  }

  #linkRegion(r: RegionRow): void {
    this.#regions.add(r.id);
  }

  /**
   * The hosts whose route the changes can reach: changed parents are followed down through the
   * indexes as they are after the transaction (rows that moved away were themselves changed and
   * marked). Reports reachable domain rows whose name is not a host.
   */
  reachedHosts(): Set<string> {
    const e = this.#e;
    for (const r of this.#regions) for (const v of idSetValues(e.regionVms.get(r))) this.#vms.add(v);
    for (const v of this.#vms) for (const d of idSetValues(e.vmDeployments.get(v))) this.#deployments.add(d);
    for (const d of this.#deployments) {
      for (const domainId of idSetValues(e.deploymentDomains.get(d))) {
        const domain = e.domains.get(domainId);
        const host = hostOf(domain);
        if (host !== undefined) this.#hosts.add(host);
        else if (domain !== undefined && eligible(domain, deploymentOf(domain, e), e)) this.problems.push(badName(domain));
      }
    }
    return this.#hosts;
  }

  /** Recomputes the route of each of `hosts`; returns those whose route was added, removed or changed. */
  recomputeRoutes(hosts: Iterable<string>): string[] {
    const changed: string[] = [];
    for (const host of hosts) if (this.#recomputeRoute(host)) changed.push(host);
    return changed;
  }

  #recomputeRoute(host: string): boolean {
    const e = this.#e;
    const route = pickRoute(host, idSetValues(e.hostDomains.get(host)), (id) => e.domains.get(id), e, this.problems);
    return route === undefined ? e.routes.delete(host) : e.routes.set(host, route);
  }

  commit(): Maps {
    return commitEditors(this.#e, this.#domainBase);
  }
}

/** Editors copy nothing until their first write, so the maps a transaction does not touch cost nothing. */
function openEditors(m: Maps): Editors {
  return {
    domains: m.domains.edit(),
    deployments: m.deployments.edit(),
    vms: m.vms.edit(),
    regions: m.regions.edit(),
    hostDomains: m.hostDomains.edit(),
    deploymentDomains: m.deploymentDomains.edit(),
    vmDeployments: m.vmDeployments.edit(),
    regionVms: m.regionVms.edit(),
    routes: m.routes.edit(),
  };
}

/** The editors' maps; an editor that wrote nothing gives back its base map, the same object. */
function commitEditors(e: Editors, domainBase: DomainBase): Maps {
  return {
    domains: e.domains.commit(),
    deployments: e.deployments.commit(),
    vms: e.vms.commit(),
    regions: e.regions.commit(),
    hostDomains: e.hostDomains.commit(),
    deploymentDomains: e.deploymentDomains.commit(),
    vmDeployments: e.vmDeployments.commit(),
    regionVms: e.regionVms.commit(),
    routes: e.routes.commit(),
    domainBase,
  };
}

/** The primary key of the row a change replaces: a delete's, the old one when an update changed it, else the row's own. */
function previousId(change: RowChange): string {
  if (change.op === 'delete') return change.id;
  if (change.op === 'update' && change.oldId !== undefined) return change.oldId;
  return String(change.row.id);
}

/** Each table is read after the table its foreign key points to, so every parent is in place. */
const PARENTS_FIRST = ['regions', 'vms', 'deployments', 'domains'] as const satisfies readonly TableName[];

/**
 * One `load` in progress: a builder per map, filled table by table (`read`, parents first), then
 * finished (`finish`). The domain rows go into columns (domain-base.ts), each row's route into
 * the route table as it is read, since its parents are all in place by then.
 */
class Bootstrap {
  readonly problems: RowProblem[] = [];
  readonly #regions: ShardedMapBuilder<RegionRow>;
  readonly #vms: ShardedMapBuilder<VmRow>;
  readonly #deployments: ShardedMapBuilder<DeploymentRow>;
  readonly #domains: DomainRowsReader;
  /** The domain rows in columns, once read. */
  #domainBase: DomainBase | undefined;
  readonly #regionVms: DraftIndex;
  readonly #vmDeployments: DraftIndex;
  readonly #routes: RouteTableBuilder;
  readonly #lookup: Lookup;

  constructor(
    tables: AnyRows,
    readonly release: boolean,
  ) {
    this.#regions = ShardedMap.builder(tables.regions.length);
    this.#vms = ShardedMap.builder(tables.vms.length);
    this.#deployments = ShardedMap.builder(tables.deployments.length);
    const domains = tables.domains;
    this.#domains = domains instanceof DomainRowsReader ? domains : new DomainRowsReader(domains.length);
    // Each parent-keyed index is sized like its parent map, so a parent id falls in the same shard
    // index in both and the shard found for the parent lookup serves the index too.
    this.#regionVms = new DraftIndex(tables.regions.length);
    this.#vmDeployments = new DraftIndex(tables.vms.length);
    this.#routes = RouteTable.builder(domains instanceof DomainRowsReader ? domains.count : domains.length);
    this.#lookup = { deployments: this.#deployments, vms: this.#vms, regions: this.#regions };
  }

  /** Reads one table's rows (its parent table read before, see PARENTS_FIRST). */
  read(table: TableName, rows: AnyRows[TableName]): Generator<void, void> {
    if (table === 'domains') return this.#readDomains(rows);
    if (!Array.isArray(rows)) throw new Error(`RowState.load: ${table} rows must be an array`);
    const problems = this.problems;
    switch (table) {
      case 'regions':
        return loadTable('regions', rows, undefined, this.#regions, problems, () => {});
      case 'vms':
        return loadTable('vms', rows, parentColumn('vms', 'region_id', this.#regions), this.#vms, problems, this.#indexVm);
      case 'deployments':
        return loadTable(
          'deployments',
          rows,
          parentColumn('deployments', 'vm_id', this.#vms),
          this.#deployments,
          problems,
          this.#indexDeployment,
        );
    }
  }

  readonly #indexVm = (v: VmRow, _region: unknown, shard: number): void => {
    if (v.regionId !== null) this.#regionVms.add(shard, v.regionId, v.id);
  };

  readonly #indexDeployment = (d: DeploymentRow, _vm: unknown, shard: number): void => {
    if (d.vmId !== null) this.#vmDeployments.add(shard, d.vmId, d.id);
  };

  /**
   * The domain rows into columns (unless the snapshot load read them as they came), then each
   * kept row's route, now that every parent row is in place.
   */
  *#readDomains(rows: AnyRows['domains']): Generator<void, void> {
    const reader = this.#domains;
    if (rows !== reader) {
      const list = rows as readonly RowValues[];
      for (let k = 0; k < list.length; k++) {
        if (k % LOAD_BATCH === LOAD_BATCH - 1) yield;
        reader.read(list[k]!);
      }
      // The routes are computed from the columns: the raw rows may go before that.
      if (this.release) (list as RowValues[]).length = 0;
    }
    this.problems.push(...reader.problems);
    yield;
    const base = yield* reader.buildSteps();
    this.#domainBase = base;
    for (let from = 0; from < base.size; from += LOAD_BATCH) {
      yield;
      base.forEachIn(from, from + LOAD_BATCH, this.#route);
    }
  }

  /** The route of domain row `d` into the table: the same duplicate rule as pickRoute, one row at a time. */
  readonly #route = (d: DomainRow, host: string | undefined, firstOfHost: boolean): void => {
    const deployment = deploymentOf(d, this.#lookup);
    if (host === undefined) {
      if (eligible(d, deployment, this.#lookup)) this.problems.push(badName(d));
      return;
    }
    const result = domainRoute(host, d, deployment, this.#lookup);
    if (result === undefined) return;
    if (!result.ok) this.problems.push(result.problem);
    // A host's first row has no rival.
    else if (firstOfHost) this.#routes.add(host, result.route);
    else if (preferred(result.route, this.#routes.get(host))) this.#routes.set(host, result.route);
  };

  /** The finished maps; a pause after each large index (each is a pass over up to a million entries). */
  *finish(): Generator<void, Maps> {
    yield;
    const vmDeployments = yield* this.#vmDeployments.finish();
    yield;
    const regionVms = yield* this.#regionVms.finish();
    yield;
    const base = this.#domainBase ?? this.#domains.build();
    return {
      domains: layered(base, base.size),
      deployments: this.#deployments.build(),
      vms: this.#vms.build(),
      regions: this.#regions.build(),
      hostDomains: new DeltaIndex({ get: (host) => base.hostRows(host) }),
      deploymentDomains: new DeltaIndex({ get: (id) => base.deploymentRows(id) }),
      vmDeployments,
      regionVms,
      routes: this.#routes.build(),
      domainBase: base,
    };
  }
}

/** Where a child table's foreign key is among its READ_COLUMNS values, and the parent's map. */
function parentColumn<P>(table: TableName, column: string, map: ShardedMapBuilder<P>): ParentColumn<P> {
  return { column: READ_COLUMNS[table].indexOf(column), map };
}

/** Positions in a new order, and for each position the shard it falls in (-1: none). */
interface ShardOrder {
  readonly order: Int32Array;
  readonly shards: Int32Array;
}

/**
 * The order to read child rows in: grouped by the shard their parent key falls in (stable, NULLs
 * last), with that shard for each position (-1 for NULL). The parent lookup and the parent-keyed
 * index (same shard count, so the same shard index) then stay in cache across a group instead of
 * missing on every row of a million.
 */
function* byParentShard(rows: readonly RowValues[], column: number, parent: ShardedMapBuilder<unknown>): Generator<void, ShardOrder> {
  const nulls = parent.shardCount; // the group after the last shard
  const group = new Int32Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    if (i % LOAD_BATCH === LOAD_BATCH - 1) yield;
    const value = rows[i]![column];
    group[i] = value === null || value === undefined ? nulls : parent.shardOf(typeof value === 'string' ? value : String(value));
  }
  const { order, start } = yield* groupOrder(group, nulls + 1);
  const shards = new Int32Array(rows.length).fill(-1);
  for (let g = 0; g < nulls; g++) shards.fill(g, start[g], start[g + 1]);
  return { order, shards };
}

/**
 * A stable counting sort of the positions 0..n-1 by `group` (0 to groups - 1; a negative group
 * leaves the position out): `order` lists the positions group by group, group g's from
 * `start[g]` to `start[g + 1]`.
 */
function* groupOrder(group: Int32Array, groups: number): Generator<void, { order: Int32Array; start: Int32Array }> {
  const start = new Int32Array(groups + 1);
  for (let i = 0; i < group.length; i++) if (group[i]! >= 0) start[group[i]! + 1]!++;
  for (let g = 0; g < groups; g++) start[g + 1]! += start[g]!;
  const next = start.slice(0, groups);
  const order = new Int32Array(start[groups]!);
  for (let i = 0; i < group.length; i++) {
    if (i % LOAD_BATCH === LOAD_BATCH - 1) yield;
    const g = group[i]!;
    if (g >= 0) order[next[g]!++] = i;
  }
  return { order, start };
}

/**
 * Rows between two pauses of a load, where loadAsync may look at the clock. A domain's route
 * costs 2–15 µs (more when its VM and deployment rows are not in cache): at 4,096 rows a pause
 * came after up to 60 ms of CPU (bench/stream-bootstrap.ts, 100k VMs); at 1,024, after ~15 ms.
 */
const LOAD_BATCH = 1024;

/**
 * Loads one table's rows into `into`. With `parent`, rows are read grouped by their parent's
 * shard, each row's parent is looked up once (its id string is shared by the child row, see
 * SharedId) and handed to `each` with its shard, so the parent-keyed index needs no hashing.
 */
function* loadTable<T extends TableName, P extends { readonly id: string }>(
  table: T,
  rows: readonly RowValues[],
  parent: ParentColumn<P> | undefined,
  into: ShardedMapBuilder<RowTypes[T]>,
  problems: RowProblem[],
  each: (row: RowTypes[T], parent: P | undefined, parentShard: number) => void,
): Generator<void, void> {
  const grouped = parent === undefined ? undefined : yield* byParentShard(rows, parent.column, parent.map);
  const { built, parents, shardOfRow } = yield* readRows(table, rows, parent, grouped, into, problems);
  yield* fillShards(table, into, built, shardOfRow, problems);
  // Indexes and routes, back in parent-shard order.
  for (let k = 0; k < rows.length; k++) {
    if (k % LOAD_BATCH === LOAD_BATCH - 1) yield;
    const row = built[k];
    if (row !== undefined) each(row, parents[k], grouped === undefined ? -1 : grouped.shards[k]!);
  }
}

interface ParentColumn<P> {
  readonly column: number;
  readonly map: ShardedMapBuilder<P>;
}

/**
 * Builds each row, in parent-shard order (so the parent lookups stay in cache), with its parent
 * row and the shard of `into` it goes to (-1 for a row that cannot be built, reported).
 */
function* readRows<T extends TableName, P extends { readonly id: string }>(
  table: T,
  rows: readonly RowValues[],
  parent: ParentColumn<P> | undefined,
  grouped: ShardOrder | undefined,
  into: ShardedMapBuilder<RowTypes[T]>,
  problems: RowProblem[],
): Generator<void, { built: (RowTypes[T] | undefined)[]; parents: (P | undefined)[]; shardOfRow: Int32Array }> {
  const built: (RowTypes[T] | undefined)[] = new Array<RowTypes[T] | undefined>(rows.length);
  const parents: (P | undefined)[] = new Array<P | undefined>(rows.length);
  let current: P | undefined;
  // toRow asks for the parent of the one foreign key each table has: the row looked up just before.
  const shared: SharedId = (_table, id) => (current === undefined ? id : current.id);
  const shardOfRow = new Int32Array(rows.length);
  for (let k = 0; k < rows.length; k++) {
    if (k % LOAD_BATCH === LOAD_BATCH - 1) yield;
    const columns = rows[grouped === undefined ? k : grouped.order[k]!]!;
    current = undefined;
    if (parent !== undefined && grouped!.shards[k]! >= 0) {
      const value = columns[parent.column];
      current = parent.map.getIn(grouped!.shards[k]!, typeof value === 'string' ? value : String(value));
      parents[k] = current;
    }
    const row = readRow(table, columns, problems, shared);
    built[k] = row;
    shardOfRow[k] = row === undefined ? -1 : into.shardOf(row.id);
  }
  return { built, parents, shardOfRow };
}

/**
 * Fills each shard of `into` in one go from its rows: one random shard per row was the most
 * expensive step of a 1M-row load, and a Map made from a list is sized once instead of growing
 * five times on the way to ~128 entries. A repeated id is reported and its row dropped from `built`.
 */
function* fillShards<T extends TableName>(
  table: T,
  into: ShardedMapBuilder<RowTypes[T]>,
  built: (RowTypes[T] | undefined)[],
  shardOfRow: Int32Array,
  problems: RowProblem[],
): Generator<void, void> {
  const groups = into.shardCount;
  const { order: byShard, start } = yield* groupOrder(shardOfRow, groups);
  let sincePause = 0;
  for (let g = 0; g < groups; g++) {
    const from = start[g]!;
    const to = start[g + 1]!;
    if (from === to) continue;
    const entries = new Array<[string, RowTypes[T]]>(to - from);
    for (let j = from; j < to; j++) {
      const row = built[byShard[j]!]!;
      entries[j - from] = [row.id, row];
    }
    for (const repeat of into.fillShard(g, entries)) {
      const k = byShard[from + repeat]!;
      problems.push(duplicateIdProblem(table, built[k]!.id));
      built[k] = undefined;
    }
    sincePause += to - from;
    if (sincePause >= LOAD_BATCH) {
      sincePause = 0;
      yield;
    }
  }
}

/**
 * A reverse index while loading: a parent's first child is stored as the id itself, more as an
 * array grown in place. Only parents with several children need finishing, so they are listed
 * (a pass over a million single-child entries would only read them back).
 */
class DraftIndex {
  readonly #map: ShardedMapBuilder<IdSetDraft | IdSet>;
  readonly #multi: string[] = [];

  constructor(sizeHint: number) {
    this.#map = ShardedMap.builder(sizeHint);
  }

  /** Adds `child` under `parent`, which falls in `shard` (see shardOf); returns whether it is the parent's first child. */
  add(shard: number, parent: string, child: string): boolean {
    const before = this.#map.getIn(shard, parent) as IdSetDraft | undefined;
    const after = idSetDraftAdd(before, child);
    if (after === before) return false;
    this.#map.setIn(shard, parent, after);
    if (before === undefined) return true;
    this.#multi.push(parent);
    return false;
  }

  /** Pauses every LOAD_BATCH ids: a million domains over a thousand deployments are a million ids to finish. */
  *finish(): Generator<void, ShardedMap<IdSet>> {
    let sincePause = 0;
    for (const parent of this.#multi) {
      const shard = this.#map.shardOf(parent);
      const draft = this.#map.getIn(shard, parent) as IdSetDraft;
      this.#map.setIn(shard, parent, idSetFinish(draft));
      sincePause += draft.length;
      if (sincePause >= LOAD_BATCH) {
        sincePause = 0;
        yield;
      }
    }
    // Every value is an IdSet now.
    return this.#map.build() as ShardedMap<IdSet>;
  }
}

function relink(index: DeltaIndexEditor, parent: string, child: string, add: boolean): void {
  if (add) index.add(parent, child);
  else index.delete(parent, child);
}

function reindex(index: ShardedMapEditor<IdSet>, parent: string, child: string, add: boolean): void {
  const next = add ? idSetAdd(index.get(parent), child) : idSetDelete(index.get(parent), child);
  if (next === undefined) index.delete(parent);
  else index.set(parent, next);
}

interface Lookup {
  readonly deployments: { get(id: string): DeploymentRow | undefined };
  readonly vms: { get(id: string): VmRow | undefined };
  readonly regions: { get(id: string): RegionRow | undefined };
}

/** The deployment row a domain row points at. */
function deploymentOf(d: DomainRow, m: Lookup): DeploymentRow | undefined {
  return d.deploymentId === null ? undefined : m.deployments.get(d.deploymentId);
}

/**
 * The documented query's WHERE and JOINs for one domain row and its deployment row (looked up by
 * the caller: the bootstrap has it at hand): its VM and region, or undefined when it routes nowhere.
 */
function chain(d: DomainRow, dep: DeploymentRow | undefined, m: Lookup): { vm: VmRow; region: RegionRow } | undefined {
  if (!d.verified || dep === undefined || !dep.ready || dep.vmId === null) return undefined;
  const vm = m.vms.get(dep.vmId);
  if (vm === undefined || !vm.running || vm.regionId === null) return undefined;
  const region = m.regions.get(vm.regionId);
  return region === undefined ? undefined : { vm, region };
}

function eligible(d: DomainRow, dep: DeploymentRow | undefined, m: Lookup): boolean {
  return chain(d, dep, m) !== undefined;
}

/**
 * The one rule for a route from rows, used by the bootstrap and by applying a change alike: the
 * query's WHERE and JOINs (chain), then the same validation as the query's rows (makeRoute).
 * Undefined when the row routes nowhere; a failed result when a value is not usable.
 */
function domainRoute(host: string, d: DomainRow, dep: DeploymentRow | undefined, m: Lookup): RouteResult | undefined {
  const c = chain(d, dep, m);
  return c === undefined ? undefined : makeRoute(host, String(d.name), c.vm.privateIp, c.vm.port, c.vm.regionId, c.region.publicIpv4);
}

function badName(d: DomainRow): RowProblem {
  return { domain: String(d.name), field: 'domain_name', value: String(d.name), reason: `not a valid host name (domain ${d.id})` };
}

function pickRoute(
  host: string,
  domainIds: Iterable<string>,
  domain: (id: string) => DomainRow | undefined,
  m: Lookup,
  problems: RowProblem[],
): Route | undefined {
  let best: Route | undefined;
  for (const id of domainIds) {
    const d = domain(id);
    const result = d === undefined ? undefined : domainRoute(host, d, deploymentOf(d, m), m);
    if (result === undefined) continue;
    if (!result.ok) problems.push(result.problem);
    else if (preferred(result.route, best)) best = result.route;
  }
  return best;
}
