import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import {
  ConfigError,
  DEFAULTS,
  OPTIONS,
  parseListenAddress,
  parseWorkers,
  parseYoungGeneration,
  redactDatabaseUrl,
  resolveConfig,
  resolveOptions,
  type Config,
  type RequiredOption,
} from '../src/config/config.js';
import { formatDuration, parseDuration } from '../src/config/duration.js';
import { isFailure } from '../src/errors.js';

const PASSWORD = 's3cret';
const DB_URL = `postgres://edge:${PASSWORD}@db.internal:5432/zeitwork`;
const REGION = '01234567-89ab-cdef-0123-456789abcdef';
/** The two required variables, valid; everything else left to its default. */
const BASE_ENV: NodeJS.ProcessEnv = { EDGEPROXY_DATABASE_URL: DB_URL, EDGEPROXY_REGION_ID: REGION };

/** Runs resolveConfig expecting a ConfigError; returns its message. */
function configError(flags: Record<string, unknown>, env: NodeJS.ProcessEnv): string {
  let caught: unknown;
  try {
    resolveConfig(flags, env);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.name, 'ConfigError');
  return caught.message;
}

function option(flag: string): (typeof OPTIONS)[number] {
  const o = OPTIONS.find((x) => x.flag === flag);
  assert.ok(o, `no option --${flag}`);
  return o;
}

// ---------------------------------------------------------------------------------------------

describe('parseDuration', () => {
  const valid: [string, number][] = [
    ['10s', 10_000],
    ['500ms', 500],
    ['1m30s', 90_000],
    ['1.5h', 5_400_000],
    ['0', 0],
    ['0s', 0],
    ['.5s', 500],
    ['2h45m', 9_900_000],
    ['1us', 0.001],
    ['1µs', 0.001],
    ['1ns', 0.000001],
    ['2.01s', 2010],
    ['1.005s', 1005],
    [' 10s ', 10_000],
  ];
  for (const [text, ms] of valid) {
    it(`parses ${JSON.stringify(text)} as ${ms} ms`, () => {
      assert.equal(parseDuration(text), ms);
    });
  }

  const invalid = ['10', '-1s', 's', '10 s', '', '   ', '1d', '1.', '+1s', '00', '1s2', 'ten seconds', '1S'];
  for (const text of invalid) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      assert.equal(parseDuration(text), undefined);
    });
  }
});

describe('formatDuration', () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [1, '1ms'],
    [500, '500ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [10_000, '10s'],
    [60_000, '1m0s'],
    [61_000, '1m1s'],
    [90_000, '1m30s'],
    [3_600_000, '1h0m0s'],
    [9_900_000, '2h45m0s'],
  ];
  for (const [ms, text] of cases) {
    it(`formats ${ms} ms as ${text}`, () => {
      assert.equal(formatDuration(ms), text);
    });
  }

  it('round-trips through parseDuration', () => {
    for (const ms of [0, 1, 10, 999, 1000, 2010, 59_999, 60_000, 90_500, 3_600_000, 3_601_000, 86_400_000]) {
      assert.equal(parseDuration(formatDuration(ms)), ms, `${ms} -> ${formatDuration(ms)}`);
    }
  });
});

describe('parseWorkers (EDGEPROXY_WORKERS)', () => {
  it('takes auto as the cores this process may use, and a whole number from 1 to 256', () => {
    assert.equal(parseWorkers('auto'), os.availableParallelism());
    assert.equal(parseWorkers('1'), 1);
    assert.equal(parseWorkers(' 4 '), 4);
    assert.equal(parseWorkers('256'), 256);
  });

  for (const raw of ['0', '257', '-1', '1.5', 'two', '', 'AUTO']) {
    it(`rejects ${JSON.stringify(raw)}`, () => {
      const r = parseWorkers(raw);
      assert.ok(isFailure(r), `accepted ${raw}`);
      assert.match(r.message, /auto/);
    });
  }
});

