import { isIP } from 'node:net';
import os from 'node:os';
import { EdgeProxyError, failure, isFailure, type Failure } from '../errors.js';
import { formatDuration, parseDuration } from './duration.js';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface ListenAddress {
  /** undefined = all interfaces (`:8080`) */
  readonly host: string | undefined;
  readonly port: number;
}

export interface Config {
  readonly httpAddr: ListenAddress;
  readonly databaseUrl: string;
  readonly regionId: string;
  readonly updateIntervalMs: number;
  readonly logLevel: LogLevel;
  readonly healthTimeoutMs: number;
  readonly healthCacheTtlMs: number;
  readonly crossRegionPort: number;
  readonly shutdownTimeoutMs: number;
  readonly syncMode: SyncMode;
  readonly publication: string;
  /** The column of `regions` holding its load balancer's address (the documented query's `public_ipv4`). */
  readonly regionAddressColumn: string;
  /** How long a database connection may stay silent: the replication stream, or one query of a poll or a stream setup. */
  readonly replicationTimeoutMs: number;
  /** Admin API listener (health, metrics, routes, resync); undefined = disabled. */
  readonly adminAddr: ListenAddress | undefined;
  readonly upstreamConnectTimeoutMs: number;
  readonly upstreamHeaderTimeoutMs: number;
  readonly upstreamIdleTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly clientHeaderTimeoutMs: number;
  readonly clientRequestTimeoutMs: number;
  /** Extra addresses whose X-Forwarded-For is trusted, as CIDRs (`10.0.0.0/8`, `2001:db8::/32`). */
  readonly trustedProxies: readonly string[];
  /** Public HTTPS listener; undefined = disabled. */
  readonly httpsAddr: ListenAddress | undefined;
  /** PEM files of the certificate served to handshakes no stored certificate matches; undefined = none. */
  readonly tlsDefaultCertFile: string | undefined;
  readonly tlsDefaultKeyFile: string | undefined;
  readonly tlsHandshakeTimeoutMs: number;
  /** How long one set of session ticket keys serves before it is replaced; undefined = for the whole process (src/tls/ticket-keys.ts). */
  readonly tlsTicketKeyLifetimeMs: number | undefined;
  /** Where certificates, ACME orders, challenge tokens and locks are written; undefined = this proxy issues none. */
  readonly primaryDatabaseUrl: string | undefined;
  /** EDGEPROXY_TLS_STORAGE_KEY's value (base64; parsed where it is used, so that no error echoes it), or undefined. */
  readonly tlsStorageKey: string | undefined;
  /** A file holding the storage key in base64 (instead of EDGEPROXY_TLS_STORAGE_KEY). */
  readonly tlsStorageKeyFile: string | undefined;
  /** ACME directory of the CA that issues on-demand certificates; undefined = no issuance. */
  readonly acmeDirectoryUrl: string | undefined;
  /** Contact address of the ACME account; undefined = none. */
  readonly acmeEmail: string | undefined;
  /** Plain-HTTP requests for a name that has a certificate get a 308 to https: `true` to the HTTPS listener's port, a number to that port (behind a port mapping), `false` never. */
  readonly httpsRedirect: boolean | number;
  /** PEM file of extra roots trusted for the ACME directory only (a private CA); undefined = the system's roots. */
  readonly acmeCaRootsFile: string | undefined;
  /** How long a handshake that started an order waits for its certificate (then the default certificate or unrecognized_name). */
  readonly acmeHandshakeWaitMs: number;
  /** At most this many on-demand orders run at once in this proxy. */
  readonly acmeMaxOrders: number;
  /** Threads serving the public HTTP port (src/workers); 1 = the main thread serves it, as before. */
  readonly workers: number;
  /** Each worker thread's young generation, MiB (its V8 `maxYoungGenerationSizeMb`; decision 0025). */
  readonly workerYoungGenerationMb: number;
}

/** How the route table follows the database: see docs/decisions/0005-streaming.md and docs/streaming.md. */
export const SYNC_MODES = ['auto', 'replication', 'poll'] as const;
export type SyncMode = (typeof SYNC_MODES)[number];

