import type { Pgoutput } from 'pg-logical-replication';
import type { TlsTablePlaces } from '../db/tls-rows.js';
import { type Columns, isTableName, READ_COLUMNS, type RowChange, type TableName } from '../table/rows.js';
import { isTlsTableName, TLS_KEYS, type TlsChange, type TlsTableName } from '../tls/tls-tables.js';

/**
 * Where each routing table lives, its read columns as the database names them (READ_COLUMNS order:
 * rows.ts sourceColumns) and their types, as seen at bootstrap.
 */
export type TableShapes = {
  readonly [T in TableName]: {
    readonly schema: string;
    readonly columns: readonly string[];
    readonly types: Readonly<Record<string, number>>;
  };
};

/** One pgoutput message, reduced to what applying it needs. */
export type Decoded =
  | { readonly kind: 'begin'; readonly xid: number; readonly commitTimeMs: number }
  | { readonly kind: 'change'; readonly change: RowChange }
  /** A change to a certificate or challenge row (tls-tables.ts). */
  | { readonly kind: 'tls'; readonly change: TlsChange }
  | { readonly kind: 'commit'; readonly endLsn: string; readonly commitTimeMs: number }
  /** Something the apply step cannot follow: start over from a fresh snapshot. */
  | { readonly kind: 'resync'; readonly reason: string }
  /** Not about the routing tables (other tables in the publication, types, origins). */
  | { readonly kind: 'skip' };

const SKIP: Decoded = { kind: 'skip' };

/** Per table, the read columns the database names otherwise: [its name, the READ_COLUMNS name]. */
type Renames = { readonly [T in TableName]: readonly (readonly [string, string])[] };

/** Commit times arrive as BigInt microseconds since the Unix epoch (typed as the wrapper `BigInt`). */
function micros(t: unknown): number {
  return Number(t as bigint) / 1000;
}

/**
 * Turns pgoutput messages into row changes for the four routing tables. Pure apart from the
 * relations it has checked. A relation message is checked against the shapes read at bootstrap:
 * a read column that vanished or changed type, or a table without a usable key, asks for a
 * resync instead of guessing.
 */
export class ChangeDecoder {
  readonly #shapes: TableShapes;
  readonly #renames: Renames;
  readonly #tls: TlsTablePlaces | undefined;

  /** `tls`: where the TLS tables were at bootstrap; undefined = they do not exist and their changes are skipped. */
  constructor(shapes: TableShapes, tls?: TlsTablePlaces) {
    this.#shapes = shapes;
    this.#tls = tls;
    const renames = (t: TableName) =>
      shapes[t].columns.flatMap((source, i) => (source === READ_COLUMNS[t][i] ? [] : [[source, READ_COLUMNS[t][i]!] as const]));
    this.#renames = { domains: renames('domains'), deployments: renames('deployments'), vms: renames('vms'), regions: renames('regions') };
  }

  decode(msg: Pgoutput.Message): Decoded {
    if ((msg.tag === 'insert' || msg.tag === 'update' || msg.tag === 'delete') && this.#tlsTable(msg.relation) !== undefined) {
      return this.#decodeTls(msg);
    }
    switch (msg.tag) {
      case 'begin':
        return { kind: 'begin', xid: msg.xid, commitTimeMs: micros(msg.commitTime) };
      case 'commit':
        if (msg.commitEndLsn === null) return { kind: 'resync', reason: 'commit message without an end LSN' };
        return { kind: 'commit', endLsn: msg.commitEndLsn, commitTimeMs: micros(msg.commitTime) };
      case 'relation': {
        const table = this.#table(msg);
        return table === undefined ? SKIP : this.#checkRelation(table, msg);
      }
      case 'insert':
        return this.#insert(msg);
      case 'update':
        return this.#update(msg);
      case 'delete':
        return this.#delete(msg);
      case 'truncate':
        return this.#truncate(msg);
      default:
        return SKIP;
    }
  }

  #insert(msg: Pgoutput.MessageInsert): Decoded {
    const table = this.#table(msg.relation);
    if (table === undefined) return SKIP;
    const bad = malformedTuple(msg.relation, msg.new, false);
    return bad !== undefined
      ? malformed(table, bad)
      : { kind: 'change', change: { op: 'insert', table, row: this.#named(table, msg.new) } };
  }

  #update(msg: Pgoutput.MessageUpdate): Decoded {
    const table = this.#table(msg.relation);
    if (table === undefined) return SKIP;
    const bad = malformedTuple(msg.relation, msg.new, true) ?? (msg.old === null ? undefined : malformedTuple(msg.relation, msg.old, true));
    if (bad !== undefined) return malformed(table, bad);
    // `key` comes when the primary key changed (REPLICA IDENTITY DEFAULT), `old` with FULL.
    const before = (msg.key ?? msg.old)?.id as unknown;
    if (before instanceof Uint8Array) return malformed(table, 'a binary id in the old key');
    const oldId = before === undefined || before === null || String(before) === String(msg.new.id) ? undefined : String(before);
    const row = this.#named(table, msg.new);
    return { kind: 'change', change: oldId === undefined ? { op: 'update', table, row } : { op: 'update', table, row, oldId } };
  }

