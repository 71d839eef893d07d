import { EdgeProxyError } from '../errors.js';
import type { RowProblem } from './route.js';

/**
 * The rows of the four routing tables, reduced to the columns the documented query reads.
 * Values are kept as the database sent them (text form); route.ts validates them when a route
 * is derived, exactly as it validates the documented query's output.
 */
export const TABLES = ['domains', 'deployments', 'vms', 'regions'] as const;
export type TableName = (typeof TABLES)[number];

export function isTableName(name: string): name is TableName {
  return (TABLES as readonly string[]).includes(name);
}

/** The columns each table contributes to the documented query (plus its primary key), id first; rowFromValues reads values in this order. */
export const READ_COLUMNS: { readonly [T in TableName]: readonly string[] } = {
  domains: ['id', 'name', 'deployment_id', 'verified_at'],
  deployments: ['id', 'status', 'vm_id'],
  vms: ['id', 'private_ip', 'port', 'region_id', 'status'],
  regions: ['id', 'public_ipv4'],
};

/** The region address column as the documented query names it: the default of EDGEPROXY_REGION_ADDRESS_COLUMN. */
export const DOCUMENTED_REGION_ADDRESS_COLUMN = 'public_ipv4';

/**
 * `table`'s READ_COLUMNS as the database names them: the same, except the region's address, read
 * from `regionAddressColumn` (control planes name it differently, e.g. `load_balancer_ipv4`).
 * Rows and changes keep the documented names; only the SQL and the stream's decoder use these.
 */
export function sourceColumns(table: TableName, regionAddressColumn: string): readonly string[] {
  const columns = READ_COLUMNS[table];
  return table === 'regions' ? columns.map((c) => (c === DOCUMENTED_REGION_ADDRESS_COLUMN ? regionAddressColumn : c)) : columns;
}

/**
 * The status the documented query routes (`dep.status = 'ready'`, `v.status = 'running'`), in one
 * place: rows keep the test's result, the bootstrap reads the test itself (snapshot-load.ts).
 */
export const ROUTABLE_STATUS = { deployments: 'ready', vms: 'running' } as const;

/** The documented query's status test on a value as the database sent it (`true`: the bootstrap read the test). */
export function routableStatus(table: keyof typeof ROUTABLE_STATUS, value: unknown): boolean {
  return value === ROUTABLE_STATUS[table] || value === true;
}

export interface DomainRow {
  readonly id: string;
  readonly name: unknown;
  readonly deploymentId: string | null;
  /** `verified_at IS NOT NULL` */
  readonly verified: boolean;
}
export interface DeploymentRow {
  readonly id: string;
  readonly vmId: string | null;
  /** `status = 'ready'` */
  readonly ready: boolean;
}
export interface VmRow {
  readonly id: string;
  readonly privateIp: unknown;
  readonly port: unknown;
  readonly regionId: string | null;
  /** `status = 'running'` */
  readonly running: boolean;
}
export interface RegionRow {
  readonly id: string;
  readonly publicIpv4: unknown;
}

export interface RowTypes {
  domains: DomainRow;
  deployments: DeploymentRow;
  vms: VmRow;
  regions: RegionRow;
}

/** Column values as the database sent them; `undefined` means "unchanged" (an unchanged TOASTed value). */
export type Columns = Readonly<Record<string, unknown>>;

/** One row change, as decoded from the replication stream; columns by their READ_COLUMNS names. */
export type RowChange =
  | { readonly op: 'insert'; readonly table: TableName; readonly row: Columns }
  /** `oldId` is set when the primary key itself changed. Columns that arrive `undefined` are unchanged. */
  | { readonly op: 'update'; readonly table: TableName; readonly row: Columns; readonly oldId?: string }
  | { readonly op: 'delete'; readonly table: TableName; readonly id: string };

/** A replicated row change that cannot be applied: the stream starts over from a fresh snapshot. */
export class RowError extends EdgeProxyError {
  override name = 'RowError';
  readonly table: TableName;

  constructor(table: TableName, message: string) {
    super('ROW_UNREADABLE', `${table}: ${message}`);
    this.table = table;
  }
}

function key(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return typeof value === 'string' ? value : String(value);
}

/**
 * Returns the stored id string of the parent row `id` refers to, or `id` itself when there is none.
 * Lets every child row share its parent's id string instead of holding a copy of its own (a
 * million VMs in one region would otherwise hold a million copies of the region id).
 */
export type SharedId = (parent: TableName, id: string) => string;

function fk(columns: Columns, column: string, previous: string | null, parent: TableName, shared: SharedId | undefined): string | null {
  const value = columns[column];
  return value === undefined ? previous : parentId(value, parent, shared);
}

function parentId(value: unknown, parent: TableName, shared: SharedId | undefined): string | null {
  const id = key(value);
  return id === null || shared === undefined ? id : shared(parent, id);
}

function pick<T>(columns: Columns, column: string, previous: T, convert: (v: unknown) => T): T {
  const value = columns[column];
  return value === undefined ? previous : convert(value);
}