/** A configuration value that cannot be used, or is missing; the message names the variable or flag. */
export class ConfigError extends EdgeProxyError {
  override name = 'ConfigError';
}

/** A value an option parser refuses; the message says what is wrong with it ("is not a UUID"). */
export type Invalid = Failure<'CONFIG_INVALID'>;

function invalid(message: string): Invalid {
  return failure('CONFIG_INVALID', message);
}

interface OptionSpec<K extends keyof Config> {
  readonly key: K;
  readonly flag: string;
  readonly env: string;
  readonly description: string;
  /** The default as a user would type it; absent = required. */
  readonly default?: string;
  /** Whether the raw value may be echoed in error messages (never for the database URL). */
  readonly secret?: boolean;
  /** An empty environment variable is a value (passed to `parse`), not "unset". */
  readonly emptyIsValue?: boolean;
  /** Returns the parsed value, or a string saying what is wrong with it. */
  readonly parse: (raw: string) => Config[K] | Invalid;
}

function spec<K extends keyof Config>(s: OptionSpec<K>): OptionSpec<K> {
  return s;
}

/** An identifier PostgreSQL takes unquoted as it is (it folds unquoted names to lowercase). */
const PLAIN_IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

function duration(min: number, what: string) {
  return (raw: string): number | Invalid => {
    const ms = parseDuration(raw);
    if (ms === undefined) return invalid('is not a duration (examples: 10s, 500ms, 1m30s)');
    if (ms < min) return invalid(`must be at least ${formatDuration(min)} (${what})`);
    return ms;
  };
}

/** A duration, or `off` (undefined). */
function durationOrOff(min: number, what: string) {
  const parse = duration(min, what);
  return (raw: string): number | undefined | Invalid => (raw.trim().toLowerCase() === 'off' ? undefined : parse(raw));
}

/** A value from a fixed list, matched case-insensitively. */
function oneOf<T extends string>(values: readonly T[]) {
  return (raw: string): T | Invalid => {
    const value = raw.trim().toLowerCase();
    return (values as readonly string[]).includes(value) ? (value as T) : invalid(`must be one of ${values.join(', ')}`);
  };
}

export function parseListenAddress(raw: string): ListenAddress | Invalid {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(raw.trim());
  if (m === null) return invalid('is not a listen address (examples: :8080, 127.0.0.1:8080, [::1]:8080)');
  const host = m[1] ?? (m[2] === '' ? undefined : m[2]);
  const port = Number(m[3]);
  if (port > 65535) return invalid('has a port above 65535');
  if (m[1] !== undefined && isIP(m[1]) !== 6) return invalid('has an invalid IPv6 address in brackets');
  if (host !== undefined && m[1] === undefined && isIP(host) === 0 && !/^[a-zA-Z0-9.-]+$/.test(host)) {
    return invalid('has an invalid host');
  }
  return { host, port };
}

/** A listen address, or undefined for empty / `off` (a listener that is disabled). */
function optionalListenAddress(raw: string): ListenAddress | undefined | Invalid {
  return raw.trim() === '' || raw.trim().toLowerCase() === 'off' ? undefined : parseListenAddress(raw);
}

function port(raw: string): number | Invalid {
  const n = /^[0-9]{1,5}$/.test(raw.trim()) ? Number(raw) : NaN;
  return n >= 1 && n <= 65535 ? n : invalid('is not a port number 1-65535');
}

/** `on`/`off` (also true/false, yes/no, 1/0), case-insensitive. */
function onOff(raw: string): boolean | Invalid {
  const v = raw.trim().toLowerCase();
  if (['on', 'true', 'yes', '1'].includes(v)) return true;
  if (['off', 'false', 'no', '0'].includes(v)) return false;
  return invalid('must be on or off');
}

/** An https:// URL (or http:// to a loopback address, for a test CA), or undefined for empty / `off`. */
function optionalDirectoryUrl(raw: string): string | undefined | Invalid {
  const text = raw.trim();
  if (text === '' || text.toLowerCase() === 'off') return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return invalid('is not a URL (example: https://acme-v02.api.letsencrypt.org/directory)');
  }
  if (url.protocol !== 'https:') return invalid('must be an https:// URL (ACME requires TLS)');
  return url.toString();
}

