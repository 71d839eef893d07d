import os from 'node:os';
import type tls from 'node:tls';
import type pg from 'pg';
import { renewCertificate } from '../admin/certificate-renewal.js';
import { operatorResync } from '../admin/resync.js';
import { AdminServer } from '../admin/server.js';
import { type Config, ConfigError, type ListenAddress, redactDatabaseUrl } from '../config/config.js';
import { formatDuration } from '../config/duration.js';
import { createPool } from '../db/pool.js';
import { portHeld, queuedConnectionsMigrate, reusePortProblem } from '../listen.js';
import { createLogger, lineWriter, type Logger } from '../log/logger.js';
import { Metrics } from '../metrics/metrics.js';
import type { Forwarder } from '../proxy/forward.js';
import { HealthChecker } from '../proxy/health.js';
import type { ProxyServer } from '../proxy/server.js';
import type { Poller } from '../sync/poller.js';
import { RouteStore } from '../sync/route-store.js';
import type { ResyncOutcome, SyncStatus } from '../sync/status.js';
import { Sync } from '../sync/sync.js';
import { createIssuance, type Issuance } from '../acme/issuance.js';
import { readDefaultCertificate } from '../tls/default-certificate.js';
import type { LoadedCertificate } from '../tls/certificate.js';
import { httpsListenerFor, type HttpsListener } from '../tls/https-listener.js';
import { TicketKeys } from '../tls/ticket-keys.js';
import { readStorageKey } from '../tls/storage-key-source.js';
import { TlsFeed } from '../tls/tls-feed.js';
import { VERSION } from '../version.js';
import { HealthBoard } from '../workers/health-board.js';
import { servingThreads } from '../workers/worker-count.js';
import { WorkerPool } from '../workers/worker-pool.js';
import { clientConnectionShare, createRequestPath } from './request-path.js';

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
  /** The worker threads serving the public HTTP port; undefined when the main thread serves it (EDGEPROXY_WORKERS=1). */
  readonly workers: WorkerPool | undefined;
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
  readonly workers: WorkerPool | undefined;
  readonly ticketKeys: TicketKeys;
}

/**
 * Wires the parts together and starts them. Resolves once the route table is being followed
 * (after the first stream attempt in modes auto and replication). Used by `edgeproxy serve`
 * and by the tests.
 */
export async function startService(config: Config, logger: Logger, opts: StartOptions = {}): Promise<RunningService> {
  logStarting(config, logger);
  const parts = createParts(config, logger);
  const reusePort = publicReusePort(logger);
  // Beside a running edgeproxy (a restart): join its ports only once this one can route.
  const beside = reusePort && (await publicPortsHeld(config, logger));
  const listened = beside ? undefined : await listenPublic(config, logger, parts, reusePort);
  const port = listened?.port ?? config.httpAddr.port;
  const httpsPort = listened === undefined ? config.httpsAddr?.port : listened.httpsPort;
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
    workers: parts.workers,
    status: () => sync.status(),
    resync: () => sync.resync(),
    stop,
  };
  metrics.watch({ snapshot: () => store.current, status: running.status });
  const orStop = stopOnFailure(stop);
  let adminPort: number | undefined;
  const adminAddr = config.adminAddr;
  if (adminAddr !== undefined) {
    ({ admin, port: adminPort } = await orStop('the admin API could not start', () =>
      startAdmin(config, adminAddr, logger, parts, running.resync),
    ));
  }
  await orStop('the route table cannot follow the database', () => sync.start());
  if (beside && (await firstTable(store, opts.signal))) {
    await orStop('the public ports could not open', () => openPublic(config, logger, parts, reusePort));
  }
  parts.issuance?.start();
  return { ...running, metrics, admin, adminPort };
}