/**
 * One row's values in READ_COLUMNS order: how the bootstrap reads a table (an array per row is
 * cheaper to receive than an object per row at a million rows).
 */
export type RowValues = readonly unknown[];

/** A row's values in READ_COLUMNS order, from its columns by name. */
export function rowValues(table: TableName, columns: Columns): unknown[] {
  return READ_COLUMNS[table].map((column) => columns[column]);
}

/**
 * Builds a stored row from its values in READ_COLUMNS order. Throws RowError when the row has no
 * usable id or a value is missing (`undefined`). `shared`, when given, maps foreign-key values to
 * the parent's own id string.
 */
export function rowFromValues<T extends TableName>(table: T, values: RowValues, shared?: SharedId): RowTypes[T] {
  const id = key(values[0]);
  if (id === null) throw new RowError(table, 'row without an id');
  const names = READ_COLUMNS[table];
  for (let i = 1; i < names.length; i++) {
    if (values[i] === undefined) throw new RowError(table, `row ${id}: column ${names[i]} missing`);
  }
  let row: RowTypes[TableName];
  switch (table) {
    case 'domains':
      row = {
        id,
        name: values[1],
        deploymentId: parentId(values[2], 'deployments', shared),
        verified: values[3] !== null,
      } satisfies DomainRow;
      break;
    case 'deployments':
      // `true`: the bootstrap reads status as the query's test (see snapshot-load.ts)
      row = { id, vmId: parentId(values[2], 'vms', shared), ready: routableStatus('deployments', values[1]) } satisfies DeploymentRow;
      break;
    case 'vms':
      row = {
        id,
        privateIp: values[1],
        port: values[2],
        regionId: parentId(values[3], 'regions', shared),
        running: routableStatus('vms', values[4]),
      } satisfies VmRow;
      break;
    case 'regions':
      row = { id, publicIpv4: values[1] } satisfies RegionRow;
      break;
    default:
      throw new RowError(table, 'unknown table');
  }
  return Object.freeze(row) as RowTypes[T];
}

/**
 * Builds the stored row from column values, merging into `previous` for columns that arrived as
 * `undefined`. Throws RowError when the row has no usable id or a column is missing with nothing
 * to merge it into (the caller then resynchronises instead of guessing). `shared`, when given,
 * maps foreign-key values to the parent's own id string.
 */
export function toRow<T extends TableName>(table: T, columns: Columns, previous?: RowTypes[T], shared?: SharedId): RowTypes[T] {
  // A new row is built exactly as the bootstrap builds it.
  if (previous === undefined) return rowFromValues(table, rowValues(table, columns), shared);
  const id = key(columns.id) ?? previous.id;
  const p = previous as RowTypes[TableName];
  let row: RowTypes[TableName];
  switch (table) {
    case 'domains': {
      const d = p as DomainRow;
      row = {
        id,
        name: pick(columns, 'name', d.name, (v) => v),
        deploymentId: fk(columns, 'deployment_id', d.deploymentId, 'deployments', shared),
        verified: pick(columns, 'verified_at', d.verified, (v) => v !== null),
      };
      break;
    }
    case 'deployments': {
      const d = p as DeploymentRow;
      row = {
        id,
        vmId: fk(columns, 'vm_id', d.vmId, 'vms', shared),
        ready: pick(columns, 'status', d.ready, (v) => routableStatus('deployments', v)),
      };
      break;
    }
    case 'vms': {
      const v = p as VmRow;
      row = {
        id,
        privateIp: pick(columns, 'private_ip', v.privateIp, (x) => x),
        port: pick(columns, 'port', v.port, (x) => x),
        regionId: fk(columns, 'region_id', v.regionId, 'regions', shared),
        running: pick(columns, 'status', v.running, (x) => routableStatus('vms', x)),
      };
      break;
    }
    case 'regions': {
      const r = p as RegionRow;
      row = { id, publicIpv4: pick(columns, 'public_ipv4', r.publicIpv4, (x) => x) };
      break;
    }
    default:
      throw new RowError(table, 'unknown table');
  }
  return Object.freeze(row) as RowTypes[T];
}

/** A row from its values (as rowFromValues), or undefined when it cannot be built: reported in `problems`. */
export function readRow<T extends TableName>(
  table: T,
  values: RowValues,
  problems: RowProblem[],
  shared?: SharedId,
): RowTypes[T] | undefined {
  try {
    return rowFromValues(table, values, shared);
  } catch (err) {
    problems.push({ domain: '', field: `${table}.id`, value: String(values[0]), reason: (err as Error).message });
    return undefined;
  }
}

/** The problem reported for a row whose primary key a bootstrap read before (the first row is kept). */
export function duplicateIdProblem(table: TableName, id: string): RowProblem {
  return { domain: '', field: `${table}.id`, value: id, reason: 'duplicate id in the bootstrap read (row skipped)' };
}