/** A plausible e-mail address (the CA checks it further), or undefined when empty. */
function optionalEmail(raw: string): string | undefined | Invalid {
  const text = raw.trim();
  if (text === '') return undefined;
  return /^[^\s@<>,;:]+@[^\s@<>,;:]+\.[^\s@<>,;:]+$/.test(text) ? text : invalid('is not an e-mail address (example: ops@example.com)');
}

/** A file path, or undefined when empty; whether it can be read is checked where it is read. */
function optionalPath(raw: string): string | undefined {
  return raw.trim() === '' ? undefined : raw.trim();
}

/** EDGEPROXY_WORKERS: `auto` (os.availableParallelism()) or a whole number from 1 to 256. */
export function parseWorkers(raw: string): number | Invalid {
  if (raw.trim() === 'auto') return os.availableParallelism();
  const n = /^\s*[0-9]{1,3}\s*$/.test(raw) ? Number(raw) : NaN;
  return n >= 1 && n <= 256 ? n : invalid('is not "auto" nor a whole number from 1 to 256');
}

/** EDGEPROXY_WORKER_YOUNG_GENERATION: a whole number of MiB from 8 to 1024. */
export function parseYoungGeneration(raw: string): number | Invalid {
  const n = /^\s*[0-9]{1,4}\s*$/.test(raw) ? Number(raw) : NaN;
  return n >= 8 && n <= 1024 ? n : invalid('is not a whole number of MiB from 8 to 1024');
}

export function parseDatabaseUrl(raw: string): string | Invalid {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return invalid('is not a URL (expected postgres://user:password@host:5432/database)');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    return invalid(`must start with postgres:// or postgresql:// (got ${url.protocol}//)`);
  }
  // `postgres:/u:pw@h/db` parses too, as a path: pg would take it for a database name, unredacted.
  if (!/^\s*postgres(?:ql)?:\/\//i.test(raw)) {
    return invalid('must start with postgres:// or postgresql:// (the // is missing)');
  }
  return raw;
}

/** `10.0.0.0/8, 192.0.2.1, 2001:db8::/32` → normalised CIDRs (a bare address gets /32 or /128). */
export function parseCidrList(raw: string): string[] | Invalid {
  const out: string[] = [];
  for (const part of raw.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const slash = item.indexOf('/');
    const addr = slash < 0 ? item : item.slice(0, slash);
    const family = isIP(addr);
    if (family === 0)
      return invalid(`has ${JSON.stringify(item)}, which is not an IP address or CIDR (examples: 10.0.0.0/8, 192.0.2.1, 2001:db8::/32)`);
    const max = family === 4 ? 32 : 128;
    const bits = slash < 0 ? max : /^[0-9]{1,3}$/.test(item.slice(slash + 1)) ? Number(item.slice(slash + 1)) : NaN;
    if (!(bits >= 0 && bits <= max)) return invalid(`has ${JSON.stringify(item)}, whose prefix length is not 0-${max}`);
    out.push(`${addr.toLowerCase()}/${bits}`);
  }
  return out;
}

