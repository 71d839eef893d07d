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

/** The columns each table contributes to the documented query (plus its primary key). */
export const READ_COLUMNS: { readonly [T in TableName]: readonly string[] } = {
  domains: ['id', 'name', 'deployment_id', 'verified_at'],
  deployments: ['id', 'status', 'vm_id'],
  vms: ['id', 'private_ip', 'port', 'region_id', 'status'],
  regions: ['id', 'public_ipv4'],
};

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

export class RowError extends Error {
  constructor(
    readonly table: TableName,
    message: string,
  ) {
    super(`${table}: ${message}`);
    this.name = 'RowError';
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
  if (value === undefined) return previous;
  const id = key(value);
  return id === null || shared === undefined ? id : shared(parent, id);
}

function pick<T>(columns: Columns, column: string, previous: T, convert: (v: unknown) => T): T {
  const value = columns[column];
  return value === undefined ? previous : convert(value);
}

/**
 * Builds the stored row from column values, merging into `previous` for columns that arrived as
 * `undefined`. Throws RowError when the row has no usable id or a column is missing with nothing
 * to merge it into (the caller then resynchronises instead of guessing). `shared`, when given,
 * maps foreign-key values to the parent's own id string.
 */
export function toRow<T extends TableName>(table: T, columns: Columns, previous?: RowTypes[T], shared?: SharedId): RowTypes[T] {
  const id = key(columns.id) ?? previous?.id ?? null;
  if (id === null) throw new RowError(table, 'row without an id');
  if (previous === undefined) {
    for (const column of READ_COLUMNS[table]) {
      if (columns[column] === undefined) throw new RowError(table, `row ${id}: column ${column} missing`);
    }
  }
  const p = previous as Partial<RowTypes[TableName]> | undefined;
  let row: RowTypes[TableName];
  switch (table) {
    case 'domains': {
      const d = p as DomainRow | undefined;
      row = {
        id,
        name: pick(columns, 'name', d?.name, (v) => v),
        deploymentId: fk(columns, 'deployment_id', d?.deploymentId ?? null, 'deployments', shared),
        verified: pick(columns, 'verified_at', d?.verified ?? false, (v) => v !== null),
      };
      break;
    }
    case 'deployments': {
      const d = p as DeploymentRow | undefined;
      row = {
        id,
        vmId: fk(columns, 'vm_id', d?.vmId ?? null, 'vms', shared),
        ready: pick(columns, 'status', d?.ready ?? false, (v) => v === 'ready'),
      };
      break;
    }
    case 'vms': {
      const v = p as VmRow | undefined;
      row = {
        id,
        privateIp: pick(columns, 'private_ip', v?.privateIp, (x) => x),
        port: pick(columns, 'port', v?.port, (x) => x),
        regionId: fk(columns, 'region_id', v?.regionId ?? null, 'regions', shared),
        running: pick(columns, 'status', v?.running ?? false, (x) => x === 'running'),
      };
      break;
    }
    case 'regions': {
      const r = p as RegionRow | undefined;
      row = { id, publicIpv4: pick(columns, 'public_ipv4', r?.publicIpv4, (x) => x) };
      break;
    }
    default:
      throw new RowError(table, 'unknown table');
  }
  return Object.freeze(row) as RowTypes[T];
}
