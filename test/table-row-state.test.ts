/**
 * RowState (the incremental model fed by logical replication) against a reference evaluation of
 * the documented query, without a database.
 *
 * The model holds the four tables as plain rows with the real column names; `referenceQuery`
 * evaluates the documented SQL on it (INNER JOINs where NULL never equals anything, then the
 * WHERE clauses), and `routesFromQueryRows` of those rows is the expected route map.
 *
 * Environment:
 *   EDGEPROXY_PROPERTY_STEPS  transactions in total for the random test (default 3200, split over the seeds)
 *   EDGEPROXY_PROPERTY_SEED   run only this seed (with all the steps), e.g. to reproduce a failure
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { diffRoutes } from '../src/table/diff.js';
import { compareRoutes, makeRoute, type Route } from '../src/table/route.js';
import { routesFromQueryRows } from '../src/table/query-routes.js';
import { type ApplyResult, RowState, type TableRows } from '../src/table/row-state.js';
import {
  READ_COLUMNS,
  ROUTABLE_STATUS,
  routableStatus,
  type RowChange,
  RowError,
  type RowValues,
  rowValues,
  TABLES,
  type TableName,
} from '../src/table/rows.js';
import { ROUTES_QUERY } from '../src/db/routes-query.js';
import type { RouteTable } from '../src/table/route-table.js';

// ---------------------------------------------------------------------------------------------
// The model: four tables keyed by primary key, rows with the real column names.
// ---------------------------------------------------------------------------------------------

interface DomainRec {
  id: string;
  name: string;
  deployment_id: string | null;
  verified_at: Date | null;
}
interface DeploymentRec {
  id: string;
  status: string;
  vm_id: string | null;
}
interface VmRec {
  id: string;
  private_ip: string;
  port: number | null;
  region_id: string | null;
  status: string;
}
interface RegionRec {
  id: string;
  public_ipv4: string;
}
interface Recs {
  domains: DomainRec;
  deployments: DeploymentRec;
  vms: VmRec;
  regions: RegionRec;
}
type Model = { [T in TableName]: Map<string, Recs[T]> };
type AnyTable = Map<string, Record<string, unknown>>;

function tableOf(m: Model, t: TableName): AnyTable {
  return m[t] as unknown as AnyTable;
}

function emptyModel(): Model {
  return { domains: new Map(), deployments: new Map(), vms: new Map(), regions: new Map() };
}

function cloneModel(m: Model): Model {
  const copy = emptyModel();
  for (const t of TABLES) for (const [id, row] of m[t]) tableOf(copy, t).set(id, { ...row });
  return copy;
}

/** What applying one replicated change does to the tables (undefined column = unchanged). */
function applyToModel(m: Model, change: RowChange): void {
  const table = tableOf(m, change.table);
  if (change.op === 'delete') {
    table.delete(change.id);
    return;
  }
  const id = change.row.id as string;
  const old = table.get(change.op === 'update' && change.oldId !== undefined ? change.oldId : id);
  if (change.op === 'update' && old === undefined) throw new Error(`model: update of missing row ${id}`);
  if (change.op === 'insert' && old !== undefined) throw new Error(`model: duplicate key ${id}`);
  const row: Record<string, unknown> = { ...old };
  for (const column of READ_COLUMNS[change.table]) {
    const value = change.row[column];
    if (value !== undefined) row[column] = value;
  }
  if (old !== undefined) table.delete(old.id as string);
  table.set(id, row);
}

/** Full table contents as a bootstrap would read them (extra columns included, any order). */
function tableRows(m: Model, rng?: Rng): TableRows {
  const rows = <T extends TableName>(t: T): RowValues[] => {
    // Extra columns are what a bootstrap would be sent if it read whole rows: rowValues drops them.
    const out = [...m[t].values()].map((r) => rowValues(t, withExtras(t, { ...r })));
    return rng === undefined ? out : rng.shuffle(out);
  };
  return { domains: rows('domains'), deployments: rows('deployments'), vms: rows('vms'), regions: rows('regions') };
}

/** Columns the proxy does not read; the replication stream sends them too. */
function withExtras(table: TableName, row: Record<string, unknown>): Record<string, unknown> {
  const at = new Date(1_700_000_000_000);
  switch (table) {
    case 'domains':
      return { ...row, verification_token: 'tok', created_at: at, updated_at: at, deleted_at: null };
    case 'deployments':
      return { ...row, github_commit: 'abc123', ready_at: null, failed_at: null, created_at: at, updated_at: at, deleted_at: null };
    case 'vms':
      return { ...row, vcpus: 1, memory_mb: 512, metadata: null, created_at: at, updated_at: at, deleted_at: null };
    case 'regions':
      return { ...row, name: 'Region', code: 'rg', public_ipv6: null, created_at: at, updated_at: at, deleted_at: null };
  }
}

// ---------------------------------------------------------------------------------------------
// The reference: the documented query, evaluated as SQL would.
// ---------------------------------------------------------------------------------------------

interface QueryRow {
  domain_name: string;
  vm_private_ip: string;
  vm_port: number | null;
  vm_region_id: string | null;
  region_public_ip: string;
}

/** `a = b` in SQL, as a WHERE/ON condition: NULL is never equal to anything. */
function sqlEquals(a: string | null, b: string | null): boolean {
  return a !== null && b !== null && a === b;
}

/**
 * SELECT d.name, v.private_ip, v.port, v.region_id, r.public_ipv4
 * FROM domains d JOIN deployments dep ON d.deployment_id = dep.id JOIN vms v ON dep.vm_id = v.id
 * JOIN regions r ON v.region_id = r.id
 * WHERE d.verified_at IS NOT NULL AND dep.status = 'ready' AND v.status = 'running' ORDER BY d.name
 * (ties in ORDER BY come back in any order: shuffled when an rng is given).
 */