describe('parseYoungGeneration (EDGEPROXY_WORKER_YOUNG_GENERATION)', () => {
  it('takes a whole number of MiB from 8 to 1024, 48 by default', () => {
    assert.equal(parseYoungGeneration('8'), 8);
    assert.equal(parseYoungGeneration(' 48 '), 48);
    assert.equal(parseYoungGeneration('1024'), 1024);
    assert.equal(DEFAULTS.workerYoungGenerationMb, 48);
    assert.equal(resolveConfig({ 'worker-young-generation': '16' }, BASE_ENV).workerYoungGenerationMb, 16);
    assert.equal(resolveConfig({}, { ...BASE_ENV, EDGEPROXY_WORKER_YOUNG_GENERATION: '32' }).workerYoungGenerationMb, 32);
  });

  for (const raw of ['0', '7', '1025', '-16', '16.5', '16m', '', 'auto']) {
    it(`rejects ${JSON.stringify(raw)}`, () => {
      const r = parseYoungGeneration(raw);
      assert.ok(isFailure(r), `accepted ${raw}`);
      assert.match(r.message, /MiB from 8 to 1024/);
    });
  }

  it('names the variable in the error', () => {
    assert.match(configError({}, { ...BASE_ENV, EDGEPROXY_WORKER_YOUNG_GENERATION: '4' }), /EDGEPROXY_WORKER_YOUNG_GENERATION: "4"/);
  });
});

describe('EDGEPROXY_TLS_TICKET_KEY_LIFETIME', () => {
  const lifetime = (raw: string) => resolveConfig({}, { ...BASE_ENV, EDGEPROXY_TLS_TICKET_KEY_LIFETIME: raw }).tlsTicketKeyLifetimeMs;

  it('is a duration, 12 h by default; off keeps one set of keys for the whole process', () => {
    assert.equal(resolveConfig({}, BASE_ENV).tlsTicketKeyLifetimeMs, 12 * 3600_000);
    assert.equal(lifetime('1h'), 3600_000);
    assert.equal(lifetime('off'), undefined);
    assert.equal(resolveConfig({ 'tls-ticket-key-lifetime': '30m' }, BASE_ENV).tlsTicketKeyLifetimeMs, 1800_000);
  });

  it('refuses less than 1 s and what is not a duration, naming the variable', () => {
    assert.match(
      configError({}, { ...BASE_ENV, EDGEPROXY_TLS_TICKET_KEY_LIFETIME: '500ms' }),
      /EDGEPROXY_TLS_TICKET_KEY_LIFETIME: "500ms" must be at least 1s/,
    );
    assert.match(
      configError({}, { ...BASE_ENV, EDGEPROXY_TLS_TICKET_KEY_LIFETIME: 'daily' }),
      /EDGEPROXY_TLS_TICKET_KEY_LIFETIME: "daily" is not a duration/,
    );
  });
});

