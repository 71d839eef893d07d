import pg from 'pg';
import { EdgeProxyError } from '../errors.js';
import { sourceColumns, TABLES, type TableName } from '../table/rows.js';
import type { ServerCapabilities } from './capabilities.js';
import { checkColumns, type ColumnCheck } from './columns.js';
import { columnsProblem, DiagnosedError } from './diagnosis.js';
import { TLS_TABLES, type TlsTableName } from '../tls/tls-tables.js';
import { tlsTablesExist } from './tls-rows.js';

export const PUBLISHED_ACTIONS = ['insert', 'update', 'delete', 'truncate'] as const;
export type PublishedAction = (typeof PUBLISHED_ACTIONS)[number];

/** How a publication compares with what EdgeProxy streams. */
export interface PublicationCheck {
  readonly name: string;
  readonly exists: boolean;
  /** Routing tables (as the documented query resolves them), and TLS tables where they exist, the publication does not cover. */
  readonly missingTables: readonly (TableName | TlsTableName)[];
  /** Actions it does not publish (EdgeProxy needs all four). */
  readonly missingActions: readonly PublishedAction[];
  /** Row filters or column lists that hide rows or columns the routing query reads (a column the table lacks is not hidden: see `columns`). */
  readonly filtered: readonly string[];
  /** The tables' columns, and those the routing query reads that do not exist. */
  readonly columns: ColumnCheck;
  /** The SQL that makes it right (to run on the primary); undefined when nothing is wrong. */
  readonly fixSql: string | undefined;
}

/** The publication is missing or incomplete and EdgeProxy may not fix it: `fix` is the SQL to run on the primary. */
export class PublicationError extends EdgeProxyError {
  override name = 'PublicationError';

  constructor(message: string, fixSql: string) {
    super('STREAM_PUBLICATION', message, { fix: fixSql });
  }
}

const ident = (s: string) => pg.escapeIdentifier(s);
const tableList = (tables: readonly string[]) => tables.map(ident).join(', ');

/** The tables EdgeProxy streams: the routing tables, and its certificate and challenge tables once `edgeproxy migrate` created them. */
export function publishedTables(tlsTables: boolean): readonly (TableName | TlsTableName)[] {
  return tlsTables ? [...TABLES, ...TLS_TABLES] : TABLES;
}

export function createPublicationSql(name: string, tlsTables = true): string {
  return `CREATE PUBLICATION ${ident(name)} FOR TABLE ${tableList(publishedTables(tlsTables))};`;
}

/** `serverVersionNum` as readCapabilities read it (the columns to ask for depend on it). */
export async function checkPublication(
  db: pg.ClientBase | pg.Pool,
  name: string,
  serverVersionNum: number,
  regionAddressColumn: string,
): Promise<PublicationCheck> {
  const columns = await checkColumns(db, regionAddressColumn);
  const wanted = publishedTables(await tlsTablesExist(db));
  const pub = await db.query<Record<string, boolean>>(
    'SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1',
    [name],
  );
  const p = pub.rows[0];
  if (p === undefined) {
    return {
      name,
      exists: false,
      missingTables: [...wanted],
      missingActions: [],
      filtered: [],
      columns,
      fixSql: `CREATE PUBLICATION ${ident(name)} FOR TABLE ${tableList(wanted)};`,
    };
  }
  const tables = await readPublishedTables(db, name, wanted, serverVersionNum);
  const missingTables = tables.filter((t) => !t.published).map((t) => t.name);
  const missingActions = PUBLISHED_ACTIONS.filter((a) => p[`pub${a}`] !== true);
  const filtered = filteredTables(tables, columns, regionAddressColumn);
  const fixes = publicationFixes(name, p.puballtables === true, { wanted, missingTables, missingActions, filtered });
  return { name, exists: true, missingTables, missingActions, filtered, columns, fixSql: fixes.length > 0 ? fixes.join('\n') : undefined };
}

interface PublishedTable {
  readonly name: TableName | TlsTableName;
  readonly published: boolean;
  readonly attnames: string[] | null;
  readonly rowfilter: string | null;
}

/** Whether each wanted table is in the publication, with its column list and row filter. */
async function readPublishedTables(
  db: pg.ClientBase | pg.Pool,
  name: string,
  wanted: readonly string[],
  serverVersionNum: number,
): Promise<PublishedTable[]> {
  // attnames and rowfilter exist from PostgreSQL 15 on.
  const extra = serverVersionNum >= 150000 ? ', pt.attnames, pt.rowfilter' : ', NULL::name[] AS attnames, NULL::text AS rowfilter';
  const tables = await db.query<PublishedTable>(
    `SELECT t.name, pt.tablename IS NOT NULL AS published${extra}
       FROM unnest($2::text[]) AS t(name)
       LEFT JOIN pg_class c ON c.oid = to_regclass(t.name)
       LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_publication_tables pt ON pt.pubname = $1 AND pt.schemaname = n.nspname AND pt.tablename = c.relname`,
    [name, wanted],
  );
  return tables.rows;
}

/** Published tables whose row filter or column list would hide rows or columns the route table needs. */
function filteredTables(tables: readonly PublishedTable[], columns: ColumnCheck, regionAddressColumn: string): string[] {
  const filtered: string[] = [];
  for (const t of tables) {
    if (!t.published) continue;
    if (t.rowfilter !== null) filtered.push(`${t.name} has a row filter (WHERE ${t.rowfilter})`);
    if (!isRoutingTable(t.name)) continue; // the TLS tables' columns are EdgeProxy's own: a column list there is an operator's choice
    const existing = columns.tables[t.name] ?? [];
    const hidden =
      t.attnames === null
        ? []
        : sourceColumns(t.name, regionAddressColumn).filter((c) => existing.some((e) => e.name === c) && !t.attnames!.includes(c));
    if (hidden.length > 0) filtered.push(`${t.name}'s column list leaves out ${hidden.join(', ')}`);
  }
  return filtered;
}

