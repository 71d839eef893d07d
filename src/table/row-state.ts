import { normaliseHost } from './host.js';
import { type IdSet, idSetAdd, idSetDelete, idSetOf, idSetValues } from './id-set.js';
import { compareRoutes, makeRoute, type Route, type RowProblem } from './route.js';
import { type Columns, type DeploymentRow, type DomainRow, type RegionRow, RowError, type TableName, toRow, type VmRow } from './rows.js';
import { ShardedMap, type ShardedMapEditor } from './sharded-map.js';

/** One row change, as decoded from the replication stream. */
export type RowChange =
  | { readonly op: 'insert'; readonly table: TableName; readonly row: Columns }
  /** `oldId` is set when the primary key itself changed. Columns that arrive `undefined` are unchanged. */
  | { readonly op: 'update'; readonly table: TableName; readonly row: Columns; readonly oldId?: string }
  | { readonly op: 'delete'; readonly table: TableName; readonly id: string };

export interface TableRows {
  readonly domains: readonly Columns[];
  readonly deployments: readonly Columns[];
  readonly vms: readonly Columns[];
  readonly regions: readonly Columns[];
}

export interface ApplyResult {
  readonly state: RowState;
  /** Hosts whose route was added, removed or changed. */
  readonly changedHosts: readonly string[];
  readonly problems: readonly RowProblem[];
}

interface Maps {
  readonly domains: ShardedMap<DomainRow>;
  readonly deployments: ShardedMap<DeploymentRow>;
  readonly vms: ShardedMap<VmRow>;
  readonly regions: ShardedMap<RegionRow>;
  /** normalised host → domain ids with that name */
  readonly hostDomains: ShardedMap<IdSet>;
  /** deployment id → domain ids pointing at it */
  readonly deploymentDomains: ShardedMap<IdSet>;
  /** vm id → deployment ids pointing at it */
  readonly vmDeployments: ShardedMap<IdSet>;
  /** region id → vm ids in it */
  readonly regionVms: ShardedMap<IdSet>;
  /** normalised host → route (what the request path reads) */
  readonly routes: ShardedMap<Route>;
}

type Editors = { -readonly [K in keyof Maps]: Maps[K] extends ShardedMap<infer V> ? ShardedMapEditor<V> : never };

function hostOf(row: DomainRow | undefined): string | undefined {
  return row !== undefined && typeof row.name === 'string' ? normaliseHost(row.name) : undefined;
}

/**
 * The rows of the four tables keyed by primary key, reverse indexes, and the routes derived from
 * them. Immutable: `apply` returns a new state that shares every untouched shard with this one,
 * and recomputes only the routes the changed rows can reach.
 */
export class RowState {
  private constructor(private readonly maps: Maps) {}

  get routes(): ShardedMap<Route> {
    return this.maps.routes;
  }

  get counts(): Readonly<Record<TableName, number>> {
    const m = this.maps;
    return { domains: m.domains.size, deployments: m.deployments.size, vms: m.vms.size, regions: m.regions.size };
  }

  static empty(): RowState {
    return RowState.load({ domains: [], deployments: [], vms: [], regions: [] }).state;
  }

  /** Builds the state from full table contents (bootstrap). Rows without an id are reported and skipped. */
  static load(tables: TableRows): { state: RowState; problems: RowProblem[] } {
    const problems: RowProblem[] = [];
    const rows = <T extends TableName>(table: T) => {
      const out: [string, ReturnType<typeof toRow<T>>][] = [];
      for (const columns of tables[table]) {
        try {
          const row = toRow(table, columns);
          out.push([row.id, row]);
        } catch (err) {
          problems.push({ domain: '', field: `${table}.id`, value: String(columns.id), reason: (err as Error).message });
        }
      }
      return out;
    };
    const domains = rows('domains');
    const deployments = rows('deployments');
    const vms = rows('vms');
    const regions = rows('regions');

    const group = (pairs: Iterable<readonly [string | null | undefined, string]>) => {
      const m = new Map<string, string[]>();
      for (const [parent, child] of pairs) {
        if (parent === null || parent === undefined) continue;
        const list = m.get(parent);
        if (list === undefined) m.set(parent, [child]);
        else list.push(child);
      }
      return ShardedMap.from([...m].map(([k, ids]) => [k, idSetOf(ids)!] as const));
    };
    const base: Maps = {
      domains: ShardedMap.from(domains),
      deployments: ShardedMap.from(deployments),
      vms: ShardedMap.from(vms),
      regions: ShardedMap.from(regions),
      hostDomains: group(domains.map(([id, d]) => [hostOf(d), id] as const)),
      deploymentDomains: group(domains.map(([id, d]) => [d.deploymentId, id] as const)),
      vmDeployments: group(deployments.map(([id, d]) => [d.vmId, id] as const)),
      regionVms: group(vms.map(([id, v]) => [v.regionId, id] as const)),
      routes: ShardedMap.empty(),
    };
    const routes: [string, Route][] = [];
    for (const host of base.hostDomains.keys()) {
      const route = pickRoute(host, idSetValues(base.hostDomains.get(host)), (id) => base.domains.get(id), base, problems);
      if (route !== undefined) routes.push([host, route]);
    }
    for (const [, d] of domains) {
      if (hostOf(d) === undefined && eligible(d, base)) problems.push(badName(d));
    }
    return { state: new RowState({ ...base, routes: ShardedMap.from(routes) }), problems };
  }

