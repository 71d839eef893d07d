import os from 'node:os';
import type pg from 'pg';
import { operatorResync } from '../admin/resync.js';
import { AdminServer } from '../admin/server.js';
import { type Config, ConfigError, type ListenAddress, redactDatabaseUrl } from '../config/config.js';
import { formatDuration } from '../config/duration.js';
import { createPool } from '../db/pool.js';
import { createLogger, type Logger } from '../log/logger.js';
import { Metrics } from '../metrics/metrics.js';
import { Forwarder } from '../proxy/forward.js';
import { HealthChecker } from '../proxy/health.js';
import { clientConnectionLimit, openFilesLimit } from '../proxy/connection-limit.js';
import { ProxyServer } from '../proxy/server.js';
import type { Poller } from '../sync/poller.js';
import { RouteStore } from '../sync/route-store.js';
import type { ResyncOutcome, SyncStatus } from '../sync/status.js';
import { Sync } from '../sync/sync.js';
import { createIssuance, type Issuance } from '../acme/issuance.js';
import { readDefaultCertificate } from '../tls/default-certificate.js';
import type { LoadedCertificate } from '../tls/certificate.js';
import { HttpsListener } from '../tls/https-listener.js';
import { readStorageKey } from '../tls/storage-key-source.js';
import { TlsFeed } from '../tls/tls-feed.js';
import { VERSION } from '../version.js';

export interface RunningService {
  readonly store: RouteStore;
  readonly sync: Sync;
  /** The full-reload half of `sync` (polling mode, fallback, resync without a stream). */
  readonly poller: Poller;
  readonly proxy: ProxyServer;
  readonly health: HealthChecker;
  readonly port: number;
  /** The HTTPS port; undefined when EDGEPROXY_HTTPS_ADDR is off. */
  readonly httpsPort: number | undefined;
  /** On-demand issuance and renewal; undefined when this proxy issues no certificate. */
  readonly issuance: Issuance | undefined;
  /** Prometheus metrics (served by the admin API). */
  readonly metrics: Metrics;
  /** The admin API listener and its port; undefined when EDGEPROXY_ADMIN_ADDR is empty. */
  readonly admin: AdminServer | undefined;
  readonly adminPort: number | undefined;
  /** How the table follows the database right now (for the admin API and metrics). */
  status(): SyncStatus;
  /** A full resync now (after any running one); resolves with what changed. */
  resync(): Promise<ResyncOutcome>;
  /** Graceful stop: drain requests (bounded), stop loading, close connections. */
  stop(reason: string): Promise<void>;
}

export interface StartOptions {
  /** Aborting it (a signal during startup) stops the service instead of finishing the start. */
  readonly signal?: AbortSignal;
}

/** The parts of a running service, made by `createParts` and shared by the steps below. */
interface Parts {
  readonly store: RouteStore;
  readonly metrics: Metrics;
  readonly pool: pg.Pool;
  readonly sync: Sync;
  readonly health: HealthChecker;
  readonly forwarder: Forwarder;
  readonly proxy: ProxyServer;
  readonly https: HttpsListener | undefined;
  readonly issuance: Issuance | undefined;
}

/**
 * Wires the parts together and starts them. Resolves once the route table is being followed
 * (after the first stream attempt in modes auto and replication). Used by `edgeproxy serve`
 * and by the tests.
 */
export async function startService(config: Config, logger: Logger, opts: StartOptions = {}): Promise<RunningService> {
  logStarting(config, logger);
  const parts = createParts(config, logger);
  const { port, httpsPort } = await listenPublic(config, logger, parts);
  let admin: AdminServer | undefined;
  const stop = stopper(config, logger, parts, () => admin);
  const onAbort = () => void stop(String(opts.signal?.reason ?? 'aborted'));
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });
  const { store, sync, proxy, health, metrics } = parts;
  const running = {
    store,
    sync,
    poller: sync.poller,
    proxy,
    health,
    port,
    httpsPort,
    issuance: parts.issuance,
    status: () => sync.status(),
    resync: () => sync.resync(),
    stop,
  };
  metrics.watch({ snapshot: () => store.current, status: running.status });
  let adminPort: number | undefined;
  if (config.adminAddr !== undefined) {
    try {
      ({ admin, port: adminPort } = await startAdmin(config, config.adminAddr, logger, parts, running.resync));
    } catch (err) {
      await stop('the admin API could not start');
      throw err;
    }
  }
  try {
    await sync.start();
  } catch (err) {
    await stop('the route table cannot follow the database');
    throw err;
  }
  parts.issuance?.start();
  return { ...running, metrics, admin, adminPort };
}

