// EdgeProxy's request path in its own process, for bench/proxy-speed.ts and bench/route-memory.ts.
// The route table is built from N rows shaped like the documented query's (as a full reload
// builds it), one of them `bench.example` → the backend in this proxy's region; the real
// RouteStore, HealthChecker (cache on), Forwarder and ProxyServer; logging at info to stdout.
// No database: the request path never touches it.
//
// The options the bench does not set are the option table's defaults (DEFAULTS), as for `serve`.
//
// node --import tsx bench/targets/edgeproxy.ts --port P --backend-port B --routes N [--health-ttl MS] [--no-listen]
//   [--https-port P --cert FILE --key FILE]   (also the HTTPS port, h2 and http/1.1 by ALPN, that certificate as default)
// Prints one JSON line when ready ({ ready, port, httpsPort, routes, loadMs, rssMiB, heapMiB, decideNs });
// answers SIGUSR2 with { probes } (health probes so far).
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DEFAULTS } from '../../src/config/config.js';
import { createLogger } from '../../src/log/logger.js';
import { decide } from '../../src/proxy/decide.js';
import { Forwarder } from '../../src/proxy/forward.js';
import { HealthChecker } from '../../src/proxy/health.js';
import { ProxyServer } from '../../src/proxy/server.js';
import { RouteStore } from '../../src/sync/route-store.js';
import { routesFromQueryRows } from '../../src/table/query-routes.js';
import { readDefaultCertificate } from '../../src/tls/default-certificate.js';
import { HttpsListener } from '../../src/tls/https-listener.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'backend-port': { type: 'string', default: '8081' },
    routes: { type: 'string', default: '100000' },
    'no-listen': { type: 'boolean', default: false },
    'health-ttl': { type: 'string', default: String(DEFAULTS.healthCacheTtlMs) },
    'https-port': { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});
const N = Number(values.routes);
const REGION = '0a000000-0000-4000-8000-00000000000a';
const OTHER = '0b000000-0000-4000-8000-00000000000b';

v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const mib = (n: number) => Math.round((n / 1048576) * 10) / 10;

gc();
const base = process.memoryUsage();
// Fresh strings per row, as `pg` makes them.
const rows = JSON.parse(
  JSON.stringify(
    Array.from({ length: N }, (_, i) =>
      i === 0
        ? {
            domain_name: 'bench.example',
            vm_private_ip: '127.0.0.1',
            vm_port: Number(values['backend-port']),
            vm_region_id: REGION,
            region_public_ip: '127.0.0.1',
          }
        : {
            domain_name: `site-${i}.customer-${i % 997}.example`,
            vm_private_ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
            vm_port: 3000 + (i % 5000),
            vm_region_id: i % 3 === 0 ? OTHER : REGION,
            region_public_ip: i % 3 === 0 ? '203.0.113.2' : '203.0.113.1',
          },
    ),
  ),
) as Record<string, unknown>[];
const t0 = performance.now();
const loaded = routesFromQueryRows(rows);
const store = new RouteStore();
store.publish(loaded.routes, 'poll', { regionAddresses: loaded.regionAddresses });
const loadMs = performance.now() - t0;
rows.length = 0;
gc();
const mem = process.memoryUsage();

// Lookup cost: the whole routing decision (Host parsing + map lookup) for random known hosts.
const hosts = Array.from({ length: 4096 }, (_, i) =>
  i === 0 ? 'bench.example' : `site-${1 + ((i * 7919) % (N - 1))}.customer-${(1 + ((i * 7919) % (N - 1))) % 997}.example`,
);
let sink = 0;
for (let i = 0; i < 200_000; i++) sink += decide(store.current, hosts[i & 4095], REGION, DEFAULTS.crossRegionPort).kind.length;
const L = 2_000_000;
const l0 = performance.now();
for (let i = 0; i < L; i++) sink += decide(store.current, hosts[i & 4095], REGION, DEFAULTS.crossRegionPort).kind.length;
const decideNs = ((performance.now() - l0) * 1e6) / L;

const logger = createLogger('info');
const health = new HealthChecker({ timeoutMs: DEFAULTS.healthTimeoutMs, cacheTtlMs: Number(values['health-ttl']), logger });
const forwarder = new Forwarder({
  connectTimeoutMs: DEFAULTS.upstreamConnectTimeoutMs,
  headerTimeoutMs: DEFAULTS.upstreamHeaderTimeoutMs,
  idleTimeoutMs: DEFAULTS.upstreamIdleTimeoutMs,
});
const proxy = new ProxyServer({
  store,
  health,
  forwarder,
  regionId: REGION,
  crossRegionPort: DEFAULTS.crossRegionPort,
  logger,
  timeouts: {
    idleTimeoutMs: DEFAULTS.idleTimeoutMs,
    headerTimeoutMs: DEFAULTS.clientHeaderTimeoutMs,
    requestTimeoutMs: DEFAULTS.clientRequestTimeoutMs,
  },
  trustedProxies: DEFAULTS.trustedProxies,
});
let port = 0;
if (!values['no-listen']) port = (await proxy.listen('127.0.0.1', Number(values.port))).port;
let httpsPort: number | undefined;
if (values['https-port'] !== undefined) {
  const https = new HttpsListener({
    defaultCertificate: readDefaultCertificate(values.cert, values.key),
    handshakeTimeoutMs: DEFAULTS.tlsHandshakeTimeoutMs,
    accept: (socket) => proxy.acceptSecure(socket),
    logger,
  });
  httpsPort = (await https.listen('127.0.0.1', Number(values['https-port']))).port;
}
console.log(
  JSON.stringify({
    ready: true,
    port,
    httpsPort,
    routes: store.current!.routes.size,
    loadMs: Math.round(loadMs),
    rssMiB: mib(mem.rss),
    heapMiB: mib(mem.heapUsed),
    tableHeapMiB: mib(mem.heapUsed - base.heapUsed),
    decideNs: Math.round(decideNs),
    sink: sink > 0,
  }),
);
if (values['no-listen']) process.exit(0);
process.on('SIGUSR2', () => console.log(JSON.stringify({ probes: health.probes })));
// EDGEPROXY_BENCH_PROFILE=file.cpuprofile: a CPU profile of the serving phase only (not the load).
const profileTo = process.env.EDGEPROXY_BENCH_PROFILE;
if (profileTo !== undefined && profileTo !== '') {
  const { Session } = await import('node:inspector');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  session.post('Profiler.enable', () => session.post('Profiler.start'));
  process.on('SIGTERM', () =>
    session.post('Profiler.stop', (err, r) => {
      if (err === null) writeFileSync(profileTo, JSON.stringify(r.profile));
      process.exit(0);
    }),
  );
} else {
  process.on('SIGTERM', () => process.exit(0));
}
