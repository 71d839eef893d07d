/**
 * A worker thread of `edgeproxy serve` (EDGEPROXY_WORKERS > 1): the public HTTP and HTTPS ports'
 * request flow, listening with reusePort beside the other workers, routing from the versions of
 * the route table the main thread sends (shared buffers: swapped whole, one version per request),
 * serving the certificates each version brings (worker-tls.ts; contexts built here), health from
 * the main thread's board. Its logs go to the main thread's output with `worker`; its request and
 * handshake metrics are summed into the main thread's /metrics.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createRequestPath } from '../cli/request-path.js';
import { createLogger } from '../log/logger.js';
import { WorkerMetrics } from '../metrics/metrics.js';
import type { HealthResult, HealthTarget } from '../proxy/health.js';
import type { RouteSnapshot } from '../sync/route-store.js';
import { RouteTable } from '../table/route-table.js';
import { EMPTY_TLS } from '../tls/tls-state.js';
import { SharedHealth } from './health-board.js';
import type { FromWorker, SnapshotMessage, ToWorker, WorkerInit, WorkerView } from './messages.js';
import { httpsListenerFor } from '../tls/https-listener.js';
import { CertificateAsks } from './worker-https.js';
import { loadWorkerCertificate, WorkerTlsState } from './worker-tls.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const send = (m: FromWorker): void => port.postMessage(m);
const { config } = init;

// Lines go to the main thread, which writes them where its own go (one output, in order per thread).
const logger = createLogger(config.logLevel, { write: (line: string) => send({ type: 'log', line: line.trimEnd() }) }).child({
  worker: init.id,
});
const metrics = new WorkerMetrics();
let requests = 0;
const observer = {
  ...metrics.observer,
  request: (...args: Parameters<typeof metrics.observer.request>) => {
    requests += 1;
    metrics.observer.request(...args);
  },
};

const view: { current: RouteSnapshot | undefined } = { current: undefined };
const asked = new Map<number, (answer: { result: HealthResult; slot: number }) => void>();
let asks = 0;
const health = new SharedHealth(
  init.healthBoard,
  {
    check: (t: HealthTarget) =>
      new Promise((resolve) => {
        asked.set(++asks, resolve);
        send({ type: 'health-check', ask: asks, ip: t.ip, port: t.port });
      }),
    mark: (t, reason) => send({ type: 'health-mark', ip: t.ip, port: t.port, reason }),
  },
  config.healthCacheTtlMs,
  config.healthTimeoutMs,
);
const { proxy, forwarder } = createRequestPath(config, logger, {
  store: view,
  health,
  observer,
  // Plain requests for a name with a certificate go to the HTTPS port this worker listens on too.
  httpsPort: () => https?.port,
  threads: config.workers,
});

const tlsState = new WorkerTlsState();
const certificateAsks = init.onDemand
  ? new CertificateAsks(view, (ask, name) => send({ type: 'certificate-ask', ask, name }), config.acmeHandshakeWaitMs)
  : undefined;
const https =
  init.httpsPort === undefined
    ? undefined
    : httpsListenerFor(proxy, {
        certificates: () => view.current?.tls.certificates,
        issue: certificateAsks === undefined ? undefined : (name) => certificateAsks.certificateFor(name),
        defaultCertificate: init.defaultCertificate === undefined ? undefined : loadWorkerCertificate(init.defaultCertificate),
        handshakeTimeoutMs: config.tlsHandshakeTimeoutMs,
        ticketKeys: Buffer.from(init.ticketKeys),
        logger,
        onHandshake: metrics.tlsHandshake,
      });

/** The main thread's newest version: opened over the shared buffers, swapped whole. */
function apply(m: SnapshotMessage): void {
  const prev = view.current;
  view.current = Object.freeze({
    routes: RouteTable.open(m.routes, prev?.routes),
    regionAddresses: m.regionAddresses,
    tls: m.tls === undefined ? (prev?.tls ?? EMPTY_TLS) : tlsState.apply(m.tls),
    generation: m.generation,
    source: m.source,
    publishedAt: m.publishedAt,
    position: m.position,
  });
  if (m.tls !== undefined) certificateAsks?.applied();
  send({ type: 'applied', ...workerView() });
}

async function drain(timeoutMs: number): Promise<void> {
  // As the main thread's stop: both listeners close now; HTTP/2 sessions get GOAWAY, requests finish.
  const httpsClosed = https?.close();
  const draining = proxy.drain(timeoutMs, httpsClosed === undefined ? [] : [httpsClosed]);
  send({ type: 'closed' }); // drain() has closed the listeners: the main thread may say so
  const drained = await draining;
  forwarder.close();
  send({ type: 'drained', drained });
  port.close(); // nothing left: the thread ends
}

function workerView(): WorkerView {
  const current = view.current;
  return { generation: current?.generation ?? 0, requests, certificates: current?.tls.served.length ?? 0 };
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'snapshot':
      return apply(m);
    case 'health':
      asked.get(m.ask)?.({ result: m.result, slot: m.slot });
      asked.delete(m.ask);
      return;
    case 'certificate':
      return certificateAsks?.answer(m.ask, m.ready);
    case 'metrics':
      void metrics.registry.getMetricsAsJSON().then((json) => send({ type: 'metrics', ask: m.ask, metrics: json, requests }));
      return;
    case 'ticket-keys':
      return https?.setTicketKeys(Buffer.from(m.keys));
    case 'status':
      return send({ type: 'status', ask: m.ask, ...workerView() });
    case 'drain':
      void drain(m.timeoutMs);
      return;
  }
});

// HTTPS first: the plain port redirects to it.
const secure = https === undefined ? undefined : await https.listen(config.httpsAddr?.host, init.httpsPort!, { reusePort: true });
const listening = await proxy.listen(config.httpAddr.host, init.port, { reusePort: true });
logger.info(
  {
    address: listening.address,
    port: listening.port,
    httpsPort: secure?.port ?? null,
    maxClientConnections: proxy.server.maxConnections ?? null,
  },
  'worker listening',
);
send({ type: 'listening', port: listening.port, httpsPort: secure?.port });