function logStarting(config: Config, logger: Logger): void {
  logger.info(
    {
      version: VERSION,
      httpAddr: `${config.httpAddr.host ?? ''}:${config.httpAddr.port}`,
      httpsAddr: config.httpsAddr === undefined ? 'off' : `${config.httpsAddr.host ?? ''}:${config.httpsAddr.port}`,
      regionId: config.regionId,
      database: redactDatabaseUrl(config.databaseUrl),
      updateInterval: formatDuration(config.updateIntervalMs),
      healthCacheTtl: formatDuration(config.healthCacheTtlMs),
      healthTimeout: formatDuration(config.healthTimeoutMs),
      crossRegionPort: config.crossRegionPort,
      syncMode: config.syncMode,
      publication: config.publication,
      regionAddressColumn: config.regionAddressColumn,
    },
    'starting edgeproxy',
  );
}

/** Everything the service is made of, not started yet (nothing listens, nothing is loaded). */
function createParts(config: Config, logger: Logger): Parts {
  // First: a default certificate that cannot be served is a configuration error, before anything opens.
  const defaultCertificate =
    config.httpsAddr === undefined ? undefined : readDefaultCertificate(config.tlsDefaultCertFile, config.tlsDefaultKeyFile);
  const storageKey = readStorageKey(config.tlsStorageKey, config.tlsStorageKeyFile);
  const store = new RouteStore();
  const metrics = new Metrics();
  const pool = createPool({
    databaseUrl: config.databaseUrl,
    applicationName: `edgeproxy ${os.hostname()} ${process.pid}`.slice(0, 63),
    queryTimeoutMs: config.replicationTimeoutMs,
    logger,
  });
  const sync = new Sync({
    mode: config.syncMode,
    databaseUrl: config.databaseUrl,
    publication: config.publication,
    regionAddressColumn: config.regionAddressColumn,
    pool,
    store,
    intervalMs: config.updateIntervalMs,
    replicationTimeoutMs: config.replicationTimeoutMs,
    logger,
    tls: new TlsFeed(storageKey, logger),
  });
  const health = new HealthChecker({
    timeoutMs: config.healthTimeoutMs,
    cacheTtlMs: config.healthCacheTtlMs,
    logger,
    observer: metrics.observer,
  });
  // The proxy redirects to the HTTPS listener's port, known once it listens (tests listen on port 0).
  const requestPath = createRequestPath(config, logger, store, health, metrics, () => https?.port);
  // Issuance serves the HTTPS port: none without it.
  const issuance =
    config.httpsAddr === undefined ? undefined : createIssuance(config, { view: store, storageKey, logger, onOutcome: metrics.acme.order });
  if (issuance !== undefined) metrics.acme.watchInFlight(() => issuance.onDemand.inFlight);
  const https =
    config.httpsAddr === undefined
      ? undefined
      : createHttps(config, logger, store, defaultCertificate, requestPath.proxy, metrics, issuance);
  return { store, metrics, pool, sync, health, ...requestPath, https, issuance };
}

/** The HTTPS listener: certificates from memory, secured connections into the proxy's flow. */
function createHttps(
  config: Config,
  logger: Logger,
  store: RouteStore,
  defaultCertificate: LoadedCertificate | undefined,
  proxy: ProxyServer,
  metrics: Metrics,
  issuance: Issuance | undefined,
): HttpsListener {
  const onDemand = issuance?.onDemand;
  const listener = new HttpsListener({
    certificates: () => store.current?.tls.certificates,
    issue: onDemand === undefined ? undefined : (name) => onDemand.certificateFor(name),
    defaultCertificate,
    handshakeTimeoutMs: config.tlsHandshakeTimeoutMs,
    accept: (socket) => proxy.acceptSecure(socket),
    logger,
    onHandshake: metrics.tlsHandshake,
  });
  proxy.shareConnectionLimit(listener.server);
  return listener;
}

/** Where plain-HTTP requests for a name with a certificate go (EDGEPROXY_HTTPS_REDIRECT), or undefined. */
function redirectPort(config: Config, listening: number | undefined): number | undefined {
  if (config.httpsAddr === undefined || config.httpsRedirect === false) return undefined;
  return config.httpsRedirect === true ? listening : config.httpsRedirect;
}

/** The public listener's forwarding and request flow. */
function createRequestPath(
  config: Config,
  logger: Logger,
  store: RouteStore,
  health: HealthChecker,
  metrics: Metrics,
  httpsPort: () => number | undefined,
): Pick<Parts, 'forwarder' | 'proxy'> {
  const forwarder = new Forwarder({
    connectTimeoutMs: config.upstreamConnectTimeoutMs,
    headerTimeoutMs: config.upstreamHeaderTimeoutMs,
    idleTimeoutMs: config.upstreamIdleTimeoutMs,
  });
  const proxy = new ProxyServer({
    store,
    health,
    forwarder,
    regionId: config.regionId,
    crossRegionPort: config.crossRegionPort,
    logger,
    timeouts: {
      idleTimeoutMs: config.idleTimeoutMs,
      headerTimeoutMs: config.clientHeaderTimeoutMs,
      requestTimeoutMs: config.clientRequestTimeoutMs,
    },
    trustedProxies: config.trustedProxies,
    observer: metrics.observer,
    maxConnections: clientConnectionLimit(openFilesLimit()),
    redirectToHttpsPort: () => redirectPort(config, httpsPort()),
  });
  return { forwarder, proxy };
}