function referenceQuery(m: Model, rng?: Rng): QueryRow[] {
  const out: QueryRow[] = [];
  for (const d of m.domains.values()) {
    for (const dep of m.deployments.values()) {
      if (!sqlEquals(d.deployment_id, dep.id)) continue;
      for (const v of m.vms.values()) {
        if (!sqlEquals(dep.vm_id, v.id)) continue;
        for (const r of m.regions.values()) {
          if (!sqlEquals(v.region_id, r.id)) continue;
          if (d.verified_at === null || dep.status !== 'ready' || v.status !== 'running') continue;
          out.push({
            domain_name: d.name,
            vm_private_ip: v.private_ip,
            vm_port: v.port,
            vm_region_id: v.region_id,
            region_public_ip: r.public_ipv4,
          });
        }
      }
    }
  }
  const shuffled = rng === undefined ? out : rng.shuffle(out);
  return shuffled.sort((a, b) => (a.domain_name < b.domain_name ? -1 : a.domain_name > b.domain_name ? 1 : 0));
}

type RouteFields = Route;
type Snapshot = Map<string, RouteFields>;

function expectedRoutes(m: Model, rng?: Rng): Snapshot {
  return snapshot(routesFromQueryRows(referenceQuery(m, rng) as unknown as Record<string, unknown>[]).routes);
}

function snapshot(routes: RouteTable): Snapshot {
  const out: Snapshot = new Map();
  for (const [host, r] of routes.entries()) {
    assert.equal(r.host, host, 'route.host is its key');
    out.set(host, { host: r.host, vmIp: r.vmIp, vmPort: r.vmPort, vmRegionId: r.vmRegionId, regionPublicIp: r.regionPublicIp });
  }
  return out;
}