/** Every option, in the order --help lists them. One table drives flags, env vars, defaults and docs. */
export const OPTIONS = [
  spec({
    key: 'httpAddr',
    flag: 'http-addr',
    env: 'EDGEPROXY_HTTP_ADDR',
    description: 'Public HTTP listen address',
    default: ':8080',
    parse: parseListenAddress,
  }),
  spec({
    key: 'databaseUrl',
    flag: 'database-url',
    env: 'EDGEPROXY_DATABASE_URL',
    description: 'PostgreSQL connection URL (the routing database or its read replica)',
    secret: true,
    parse: parseDatabaseUrl,
  }),
  spec({
    key: 'regionId',
    flag: 'region-id',
    env: 'EDGEPROXY_REGION_ID',
    description: 'UUID of the region this proxy runs in',
    parse: (raw) => (UUID.test(raw.trim()) ? raw.trim().toLowerCase() : invalid('is not a UUID')),
  }),
  spec({
    key: 'updateIntervalMs',
    flag: 'update-interval',
    env: 'EDGEPROXY_UPDATE_INTERVAL',
    description: 'How often to reload the route table from the database',
    default: '10s',
    parse: duration(10, 'reloading more often would load the database for nothing'),
  }),
  spec({
    key: 'logLevel',
    flag: 'log-level',
    env: 'EDGEPROXY_LOG_LEVEL',
    description: 'Log level: debug, info, warn, error',
    default: 'info',
    parse: oneOf(LOG_LEVELS),
  }),
  spec({
    key: 'healthTimeoutMs',
    flag: 'health-timeout',
    env: 'EDGEPROXY_HEALTH_TIMEOUT',
    description: 'Timeout of a health probe (GET / on a same-region VM)',
    default: '2s',
    parse: duration(1, 'a probe needs some time'),
  }),
  spec({
    key: 'healthCacheTtlMs',
    flag: 'health-cache-ttl',
    env: 'EDGEPROXY_HEALTH_CACHE_TTL',
    description: 'How long a health result is reused; 0 probes before every request',
    default: '1s',
    parse: duration(0, ''),
  }),
  spec({
    key: 'crossRegionPort',
    flag: 'cross-region-port',
    env: 'EDGEPROXY_CROSS_REGION_PORT',
    description: "Port of other regions' load balancers",
    default: '80',
    parse: port,
  }),
  spec({
    key: 'shutdownTimeoutMs',
    flag: 'shutdown-timeout',
    env: 'EDGEPROXY_SHUTDOWN_TIMEOUT',
    description: 'How long in-flight requests may take to finish on SIGTERM/SIGINT',
    default: '30s',
    parse: duration(0, ''),
  }),
  spec({
    key: 'syncMode',
    flag: 'sync-mode',
    env: 'EDGEPROXY_SYNC_MODE',
    description:
      'auto: stream changes by logical replication, poll when it is unavailable; replication: streaming only; poll: periodic reloads only',
    default: 'auto',
    parse: oneOf(SYNC_MODES),
  }),
  spec({
    key: 'publication',
    flag: 'publication',
    env: 'EDGEPROXY_PUBLICATION',
    description: 'Name of the PostgreSQL publication on domains, deployments, vms and regions',
    default: 'edgeproxy',
    parse: (raw) =>
      /^[a-z_][a-z0-9_]{0,62}$/.test(raw.trim())
        ? raw.trim()
        : invalid('must be a lowercase SQL identifier: a-z, 0-9 and _, not starting with a digit, at most 63 characters'),
  }),
  spec({
    key: 'regionAddressColumn',
    flag: 'region-address-column',
    env: 'EDGEPROXY_REGION_ADDRESS_COLUMN',
    description:
      "Column of regions holding its load balancer's address, read as region_public_ip (the documented query's public_ipv4; e.g. load_balancer_ipv4)",
    default: 'public_ipv4',
    parse: (raw) =>
      PLAIN_IDENTIFIER.test(raw.trim())
        ? raw.trim()
        : invalid('must be a plain PostgreSQL column name: a-z, 0-9 and _, not starting with a digit, at most 63 characters'),
  }),
  spec({
    key: 'replicationTimeoutMs',
    flag: 'replication-timeout',
    env: 'EDGEPROXY_REPLICATION_TIMEOUT',
    description:
      'How long the replication stream may stay silent (no message, no keepalive; one is asked for every second) before it counts as lost and the proxy polls and reconnects; also the bound on each query of a poll or a stream setup',
    default: '15s',
    parse: duration(1000, 'the server must have time to answer a keepalive request'),
  }),
  spec({
    key: 'adminAddr',
    flag: 'admin-addr',
    env: 'EDGEPROXY_ADMIN_ADDR',
    description: 'Admin API listen address (/healthz, /readyz, /metrics, /routes, /resync); empty or "off" disables it',
    default: '127.0.0.1:9090',
    emptyIsValue: true,
    parse: optionalListenAddress,
  }),
  spec({
    key: 'upstreamConnectTimeoutMs',
    flag: 'upstream-connect-timeout',
    env: 'EDGEPROXY_UPSTREAM_CONNECT_TIMEOUT',
    description: 'How long connecting to a VM or load balancer may take (then 502)',
    default: '5s',
    parse: duration(1, 'a connect needs some time'),
  }),
  spec({
    key: 'upstreamHeaderTimeoutMs',
    flag: 'upstream-header-timeout',
    env: 'EDGEPROXY_UPSTREAM_HEADER_TIMEOUT',
    description: 'How long an upstream may take to send its response headers once the request is sent (then 504)',
    default: '60s',
    parse: duration(1, 'an upstream needs some time'),
  }),
  spec({
    key: 'upstreamIdleTimeoutMs',
    flag: 'upstream-idle-timeout',
    env: 'EDGEPROXY_UPSTREAM_IDLE_TIMEOUT',
    description: "How long an idle keep-alive connection to an upstream is kept; keep it below the upstreams' own (Node's default is 5s)",
    default: '4s',
    parse: duration(1, 'use a short value rather than none'),
  }),
  spec({
    key: 'idleTimeoutMs',
    flag: 'idle-timeout',
    env: 'EDGEPROXY_IDLE_TIMEOUT',
    description: 'How long an idle client keep-alive connection is kept open',
    default: '30s',
    parse: duration(1, 'use a short value rather than none'),
  }),
  spec({
    key: 'clientHeaderTimeoutMs',
    flag: 'client-header-timeout',
    env: 'EDGEPROXY_CLIENT_HEADER_TIMEOUT',
    description: 'How long a client may take to send its request headers (slowloris guard; then 408 and close)',
    default: '10s',
    parse: duration(100, 'shorter would cut slow but honest clients'),
  }),
  spec({
    key: 'clientRequestTimeoutMs',
    flag: 'client-request-timeout',
    env: 'EDGEPROXY_CLIENT_REQUEST_TIMEOUT',
    description:
      'How long a client may take to send a whole request, body included (then 408 and close; on HTTP/2 408 and that stream reset); 0 = no limit',
    default: '5m',
    parse: (raw) => {
      const ms = duration(0, '')(raw);
      return typeof ms === 'number' && ms > 0 && ms < 100 ? invalid('must be 0 (no limit) or at least 100ms') : ms;
    },
  }),
  spec({
    key: 'trustedProxies',
    flag: 'trusted-proxies',
    env: 'EDGEPROXY_TRUSTED_PROXIES',
    description: "Comma-separated CIDRs or addresses whose X-Forwarded-For is kept and appended to, besides the regions' load balancers",
    default: '',
    parse: parseCidrList,
  }),
  spec({
    key: 'httpsAddr',
    flag: 'https-addr',
    env: 'EDGEPROXY_HTTPS_ADDR',
    description: 'Public HTTPS listen address (HTTP/2 or HTTP/1.1 by ALPN, certificate by SNI); empty or "off" disables it',
    default: ':8443',
    emptyIsValue: true,
    parse: optionalListenAddress,
  }),
  spec({
    key: 'tlsDefaultCertFile',
    flag: 'tls-default-cert',
    env: 'EDGEPROXY_TLS_DEFAULT_CERT',
    description:
      'PEM file: the certificate chain for handshakes without a matching certificate (or without SNI); unset = they get unrecognized_name',
    default: '',
    parse: optionalPath,
  }),
  spec({
    key: 'tlsDefaultKeyFile',
    flag: 'tls-default-key',
    env: 'EDGEPROXY_TLS_DEFAULT_KEY',
    description: "PEM file: the default certificate's private key (with EDGEPROXY_TLS_DEFAULT_CERT)",
    default: '',
    parse: optionalPath,
  }),
  spec({
    key: 'tlsHandshakeTimeoutMs',
    flag: 'tls-handshake-timeout',
    env: 'EDGEPROXY_TLS_HANDSHAKE_TIMEOUT',
    description: 'How long a client may take from connecting to a finished TLS handshake (then the connection is closed)',
    default: '10s',
    parse: duration(100, 'shorter would cut slow but honest clients'),
  }),
  spec({
    key: 'tlsTicketKeyLifetimeMs',
    flag: 'tls-ticket-key-lifetime',
    env: 'EDGEPROXY_TLS_TICKET_KEY_LIFETIME',
    description:
      'How long one set of TLS session ticket keys (shared by every thread) serves before new ones replace it: a client whose ticket is older makes a full handshake; off = one set for the whole process',
    default: '12h',
    parse: durationOrOff(1000, 'a rotation makes every client handshake in full'),
  }),
  spec({
    key: 'primaryDatabaseUrl',
    flag: 'primary-database-url',
    env: 'EDGEPROXY_PRIMARY_DATABASE_URL',
    description:
      'PostgreSQL URL of the primary, where certificates, ACME orders, challenge tokens and locks are written; unset = serve stored certificates, issue none',
    default: '',
    secret: true,
    parse: (raw) => (raw.trim() === '' ? undefined : parseDatabaseUrl(raw)),
  }),
  spec({
    key: 'tlsStorageKey',
    flag: 'tls-storage-key',
    env: 'EDGEPROXY_TLS_STORAGE_KEY',
    description: 'Key that seals private keys in Postgres: 32 random bytes in base64 (`openssl rand -base64 32`), the same on every proxy',
    default: '',
    secret: true,
    parse: (raw) => (raw.trim() === '' ? undefined : raw.trim()),
  }),
  spec({
    key: 'tlsStorageKeyFile',
    flag: 'tls-storage-key-file',
    env: 'EDGEPROXY_TLS_STORAGE_KEY_FILE',
    description: 'File holding the storage key in base64, instead of EDGEPROXY_TLS_STORAGE_KEY (a mounted secret)',
    default: '',
    parse: optionalPath,
  }),
  spec({
    key: 'acmeDirectoryUrl',
    flag: 'acme-directory-url',
    env: 'EDGEPROXY_ACME_DIRECTORY_URL',
    description: 'ACME directory of the CA that issues certificates on demand; "off" disables issuance',
    default: 'https://acme-v02.api.letsencrypt.org/directory',
    emptyIsValue: true,
    parse: optionalDirectoryUrl,
  }),
  spec({
    key: 'acmeEmail',
    flag: 'acme-email',
    env: 'EDGEPROXY_ACME_EMAIL',
    description: "Contact address of the ACME account (the CA's expiry and incident mail)",
    default: '',
    parse: optionalEmail,
  }),
  spec({
    key: 'httpsRedirect',
    flag: 'https-redirect',
    env: 'EDGEPROXY_HTTPS_REDIRECT',
    description:
      'Plain-HTTP requests for a name that has a certificate get 308 to https (ACME challenge paths excepted): on (to the HTTPS port), off, or the port clients reach HTTPS on (behind a port mapping)',
    default: 'on',
    parse: (raw) => (/^\s*[0-9]{1,5}\s*$/.test(raw) ? port(raw) : onOff(raw)),
  }),
  spec({
    key: 'acmeCaRootsFile',
    flag: 'acme-ca-roots',
    env: 'EDGEPROXY_ACME_CA_ROOTS',
    description: 'PEM file of extra root certificates trusted for the ACME directory only (a private CA); unset = the system roots',
    default: '',
    parse: optionalPath,
  }),
  spec({
    key: 'acmeHandshakeWaitMs',
    flag: 'acme-handshake-wait',
    env: 'EDGEPROXY_ACME_HANDSHAKE_WAIT',
    description:
      'How long a handshake for a name without a certificate waits for its on-demand order (then the default certificate or unrecognized_name); bounded by EDGEPROXY_TLS_HANDSHAKE_TIMEOUT',
    default: '8s',
    parse: duration(0, ''),
  }),
  spec({
    key: 'acmeMaxOrders',
    flag: 'acme-max-orders',
    env: 'EDGEPROXY_ACME_MAX_ORDERS',
    description: 'At most this many on-demand ACME orders run at once in this proxy; a handshake beyond it gets no order',
    default: '10',
    parse: (raw) => {
      const n = /^[0-9]{1,4}$/.test(raw.trim()) ? Number(raw) : NaN;
      return n >= 1 ? n : invalid('is not a whole number from 1 to 9999');
    },
  }),
  spec({
    key: 'workers',
    flag: 'workers',
    env: 'EDGEPROXY_WORKERS',
    description:
      'Worker threads serving the public HTTP port (reusePort: the kernel spreads connections), all routing from one shared table; "auto" = the cores this process may use; 1 = the main thread serves, no workers',
    default: 'auto',
    parse: parseWorkers,
  }),
  spec({
    key: 'workerYoungGenerationMb',
    flag: 'worker-young-generation',
    env: 'EDGEPROXY_WORKER_YOUNG_GENERATION',
    description:
      "Young generation of each worker thread, in MiB (V8's maxYoungGenerationSizeMb; the semi-space size the bin gives Node is the main thread's only): what each worker beyond the first adds to RSS, against how often it scavenges",
    default: '48',
    parse: parseYoungGeneration,
  }),
] as const;

