import pg from 'pg';
import { DomainRowsReader } from '../table/domain-base.js';
import { copyRows } from './copy-rows.js';
import type { ReceivedRows } from '../table/row-state.js';
import { READ_COLUMNS, ROUTABLE_STATUS, type RowValues, sourceColumns, TABLES, type TableName } from '../table/rows.js';
import { findTlsTables, hasTlsTables, readTlsRows, type TlsTablePlaces } from '../db/tls-rows.js';
import type { TlsRows } from '../tls/tls-tables.js';
import type { TableShapes } from './decode.js';

/**
 * Columns read as the documented query's test of them rather than as their value: a million
 * booleans are cheaper to receive and keep than a million timestamps or status strings.
 * rowFromValues takes `true` for these the same as the value the test looks for.
 */
const READ_AS: Readonly<Record<string, string>> = {
  // NULL or true (not false): rows.ts treats any non-null verified_at as "set".
  'domains.verified_at': 'CASE WHEN verified_at IS NULL THEN NULL ELSE true END',
  'deployments.status': `status = ${pg.escapeLiteral(ROUTABLE_STATUS.deployments)}`,
  'vms.status': `status = ${pg.escapeLiteral(ROUTABLE_STATUS.vms)}`,
};

export interface SnapshotRows {
  /** Each row's values in READ_COLUMNS order; the domain rows read into columns as they arrived. */
  readonly tables: ReceivedRows;
  readonly shapes: TableShapes;
  /** The certificate and challenge rows under the same snapshot; undefined when the TLS tables do not exist. */
  readonly tls: TlsRows | undefined;
  /** Where the TLS tables are (for the decoder); undefined when they do not exist. */
  readonly tlsPlaces: TlsTablePlaces | undefined;
  readonly rowCount: number;
  readonly durationMs: number;
}

/**
 * Reads the four routing tables (only the columns the routing query uses, the region's address from
 * `regionAddressColumn`) under the snapshot
 * the replication slot exported, so that every change after it arrives on the stream and none
 * before it does. The certificate and challenge tables too, when they exist and may be read. Runs on its own connection: the exporting one must stay idle until streaming.
 */
export async function loadUnderSnapshot(client: pg.ClientBase, snapshotName: string, regionAddressColumn: string): Promise<SnapshotRows> {
  const started = performance.now();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(`SET TRANSACTION SNAPSHOT ${pg.escapeLiteral(snapshotName)}`);
    const where = await client.query<{ name: TableName; schema: string | null }>(
      `SELECT t.name, n.nspname AS schema FROM unnest($1::text[]) AS t(name)
         LEFT JOIN pg_class c ON c.oid = to_regclass(t.name)
         LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`,
      [TABLES],
    );
    const tables = {} as Record<Exclude<TableName, 'domains'>, RowValues[]> & { domains: DomainRowsReader };
    const shapes = {} as Record<TableName, TableShape>;
    let rowCount = 0;
    for (const table of TABLES) {
      const schema = where.rows.find((r) => r.name === table)?.schema ?? null;
      if (schema === null) throw new Error(`table ${table} does not exist (as the documented query resolves it)`);
      const read = await readTable(client, table, schema, regionAddressColumn);
      if (read.table === 'domains') tables.domains = read.rows;
      else tables[read.table] = read.rows;
      rowCount += read.count;
      shapes[table] = read.shape;
    }
    const places = await findTlsTables(client);
    const tls = hasTlsTables(places) ? await readTlsRows(client, places) : undefined;
    await client.query('COMMIT');
    return { tables, shapes, tls, tlsPlaces: tls === undefined ? undefined : places, rowCount, durationMs: performance.now() - started };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

type TableShape = { schema: string; columns: readonly string[]; types: Record<string, number> };

type TableRead =
  | { readonly table: 'domains'; readonly rows: DomainRowsReader; readonly count: number; readonly shape: TableShape }
  | { readonly table: Exclude<TableName, 'domains'>; readonly rows: RowValues[]; readonly count: number; readonly shape: TableShape };

/** One routing table's read columns (the domains through COPY), and its column types as the catalog gives them. */
async function readTable(client: pg.ClientBase, table: TableName, schema: string, regionAddressColumn: string): Promise<TableRead> {
  const qualified = `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)}`;
  const source = sourceColumns(table, regionAddressColumn);
  // The column types the stream's relation messages will be checked against, from the catalog.
  const types = await client.query<{ name: string; type: number }>(
    `SELECT attname AS name, atttypid::int AS type FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attname = ANY($2)`,
    [qualified, source],
  );
  const shape = { schema, columns: source, types: Object.fromEntries(types.rows.map((r) => [r.name, r.type])) };
  const columns = READ_COLUMNS[table]
    .map((c, i) => {
      const as = READ_AS[`${table}.${c}`];
      return as === undefined ? pg.escapeIdentifier(source[i]!) : `${as} AS ${pg.escapeIdentifier(c)}`;
    })
    .join(', ');
  const text = `SELECT ${columns} FROM ${qualified}`;
  if (table === 'domains') {
    const rows = await receiveDomains(client, text);
    return { table, rows, count: rows.count, shape };
  }
  // Arrays, not objects: at three million rows the driver builds them about 20% faster.
  const result = await client.query<unknown[]>({ text, rowMode: 'array' });
  return { table, rows: result.rows, count: result.rows.length, shape };
}

/**
 * The domain rows, each handed to a DomainRowsReader as it arrives, through COPY's text format
 * (half the CPU of `pg`'s row parsing at a million rows, bench/snapshot-load.ts): a million rows
 * are never held as a million arrays (~300 MB of heap at their peak), only as the reader's
 * columns. Every domain column is read as text or tested for NULL (verified_at, see READ_AS), so
 * the text form is the value `pg` would have given.
 */
async function receiveDomains(client: pg.ClientBase, select: string): Promise<DomainRowsReader> {
  // Counted first under the same snapshot, so the columns are sized once (see DomainRowsReader).
  const size = await client.query<{ rows: number; ids: string; names: string }>(
    `SELECT count(*)::int AS rows, coalesce(sum(octet_length(id::text)), 0)::text AS ids, coalesce(sum(octet_length(name::text)), 0)::text AS names FROM (${select}) AS s`,
  );
  const { rows, ids, names } = size.rows[0]!;
  const reader = new DomainRowsReader(rows, { ids: Number(ids), names: Number(names) });
  await copyRows(client, select, (row) => reader.read(row));
  return reader;
}