function sorted(s: Snapshot): [string, RouteFields][] {
  return [...s].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function assertSameRoutes(actual: RouteTable, expected: Snapshot, what: string): void {
  assert.deepStrictEqual(sorted(snapshot(actual)), sorted(expected), what);
  assert.equal(actual.size, expected.size, `${what}: RouteTable.size`);
}

function sameFields(a: RouteFields | undefined, b: RouteFields | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.host === b.host && compareRoutes(a, b) === 0;
}

function differingHosts(before: Snapshot, after: Snapshot): string[] {
  const hosts = new Set([...before.keys(), ...after.keys()]);
  return [...hosts].filter((h) => !sameFields(before.get(h), after.get(h))).sort();
}

/**
 * Keeps a model and a RowState side by side; every transaction is applied to both and checked:
 * routes equal the reference, changedHosts is exactly the set of hosts whose route changed, the
 * previous state is untouched, the row counts match.
 */
class Harness {
  state: RowState;
  expected: Snapshot;

  readonly #rng: Rng | undefined;

  constructor(
    readonly model: Model = emptyModel(),
    rng?: Rng,
  ) {
    this.#rng = rng;
    this.state = RowState.load(tableRows(model, rng)).state;
    this.expected = expectedRoutes(model, rng);
    assertSameRoutes(this.state.routes, this.expected, 'load');
  }

  apply(changes: readonly RowChange[]): ApplyResult {
    for (const change of changes) applyToModel(this.model, change);
    return this.check(changes);
  }

  /** For changes already applied to the model (the random generator applies as it goes). */
  check(changes: readonly RowChange[]): ApplyResult {
    const before = this.state;
    const result = before.apply(changes);
    const expected = expectedRoutes(this.model, this.#rng);
    assertSameRoutes(result.state.routes, expected, 'routes after apply');
    const changed = [...result.changedHosts].sort();
    assert.equal(new Set(changed).size, changed.length, 'changedHosts has no duplicates');
    assert.deepStrictEqual(changed, differingHosts(this.expected, expected), 'changedHosts');
    const diff = diffRoutes(before.routes, result.state.routes);
    assert.deepStrictEqual([...diff.added, ...diff.removed, ...diff.changed].sort(), changed, 'diffRoutes agrees with changedHosts');
    for (const host of diff.added) assert.equal(this.expected.has(host), false);
    for (const host of diff.removed) assert.equal(expected.has(host), false);
    assertSameRoutes(before.routes, this.expected, 'previous state unchanged by apply');
    assert.deepStrictEqual(result.state.counts, {
      domains: this.model.domains.size,
      deployments: this.model.deployments.size,
      vms: this.model.vms.size,
      regions: this.model.regions.size,
    });
    this.state = result.state;
    this.expected = expected;
    return result;
  }

  /** A fresh bootstrap from the model gives the same routes as the incrementally maintained state. */
  checkReload(): void {
    const loaded = RowState.load(tableRows(this.model, this.#rng));
    assert.deepStrictEqual(
      loaded.problems.filter((p) => p.field.endsWith('.id')),
      [],
      'load problems',
    );
    assertSameRoutes(loaded.state.routes, this.expected, 'reload from model');
    assertSameRoutes(this.state.routes, this.expected, 'incremental state');
  }
}

// ---------------------------------------------------------------------------------------------
// Random generation.
// ---------------------------------------------------------------------------------------------

class Rng {
  #s: number;

  constructor(seed: number) {
    this.#s = seed;
  }
  /** mulberry32 */
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error('pick from empty list');
    return item;
  }
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

const PREFIX: Record<TableName, string> = { domains: 'd0000000', deployments: 'e0000000', vms: 'f0000000', regions: 'a0000000' };

function uuid(table: TableName, n: number): string {
  return `${PREFIX[table]}-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

const BASE_NAMES = [
  'a.example',
  'b.example',
  'api.a.example',
  'shop.example.org',
  'bücher.example',
  'c.example',
  'www.d.example',
  'e.example',
  'f.example.net',
  'g.example',
  'münchen.example',
  'h.example',
];
const INVALID_NAMES = [
  'bad name.example',
  'a..example',
  '',
  'x/y.example',
  'a%41.example',
  'user@a.example',
  `${'x'.repeat(250)}.com`,
  '.',
];
const PRIVATE_IPS = ['10.0.0.1', '10.0.0.2', '10.0.0.10', '10.0.1.7/24', 'fd00::1', 'FD00::2', '10.0.0.1/32'];
const INVALID_IPS = ['not-an-ip', '10.0.0.256', ''];
const PORTS = [8080, 3000, 80, 443];
const INVALID_PORTS = [null, 0, 70000, -1];
const PUBLIC_IPS = ['203.0.113.1', '203.0.113.2', '198.51.100.9/32', '2001:DB8::1'];
const INVALID_PUBLIC_IPS = ['bogus', ''];
const DEPLOYMENT_STATUSES = ['pending', 'building', 'failed', 'inactive'];
const VM_STATUSES = ['pending', 'starting', 'stopping', 'stopped', 'failed'];

interface Universe {
  readonly ids: { readonly [T in TableName]: readonly string[] };
}

function universe(sizes: Readonly<Record<TableName, number>>): Universe {
  const ids = {} as { [T in TableName]: string[] };
  for (const t of TABLES) ids[t] = Array.from({ length: sizes[t] }, (_, i) => uuid(t, i + 1));
  return { ids };
}

class Generator {
  constructor(
    readonly rng: Rng,
    readonly u: Universe,
    readonly m: Model,
  ) {}

  name(): string {
    const r = this.rng;
    if (r.chance(0.08)) return r.pick(INVALID_NAMES);
    const base = r.pick(BASE_NAMES);
    const x = r.int(10);
    if (x < 4) return base;
    if (x < 6) return base.toUpperCase();
    if (x < 8) return `${base}.`;
    if (x < 9) return base === 'bücher.example' ? 'xn--bcher-kva.example' : `${base[0]!.toUpperCase()}${base.slice(1)}.`;
    return `${base.toUpperCase()}.`;
  }

  /** A foreign key value: a present row, any id of the universe (maybe absent), NULL, or an id that never exists. */
  fk(table: TableName): string | null {
    const r = this.rng;
    const x = r.int(20);
    const present = [...this.m[table].keys()];
    if (x < 15 && present.length > 0) return r.pick(present);
    if (x < 18) return r.pick(this.u.ids[table]);
    if (x < 19) return null;
    return `99999999-0000-4000-8000-${r.int(1000).toString(16).padStart(12, '0')}`;
  }

  verifiedAt(): Date | null {
    return this.rng.chance(0.85) ? new Date(1_700_000_000_000 + this.rng.int(1e9)) : null;
  }

  column(table: TableName, column: string): unknown {
    const r = this.rng;
    switch (`${table}.${column}`) {
      case 'domains.name':
        return this.name();
      case 'domains.deployment_id':
        return this.fk('deployments');
      case 'domains.verified_at':
        return this.verifiedAt();
      case 'deployments.status':
        return r.chance(0.75) ? 'ready' : r.pick(DEPLOYMENT_STATUSES);
      case 'deployments.vm_id':
        return this.fk('vms');
      case 'vms.private_ip':
        return r.chance(0.93) ? r.pick(PRIVATE_IPS) : r.pick(INVALID_IPS);
      case 'vms.port':
        return r.chance(0.92) ? r.pick(PORTS) : r.pick(INVALID_PORTS);
      case 'vms.region_id':
        return this.fk('regions');
      case 'vms.status':
        return r.chance(0.75) ? 'running' : r.pick(VM_STATUSES);
      case 'regions.public_ipv4':
        return r.chance(0.92) ? r.pick(PUBLIC_IPS) : r.pick(INVALID_PUBLIC_IPS);
    }
    throw new Error(`no generator for ${table}.${column}`);
  }

  fullRow(table: TableName, id: string): Record<string, unknown> {
    const row: Record<string, unknown> = { id };
    for (const column of READ_COLUMNS[table]) if (column !== 'id') row[column] = this.column(table, column);
    return row;
  }

  /** A changed value for a column, biased towards the changes that matter (flips, set/clear). */
  changedValue(table: TableName, column: string, old: unknown): unknown {
    const r = this.rng;
    if (column === 'status' && r.chance(0.7)) {
      const good = table === 'deployments' ? 'ready' : 'running';
      return old === good ? r.pick(table === 'deployments' ? DEPLOYMENT_STATUSES : VM_STATUSES) : good;
    }
    if (column === 'verified_at' && r.chance(0.7)) return old === null ? (this.verifiedAt() ?? new Date(1)) : null;
    return this.column(table, column);
  }

  absentId(table: TableName): string | undefined {
    const absent = this.u.ids[table].filter((id) => !this.m[table].has(id));
    return absent.length === 0 ? undefined : this.rng.pick(absent);
  }

  presentId(table: TableName): string | undefined {
    const present = [...this.m[table].keys()];
    return present.length === 0 ? undefined : this.rng.pick(present);
  }

  table(): TableName {
    const x = this.rng.int(100);
    return x < 35 ? 'domains' : x < 60 ? 'deployments' : x < 85 ? 'vms' : 'regions';
  }

  /** The row sent in an update: the new values, sometimes with columns `undefined` (unchanged TOASTed values). */
  updateRow(table: TableName, id: string, old: Record<string, unknown>): Record<string, unknown> {
    const r = this.rng;
    const row: Record<string, unknown> = { ...old, id };
    const columns = READ_COLUMNS[table].filter((c) => c !== 'id');
    if (!r.chance(0.1)) {
      // change one or more columns (10 %: a no-op update such as touching updated_at)
      const count = 1 + (r.chance(0.3) ? r.int(columns.length) : 0);
      for (let i = 0; i < count; i++) {
        const column = r.pick(columns);
        row[column] = this.changedValue(table, column, row[column]);
      }
    }
    const sent = withExtras(table, row);
    if (r.chance(0.3)) for (const column of columns) if (r.chance(0.5)) sent[column] = undefined;
    if (r.chance(0.3)) sent.updated_at = undefined;
    return sent;
  }

  /** One random change, already applied to the model. */
  change(): RowChange | undefined {
    const r = this.rng;
    const table = this.table();
    const x = r.int(100);
    let change: RowChange | undefined;
    if (x < 30) {
      const id = this.absentId(table);
      if (id !== undefined) change = { op: 'insert', table, row: withExtras(table, this.fullRow(table, id)) };
    } else if (x < 35) {
      const oldId = this.presentId(table);
      const id = this.absentId(table);
      if (oldId !== undefined && id !== undefined) {
        change = { op: 'update', table, oldId, row: this.updateRow(table, id, tableOf(this.m, table).get(oldId)!) };
      }
    } else if (x < 35 + DELETE_PERCENT[table]) {
      const id = this.presentId(table);
      if (id !== undefined) change = { op: 'delete', table, id };
    } else {
      const id = this.presentId(table);
      if (id !== undefined) change = { op: 'update', table, row: this.updateRow(table, id, tableOf(this.m, table).get(id)!) };
    }
    if (change !== undefined) applyToModel(this.m, change);
    return change;
  }

  transaction(): RowChange[] {
    const r = this.rng;
    const x = r.int(10);
    const size = x < 6 ? 1 : x < 9 ? 2 + r.int(3) : 5 + r.int(8);
    const changes: RowChange[] = [];
    for (let attempts = 0; changes.length < size && attempts < size * 5; attempts++) {
      const change = this.change();
      if (change !== undefined) changes.push(change);
    }
    return changes;
  }

  populate(fraction: number): void {
    for (const t of ['regions', 'vms', 'deployments', 'domains'] as const) {
      for (const id of this.u.ids[t]) {
        if (this.rng.chance(fraction)) applyToModel(this.m, { op: 'insert', table: t, row: this.fullRow(t, id) });
      }
    }
  }
}

/** Parents are deleted less often, so that most of the time a fair number of hosts route. */
const DELETE_PERCENT: Record<TableName, number> = { domains: 20, deployments: 15, vms: 12, regions: 6 };

const SMALL = { domains: 60, deployments: 30, vms: 16, regions: 4 };

function describeFailure(seed: number, step: number, changes: readonly RowChange[] | undefined, err: unknown): Error {
  const replay = `EDGEPROXY_PROPERTY_SEED=${seed} node --import tsx --test test/table-row-state.test.ts`;
  const tx = changes === undefined ? '' : `\ntransaction: ${JSON.stringify(changes)}`;
  const message = `property test failed: seed ${seed}, step ${step} (replay: ${replay})${tx}\n${(err as Error).message}`;
  console.error(message);
  if (err instanceof Error) {
    err.message = message;
    return err;
  }
  return new Error(message);
}

function runSeed(seed: number, steps: number): { transactions: number; changes: number; changedHosts: number } {
  const rng = new Rng(seed);
  const model = emptyModel();
  const gen = new Generator(rng, universe(SMALL), model);
  let step = -1;
  let changes: RowChange[] | undefined;
  let total = 0;
  let changedHosts = 0;
  try {
    gen.populate(0.7);
    const h = new Harness(model, rng);
    for (step = 0; step < steps; step++) {
      changes = gen.transaction();
      total += changes.length;
      changedHosts += h.check(changes).changedHosts.length;
      if (step % 100 === 99) h.checkReload();
    }
    changes = undefined;
    h.checkReload();
  } catch (err) {
    throw describeFailure(seed, step, changes, err);
  }
  return { transactions: steps, changes: total, changedHosts };
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

const TOTAL_STEPS = Number(process.env.EDGEPROXY_PROPERTY_STEPS ?? 3200);
const ONLY_SEED = process.env.EDGEPROXY_PROPERTY_SEED;
const SEEDS = ONLY_SEED !== undefined ? [Number(ONLY_SEED)] : [1, 2, 3, 42, 1234, 99991, 271828, 314159];

describe('RowState against the documented query (random transactions)', () => {
  assert.ok(Number.isInteger(TOTAL_STEPS) && TOTAL_STEPS > 0, 'EDGEPROXY_PROPERTY_STEPS must be a positive integer');
  const perSeed = Math.max(1, Math.ceil(TOTAL_STEPS / SEEDS.length));
  for (const seed of SEEDS) {
    it(`seed ${seed}: ${perSeed} transactions`, () => {
      const stats = runSeed(seed, perSeed);
      // the generator must actually exercise route changes, not churn on unroutable rows
      assert.ok(stats.changedHosts > perSeed / 10, `only ${stats.changedHosts} route changes in ${perSeed} transactions`);
    });
  }

  it('RowState.load of random models equals the reference', () => {
    for (let seed = 1000; seed < 1060; seed++) {
      try {
        const rng = new Rng(seed);
        const scale = 1 + (seed % 6) * 4;
        const sizes = { domains: 12 * scale, deployments: 8 * scale, vms: 6 * scale, regions: 2 + (seed % 4) };
        const model = emptyModel();
        new Generator(rng, universe(sizes), model).populate(0.2 + rng.next() * 0.8);
        const loaded = RowState.load(tableRows(model, rng));
        assertSameRoutes(loaded.state.routes, expectedRoutes(model, rng), 'load');
        assert.deepStrictEqual(loaded.state.counts, {
          domains: model.domains.size,
          deployments: model.deployments.size,
          vms: model.vms.size,
          regions: model.regions.size,
        });
      } catch (err) {
        throw describeFailure(seed, 0, undefined, err);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Focused cases
// ---------------------------------------------------------------------------------------------

const R = (n: number) => uuid('regions', n);
const VM = (n: number) => uuid('vms', n);
const DEP = (n: number) => uuid('deployments', n);
const DOM = (n: number) => uuid('domains', n);
const VERIFIED = new Date('2024-01-01T00:00:00Z');

function region(n: number, ip = '203.0.113.1'): RowChange {
  return { op: 'insert', table: 'regions', row: withExtras('regions', { id: R(n), public_ipv4: ip }) };
}
function vm(n: number, regionN: number, ip: string, port: number | null, status = 'running'): RowChange {
  return { op: 'insert', table: 'vms', row: withExtras('vms', { id: VM(n), private_ip: ip, port, region_id: R(regionN), status }) };
}
function deployment(n: number, vmN: number, status = 'ready'): RowChange {
  return { op: 'insert', table: 'deployments', row: withExtras('deployments', { id: DEP(n), status, vm_id: VM(vmN) }) };
}
function domain(n: number, name: string, depN: number, verified: Date | null = VERIFIED): RowChange {
  return {
    op: 'insert',
    table: 'domains',
    row: withExtras('domains', { id: DOM(n), name, deployment_id: DEP(depN), verified_at: verified }),
  };
}
function update(table: TableName, row: Record<string, unknown>, oldId?: string): RowChange {
  return oldId === undefined ? { op: 'update', table, row } : { op: 'update', table, row, oldId };
}
function del(table: TableName, id: string): RowChange {
  return { op: 'delete', table, id };
}

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [items.slice()];
  const out: T[][] = [];
  items.forEach((item, i) => {
    for (const rest of permutations([...items.slice(0, i), ...items.slice(i + 1)])) out.push([item, ...rest]);
  });
  return out;
}

describe('RowState: duplicate names', () => {
  // Six rows for the same host, in several spellings. Expected winner by compareRoutes
  // (vm_region_id, vm_private_ip as text, vm_port, region_public_ip): region 1 beats region 2;
  // within region 1, '10.0.0.10' < '10.0.0.9' as text. Row 5 (region 0) would win but its port
  // is NULL; row 6 (region 0) is not verified.
  const infra: RowChange[] = [
    region(0, '198.51.100.1'),
    region(1, '198.51.100.2'),
    region(2, '198.51.100.3'),
    vm(1, 2, '10.0.0.5', 8080),
    vm(2, 1, '10.0.0.9', 80),
    vm(3, 1, '10.0.0.9', 79),
    vm(4, 1, '10.0.0.10', 9000),
    vm(5, 0, '10.0.0.1', null),
    vm(6, 0, '10.0.0.1', 80),
    ...[1, 2, 3, 4, 5, 6].map((n) => deployment(n, n)),
  ];
  const domains: RowChange[] = [
    domain(1, 'dup.example', 1),
    domain(2, 'Dup.Example.', 2),
    domain(3, 'DUP.example', 3),
    domain(4, 'dup.example.', 4),
    domain(5, 'dup.EXAMPLE', 5),
    domain(6, 'dup.example', 6, null),
  ];
  const winner = { host: 'dup.example', vmIp: '10.0.0.10', vmPort: 9000, vmRegionId: R(1), regionPublicIp: '198.51.100.2' };

  it('every insertion order (apply) and every load order gives the same winner', () => {
    for (const order of permutations(domains)) {
      const h = new Harness();
      h.apply(infra);
      for (const change of order) h.apply([change]);
      assert.deepStrictEqual(
        snapshot(h.state.routes).get('dup.example'),
        winner,
        `order ${order.map((c) => (c.op === 'insert' ? c.row.id : '')).join(',')}`,
      );
      const loaded = RowState.load(tableRows(h.model, new Rng(order.length + h.model.domains.size)));
      assert.deepStrictEqual(snapshot(loaded.state.routes).get('dup.example'), winner);
    }
  });

  it('all in one transaction, any order; the query path agrees for any row order', () => {
    const rng = new Rng(5);
    for (let i = 0; i < 50; i++) {
      const h = new Harness();
      h.apply(rng.shuffle([...infra, ...domains]));
      assert.deepStrictEqual(h.expected.get('dup.example'), winner);
      assert.deepStrictEqual(snapshot(h.state.routes).get('dup.example'), winner);
      const rows = rng.shuffle(referenceQuery(h.model)) as unknown as Record<string, unknown>[];
      const q = routesFromQueryRows(rows);
      assert.deepStrictEqual(snapshot(q.routes).get('dup.example'), winner);
      assert.equal(q.duplicates.length, 1);
      assert.equal(q.duplicates[0]!.others.length, 3);
    }
  });

  it('duplicates() names the host, the winner and the other routable rows, after a load as after applies', () => {
    const h = new Harness();
    h.apply([...infra, ...domains, domain(7, 'single.example', 1)]);
    const loaded = RowState.load(tableRows(h.model, new Rng(3))).state;
    for (const state of [h.state, loaded]) {
      const dups = state.duplicates();
      assert.equal(dups.length, 1);
      assert.equal(dups[0]!.host, 'dup.example');
      assert.deepStrictEqual(dups[0]!.chosen, winner);
      assert.equal(dups[0]!.others.length, 3, 'rows 1-4 route; 5 has no port, 6 is not verified');
      assert.deepStrictEqual(state.duplicates(['single.example', 'dup.example']), dups);
    }
    // Applied on top of a loaded state: every host is looked at again (a new duplicate appears).
    const next = loaded.apply([domain(8, 'single.example', 2)]);
    assert.deepStrictEqual(
      next.state
        .duplicates()
        .map((d) => d.host)
        .sort(),
      ['dup.example', 'single.example'],
    );
  });

  it('removing or disabling the winner falls back to the next row, deterministically', () => {
    const h = new Harness();
    h.apply([...infra, ...domains]);
    // winner's VM stops: next best is vm 3 (10.0.0.9:79)
    let r = h.apply([update('vms', { id: VM(4), private_ip: '10.0.0.10', port: 9000, region_id: R(1), status: 'stopped' })]);
    assert.deepStrictEqual(r.changedHosts, ['dup.example']);
    assert.equal(h.state.routes.get('dup.example')?.vmPort, 79);
    // the NULL port gets a value: region 0 wins now
    r = h.apply([update('vms', { id: VM(5), private_ip: undefined, port: 8443, region_id: R(0), status: undefined })]);
    assert.deepStrictEqual(r.changedHosts, ['dup.example']);
    assert.equal(h.state.routes.get('dup.example')?.vmRegionId, R(0));
    // the unverified twin gets verified: same region, same ip, port 80 < 8443
    r = h.apply([update('domains', { id: DOM(6), name: undefined, deployment_id: undefined, verified_at: VERIFIED })]);
    assert.deepStrictEqual(r.changedHosts, ['dup.example']);
    assert.equal(h.state.routes.get('dup.example')?.vmPort, 80);
    // a loser changes: no route change
    r = h.apply([update('domains', { id: DOM(1), name: 'DUP.EXAMPLE.', deployment_id: DEP(1), verified_at: VERIFIED })]);
    assert.deepStrictEqual(r.changedHosts, []);
    // renaming the winner away changes both hosts
    r = h.apply([update('domains', { id: DOM(6), name: 'other.example', deployment_id: undefined, verified_at: undefined })]);
    assert.deepStrictEqual([...r.changedHosts].sort(), ['dup.example', 'other.example']);
    // delete every remaining row for the name
    r = h.apply([1, 2, 3, 4, 5].map((n) => del('domains', DOM(n))));
    assert.deepStrictEqual(r.changedHosts, ['dup.example']);
    assert.equal(h.state.routes.has('dup.example'), false);
  });
});

describe('RowState: errors and merges', () => {
  it('an update to an unknown row with undefined columns throws RowError and changes nothing', () => {
    const h = new Harness();
    h.apply([region(1), vm(1, 1, '10.0.0.1', 80), deployment(1, 1), domain(1, 'a.example', 1)]);
    const cases: RowChange[] = [
      update('domains', { id: DOM(99), name: 'x.example', deployment_id: DEP(1), verified_at: undefined }),
      update('deployments', { id: DEP(99), status: 'ready', vm_id: undefined }),
      update('vms', { id: VM(99), private_ip: '10.0.0.2', port: undefined, region_id: R(1), status: 'running' }),
      update('regions', { id: R(99), public_ipv4: undefined }),
      update('domains', { id: DOM(98), name: undefined, deployment_id: DEP(1), verified_at: VERIFIED }, DOM(97)),
    ];
    for (const change of cases) {
      const before = h.state;
      assert.throws(
        () => before.apply([domain(2, 'b.example', 1), change]),
        (err: unknown) => err instanceof RowError && err.table === change.table && /missing/.test(err.message),
      );
      assertSameRoutes(before.routes, h.expected, 'state unchanged after a failed apply');
    }
    assert.deepStrictEqual(
      sorted(h.expected).map(([host]) => host),
      ['a.example'],
    );
  });

  it('an update to an unknown row with every column behaves as an insert', () => {
    const h = new Harness();
    h.apply([region(1), vm(1, 1, '10.0.0.1', 80), deployment(1, 1)]);
    const r = h.state.apply([update('domains', { id: DOM(1), name: 'a.example', deployment_id: DEP(1), verified_at: VERIFIED })]);
    assert.deepStrictEqual(r.changedHosts, ['a.example']);
  });

  it('undefined columns keep the stored values, also across a primary-key change', () => {
    const h = new Harness();
    h.apply([region(1), vm(1, 1, '10.0.0.1', 80), deployment(1, 1), domain(1, 'a.example', 1)]);
    let r = h.apply([update('vms', { id: VM(1), private_ip: undefined, port: 81, region_id: undefined, status: undefined })]);
    assert.deepStrictEqual(r.changedHosts, ['a.example']);
    assert.equal(h.state.routes.get('a.example')?.vmIp, '10.0.0.1');
    // the VM's primary key changes: the deployment still points at the old id, so the route goes
    r = h.apply([update('vms', { id: VM(2), private_ip: undefined, port: undefined, region_id: undefined, status: undefined }, VM(1))]);
    assert.deepStrictEqual(r.changedHosts, ['a.example']);
    assert.equal(h.state.routes.size, 0);
    // re-pointing the deployment brings it back, with the merged columns
    r = h.apply([update('deployments', { id: DEP(1), status: undefined, vm_id: VM(2) })]);
    assert.deepStrictEqual(r.changedHosts, ['a.example']);
    assert.deepStrictEqual(snapshot(h.state.routes).get('a.example'), {
      host: 'a.example',
      vmIp: '10.0.0.1',
      vmPort: 81,
      vmRegionId: R(1),
      regionPublicIp: '203.0.113.1',
    });
    // a domain's id changes in the same transaction as its deployment's: nothing changes for the host
    r = h.apply([
      update('domains', { id: DOM(5), name: undefined, deployment_id: DEP(5), verified_at: undefined }, DOM(1)),
      update('deployments', { id: DEP(5), status: undefined, vm_id: undefined }, DEP(1)),
    ]);
    assert.deepStrictEqual(r.changedHosts, []);
    // delete + re-insert of the same id in one transaction, with another region
    r = h.apply([region(2, '203.0.113.9'), del('vms', VM(2)), vm(2, 2, '10.0.0.1', 81)]);
    assert.deepStrictEqual(r.changedHosts, ['a.example']);
    assert.equal(h.state.routes.get('a.example')?.regionPublicIp, '203.0.113.9');
  });

  it('dangling references resolve when the parent arrives later', () => {
    const h = new Harness();
    h.apply([domain(1, 'a.example', 1), domain(2, 'b.example', 1)]);
    h.apply([deployment(1, 1)]);
    h.apply([vm(1, 1, '10.0.0.1', 80)]);
    assert.equal(h.state.routes.size, 0);
    const r = h.apply([region(1)]);
    assert.deepStrictEqual([...r.changedHosts].sort(), ['a.example', 'b.example']);
  });
});

describe('RowState: a region with 200 VMs (reverse index past the array limit)', () => {
  const N = 200;
  const rowsFor = (i: number): RowChange[] => [
    vm(i, 1, `10.1.${i >> 8}.${i & 255}`, 8000 + i),
    deployment(i, i),
    domain(i, `site${i}.example`, i),
  ];

  it('grows one VM at a time, then deletes one, changes the region, shrinks back', () => {
    const h = new Harness();
    h.apply([region(1, '203.0.113.1')]);
    for (let i = 1; i <= N; i++) {
      const r = h.apply(rowsFor(i));
      assert.deepStrictEqual(r.changedHosts, [`site${i}.example`]);
    }
    assert.equal(h.state.routes.size, N);

    let r = h.apply([del('vms', VM(100))]);
    assert.deepStrictEqual(r.changedHosts, ['site100.example']);
    assert.equal(h.state.routes.size, N - 1);

    r = h.apply([update('regions', { id: R(1), public_ipv4: '203.0.113.77' })]);
    assert.equal(r.changedHosts.length, N - 1);
    for (const route of h.state.routes.values()) assert.equal(route.regionPublicIp, '203.0.113.77');

    // shrink below the array limit, then the region change must still reach every VM left
    for (let i = 1; i <= 150; i++) if (i !== 100) h.apply([del('vms', VM(i))]);
    assert.equal(h.state.routes.size, 50);
    r = h.apply([update('regions', { id: R(1), public_ipv4: '203.0.113.78' })]);
    assert.equal(r.changedHosts.length, 50);
    // and back up again
    r = h.apply([vm(100, 1, '10.9.9.9', 80)]);
    assert.deepStrictEqual(r.changedHosts, ['site100.example']);
    r = h.apply([del('regions', R(1))]);
    assert.equal(r.changedHosts.length, 51);
    assert.equal(h.state.routes.size, 0);
    h.checkReload();
  });

  it('loaded with 200 VMs in one region, then one VM deleted and one moved', () => {
    const setup = new Harness();
    setup.apply([region(1, '203.0.113.1'), region(2, '203.0.113.2'), ...Array.from({ length: N }, (_, i) => rowsFor(i + 1)).flat()]);
    const h = new Harness(cloneModel(setup.model), new Rng(9));
    assert.equal(h.state.routes.size, N);
    let r = h.apply([del('vms', VM(7))]);
    assert.deepStrictEqual(r.changedHosts, ['site7.example']);
    r = h.apply([update('vms', { id: VM(8), private_ip: undefined, port: undefined, region_id: R(2), status: undefined })]);
    assert.deepStrictEqual(r.changedHosts, ['site8.example']);
    r = h.apply([update('regions', { id: R(1), public_ipv4: '203.0.113.50' })]);
    assert.equal(r.changedHosts.length, N - 2);
    r = h.apply([update('regions', { id: R(2), public_ipv4: '203.0.113.51' })]);
    assert.deepStrictEqual(r.changedHosts, ['site8.example']);
    h.checkReload();
  });
});

describe('RowState.loadAsync', () => {
  it('builds the same state as load, giving the event loop turns while it works and releasing the rows read', async () => {
    const changes: RowChange[] = [region(1), region(2)];
    for (let i = 1; i <= 9000; i++) {
      changes.push(vm(i, 1 + (i % 2), `10.0.${i >> 8}.${i & 255}`, 3000 + (i % 7)), deployment(i, i));
      changes.push(domain(i, `h${i % 8000}.example`, i));
    }
    const tables: TableRows = {
      domains: changes.flatMap((c) => (c.op === 'insert' && c.table === 'domains' ? [rowValues('domains', c.row)] : [])),
      deployments: changes.flatMap((c) => (c.op === 'insert' && c.table === 'deployments' ? [rowValues('deployments', c.row)] : [])),
      vms: changes.flatMap((c) => (c.op === 'insert' && c.table === 'vms' ? [rowValues('vms', c.row)] : [])),
      regions: changes.flatMap((c) => (c.op === 'insert' && c.table === 'regions' ? [rowValues('regions', c.row)] : [])),
    };
    const sync = RowState.load(tables);
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    const loaded = await RowState.loadAsync(tables, 0, { release: true });
    clearInterval(ticker);
    // release: the raw rows were let go as the build went
    assert.deepStrictEqual([tables.domains.length, tables.deployments.length, tables.vms.length, tables.regions.length], [0, 0, 0, 0]);
    assert.ok(turns >= 3, `the event loop ran ${turns} times during the load`);
    assert.equal(loaded.state.routes.size, 8000);
    assert.deepStrictEqual(sorted(snapshot(loaded.state.routes)), sorted(snapshot(sync.state.routes)));
    assert.deepStrictEqual(loaded.state.counts, sync.state.counts);
    // and it keeps working the same way afterwards
    const a = loaded.state.apply([del('domains', DOM(5))]);
    const b = sync.state.apply([del('domains', DOM(5))]);
    assert.deepStrictEqual(a.changedHosts, b.changedHosts);
  });
});

describe('the routable statuses', () => {
  it("are the documented query's, and read the same from a snapshot (the test itself) and from the stream (the value)", () => {
    assert.ok(ROUTES_QUERY.includes(`dep.status = '${ROUTABLE_STATUS.deployments}'`), ROUTES_QUERY);
    assert.ok(ROUTES_QUERY.includes(`v.status = '${ROUTABLE_STATUS.vms}'`), ROUTES_QUERY);
    for (const table of ['deployments', 'vms'] as const) {
      assert.equal(routableStatus(table, ROUTABLE_STATUS[table]), true);
      assert.equal(routableStatus(table, true), true, 'the snapshot reads the test');
      for (const other of [false, null, 'pending', 'stopped', 'READY', 'Running'])
        assert.equal(routableStatus(table, other), false, String(other));
    }
  });
});

describe('RowState.load: problems and shared structure', () => {
  const rowsOf = (changes: readonly RowChange[], table: TableName): RowValues[] =>
    changes.flatMap((c) => (c.op === 'insert' && c.table === table ? [rowValues(table, c.row)] : []));
  const tablesOf = (changes: readonly RowChange[]): TableRows => ({
    domains: rowsOf(changes, 'domains'),
    deployments: rowsOf(changes, 'deployments'),
    vms: rowsOf(changes, 'vms'),
    regions: rowsOf(changes, 'regions'),
  });
  const base: RowChange[] = [region(1), vm(1, 1, '10.0.0.1', 80), vm(2, 1, 'not-an-ip', 80), deployment(1, 1), deployment(2, 2)];

  it('reports a bad name or bad column only for rows the query would return, as apply does', () => {
    const domains = [
      domain(1, 'ok.example', 1),
      domain(2, 'bad name.example', 1), // eligible, invalid name
      domain(3, 'bad-ip.example', 2), // eligible, VM address invalid
      domain(4, 'bad name2.example', 1, null), // not verified: not in the query, no problem
      domain(5, 'other bad.example', 99), // dangling deployment: no problem
    ];
    const loaded = RowState.load(tablesOf([...base, ...domains]));
    const applied = RowState.empty().apply([...base, ...domains]);
    const key = (p: { field: string; value: string }) => `${p.field}=${p.value}`;
    assert.deepStrictEqual(loaded.problems.map(key).sort(), ['domain_name=bad name.example', 'vm_private_ip=not-an-ip']);
    assert.deepStrictEqual(applied.problems.map(key).sort(), loaded.problems.map(key).sort());
    assert.deepStrictEqual(sorted(snapshot(loaded.state.routes)), sorted(snapshot(applied.state.routes)));
    assert.deepStrictEqual([...loaded.state.routes.keys()], ['ok.example']);
  });

  it('a duplicate primary key in the bootstrap read is reported and the first row kept', () => {
    const tables = tablesOf([
      ...base,
      domain(2, 'other.example', 1),
      domain(1, 'first.example', 1),
      domain(3, 'another.example', 2),
      domain(1, 'second.example', 1),
      domain(1, 'third.example', 1),
    ]);
    const loaded = RowState.load(tables);
    assert.deepStrictEqual(
      loaded.problems.filter((p) => p.field === 'domains.id').map((p) => [p.field, p.value]),
      [
        ['domains.id', DOM(1)],
        ['domains.id', DOM(1)],
      ],
    );
    assert.deepStrictEqual([...loaded.state.routes.keys()].sort(), ['first.example', 'other.example']);
    assert.equal(loaded.state.counts.domains, 3);
    assert.equal(loaded.state.routes.get('second.example'), undefined);
    // the index agrees with the kept row: deleting it removes the route and leaves nothing behind
    const r = loaded.state.apply([del('domains', DOM(1))]);
    assert.deepStrictEqual(r.changedHosts, ['first.example']);
    assert.deepStrictEqual([...r.state.routes.keys()], ['other.example']);
  });

  it('makeRoute judges each region id and address on its own, in any order of good and bad values', () => {
    const good = '6f1c3e9a-0000-4000-8000-000000000001';
    const cases: [unknown, unknown, string | undefined][] = [
      [good, '10.0.0.1', undefined],
      [good, '10.0.0.1', undefined],
      ['not-a-uuid', '10.0.0.1', 'vm_region_id'],
      [good, 'nope', 'region_public_ip'],
      [good.toUpperCase(), '10.0.0.2', undefined],
      [undefined, '10.0.0.2', 'vm_region_id'],
      [good, null, 'region_public_ip'],
      [good, '10.0.0.2', undefined],
    ];
    for (const [regionId, lb, field] of cases) {
      const r = makeRoute('a.example', 'a.example', '10.1.1.1', 80, regionId, lb);
      assert.equal(r.ok ? undefined : r.problem.field, field, `${String(regionId)} ${String(lb)}`);
      if (r.ok) assert.deepStrictEqual([r.route.vmRegionId, r.route.regionPublicIp], [good, lb]);
    }
  });

  it('a transaction that changes no route keeps the same route map object', () => {
    const h = new Harness();
    h.apply([...base, domain(1, 'ok.example', 1), domain(2, 'unverified.example', 1, null)]);
    const before = h.state.routes;
    const r = h.apply([update('domains', { id: DOM(2), name: 'renamed.example', deployment_id: DEP(1), verified_at: null })]);
    assert.deepStrictEqual(r.changedHosts, []);
    assert.equal(r.state.routes, before);
    const changed = h.apply([update('vms', { id: VM(1), private_ip: '10.0.0.9', port: 80, region_id: R(1), status: 'running' })]);
    assert.deepStrictEqual(changed.changedHosts, ['ok.example']);
    assert.notEqual(changed.state.routes, before);
  });
});
