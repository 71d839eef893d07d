/**
 * EdgeProxy's errors: one small family with stable codes. The code is for programs (log fields,
 * JSON answers, tests, alerts); the message is for people and carries the fix where one is known.
 * Nothing branches on a message. Every code is listed in docs/errors.md (a test checks).
 */

/** Every code, with what it means (the docs table is checked against this). */
export const ERROR_CODES = {
  // configuration and the CLI
  CONFIG_MISSING: 'a required setting is given neither as a flag nor as an environment variable',
  CONFIG_INVALID: 'a flag or environment variable has a value that cannot be used',
  USAGE: 'a command line argument is wrong',
  COMMAND_FAILED: 'a command ran and failed (the proxy is unreachable, a resync or a check failed)',
  // following the database
  SYNC_START_FAILED: 'the route table cannot follow the database as configured; the service does not start',
  SYNC_STOPPED: 'the service is stopping: nothing is loaded any more',
  LOAD_FAILED: 'a full load of the route table (the documented query) failed; the last table keeps serving',
  LOAD_SUPERSEDED: 'a full load was asked of the poller while the replication stream feeds the table; nothing was loaded',
  STREAM_UNAVAILABLE: 'the server cannot stream logical replication as configured (wal_level, REPLICATION, a PostgreSQL 15 standby)',
  STREAM_PUBLICATION: 'the publication is missing or incomplete and EdgeProxy may not fix it',
  STREAM_RESYNC: 'the stream showed something the apply step does not follow (TRUNCATE, a schema change); a fresh bootstrap follows',
  STREAM_TRANSIENT: 'the stream or its setup failed in a way that may pass (a lost connection, a timeout, no free slot)',
  STREAM_SILENT:
    'the replication stream sent nothing, not even a requested keepalive, for EDGEPROXY_REPLICATION_TIMEOUT (a partition, a hung replica)',
  STREAM_PROTOCOL: 'the replication messages arrived out of order (a begin inside a transaction, a change outside one)',
  ROW_UNREADABLE: 'a replicated row change cannot be applied (an update of an unknown row with unchanged columns)',
  PG_STANDBY_VERSION: 'the server is a standby older than PostgreSQL 16, which cannot decode logical replication',
  PG_WAL_LEVEL: "wal_level is not 'logical' (on the server, or on a standby's primary)",
  PG_REPLICATION_ROLE: 'the role has neither the REPLICATION attribute nor superuser',
  PG_HOT_STANDBY_FEEDBACK: 'a standby runs with hot_standby_feedback off: vacuum on the primary would invalidate its slots',
  PG_HBA_REJECTED: 'pg_hba.conf has no entry that lets this host and role connect to the database',
  PG_SLOTS_FULL: 'every replication slot is in use (max_replication_slots)',
  PG_WAL_SENDERS_FULL: 'every WAL sender is busy (max_wal_senders)',
  SCHEMA_COLUMN_MISSING:
    'a column the routing query reads does not exist (e.g. regions.public_ipv4 in a schema that has load_balancer_ipv4: set EDGEPROXY_REGION_ADDRESS_COLUMN)',
  // requests
  HOST_MISSING: 'the request has no Host header',
  HOST_DUPLICATE: 'the request has more than one Host header: 400',
  HOST_AUTHORITY_CONFLICT: 'an HTTP/2 request has a Host header that names another host than its :authority: 400',
  HOST_INVALID_PORT: 'the Host header has a port that is not 1-65535',
  HOST_INVALID_IPV6: 'the Host header has a malformed IPv6 literal',
  HOST_INVALID_NAME: 'the Host header is not a valid host name',
  HOST_IP_LITERAL: 'the Host header is an IP address: sites are reached by name',
  NO_ROUTE: 'no route for the host: the documented query returns no row for it',
  REQUEST_AFTER_CLOSE: 'a request pipelined after a refused one (which closes the connection) is not forwarded',
  REQUEST_TARGET_NOT_PATH: 'the request target is neither a path nor an absolute URL (`OPTIONS *`, authority-form): 400',
  REQUEST_TARGET_OTHER_HOST: 'an absolute-form request target names another host than the Host header (or has userinfo): 400',
  TRANSFER_ENCODING_INVALID: 'the request has a Transfer-Encoding other than a single `chunked` (another coding, a list, two headers): 400',
  UPGRADE_WITH_BODY: 'a WebSocket upgrade request has a body (Transfer-Encoding, or a Content-Length other than 0): 400',
  UPGRADE_NOT_WEBSOCKET: 'an upgrade other than a WebSocket GET (h2c, a POST upgrade): 400',
  UPGRADE_DRAINING: 'a WebSocket upgrade arrived while the proxy shuts down: 503 with Retry-After, so the client reconnects elsewhere',
  UPSTREAM_CONNECT_TIMEOUT: 'connecting to the VM or load balancer took longer than EDGEPROXY_UPSTREAM_CONNECT_TIMEOUT: 502',
  UPSTREAM_HEADERS_TIMEOUT: 'the upstream sent no response headers within EDGEPROXY_UPSTREAM_HEADER_TIMEOUT: 504',
  UPSTREAM_INVALID_RESPONSE: 'the upstream answered with a status or a header that cannot be forwarded: 502',
  UPSTREAM_CLOSED: 'the upstream closed or reset the connection in the middle of its response: the client connection is cut',
  UPSTREAM_FAILED: 'forwarding failed without a system error code to say why: 502',
  CLIENT_CLOSED: 'the client went away before its response was complete: the upstream request is aborted (status 499 in metrics)',
  CLIENT_CONNECTION_LIMIT:
    'the public port holds as many client connections as it accepts (a reserve below the open-files limit): new ones are closed on arrival',
  // the admin API
  ADMIN_INVALID_QUERY: 'an admin API request has a parameter that cannot be used (?limit=, a host in the path)',
  // TLS certificate storage
  TLS_CERT_INVALID: 'a stored certificate cannot be served: the chain does not parse, names no DNS name, or its key does not match',
  TLS_KEY_UNREADABLE: 'a sealed private key from the database does not open: altered, truncated, or moved from another row',
  TLS_KEY_NO_STORAGE_KEY: 'stored certificates exist but this proxy has no EDGEPROXY_TLS_STORAGE_KEY (or _FILE) to open their keys',
  TLS_KEY_OTHER_STORAGE_KEY: 'a private key in the database was sealed with another EDGEPROXY_TLS_STORAGE_KEY than this proxy has',
  // ACME issuance
  ACME_DIRECTORY_UNREACHABLE: 'the ACME directory cannot be reached or does not answer as a directory (down, refused, TLS not trusted)',
  ACME_ORDER_FAILED: 'the CA refused or failed an order (a failed HTTP-01 validation, an invalid order, a rate limit); the name backs off',
  ACME_LOCK_LOST: "another proxy took over a name's order lock while this one was ordering (its lock expired)",
  ACME_LOCK_UNAVAILABLE: "the primary could not be asked for a name's order lock (down, unreachable, read-only): no order",
  ACME_ORDER_LOCKED:
    'a forced renewal found the name being ordered (by another proxy, or an order of this one): its certificate comes by the stream, no second order',
  ACME_ISSUANCE_OFF:
    'a forced renewal was asked of a proxy that issues no certificates (ACME off, no primary URL, no storage key, no HTTPS port)',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface EdgeProxyErrorOptions extends ErrorOptions {
  /** What to do about it, when that is known (SQL to run, a setting to change). */
  readonly fix?: string;
}

/** The base of every error EdgeProxy throws on purpose. */
export class EdgeProxyError extends Error {
  override name = 'EdgeProxyError';
  readonly code: ErrorCode;
  readonly fix: string | undefined;

  constructor(code: ErrorCode, message: string, options: EdgeProxyErrorOptions = {}) {
    super(message, options);
    this.code = code;
    this.fix = options.fix;
  }
}

/** The one shape of a failed result (a parse, a load, a resync): the code and a message for people. */
export interface Failure<C extends ErrorCode = ErrorCode> {
  readonly ok: false;
  readonly code: C;
  readonly message: string;
}

export function failure<C extends ErrorCode>(code: C, message: string): Failure<C> {
  return { ok: false, code, message };
}

/** The code and message of anything thrown: our own errors keep their code, others get `fallback`. */
export function toFailure(err: unknown, fallback: ErrorCode): Failure {
  if (err instanceof EdgeProxyError) return failure(err.code, err.message);
  return failure(fallback, err instanceof Error ? err.message : String(err));
}

/** Whether a value returned by a parse or a load is its Failure. */
export function isFailure(value: unknown): value is Failure {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { ok?: unknown }).ok === false &&
    typeof (value as { code?: unknown }).code === 'string'
  );
}