/** Runs a start step; if it fails, stops what has started (saying why) and rethrows. */
function stopOnFailure(stop: (reason: string) => Promise<void>) {
  return async <T>(reason: string, step: () => Promise<T>): Promise<T> => {
    try {
      return await step();
    } catch (err) {
      await stop(reason);
      throw err;
    }
  };
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
  const threads = servingThreads(config.workers, logger);
  // Workers read the main thread's health results from the board: probes stay here, one per VM.
  const board = threads > 1 ? new HealthBoard() : undefined;
  const health = new HealthChecker({
    timeoutMs: config.healthTimeoutMs,
    cacheTtlMs: config.healthCacheTtlMs,
    logger,
    observer: metrics.observer,
    onRecord: board?.record,
  });
  // The proxy redirects to the HTTPS listener's port, known once it listens (tests listen on port 0).
  const httpsPort = () => https?.port;
  // The client connection limit is split between the serving threads (with workers, the main
  // thread listens on no public port: its request path takes a worker's share, unused).
  const shares = board === undefined ? 1 : threads;
  const requestPath = createRequestPath(config, logger, { store, health, observer: metrics.observer, httpsPort, threads: shares });
  // Issuance serves the HTTPS port: none without it.
  const issuance =
    config.httpsAddr === undefined ? undefined : createIssuance(config, { view: store, storageKey, logger, onOutcome: metrics.acme.order });
  if (issuance !== undefined) metrics.acme.watchInFlight(() => issuance.onDemand.inFlight);
  // Made once: every thread serving HTTPS encrypts tickets with these, so a session resumes on any of them.
  const ticketKeys = new TicketKeys(config.httpsAddr === undefined ? undefined : config.tlsTicketKeyLifetimeMs);
  ticketKeys.onRotate(() => logger.info({ lifetimeMs: config.tlsTicketKeyLifetimeMs }, 'TLS ticket keys rotated'));
  const tlsServing: TlsServing = { defaultCertificate, ticketKeys, issuance };
  // With workers, they serve the HTTPS port too: the main thread listens on no public port.
  const https =
    config.httpsAddr === undefined || board !== undefined
      ? undefined
      : createHttps(config, logger, store, requestPath.proxy, metrics, tlsServing);
  const workers =
    board === undefined ? undefined : createWorkers({ ...config, workers: threads }, logger, { store, health, metrics }, board, tlsServing);
  return { store, metrics, pool, sync, health, ...requestPath, https, issuance, workers, ticketKeys: tlsServing.ticketKeys };
}

/** What every thread serving the HTTPS port is given: the default certificate, the ticket keys, on-demand issuance. */
interface TlsServing {
  readonly defaultCertificate: LoadedCertificate | undefined;
  readonly ticketKeys: TicketKeys;
  readonly issuance: Issuance | undefined;
}

/** The worker threads (not started): every publish sent to them, their metrics summed into ours. */
function createWorkers(
  config: Config,
  logger: Logger,
  parts: Pick<Parts, 'store' | 'health' | 'metrics'>,
  board: HealthBoard,
  tls: TlsServing,
): WorkerPool {
  const onDemand = tls.issuance?.onDemand;
  const workers = new WorkerPool({
    config,
    logger,
    writeLog: lineWriter(logger),
    health: parts.health,
    board,
    ticketKeys: () => tls.ticketKeys.current,
    defaultCertificate: config.httpsAddr === undefined ? undefined : tls.defaultCertificate,
    issue: onDemand === undefined ? undefined : (name) => servedNow(parts.store, name) ?? onDemand.certificateFor(name),
    current: () => parts.store.current,
  });
  parts.store.onPublish((snapshot) => workers.publish(snapshot));
  parts.metrics.sumWorkers(() => workers.collect());
  tls.ticketKeys.onRotate((keys) => workers.setTicketKeys(keys));
  return workers;
}

/**
 * A certificate the current snapshot already serves for `name`: a worker asking for it was a
 * version behind, and that version is on its way (sent before the answer), so it is ready.
 */
function servedNow(store: RouteStore, name: string): Promise<tls.SecureContext> | undefined {
  const served = store.current?.tls.certificates.lookup(name, Date.now());
  return served === undefined ? undefined : Promise.resolve(served.context);
}

/** The main thread's HTTPS listener (no workers): certificates from memory, secured connections into the proxy's flow. */
function createHttps(
  config: Config,
  logger: Logger,
  store: RouteStore,
  proxy: ProxyServer,
  metrics: Metrics,
  tls: TlsServing,
): HttpsListener {
  const onDemand = tls.issuance?.onDemand;
  const listener = httpsListenerFor(proxy, {
    certificates: () => store.current?.tls.certificates,
    issue: onDemand === undefined ? undefined : (name) => onDemand.certificateFor(name),
    defaultCertificate: tls.defaultCertificate,
    handshakeTimeoutMs: config.tlsHandshakeTimeoutMs,
    ticketKeys: tls.ticketKeys.current,
    logger,
    onHandshake: metrics.tlsHandshake,
  });
  tls.ticketKeys.onRotate((keys) => listener.setTicketKeys(keys));
  return listener;
}

/** Opens the public ports at start; on failure closes what was opened (probes, upstream and database connections). */
async function listenPublic(
  config: Config,
  logger: Logger,
  parts: Parts,
  reusePort: boolean,
): Promise<{ port: number; httpsPort: number | undefined }> {
  try {
    return await openPublic(config, logger, parts, reusePort);
  } catch (err) {
    parts.proxy.server.close();
    await parts.workers?.drain(0).drained;
    parts.health.close();
    parts.forwarder.close();
    await parts.pool.end().catch(() => undefined);
    await parts.issuance?.stop();
    parts.ticketKeys.stop();
    throw err;
  }
}

