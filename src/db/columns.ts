import type pg from 'pg';
import { DOCUMENTED_REGION_ADDRESS_COLUMN, READ_COLUMNS, sourceColumns, TABLES, type TableName } from '../table/rows.js';

/** A column of a routing table, as the catalog describes it. */
export interface ColumnInfo {
  readonly name: string;
  /** As PostgreSQL prints it: `inet`, `text`, `character varying(45)`, `vm_status`. */
  readonly type: string;
  /** pg_type.typcategory: I network address, S string, N numeric, D date/time, E enum, U uuid... */
  readonly category: string;
}

/** A column the routing query reads that the table does not have, and the table's columns that may be meant instead. */
export interface MissingColumn {
  readonly table: TableName;
  /** The name looked for (the configured one for the region's address). */
  readonly column: string;
  /** Whether a setting names it (EDGEPROXY_REGION_ADDRESS_COLUMN) rather than the documented query. */
  readonly configurable: boolean;
  /** Likeliest first: same kind of type, a name like it. */
  readonly candidates: readonly ColumnInfo[];
}

export interface ColumnCheck {
  /** Each routing table's columns in table order; absent for a table that does not resolve (the read access check says so). */
  readonly tables: Partial<Record<TableName, readonly ColumnInfo[]>>;
  readonly missing: readonly MissingColumn[];
}

/** What each read column holds: the type categories it may have (likeliest first) and names that suggest it. */
const KINDS: Readonly<Record<string, { readonly categories: string; readonly name: RegExp }>> = {
  'regions.public_ipv4': { categories: 'IS', name: /ip|addr/ },
  'vms.private_ip': { categories: 'IS', name: /ip|addr/ },
  'vms.port': { categories: 'N', name: /port/ },
  'vms.region_id': { categories: 'US', name: /region/ },
  'vms.status': { categories: 'ES', name: /status|state/ },
  'deployments.vm_id': { categories: 'US', name: /vm|machine/ },
  'deployments.status': { categories: 'ES', name: /status|state/ },
  'domains.name': { categories: 'S', name: /name|host|domain/ },
  'domains.deployment_id': { categories: 'US', name: /deployment/ },
  'domains.verified_at': { categories: 'D', name: /verif/ },
};

/** Name parts that say nothing about what a column holds. */
const GENERIC = new Set(['id', 'at']);
const tokens = (name: string) => name.split(/[^a-z0-9]+/).filter((t) => t !== '' && !GENERIC.has(t));

/** The table's columns that could be the missing one: the kind of type it holds, and a name like it or like what it holds. */
function candidatesFor(
  table: TableName,
  logical: string,
  column: string,
  columns: readonly ColumnInfo[],
  read: readonly string[],
): ColumnInfo[] {
  const kind = KINDS[`${table}.${logical}`];
  if (kind === undefined) return [];
  const wanted = tokens(column);
  const shared = (c: ColumnInfo) => tokens(c.name).filter((t) => wanted.includes(t)).length;
  return columns
    .filter((c) => !read.includes(c.name) && kind.categories.includes(c.category) && (kind.name.test(c.name) || shared(c) > 0))
    .map((c, order) => ({ c, order, score: shared(c) * 2 + (c.category === kind.categories[0] ? 1 : 0) }))
    .sort((a, b) => b.score - a.score || a.order - b.order)
    .slice(0, 3)
    .map((x) => x.c);
}

/**
 * Reads the routing tables' columns from the catalog (tables as the routing query resolves them,
 * by search_path) and says which of the columns it reads are missing, with likely candidates.
 */
export async function checkColumns(db: pg.ClientBase | pg.Pool, regionAddressColumn: string): Promise<ColumnCheck> {
  const { rows } = await db.query<{ table: TableName; name: string; type: string; category: string }>(
    `SELECT t.name AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, ty.typcategory AS category
       FROM unnest($1::text[]) AS t(name)
       JOIN pg_attribute a ON a.attrelid = to_regclass(t.name) AND a.attnum > 0 AND NOT a.attisdropped
       JOIN pg_type ty ON ty.oid = a.atttypid
      ORDER BY t.name, a.attnum`,
    [TABLES],
  );
  const tables: Partial<Record<TableName, ColumnInfo[]>> = {};
  for (const r of rows) (tables[r.table] ??= []).push({ name: r.name, type: r.type, category: r.category });
  const missing: MissingColumn[] = [];
  for (const table of TABLES) {
    const columns = tables[table];
    if (columns === undefined) continue;
    const read = sourceColumns(table, regionAddressColumn);
    read.forEach((column, i) => {
      if (columns.some((c) => c.name === column)) return;
      const logical = READ_COLUMNS[table][i]!;
      missing.push({
        table,
        column,
        configurable: table === 'regions' && logical === DOCUMENTED_REGION_ADDRESS_COLUMN,
        candidates: candidatesFor(table, logical, column, columns, read),
      });
    });
  }
  return { tables, missing };
}