  #delete(msg: Pgoutput.MessageDelete): Decoded {
    const table = this.#table(msg.relation);
    if (table === undefined) return SKIP;
    const id = (msg.key ?? msg.old)?.id as unknown;
    if (id === undefined || id === null) return { kind: 'resync', reason: `delete on ${table} without an id in its key` };
    if (id instanceof Uint8Array) return malformed(table, 'a binary id in its key');
    return { kind: 'change', change: { op: 'delete', table, id: String(id) } };
  }

  /** Any TRUNCATE of a table we read asks for a resync: the stream says no more than that the rows are gone. */
  #truncate(msg: Pgoutput.MessageTruncate): Decoded {
    if (msg.relations.some((r) => r === undefined)) return { kind: 'resync', reason: 'TRUNCATE of a relation not announced on the stream' };
    const ours = msg.relations.map((r) => this.#table(r) ?? this.#tlsTable(r)).filter((t) => t !== undefined);
    return ours.length === 0 ? SKIP : { kind: 'resync', reason: `TRUNCATE of ${ours.join(', ')}` };
  }

  #tlsTable(rel: Pgoutput.MessageRelation): TlsTableName | undefined {
    if (this.#tls === undefined || !isTlsTableName(rel.name)) return undefined;
    return this.#tls[rel.name] === rel.schema ? rel.name : undefined;
  }

  /** A certificate or challenge row: keyed by its table's key column, values as the driver parsed them (bytea as a Buffer). */
  #decodeTls(msg: Pgoutput.MessageInsert | Pgoutput.MessageUpdate | Pgoutput.MessageDelete): Decoded {
    const table = this.#tlsTable(msg.relation)!;
    const keyColumn = TLS_KEYS[table];
    const oldKey = (msg.tag === 'insert' ? undefined : (msg.key ?? msg.old)?.[keyColumn]) as unknown;
    if (msg.tag === 'delete') {
      if (oldKey === undefined || oldKey === null) return { kind: 'resync', reason: `delete on ${table} without ${keyColumn} in its key` };
      return { kind: 'tls', change: { op: 'delete', table, key: String(oldKey) } };
    }
    const key = msg.new[keyColumn] as unknown;
    if (key === undefined || key === null) return malformed(table, `a row without ${keyColumn}`);
    const moved = oldKey !== undefined && oldKey !== null && String(oldKey) !== String(key);
    return {
      kind: 'tls',
      change: moved
        ? { op: 'upsert', table, key: String(key), row: msg.new, oldKey: String(oldKey) }
        : { op: 'upsert', table, key: String(key), row: msg.new },
    };
  }

  #table(rel: Pgoutput.MessageRelation): TableName | undefined {
    if (!isTableName(rel.name)) return undefined;
    return this.#shapes[rel.name].schema === rel.schema ? rel.name : undefined;
  }

  /** A row as the stream sends it, with the read columns under their READ_COLUMNS names (the rest as they are). */
  #named(table: TableName, row: Columns): Columns {
    const renames = this.#renames[table];
    if (renames.length === 0) return row;
    const named: Record<string, unknown> = { ...row };
    for (const [source, name] of renames) named[name] = row[source];
    return named;
  }

  #checkRelation(table: TableName, rel: Pgoutput.MessageRelation): Decoded {
    const { types: expected, columns } = this.#shapes[table];
    for (const column of columns) {
      const found = rel.columns.find((c) => c.name === column);
      if (found === undefined) return { kind: 'resync', reason: `${table}.${column} is no longer published (schema change)` };
      if (expected[column] !== undefined && found.typeOid !== expected[column]) {
        return { kind: 'resync', reason: `${table}.${column} changed type (schema change)` };
      }
    }
    if (rel.replicaIdentity !== 'full' && !rel.keyColumns.includes('id')) {
      return {
        kind: 'resync',
        reason: `${table}'s replica identity (${rel.replicaIdentity}: ${rel.keyColumns.join(', ') || 'no columns'}) does not carry id`,
      };
    }
    return SKIP;
  }
}

/**
 * What makes a tuple impossible for pgoutput as we start it (text format), or undefined: every
 * column of its relation is there (a short tuple means a damaged message, and merging it into the
 * stored row would keep old values as if they were current), no value is binary, and only an
 * update may carry unchanged (TOASTed) values. The library parses what it is given; this is where
 * a damaged message ends in a resync instead of a plausible change.
 */
function malformedTuple(rel: Pgoutput.MessageRelation, tuple: Readonly<Record<string, unknown>>, update: boolean): string | undefined {
  for (const column of rel.columns) {
    if (!(column.name in tuple)) return `column ${column.name} missing from the tuple`;
    const value = tuple[column.name];
    if (value instanceof Uint8Array) return `column ${column.name} in binary format`;
    if (value === undefined && !update) return `column ${column.name} unchanged in an insert`;
  }
  return undefined;
}

function malformed(table: TableName | TlsTableName, what: string): Decoded {
  return { kind: 'resync', reason: `malformed change on ${table}: ${what}` };
}