  /**
   * Applies one transaction's changes atomically. Throws RowError when a change cannot be
   * understood (an update to an unknown row with unchanged columns): the caller must resync.
   */
  apply(changes: readonly RowChange[]): ApplyResult {
    const e = Object.fromEntries(Object.entries(this.maps).map(([k, v]) => [k, (v as ShardedMap<unknown>).edit()])) as Editors;
    const hosts = new Set<string>();
    const deployments = new Set<string>();
    const vms = new Set<string>();
    const regions = new Set<string>();
    const problems: RowProblem[] = [];

    for (const change of changes) {
      const id = change.op === 'delete' ? change.id : change.op === 'update' && change.oldId !== undefined ? change.oldId : undefined;
      switch (change.table) {
        case 'domains': {
          const oldId = id ?? String(change.op === 'delete' ? change.id : change.row.id);
          const old = e.domains.get(oldId);
          if (old !== undefined) {
            const host = hostOf(old);
            if (host !== undefined) {
              reindex(e.hostDomains, host, old.id, false);
              hosts.add(host);
            }
            if (old.deploymentId !== null) reindex(e.deploymentDomains, old.deploymentId, old.id, false);
            e.domains.delete(old.id);
          }
          if (change.op !== 'delete') {
            const row = toRowOrResync('domains', change, old);
            e.domains.set(row.id, row);
            const host = hostOf(row);
            if (host !== undefined) {
              reindex(e.hostDomains, host, row.id, true);
              hosts.add(host);
            }
            if (row.deploymentId !== null) reindex(e.deploymentDomains, row.deploymentId, row.id, true);
          }
          break;
        }
        case 'deployments': {
          const oldId = id ?? String(change.op === 'delete' ? change.id : change.row.id);
          const old = e.deployments.get(oldId);
          if (old !== undefined) {
            if (old.vmId !== null) reindex(e.vmDeployments, old.vmId, old.id, false);
            e.deployments.delete(old.id);
            deployments.add(old.id);
          }
          if (change.op !== 'delete') {
            const row = toRowOrResync('deployments', change, old);
            e.deployments.set(row.id, row);
            if (row.vmId !== null) reindex(e.vmDeployments, row.vmId, row.id, true);
            deployments.add(row.id);
          }
          break;
        }
        case 'vms': {
          const oldId = id ?? String(change.op === 'delete' ? change.id : change.row.id);
          const old = e.vms.get(oldId);
          if (old !== undefined) {
            if (old.regionId !== null) reindex(e.regionVms, old.regionId, old.id, false);
            e.vms.delete(old.id);
            vms.add(old.id);
          }
          if (change.op !== 'delete') {
            const row = toRowOrResync('vms', change, old);
            e.vms.set(row.id, row);
            if (row.regionId !== null) reindex(e.regionVms, row.regionId, row.id, true);
            vms.add(row.id);
          }
          break;
        }
        case 'regions': {
          const oldId = id ?? String(change.op === 'delete' ? change.id : change.row.id);
          const old = e.regions.get(oldId);
          if (old !== undefined) {
            e.regions.delete(old.id);
            regions.add(old.id);
          }
          if (change.op !== 'delete') {
            const row = toRowOrResync('regions', change, old);
            e.regions.set(row.id, row);
            regions.add(row.id);
          }
          break;
        }
      }
    }

    // Expand changed parents to the hosts that can reach them, through the indexes as they are
    // after the transaction (rows that moved away were themselves changed and counted above).
    for (const r of regions) for (const v of idSetValues(e.regionVms.get(r))) vms.add(v);
    for (const v of vms) for (const d of idSetValues(e.vmDeployments.get(v))) deployments.add(d);
    for (const d of deployments) {
      for (const domainId of idSetValues(e.deploymentDomains.get(d))) {
        const domain = e.domains.get(domainId);
        const host = hostOf(domain);
        if (host !== undefined) hosts.add(host);
        else if (domain !== undefined && eligible(domain, e)) problems.push(badName(domain));
      }
    }

    const changedHosts: string[] = [];
    for (const host of hosts) {
      const route = pickRoute(host, idSetValues(e.hostDomains.get(host)), (id) => e.domains.get(id), e, problems);
      const before = e.routes.get(host);
      if (route === undefined) {
        if (before !== undefined) {
          e.routes.delete(host);
          changedHosts.push(host);
        }
      } else if (before === undefined || compareRoutes(before, route) !== 0) {
        e.routes.set(host, route);
        changedHosts.push(host);
      }
    }

    const maps = Object.fromEntries(Object.entries(e).map(([k, v]) => [k, (v as ShardedMapEditor<unknown>).commit()])) as unknown as Maps;
    return { state: new RowState(maps), changedHosts, problems };
  }
}

function toRowOrResync<T extends TableName>(table: T, change: RowChange, previous: Parameters<typeof toRow<T>>[2]) {
  if (change.op === 'delete') throw new RowError(table, 'internal: delete has no row');
  return toRow(table, change.row, previous);
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

/** The documented query's WHERE and JOINs for one domain row. */
function chain(d: DomainRow, m: Lookup): { vm: VmRow; region: RegionRow } | undefined {
  if (!d.verified || d.deploymentId === null) return undefined;
  const dep = m.deployments.get(d.deploymentId);
  if (dep === undefined || !dep.ready || dep.vmId === null) return undefined;
  const vm = m.vms.get(dep.vmId);
  if (vm === undefined || !vm.running || vm.regionId === null) return undefined;
  const region = m.regions.get(vm.regionId);
  return region === undefined ? undefined : { vm, region };
}

function eligible(d: DomainRow, m: Lookup): boolean {
  return chain(d, m) !== undefined;
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
    if (d === undefined) continue;
    const c = chain(d, m);
    if (c === undefined) continue;
    const result = makeRoute(host, String(d.name), c.vm.privateIp, c.vm.port, c.vm.regionId, c.region.publicIpv4);
    if (!result.ok) {
      problems.push(result.problem);
      continue;
    }
    if (best === undefined || compareRoutes(result.route, best) < 0) best = result.route;
  }
  return best;
}