/** The public HTTP and HTTPS ports (on the main thread, or in the workers), each logged once it listens. */
async function openPublic(
  config: Config,
  logger: Logger,
  parts: Parts,
  reusePort: boolean,
): Promise<{ port: number; httpsPort: number | undefined }> {
  if (parts.workers === undefined) {
    const listening = await parts.proxy.listen(config.httpAddr.host, config.httpAddr.port, { reusePort });
    const maxClientConnections = parts.proxy.server.maxConnections ?? null;
    logger.info({ address: listening.address, port: listening.port, maxClientConnections, reusePort }, 'listening');
    return { port: listening.port, httpsPort: await listenHttps(config, logger, parts, reusePort) };
  }
  // Each worker listens on both ports. Workers exist only where reusePort does.
  const { port, httpsPort } = await parts.workers.start();
  const share = clientConnectionShare(config.workers);
  const maxClientConnections = share === undefined ? null : share * config.workers;
  logger.info({ address: config.httpAddr.host ?? null, port, maxClientConnections, workers: config.workers, reusePort }, 'listening');
  if (config.httpsAddr !== undefined) {
    logger.info(
      {
        address: config.httpsAddr.host ?? null,
        port: httpsPort ?? null,
        defaultCertificate: config.tlsDefaultCertFile !== undefined,
        workers: config.workers,
        reusePort,
      },
      'HTTPS listening',
    );
  }
  return { port, httpsPort };
}

/** The HTTPS port on the main thread (no workers); undefined when it is off. */
async function listenHttps(config: Config, logger: Logger, parts: Parts, reusePort: boolean): Promise<number | undefined> {
  if (parts.https === undefined || config.httpsAddr === undefined) return undefined;
  const secure = await parts.https.listen(config.httpsAddr.host, config.httpsAddr.port, { reusePort });
  logger.info(
    { address: secure.address, port: secure.port, defaultCertificate: config.tlsDefaultCertFile !== undefined, reusePort },
    'HTTPS listening',
  );
  return secure.port;
}

/** Another process listens on a public port (the one this one replaces): said once. */
async function publicPortsHeld(config: Config, logger: Logger): Promise<boolean> {
  const held =
    (await portHeld(config.httpAddr.host, config.httpAddr.port)) ||
    (config.httpsAddr !== undefined && (await portHeld(config.httpsAddr.host, config.httpsAddr.port)));
  if (held) logger.info({}, 'another process listens on the public ports: joining them once the route table is loaded');
  return held;
}

/** Resolves true once the store holds a first table, false if `signal` aborts first (a signal while starting). */
function firstTable(store: RouteStore, signal: AbortSignal | undefined): Promise<boolean> {
  if (store.ready) return Promise.resolve(true);
  if (signal?.aborted === true) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ready: boolean) => {
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
      resolve(ready);
    };
    const onAbort = () => done(false);
    const unsubscribe = store.onPublish(() => done(true));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The public ports bind with SO_REUSEPORT where it exists, so that a new `edgeproxy serve` can
 * listen beside this one before this one drains (README, Restart). Where it does not, today's
 * exclusive bind, and one line saying why.
 */
function publicReusePort(logger: Logger): boolean {
  const problem = reusePortProblem(process.version, process.platform);
  if (problem !== undefined) {
    logger.warn({ reason: problem }, 'public ports bound without reusePort: a restart cannot start the new process beside this one');
  } else if (queuedConnectionsMigrate() === false) {
    logger.warn(
      { sysctl: 'net.ipv4.tcp_migrate_req', value: 0 },
      'the kernel resets connections queued on a closing listener: a restart beside this process may reset a few new connections',
    );
  }
  return problem === undefined;
}

/** The graceful stop, run once however often it is asked for: drain (bounded), stop loading, close connections. */
function stopper(config: Config, logger: Logger, parts: Parts, admin: () => AdminServer | undefined): (reason: string) => Promise<void> {
  let stopping: Promise<void> | undefined;
  return (reason) => {
    stopping ??= (async () => {
      admin()?.markStopping();
      // drain() closes the listeners synchronously, the workers' once they have the message; log
      // after that, so the line is true when read.
      const httpsClosed = parts.https?.close();
      const workers = parts.workers?.drain(config.shutdownTimeoutMs);
      const draining = parts.proxy.drain(config.shutdownTimeoutMs, httpsClosed === undefined ? [] : [httpsClosed]);
      await workers?.closed;
      logger.info({ reason, graceMs: config.shutdownTimeoutMs }, 'shutting down: no new connections, finishing in-flight requests');
      const drained = (await draining) && ((await workers?.drained) ?? true);
      if (!drained) logger.warn({ graceMs: config.shutdownTimeoutMs }, 'shutdown grace period over; cut the remaining connections');
      await parts.sync.stop();
      await parts.issuance?.stop();
      parts.ticketKeys.stop();
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
    workers: parts.workers === undefined ? undefined : () => parts.workers!.status(),
    resync: () => operatorResync(resync, 'admin', logger, parts.metrics),
    renewCertificate: (name) => renewCertificate(name, { current: () => parts.store.current, issuance: parts.issuance, logger }),
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
