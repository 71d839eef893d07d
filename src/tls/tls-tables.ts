import type { Columns } from '../table/rows.js';

/**
 * The tables of EdgeProxy's own (migrations/edgeproxy/) that every proxy streams beside the
 * routing tables: stored certificates, and the HTTP-01 tokens of orders running now. Optional:
 * a database without them (the migration not applied) streams routes only.
 */
export const TLS_TABLES = ['edgeproxy_certificates', 'edgeproxy_acme_challenges'] as const;
export type TlsTableName = (typeof TLS_TABLES)[number];

export function isTlsTableName(name: string): name is TlsTableName {
  return (TLS_TABLES as readonly string[]).includes(name);
}

/** The columns read of each table, its key first (the other columns are for operators). */
export const TLS_COLUMNS: { readonly [T in TlsTableName]: readonly string[] } = {
  edgeproxy_certificates: ['id', 'chain_pem', 'key_sealed'],
  edgeproxy_acme_challenges: ['token', 'key_authorization', 'expires_at'],
};

/** The primary key column of each table: deletes arrive on the stream as it alone. */
export const TLS_KEYS: { readonly [T in TlsTableName]: string } = {
  edgeproxy_certificates: 'id',
  edgeproxy_acme_challenges: 'token',
};

/** One change to a TLS table, from the stream. `row` holds TLS_COLUMNS by name; `undefined` = unchanged (TOASTed). */
export type TlsChange =
  | { readonly op: 'upsert'; readonly table: TlsTableName; readonly key: string; readonly row: Columns; readonly oldKey?: string }
  | { readonly op: 'delete'; readonly table: TlsTableName; readonly key: string };

/** Every row of both tables (TLS_COLUMNS by name), as the bootstrap and the poller read them. */
export type TlsRows = { readonly [T in TlsTableName]: readonly Columns[] };