/** The SQL that makes an existing publication what EdgeProxy needs (empty when it already is). */
function publicationFixes(
  name: string,
  allTables: boolean,
  found: { wanted: readonly string[]; missingTables: readonly string[]; missingActions: readonly string[]; filtered: readonly string[] },
): string[] {
  const fixes: string[] = [];
  if (found.filtered.length > 0 && !allTables) fixes.push(`ALTER PUBLICATION ${ident(name)} SET TABLE ${tableList(found.wanted)};`);
  else if (found.missingTables.length > 0 && !allTables)
    fixes.push(`ALTER PUBLICATION ${ident(name)} ADD TABLE ${tableList(found.missingTables)};`);
  if (found.missingActions.length > 0) fixes.push(`ALTER PUBLICATION ${ident(name)} SET (publish = '${PUBLISHED_ACTIONS.join(', ')}');`);
  if (fixes.length === 0 && found.missingTables.length > 0)
    fixes.push(`-- the publication is FOR ALL TABLES, yet ${found.missingTables.join(', ')} do not resolve to tables: check search_path`);
  return fixes;
}

function isRoutingTable(name: string): name is TableName {
  return (TABLES as readonly string[]).includes(name);
}

/** Describes what is wrong with a publication in one sentence (undefined when nothing is). */
export function describePublicationProblem(c: PublicationCheck): string | undefined {
  if (!c.exists) return `publication "${c.name}" does not exist`;
  const parts: string[] = [];
  if (c.missingTables.length > 0) parts.push(`does not include ${c.missingTables.join(', ')}`);
  if (c.missingActions.length > 0) parts.push(`does not publish ${c.missingActions.join(', ')}`);
  parts.push(...c.filtered);
  return parts.length === 0 ? undefined : `publication "${c.name}" ${parts.join('; ')}`;
}

/**
 * Makes sure the publication is usable: creates it when it is missing and this role may (on a
 * primary); otherwise throws PublicationError carrying the SQL an operator must run on the
 * primary. An existing publication is never altered: it belongs to whoever created it. A column
 * the routing query reads that no table has is no publication's fault: DiagnosedError says which.
 */
export async function ensurePublication(
  db: pg.ClientBase | pg.Pool,
  name: string,
  server: Pick<ServerCapabilities, 'inRecovery' | 'serverVersionNum'>,
  regionAddressColumn: string,
): Promise<'exists' | 'created'> {
  const { inRecovery } = server;
  const check = await checkPublication(db, name, server.serverVersionNum, regionAddressColumn);
  const missing = columnsProblem(check.columns);
  if (missing !== undefined) throw new DiagnosedError(missing);
  const problem = describePublicationProblem(check);
  if (problem === undefined) return 'exists';
  if (!check.exists && !inRecovery) {
    try {
      await db.query(createPublicationSql(name));
      return 'created';
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (e.code === '42710') return 'exists'; // another proxy created it a moment ago
      throw new PublicationError(
        `${problem}, and creating it failed (${e.message ?? String(err)}); run on the primary: ${check.fixSql}`,
        check.fixSql!,
      );
    }
  }
  const where = inRecovery ? 'on the primary (this server is a standby)' : 'on the primary';
  throw new PublicationError(`${problem}; run ${where}: ${check.fixSql}`, check.fixSql!);
}

/** Primary keys of the routing tables: deletes and key changes arrive on the stream as the key only. */
export interface KeyCheck {
  readonly table: TableName;
  readonly ok: boolean;
  readonly problem: string | undefined;
  readonly fixSql: string | undefined;
}

export async function checkPrimaryKeys(db: pg.ClientBase | pg.Pool): Promise<KeyCheck[]> {
  const { rows } = await db.query<{ name: TableName; exists: boolean; replident: string | null; pk: string[] | null }>(
    `SELECT t.name, c.oid IS NOT NULL AS exists, c.relreplident::text AS replident,
            (SELECT array_agg(a.attname::text ORDER BY a.attnum)
               FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
              WHERE i.indrelid = c.oid AND i.indisprimary) AS pk
       FROM unnest($1::text[]) AS t(name)
       LEFT JOIN pg_class c ON c.oid = to_regclass(t.name)`,
    [TABLES],
  );
  return rows.map((r) => {
    if (!r.exists) return { table: r.name, ok: false, problem: `table ${r.name} does not exist`, fixSql: undefined };
    const pkIsId = r.pk !== null && r.pk.length === 1 && r.pk[0] === 'id';
    if (r.replident === 'f') return { table: r.name, ok: true, problem: undefined, fixSql: undefined };
    if (r.replident === 'd' && pkIsId) return { table: r.name, ok: true, problem: undefined, fixSql: undefined };
    if (r.replident === 'd' && r.pk === null) {
      return {
        table: r.name,
        ok: false,
        problem: `table ${r.name} has no primary key`,
        fixSql: `ALTER TABLE ${ident(r.name)} ADD PRIMARY KEY (id);`,
      };
    }
    const what =
      r.replident === 'd' ? `its primary key is (${(r.pk ?? []).join(', ')}), not (id)` : `its replica identity is '${r.replident}'`;
    return {
      table: r.name,
      ok: false,
      problem: `table ${r.name}: ${what}`,
      fixSql: `ALTER TABLE ${ident(r.name)} REPLICA IDENTITY FULL;`,
    };
  });
}
