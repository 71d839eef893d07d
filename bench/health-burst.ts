// Health probes per check under a burst and at a steady rate, with and without the cache.
// Run: node --import tsx bench/health-burst.ts   (prints one JSON line per scenario)
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { HealthChecker } from '../src/proxy/health.js';

const logger = pino({ level: 'silent' });

async function server(delayMs: number) {
  let requests = 0;
  let connections = 0;
  const s = http.createServer((_req, res) => {
    requests++;
    if (delayMs > 0) setTimeout(() => res.end('ok'), delayMs);
    else res.end('ok');
  });
  s.on('connection', () => connections++);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  return {
    port,
    stats: () => ({ requests, connections }),
    close: () =>
      new Promise<void>((r) => {
        s.closeAllConnections();
        s.close(() => r());
      }),
  };
}

async function burst(ttl: number, delayMs: number, n: number) {
  const srv = await server(delayMs);
  const c = new HealthChecker({ timeoutMs: 2000, cacheTtlMs: ttl, logger });
  const target = { ip: '127.0.0.1', port: srv.port };
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: n }, () => c.check(target)));
  const ms = performance.now() - t0;
  const healthy = results.filter((r) => r.healthy).length;
  const out = {
    ttl,
    backendDelayMs: delayMs,
    checks: n,
    probes: c.probes,
    serverRequests: srv.stats().requests,
    connections: srv.stats().connections,
    probesPerCheck: c.probes / n,
    healthy,
    unhealthy: n - healthy,
    wallMs: Math.round(ms),
  };
  c.close();
  await srv.close();
  return out;
}

// Sustained: `rate` checks per second for `seconds`, spread in 10 ms ticks.
async function sustained(ttl: number, delayMs: number, rate: number, seconds: number) {
  const srv = await server(delayMs);
  const c = new HealthChecker({ timeoutMs: 2000, cacheTtlMs: ttl, logger });
  const target = { ip: '127.0.0.1', port: srv.port };
  const perTick = rate / 100;
  const pending: Promise<unknown>[] = [];
  const t0 = performance.now();
  let checks = 0;
  while (performance.now() - t0 < seconds * 1000) {
    for (let i = 0; i < perTick; i++) {
      pending.push(c.check(target));
      checks++;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const results = (await Promise.all(pending)) as { healthy: boolean }[];
  const healthy = results.filter((r) => r.healthy).length;
  const out = {
    ttl,
    backendDelayMs: delayMs,
    ratePerS: rate,
    seconds,
    checks,
    probes: c.probes,
    serverRequests: srv.stats().requests,
    probesPerCheck: +(c.probes / checks).toFixed(5),
    unhealthy: checks - healthy,
  };
  c.close();
  await srv.close();
  return out;
}

for (const delay of [0, 50]) for (const ttl of [1000, 0]) console.log(JSON.stringify(await burst(ttl, delay, 1000)));
for (const ttl of [1000, 0]) console.log(JSON.stringify(await sustained(ttl, 5, 1000, 5)));