/** Opens the public ports; on failure closes what was opened (probes, upstream and database connections). */
async function listenPublic(config: Config, logger: Logger, parts: Parts): Promise<{ port: number; httpsPort: number | undefined }> {
  try {
    const listening = await parts.proxy.listen(config.httpAddr.host, config.httpAddr.port);
    const maxClientConnections = parts.proxy.server.maxConnections ?? null;
    logger.info({ address: listening.address, port: listening.port, maxClientConnections }, 'listening');
    let httpsPort: number | undefined;
    if (parts.https !== undefined && config.httpsAddr !== undefined) {
      const secure = await parts.https.listen(config.httpsAddr.host, config.httpsAddr.port);
      logger.info(
        { address: secure.address, port: secure.port, defaultCertificate: config.tlsDefaultCertFile !== undefined },
        'HTTPS listening',
      );
      httpsPort = secure.port;
    }
    return { port: listening.port, httpsPort };
  } catch (err) {
    parts.proxy.server.close();
    parts.health.close();
    parts.forwarder.close();
    await parts.pool.end().catch(() => undefined);
    await parts.issuance?.stop();
    throw err;
  }
}

/** The graceful stop, run once however often it is asked for: drain (bounded), stop loading, close connections. */
function stopper(config: Config, logger: Logger, parts: Parts, admin: () => AdminServer | undefined): (reason: string) => Promise<void> {
  let stopping: Promise<void> | undefined;
  return (reason) => {
    stopping ??= (async () => {
      admin()?.markStopping();
      // drain() closes the listeners synchronously; log after it, so the line is true when read.
      const httpsClosed = parts.https?.close();
      const draining = parts.proxy.drain(config.shutdownTimeoutMs, httpsClosed === undefined ? [] : [httpsClosed]);
      logger.info({ reason, graceMs: config.shutdownTimeoutMs }, 'shutting down: no new connections, finishing in-flight requests');
      const drained = await draining;
      if (!drained) logger.warn({ graceMs: config.shutdownTimeoutMs }, 'shutdown grace period over; cut the remaining connections');
      await parts.sync.stop();
      await parts.issuance?.stop();
      parts.health.close();
      parts.forwarder.close();
      await parts.pool.end().catch((err: unknown) => logger.warn({ err }, 'closing database connections failed'));
      await admin()?.close();
      logger.info({ drained }, 'stopped');
    })();
    return stopping;
  };
}

async function startAdmin(
  config: Config,
  addr: ListenAddress,
  logger: Logger,
  parts: Parts,
  resync: () => Promise<ResyncOutcome>,
): Promise<{ admin: AdminServer; port: number }> {
  const admin = new AdminServer({
    store: parts.store,
    health: parts.health,
    metrics: parts.metrics,
    logger,
    regionId: config.regionId,
    crossRegionPort: config.crossRegionPort,
    status: () => parts.sync.status(),
    resync: () => operatorResync(resync, 'admin', logger, parts.metrics),
  });
  const a = await admin.listen(addr.host, addr.port);
  logger.info({ address: a.address, port: a.port }, 'admin API listening');
  return { admin, port: a.port };
}

/** `edgeproxy serve`: runs until SIGINT/SIGTERM, then stops gracefully and exits 0. */
export async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception; exiting');
    process.exit(1);
  });
  let service: RunningService | undefined;
  // SIGHUP: a full resync, as `edgeproxy resync` does (while starting, the first load is one anyway).
  process.on('SIGHUP', () => {
    if (service !== undefined) void operatorResync(service.resync, 'sighup', logger, service.metrics);
  });
  // Handlers go in before starting: the first stream attempt may take a while (slot creation
  // waits for open transactions), and a SIGTERM then must still stop gracefully.
  const abort = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (service === undefined) abort.abort(signal);
    else void service.stop(signal).then(() => process.exit(0));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    service = await startService(config, logger, { signal: abort.signal });
  } catch (err) {
    // A setting only checked at start (a default certificate's files): bad usage, as for any other setting.
    if (err instanceof ConfigError) {
      process.stderr.write(`edgeproxy: ${err.message}\n`);
      process.exit(2);
    }
    const e = err as NodeJS.ErrnoException;
    logger.error({ err: { code: e.code, message: e.message } }, 'could not start');
    process.exit(1);
  }
  if (abort.signal.aborted) {
    await service.stop(String(abort.signal.reason));
    process.exit(0);
  }
}