describe('parseListenAddress', () => {
  const valid: [string, string | undefined, number][] = [
    [':8080', undefined, 8080],
    ['127.0.0.1:8080', '127.0.0.1', 8080],
    ['[::1]:8080', '::1', 8080],
    ['localhost:80', 'localhost', 80],
    [':65535', undefined, 65535],
  ];
  for (const [raw, host, port] of valid) {
    it(`parses ${raw}`, () => {
      assert.deepEqual(parseListenAddress(raw), { host, port });
    });
  }

  const invalid = ['8080', ':99999', ':65536', '[zz]:80', '::1:80', '[127.0.0.1]:80', 'host:', ':http', 'bad_host:80', ''];
  for (const raw of invalid) {
    it(`rejects ${JSON.stringify(raw)}`, () => {
      const r = parseListenAddress(raw);
      assert.ok(isFailure(r), `accepted ${raw}: ${JSON.stringify(r)}`);
      assert.equal(r.code, 'CONFIG_INVALID');
      assert.equal(typeof r.message, 'string');
      assert.ok(r.message.length > 0);
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('resolveConfig', () => {
  it('applies the documented defaults', () => {
    const expected: Config = {
      httpAddr: { host: undefined, port: 8080 },
      databaseUrl: DB_URL,
      regionId: REGION,
      updateIntervalMs: 10_000,
      logLevel: 'info',
      healthTimeoutMs: 2_000,
      healthCacheTtlMs: 1_000,
      crossRegionPort: 80,
      shutdownTimeoutMs: 30_000,
      syncMode: 'auto',
      publication: 'edgeproxy',
      regionAddressColumn: 'public_ipv4',
      replicationTimeoutMs: 15_000,
      adminAddr: { host: '127.0.0.1', port: 9090 },
      upstreamConnectTimeoutMs: 5_000,
      upstreamHeaderTimeoutMs: 60_000,
      upstreamIdleTimeoutMs: 4_000,
      idleTimeoutMs: 30_000,
      clientHeaderTimeoutMs: 10_000,
      clientRequestTimeoutMs: 300_000,
      trustedProxies: [],
      httpsAddr: { host: undefined, port: 8443 },
      tlsDefaultCertFile: undefined,
      tlsDefaultKeyFile: undefined,
      tlsHandshakeTimeoutMs: 10_000,
      tlsTicketKeyLifetimeMs: 43_200_000,
      primaryDatabaseUrl: undefined,
      tlsStorageKey: undefined,
      tlsStorageKeyFile: undefined,
      acmeDirectoryUrl: 'https://acme-v02.api.letsencrypt.org/directory',
      acmeEmail: undefined,
      httpsRedirect: true,
      acmeCaRootsFile: undefined,
      acmeHandshakeWaitMs: 8_000,
      acmeMaxOrders: 10,
      workers: os.availableParallelism(),
      workerYoungGenerationMb: 48,
    };
    assert.deepEqual(resolveConfig({}, BASE_ENV), expected);
    const { databaseUrl: _url, regionId: _region, ...defaults } = expected;
    assert.deepEqual(DEFAULTS, defaults, 'DEFAULTS is the same table, parsed');
  });

  it('has a default for every option but the two each deployment must give (RequiredOption)', () => {
    const without = OPTIONS.filter((o) => !('default' in o) || o.default === undefined).map((o) => o.key);
    assert.deepEqual(without.sort(), ['databaseUrl', 'regionId'] satisfies RequiredOption[]);
  });

  it('declares the defaults from the spec in its option table', () => {
    assert.equal(option('http-addr').env, 'EDGEPROXY_HTTP_ADDR');
    assert.equal(option('update-interval').env, 'EDGEPROXY_UPDATE_INTERVAL');
    assert.equal(option('log-level').env, 'EDGEPROXY_LOG_LEVEL');
    assert.equal(option('database-url').env, 'EDGEPROXY_DATABASE_URL');
    assert.equal(option('region-id').env, 'EDGEPROXY_REGION_ID');
    assert.equal('default' in option('database-url'), false);
    assert.equal('default' in option('region-id'), false);
  });

  it('reads every setting from the environment', () => {
    const config = resolveConfig(
      {},
      {
        ...BASE_ENV,
        EDGEPROXY_HTTP_ADDR: '127.0.0.1:9090',
        EDGEPROXY_UPDATE_INTERVAL: '1m30s',
        EDGEPROXY_LOG_LEVEL: 'debug',
        EDGEPROXY_HEALTH_TIMEOUT: '500ms',
        EDGEPROXY_HEALTH_CACHE_TTL: '0',
        EDGEPROXY_CROSS_REGION_PORT: '8081',
        EDGEPROXY_SHUTDOWN_TIMEOUT: '5s',
        EDGEPROXY_SYNC_MODE: 'Poll',
        EDGEPROXY_PUBLICATION: 'edge_routes',
        EDGEPROXY_REGION_ADDRESS_COLUMN: 'load_balancer_ipv4',
        EDGEPROXY_REPLICATION_TIMEOUT: '30s',
        EDGEPROXY_ADMIN_ADDR: ':9191',
        EDGEPROXY_UPSTREAM_CONNECT_TIMEOUT: '1s',
        EDGEPROXY_UPSTREAM_HEADER_TIMEOUT: '2m',
        EDGEPROXY_UPSTREAM_IDLE_TIMEOUT: '1500ms',
        EDGEPROXY_IDLE_TIMEOUT: '75s',
        EDGEPROXY_CLIENT_HEADER_TIMEOUT: '20s',
        EDGEPROXY_CLIENT_REQUEST_TIMEOUT: '0',
        EDGEPROXY_TRUSTED_PROXIES: '10.0.0.0/8, 192.0.2.1,2001:DB8::/32',
        EDGEPROXY_HTTPS_ADDR: '0.0.0.0:443',
        EDGEPROXY_TLS_DEFAULT_CERT: '/etc/edgeproxy/default.crt',
        EDGEPROXY_TLS_DEFAULT_KEY: ' /etc/edgeproxy/default.key ',
        EDGEPROXY_TLS_HANDSHAKE_TIMEOUT: '5s',
        EDGEPROXY_PRIMARY_DATABASE_URL: 'postgres://writer@primary/zeitwork',
        EDGEPROXY_TLS_STORAGE_KEY: ' c2VjcmV0 ',
        EDGEPROXY_TLS_STORAGE_KEY_FILE: '/run/secrets/storage-key',
        EDGEPROXY_ACME_DIRECTORY_URL: 'https://acme-staging-v02.api.letsencrypt.org/directory',
        EDGEPROXY_ACME_EMAIL: 'ops@example.com',
        EDGEPROXY_HTTPS_REDIRECT: 'no',
        EDGEPROXY_ACME_CA_ROOTS: '/etc/edgeproxy/ca-roots.pem',
        EDGEPROXY_ACME_HANDSHAKE_WAIT: '3s',
        EDGEPROXY_ACME_MAX_ORDERS: '4',
        EDGEPROXY_WORKERS: '3',
        EDGEPROXY_WORKER_YOUNG_GENERATION: '64',
      },
    );
    assert.deepEqual(config, {
      httpAddr: { host: '127.0.0.1', port: 9090 },
      databaseUrl: DB_URL,
      regionId: REGION,
      updateIntervalMs: 90_000,
      logLevel: 'debug',
      healthTimeoutMs: 500,
      healthCacheTtlMs: 0,
      crossRegionPort: 8081,
      shutdownTimeoutMs: 5_000,
      syncMode: 'poll',
      publication: 'edge_routes',
      regionAddressColumn: 'load_balancer_ipv4',
      replicationTimeoutMs: 30_000,
      adminAddr: { host: undefined, port: 9191 },
      upstreamConnectTimeoutMs: 1_000,
      upstreamHeaderTimeoutMs: 120_000,
      upstreamIdleTimeoutMs: 1_500,
      idleTimeoutMs: 75_000,
      clientHeaderTimeoutMs: 20_000,
      clientRequestTimeoutMs: 0,
      trustedProxies: ['10.0.0.0/8', '192.0.2.1/32', '2001:db8::/32'],
      httpsAddr: { host: '0.0.0.0', port: 443 },
      tlsDefaultCertFile: '/etc/edgeproxy/default.crt',
      tlsDefaultKeyFile: '/etc/edgeproxy/default.key',
      tlsHandshakeTimeoutMs: 5_000,
      tlsTicketKeyLifetimeMs: 43_200_000,
      primaryDatabaseUrl: 'postgres://writer@primary/zeitwork',
      tlsStorageKey: 'c2VjcmV0',
      tlsStorageKeyFile: '/run/secrets/storage-key',
      acmeDirectoryUrl: 'https://acme-staging-v02.api.letsencrypt.org/directory',
      acmeEmail: 'ops@example.com',
      httpsRedirect: false,
      acmeCaRootsFile: '/etc/edgeproxy/ca-roots.pem',
      acmeHandshakeWaitMs: 3_000,
      acmeMaxOrders: 4,
      workers: 3,
      workerYoungGenerationMb: 64,
    });
  });

  it('reads every setting from flags', () => {
    const otherUrl = 'postgresql://reader@replica/zeitwork';
    const config = resolveConfig(
      {
        'http-addr': '[::1]:8443',
        'database-url': otherUrl,
        'region-id': 'FEDCBA98-7654-3210-FEDC-BA9876543210',
        'update-interval': '2s',
        'log-level': 'warn',
        'health-timeout': '3s',
        'health-cache-ttl': '250ms',
        'cross-region-port': '8080',
        'shutdown-timeout': '0',
        'sync-mode': 'replication',
        publication: 'p1',
        'region-address-column': 'lb_ipv4',
        'replication-timeout': '5s',
        'admin-addr': '[::1]:9999',
        'upstream-connect-timeout': '250ms',
        'upstream-header-timeout': '5s',
        'upstream-idle-timeout': '2s',
        'idle-timeout': '5s',
        'client-header-timeout': '1s',
        'client-request-timeout': '1m',
        'trusted-proxies': '::1',
        'https-addr': 'off',
        'tls-default-cert': 'c.pem',
        'tls-default-key': 'k.pem',
        'tls-handshake-timeout': '250ms',
        'tls-ticket-key-lifetime': 'off',
        'primary-database-url': 'postgres://w@p/z',
        'tls-storage-key': 'a2V5',
        'tls-storage-key-file': 'key.b64',
        'acme-directory-url': 'off',
        'acme-email': 'a@b.co',
        'https-redirect': 'true',
        'acme-ca-roots': 'roots.pem',
        'acme-handshake-wait': '0',
        'acme-max-orders': '1',
        workers: '1',
        'worker-young-generation': '16',
      },
      {},
    );
    assert.deepEqual(config, {
      httpAddr: { host: '::1', port: 8443 },
      databaseUrl: otherUrl,
      regionId: 'fedcba98-7654-3210-fedc-ba9876543210',
      updateIntervalMs: 2_000,
      logLevel: 'warn',
      healthTimeoutMs: 3_000,
      healthCacheTtlMs: 250,
      crossRegionPort: 8080,
      shutdownTimeoutMs: 0,
      syncMode: 'replication',
      publication: 'p1',
      regionAddressColumn: 'lb_ipv4',
      replicationTimeoutMs: 5_000,
      adminAddr: { host: '::1', port: 9999 },
      upstreamConnectTimeoutMs: 250,
      upstreamHeaderTimeoutMs: 5_000,
      upstreamIdleTimeoutMs: 2_000,
      idleTimeoutMs: 5_000,
      clientHeaderTimeoutMs: 1_000,
      clientRequestTimeoutMs: 60_000,
      trustedProxies: ['::1/128'],
      httpsAddr: undefined,
      tlsDefaultCertFile: 'c.pem',
      tlsDefaultKeyFile: 'k.pem',
      tlsHandshakeTimeoutMs: 250,
      tlsTicketKeyLifetimeMs: undefined,
      primaryDatabaseUrl: 'postgres://w@p/z',
      tlsStorageKey: 'a2V5',
      tlsStorageKeyFile: 'key.b64',
      acmeDirectoryUrl: undefined,
      acmeEmail: 'a@b.co',
      httpsRedirect: true,
      acmeCaRootsFile: 'roots.pem',
      acmeHandshakeWaitMs: 0,
      acmeMaxOrders: 1,
      workers: 1,
      workerYoungGenerationMb: 16,
    });
  });

  it('reads the TLS storage and ACME options; bad values name the variable and never echo a secret', () => {
    const c = resolveConfig(
      {},
      {
        ...BASE_ENV,
        EDGEPROXY_PRIMARY_DATABASE_URL: 'postgres://edge:pw@primary:5432/app',
        EDGEPROXY_ACME_DIRECTORY_URL: 'https://acme.test:9443/acme/local/directory',
        EDGEPROXY_ACME_EMAIL: 'ops@example.com',
        EDGEPROXY_HTTPS_REDIRECT: 'OFF',
      },
    );
    assert.equal(c.primaryDatabaseUrl, 'postgres://edge:pw@primary:5432/app');
    assert.equal(c.acmeDirectoryUrl, 'https://acme.test:9443/acme/local/directory');
    assert.equal(c.acmeEmail, 'ops@example.com');
    assert.equal(c.httpsRedirect, false);
    assert.equal(resolveConfig({}, { ...BASE_ENV, EDGEPROXY_ACME_DIRECTORY_URL: 'off' }).acmeDirectoryUrl, undefined);
    assert.equal(resolveConfig({}, { ...BASE_ENV, EDGEPROXY_ACME_DIRECTORY_URL: '' }).acmeDirectoryUrl, undefined);
    assert.throws(
      () => resolveConfig({}, { ...BASE_ENV, EDGEPROXY_ACME_DIRECTORY_URL: 'http://ca.example/directory' }),
      /^ConfigError: EDGEPROXY_ACME_DIRECTORY_URL: "http:\/\/ca.example\/directory" must be an https:\/\/ URL/,
    );
    assert.throws(
      () => resolveConfig({}, { ...BASE_ENV, EDGEPROXY_ACME_EMAIL: 'ops' }),
      /EDGEPROXY_ACME_EMAIL: "ops" is not an e-mail address/,
    );
    assert.throws(
      () => resolveConfig({}, { ...BASE_ENV, EDGEPROXY_ACME_MAX_ORDERS: '0' }),
      /EDGEPROXY_ACME_MAX_ORDERS: "0" is not a whole number from 1 to 9999/,
    );
    assert.throws(
      () => resolveConfig({}, { ...BASE_ENV, EDGEPROXY_ACME_HANDSHAKE_WAIT: 'soon' }),
      /EDGEPROXY_ACME_HANDSHAKE_WAIT: "soon" is not a duration/,
    );
    assert.throws(
      () => resolveConfig({}, { ...BASE_ENV, EDGEPROXY_HTTPS_REDIRECT: 'maybe' }),
      /EDGEPROXY_HTTPS_REDIRECT: "maybe" must be on or off/,
    );
    assert.throws(
      () => resolveConfig({}, { ...BASE_ENV, EDGEPROXY_PRIMARY_DATABASE_URL: 'mysql://u:Secret99@h/db' }),
      (err: Error) =>
        /^EDGEPROXY_PRIMARY_DATABASE_URL: must start with postgres:\/\//.test(err.message) && !err.message.includes('Secret99'),
    );
  });

  it('disables the HTTPS port when EDGEPROXY_HTTPS_ADDR is empty or "off"; a bad address names the variable', () => {
    assert.equal(resolveConfig({}, { ...BASE_ENV, EDGEPROXY_HTTPS_ADDR: '' }).httpsAddr, undefined);
    assert.equal(resolveConfig({}, { ...BASE_ENV, EDGEPROXY_HTTPS_ADDR: 'OFF' }).httpsAddr, undefined);
    assert.throws(
      () => resolveConfig({}, { ...BASE_ENV, EDGEPROXY_HTTPS_ADDR: '443' }),
      /^ConfigError: EDGEPROXY_HTTPS_ADDR: "443" is not a listen address/,
    );
    assert.throws(
      () => resolveConfig({}, { ...BASE_ENV, EDGEPROXY_TLS_HANDSHAKE_TIMEOUT: '10ms' }),
      /EDGEPROXY_TLS_HANDSHAKE_TIMEOUT.*at least 100ms/,
    );
  });

  it('disables the admin API when EDGEPROXY_ADMIN_ADDR is empty or "off" (empty is a value here, not unset)', () => {
    assert.equal(resolveConfig({}, { ...BASE_ENV, EDGEPROXY_ADMIN_ADDR: '' }).adminAddr, undefined);
    assert.equal(resolveConfig({}, { ...BASE_ENV, EDGEPROXY_ADMIN_ADDR: 'off' }).adminAddr, undefined);
    assert.equal(resolveConfig({ 'admin-addr': '' }, BASE_ENV).adminAddr, undefined);
    assert.deepEqual(resolveConfig({ 'admin-addr': '127.0.0.1:0' }, { ...BASE_ENV, EDGEPROXY_ADMIN_ADDR: '' }).adminAddr, {
      host: '127.0.0.1',
      port: 0,
    });
  });

  it('resolves a subset of the options without requiring the others (resync, routes, doctor)', () => {
    assert.deepEqual(resolveOptions(['adminAddr'], {}, {}), { adminAddr: { host: '127.0.0.1', port: 9090 } });
    assert.deepEqual(resolveOptions(['databaseUrl', 'publication'], {}, { EDGEPROXY_DATABASE_URL: DB_URL }), {
      databaseUrl: DB_URL,
      publication: 'edgeproxy',
    });
    assert.throws(() => resolveOptions(['databaseUrl'], {}, {}), /EDGEPROXY_DATABASE_URL \(or --database-url\) is required/);
  });

  it('prefers a flag over its environment variable', () => {
    const config = resolveConfig(
      { 'http-addr': ':9000', 'update-interval': '30s', 'log-level': 'error', 'region-id': 'AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE' },
      { ...BASE_ENV, EDGEPROXY_HTTP_ADDR: ':7000', EDGEPROXY_UPDATE_INTERVAL: '1s', EDGEPROXY_LOG_LEVEL: 'debug' },
    );
    assert.deepEqual(config.httpAddr, { host: undefined, port: 9000 });
    assert.equal(config.updateIntervalMs, 30_000);
    assert.equal(config.logLevel, 'error');
    assert.equal(config.regionId, 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee');
  });

  it('uses a valid flag even when the environment variable is invalid', () => {
    const config = resolveConfig({ 'log-level': 'info' }, { ...BASE_ENV, EDGEPROXY_LOG_LEVEL: 'verbose' });
    assert.equal(config.logLevel, 'info');
  });

  it('treats an empty environment variable as unset', () => {
    const config = resolveConfig({}, { ...BASE_ENV, EDGEPROXY_HTTP_ADDR: '', EDGEPROXY_LOG_LEVEL: '' });
    assert.deepEqual(config.httpAddr, { host: undefined, port: 8080 });
    assert.equal(config.logLevel, 'info');
  });

  it('lowercases the region id (and the log level)', () => {
    const config = resolveConfig(
      {},
      { ...BASE_ENV, EDGEPROXY_REGION_ID: ' 01234567-89AB-CDEF-0123-456789ABCDEF ', EDGEPROXY_LOG_LEVEL: 'WARN' },
    );
    assert.equal(config.regionId, REGION);
    assert.equal(config.logLevel, 'warn');
  });

  it('accepts the boundary values', () => {
    const config = resolveConfig(
      {
        'update-interval': '10ms',
        'health-timeout': '1ms',
        'health-cache-ttl': '0',
        'cross-region-port': '65535',
        'shutdown-timeout': '0s',
      },
      BASE_ENV,
    );
    assert.equal(config.updateIntervalMs, 10);
    assert.equal(config.healthTimeoutMs, 1);
    assert.equal(config.healthCacheTtlMs, 0);
    assert.equal(config.crossRegionPort, 65535);
    assert.equal(config.shutdownTimeoutMs, 0);
  });

  describe('required settings', () => {
    for (const name of ['EDGEPROXY_DATABASE_URL', 'EDGEPROXY_REGION_ID'] as const) {
      const flag = name === 'EDGEPROXY_DATABASE_URL' ? '--database-url' : '--region-id';
      it(`fails naming ${name} and ${flag} when it is missing`, () => {
        const env = { ...BASE_ENV };
        delete env[name];
        const message = configError({}, env);
        assert.ok(message.includes(name), message);
        assert.ok(message.includes(flag), message);
        assert.match(message, /required/);
        assert.ok(!message.includes(PASSWORD), message);
      });

      it(`fails naming ${name} when it is set to the empty string`, () => {
        const message = configError({}, { ...BASE_ENV, [name]: '' });
        assert.ok(message.includes(name), message);
      });
    }

    it('accepts the required settings from flags alone', () => {
      const config = resolveConfig({ 'database-url': DB_URL, 'region-id': REGION }, {});
      assert.equal(config.databaseUrl, DB_URL);
      assert.equal(config.regionId, REGION);
    });
  });

  describe('bad values', () => {
    // [flag, a bad value]; each is tried from the environment and from the flag.
    const bad: [string, string][] = [
      ['http-addr', '8080'],
      ['http-addr', ':99999'],
      ['database-url', 'mysql://edge@db/zeitwork'],
      ['database-url', 'not a url'],
      ['region-id', 'eu-central-1'],
      ['region-id', '01234567-89ab-cdef-0123-456789abcdeg'],
      ['update-interval', '10'],
      ['update-interval', '5ms'],
      ['log-level', 'verbose'],
      ['health-timeout', '0'],
      ['health-timeout', 'soon'],
      ['health-cache-ttl', '1d'],
      ['cross-region-port', '0'],
      ['cross-region-port', '65536'],
      ['cross-region-port', 'http'],
      ['shutdown-timeout', '-1s'],
      ['sync-mode', 'stream'],
      ['sync-mode', 'polling'],
      ['publication', 'Edge'],
      ['publication', '1pub'],
      ['publication', 'edge-proxy'],
      ['publication', 'a'.repeat(64)],
      ['publication', "x'; DROP TABLE domains; --"],
      ['replication-timeout', '500ms'],
      ['replication-timeout', '15'],
      ['admin-addr', '9090'],
      ['admin-addr', 'localhost'],
      ['admin-addr', ':70000'],
      ['upstream-connect-timeout', '0'],
      ['upstream-header-timeout', '10'],
      ['upstream-idle-timeout', 'never'],
      ['idle-timeout', '0s'],
      ['client-header-timeout', '50ms'],
      ['client-request-timeout', '10ms'],
      ['trusted-proxies', '10.0.0.0/33'],
      ['trusted-proxies', '10.0.0.0/8, example.com'],
      ['trusted-proxies', '::1/129'],
    ];
    for (const [flag, value] of bad) {
      const o = option(flag);
      const echoed = o.flag !== 'database-url';

      it(`${o.env}=${JSON.stringify(value)} fails naming ${o.env}`, () => {
        const message = configError({}, { ...BASE_ENV, [o.env]: value });
        assert.ok(message.startsWith(`${o.env}:`), message);
        assert.ok(!message.includes(`--${flag}`), message);
        if (echoed) assert.ok(message.includes(JSON.stringify(value)), message);
        assert.ok(!message.includes(PASSWORD), message);
      });

      it(`--${flag}=${JSON.stringify(value)} fails naming --${flag}`, () => {
        const message = configError({ [flag]: value }, BASE_ENV);
        assert.ok(message.startsWith(`--${flag}:`), message);
        assert.ok(!message.includes(o.env), message);
        if (echoed) assert.ok(message.includes(JSON.stringify(value)), message);
        assert.ok(!message.includes(PASSWORD), message);
      });
    }

    it('fails when a flag is given more than once', () => {
      const message = configError({ 'log-level': ['info', 'debug'] }, BASE_ENV);
      assert.ok(message.includes('--log-level'), message);
    });
  });

  describe('the database password', () => {
    const badUrls = [
      `mysql://u:${PASSWORD}@h/db`,
      `postgres//u:${PASSWORD}@h`,
      `postgres:/u:${PASSWORD}@h`,
      `postgres:/u:${PASSWORD}@h/db`,
      `postgres:u:${PASSWORD}@h/db`,
      `u:${PASSWORD}@h/db`,
      `${PASSWORD}`,
      `postgres://u:${PASSWORD}@h:99999/db`,
      `postgres://u:${PASSWORD}@[zz]/db`,
      `http://u:${PASSWORD}@h/db?password=${PASSWORD}`,
    ];
    for (const url of badUrls) {
      it(`never appears in the error for ${JSON.stringify(url)}`, () => {
        const fromEnv = configError({}, { ...BASE_ENV, EDGEPROXY_DATABASE_URL: url });
        assert.ok(fromEnv.startsWith('EDGEPROXY_DATABASE_URL:'), fromEnv);
        assert.ok(!fromEnv.includes(PASSWORD), fromEnv);
        const fromFlag = configError({ 'database-url': url }, BASE_ENV);
        assert.ok(fromFlag.startsWith('--database-url:'), fromFlag);
        assert.ok(!fromFlag.includes(PASSWORD), fromFlag);
      });
    }

    it('is still accepted in the valid URL forms', () => {
      for (const url of [
        DB_URL,
        `postgresql://u:${PASSWORD}@h/db?sslmode=require`,
        `POSTGRES://u:${PASSWORD}@h/db`,
        'postgres:///zeitwork?host=/var/run/postgresql',
      ]) {
        assert.equal(resolveConfig({ 'database-url': url }, BASE_ENV).databaseUrl, url);
      }
    });

    it('never appears when another setting is bad', () => {
      for (const env of [
        { EDGEPROXY_DATABASE_URL: DB_URL },
        { ...BASE_ENV, EDGEPROXY_REGION_ID: 'x' },
        { ...BASE_ENV, EDGEPROXY_HTTP_ADDR: 'x' },
        { ...BASE_ENV, EDGEPROXY_SHUTDOWN_TIMEOUT: 'x' },
      ]) {
        const message = configError({}, env);
        assert.ok(!message.includes(PASSWORD), message);
      }
    });
  });
});

describe('redactDatabaseUrl', () => {
  it('hides the password and keeps the rest', () => {
    const redacted = redactDatabaseUrl(DB_URL);
    assert.ok(!redacted.includes(PASSWORD), redacted);
    assert.equal(redacted, 'postgres://edge:***@db.internal:5432/zeitwork');
  });

  it('hides password query parameters, whatever their case', () => {
    const redacted = redactDatabaseUrl(
      `postgres://edge@db/zeitwork?password=${PASSWORD}&sslpassword=${PASSWORD}x&PassWord=${PASSWORD}y&application_name=edge`,
    );
    assert.ok(!redacted.includes(PASSWORD), redacted);
    const params = new URL(redacted).searchParams;
    assert.equal(params.get('password'), '***');
    assert.equal(params.get('sslpassword'), '***');
    assert.equal(params.get('PassWord'), '***');
    assert.equal(params.get('application_name'), 'edge');
  });

  it('hides a password with an empty user name or escaped characters', () => {
    for (const url of [`postgres://:${PASSWORD}@h/db`, `postgres://u:${PASSWORD}%40x@h/db`, `postgres://u:${PASSWORD}%2Fx@h/db`]) {
      const redacted = redactDatabaseUrl(url);
      assert.ok(!redacted.includes(PASSWORD), redacted);
      assert.ok(redacted.includes('***'), redacted);
    }
  });

  it('leaves a URL without a password unchanged', () => {
    assert.equal(redactDatabaseUrl('postgres://edge@db:5432/zeitwork'), 'postgres://edge@db:5432/zeitwork');
  });

  it('does not echo an unparseable URL', () => {
    const redacted = redactDatabaseUrl(`postgres//u:${PASSWORD}@h`);
    assert.ok(!redacted.includes(PASSWORD), redacted);
    assert.equal(redacted, '(unparseable URL)');
  });
});
