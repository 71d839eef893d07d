import pg from 'pg';
import { TLS_COLUMNS, TLS_TABLES, type TlsRows, type TlsTableName } from '../tls/tls-tables.js';

/**
 * Where each TLS table lives (schema), or undefined when it cannot be read: the migration has not
 * created it, or this role may not SELECT from it (then routes stream without certificates, and
 * `doctor` says which GRANT is missing).
 */
export type TlsTablePlaces = { readonly [T in TlsTableName]: string | undefined };

/** Finds the TLS tables as search_path resolves them (as the routing tables are found), if this role may read them. */
export async function findTlsTables(db: pg.ClientBase | pg.Pool): Promise<TlsTablePlaces> {
  const { rows } = await db.query<{ name: TlsTableName; schema: string | null; readable: boolean | null }>(
    `SELECT t.name, n.nspname AS schema, has_table_privilege(c.oid, 'SELECT') AS readable FROM unnest($1::text[]) AS t(name)
       LEFT JOIN pg_class c ON c.oid = to_regclass(t.name)
       LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`,
    [TLS_TABLES],
  );
  const places = {} as Record<TlsTableName, string | undefined>;
  for (const t of TLS_TABLES) {
    const row = rows.find((r) => r.name === t);
    places[t] = row?.readable === true ? (row.schema ?? undefined) : undefined;
  }
  return places;
}

/** True when `edgeproxy migrate` created both tables, readable by this role or not: then the publication must include them. */
export async function tlsTablesExist(db: pg.ClientBase | pg.Pool): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(to_regclass(t))::int AS n FROM unnest($1::text[]) AS t`, [TLS_TABLES]);
  return rows[0]?.n === TLS_TABLES.length;
}

/** True when both tables are there to read: certificates are streamed and polled only then. */
export function hasTlsTables(places: TlsTablePlaces): boolean {
  return TLS_TABLES.every((t) => places[t] !== undefined);
}

/** Reads both tables (the columns EdgeProxy uses), or undefined when they do not exist. Runs in the caller's transaction, if any. */
export async function readTlsRows(db: pg.ClientBase | pg.Pool, places?: TlsTablePlaces): Promise<TlsRows | undefined> {
  const where = places ?? (await findTlsTables(db));
  if (!hasTlsTables(where)) return undefined;
  const out = {} as Record<TlsTableName, Record<string, unknown>[]>;
  for (const table of TLS_TABLES) {
    const columns = TLS_COLUMNS[table].map((c) => pg.escapeIdentifier(c)).join(', ');
    const qualified = `${pg.escapeIdentifier(where[table]!)}.${pg.escapeIdentifier(table)}`;
    out[table] = (await db.query<Record<string, unknown>>(`SELECT ${columns} FROM ${qualified}`)).rows;
  }
  return out;
}