export type OptionName = (typeof OPTIONS)[number]['flag'];

/**
 * Resolves the configuration: a flag wins over its environment variable, which wins over the
 * default. Throws ConfigError naming the flag or variable on the first bad or missing value.
 */
export function resolveConfig(flags: Readonly<Record<string, unknown>>, env: NodeJS.ProcessEnv): Config {
  return resolveOptions(
    OPTIONS.map((o) => o.key),
    flags,
    env,
  ) as Config;
}

/** The same rules for some of the options only (commands such as `resync` or `doctor` need a few). */
/**
 * Resolves `keys` from flags, then env, then defaults. A key in `optional` that is given nowhere
 * and has no default is left out instead of being an error.
 */
export function resolveOptions<K extends keyof Config, O extends K = never>(
  keys: readonly K[],
  flags: Readonly<Record<string, unknown>>,
  env: NodeJS.ProcessEnv,
  optional: readonly O[] = [],
): Omit<Pick<Config, K>, O> & Partial<Pick<Config, O>> {
  const out: Record<string, unknown> = {};
  for (const o of OPTIONS as readonly OptionSpec<keyof Config>[]) {
    if (!(keys as readonly string[]).includes(o.key)) continue;
    const flagValue = flags[o.flag];
    let raw: string | undefined;
    let source: string;
    if (flagValue !== undefined) {
      if (Array.isArray(flagValue)) throw new ConfigError('CONFIG_INVALID', `--${o.flag} given more than once`);
      raw = String(flagValue);
      source = `--${o.flag}`;
    } else if (env[o.env] !== undefined && (env[o.env] !== '' || o.emptyIsValue === true)) {
      raw = env[o.env]!;
      source = o.env;
    } else {
      raw = o.default;
      source = o.env;
    }
    if (raw === undefined) {
      if ((optional as readonly string[]).includes(o.key)) continue;
      throw new ConfigError('CONFIG_MISSING', `${o.env} (or --${o.flag}) is required: ${o.description}`);
    }
    const value = o.parse(raw);
    if (isFailure(value)) {
      const shown = o.secret ? '' : ` ${JSON.stringify(raw)}`;
      throw new ConfigError('CONFIG_INVALID', `${source}:${shown} ${value.message}`);
    }
    out[o.key] = value;
  }
  return out as Omit<Pick<Config, K>, O> & Partial<Pick<Config, O>>;
}

/** The options without a default: every deployment has to say them. */
export type RequiredOption = 'databaseUrl' | 'regionId';

/**
 * Every default of the option table, parsed: the one source for what the proxy, the forwarder and
 * the tests use when nothing is set (a test checks that only RequiredOption has none).
 */
export const DEFAULTS = resolveOptions(
  OPTIONS.filter((o) => o.default !== undefined).map((o) => o.key),
  {},
  {},
) as Omit<Config, RequiredOption>;

/** The database URL with its password replaced, for logs and error messages. */
export function redactDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    for (const key of [...u.searchParams.keys()]) if (/pass/i.test(key)) u.searchParams.set(key, '***');
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
