/**
 * The public listener's forwarding and request flow, as `serve` builds it on the main thread and
 * each worker thread builds it for itself (src/workers/worker-main.ts): one way to make it.
 */
import type { Config } from '../config/config.js';
import type { Logger } from '../log/logger.js';
import { clientConnectionLimit, openFilesLimit } from '../proxy/connection-limit.js';
import { Forwarder } from '../proxy/forward.js';
import type { HealthView } from '../proxy/health.js';
import type { ProxyObserver } from '../proxy/observer.js';
import { ProxyServer, type ProxyServerOptions } from '../proxy/server.js';

/** Where plain-HTTP requests for a name with a certificate go (EDGEPROXY_HTTPS_REDIRECT), or undefined. */
export function redirectPort(config: Config, listening: number | undefined): number | undefined {
  if (config.httpsAddr === undefined || config.httpsRedirect === false) return undefined;
  return config.httpsRedirect === true ? listening : config.httpsRedirect;
}

export interface RequestPathParts {
  readonly store: ProxyServerOptions['store'];
  readonly health: HealthView;
  readonly observer: ProxyObserver;
  /** The HTTPS listener's port once it listens (the redirect's target). */
  readonly httpsPort: () => number | undefined;
  /** Threads serving the public port: each takes its share of the client connection limit (the open-files limit is the process's). */
  readonly threads: number;
}

export function createRequestPath(config: Config, logger: Logger, parts: RequestPathParts): { forwarder: Forwarder; proxy: ProxyServer } {
  const forwarder = new Forwarder({
    connectTimeoutMs: config.upstreamConnectTimeoutMs,
    headerTimeoutMs: config.upstreamHeaderTimeoutMs,
    idleTimeoutMs: config.upstreamIdleTimeoutMs,
  });
  const proxy = new ProxyServer({
    store: parts.store,
    health: parts.health,
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
    observer: parts.observer,
    maxConnections: clientConnectionShare(parts.threads),
    redirectToHttpsPort: () => redirectPort(config, parts.httpsPort()),
  });
  return { forwarder, proxy };
}

/**
 * Client connections one of `threads` serving threads accepts at once: its equal share of the
 * process's limit (undefined: no limit known). Each thread's HTTP and HTTPS ports count in its one
 * share; with workers the main thread serves neither.
 */
export function clientConnectionShare(threads: number): number | undefined {
  const limit = clientConnectionLimit(openFilesLimit());
  return limit === undefined ? undefined : Math.max(1, Math.floor(limit / threads));
}
