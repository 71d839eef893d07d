import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { pino, type Logger } from 'pino';
import { HealthChecker, HEALTH_USER_AGENT, type HealthCheckerOptions, type HealthTarget } from '../src/proxy/health.js';

// ---------------------------------------------------------------------------------------------
// Helpers: real servers that record what they saw, a capturing logger, a manual clock.
// ---------------------------------------------------------------------------------------------

interface Seen {
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly host: string | undefined;
  readonly userAgent: string | undefined;
}

interface TestServer {
  readonly target: HealthTarget;
  readonly requests: Seen[];
  /** Connections accepted so far. */
  readonly connections: () => number;
  /** Connections currently open on the server side. */
  readonly open: () => number;
  close(): Promise<void>;
}

const servers: TestServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

function track(server: net.Server, host: string, requests: Seen[]): Promise<TestServer> {
  let total = 0;
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    total++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      const address = server.address() as net.AddressInfo;
      let closing: Promise<void> | undefined;
      const ts: TestServer = {
        target: { ip: host, port: address.port },
        requests,
        connections: () => total,
        open: () => sockets.size,
        close: () => {
          closing ??= new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          });
          return closing;
        },
      };
      servers.push(ts);
      resolve(ts);
    });
  });
}

/** An HTTP server; `handler` may leave a request unanswered (a hung backend). */
function startServer(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void, host = '127.0.0.1'): Promise<TestServer> {
  const requests: Seen[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method, url: req.url, host: req.headers.host, userAgent: req.headers['user-agent'] });
    handler(req, res);
  });
  return track(server, host, requests);
}

function statusServer(status: number, headers: http.OutgoingHttpHeaders = {}, host = '127.0.0.1'): Promise<TestServer> {
  return startServer((_req, res) => {
    res.writeHead(status, headers);
    res.end('body');
  }, host);
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

interface LogRecord {
  level: number;
  msg: string;
  [field: string]: unknown;
}

function captureLogger(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line) as LogRecord) });
  return { logger, records };
}

const silent = pino({ level: 'silent' });

/** A checker closed automatically at the end of the file. */
function checker(opts: Partial<HealthCheckerOptions> = {}): HealthChecker {
  const c = new HealthChecker({ timeoutMs: 2000, cacheTtlMs: 1000, logger: silent, ...opts });
  after(() => c.close());
  return c;
}

function manualClock(start = 1_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------

describe('HealthChecker verdicts', () => {
  it('200 is healthy; the server sees GET / with Host ip:port and the user agent', async () => {
    const s = await statusServer(200);
    const c = checker();
    assert.deepEqual(await c.check(s.target), { healthy: true, status: 200 });
    assert.deepEqual(s.requests, [{ method: 'GET', url: '/', host: `127.0.0.1:${s.target.port}`, userAgent: HEALTH_USER_AGENT }]);
    assert.equal(c.probes, 1);
  });

  it('3xx is healthy by itself: redirects are never followed', async () => {
    const landing = await statusServer(200);
    const moved = await statusServer(301, { Location: `http://127.0.0.1:${landing.target.port}/landing` });
    const login = await statusServer(302, { Location: '/login' });
    const c = checker();
    assert.deepEqual(await c.check(moved.target), { healthy: true, status: 301 });
    assert.deepEqual(await c.check(login.target), { healthy: true, status: 302 });
    await delay(50);
    assert.equal(landing.requests.length, 0, 'redirect target requested');
    assert.deepEqual(
      moved.requests.map((r) => r.url),
      ['/'],
    );
    assert.deepEqual(
      login.requests.map((r) => r.url),
      ['/'],
    );
  });

  it('404 and 500 are unhealthy with their status', async () => {
    const notFound = await statusServer(404);
    const broken = await statusServer(500);
    const c = checker();
    assert.deepEqual(await c.check(notFound.target), { healthy: false, status: 404, reason: 'status 404' });
    assert.deepEqual(await c.check(broken.target), { healthy: false, status: 500, reason: 'status 500' });
    assert.equal(notFound.requests[0]?.method, 'GET');
    assert.equal(broken.requests[0]?.url, '/');
  });

  it('a closed port is unhealthy: ECONNREFUSED, no status', async () => {
    const c = checker();
    assert.deepEqual(await c.check({ ip: '127.0.0.1', port: await closedPort() }), {
      healthy: false,
      reason: 'ECONNREFUSED',
    });
  });

  it('an invalid port resolves unhealthy instead of throwing', async () => {
    const c = checker();
    const result = await c.check({ ip: '127.0.0.1', port: 70_000 });
    assert.equal(result.healthy, false);
    assert.equal(c.probes, 1);
  });

  it('a backend that accepts and never answers is unhealthy after ~timeoutMs, and its socket is closed', async () => {
    const s = await startServer(() => {
      // never answer
    });
    const c = checker({ timeoutMs: 200 });
    const t0 = performance.now();
    const result = await c.check(s.target);
    const elapsed = performance.now() - t0;
    assert.deepEqual(result, { healthy: false, reason: 'timeout after 200 ms' });
    assert.ok(elapsed >= 190 && elapsed < 1000, `elapsed ${elapsed} ms`);
    assert.equal(s.requests.length, 1);
    await waitFor('server connection closed', () => s.open() === 0);
  });

  it('judges on headers: a body that never ends gives a verdict at once and the socket is not leaked', async () => {
    const s = await startServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('partial'); // and never end
    });
    const c = checker({ timeoutMs: 300, cacheTtlMs: 0 });
    const t0 = performance.now();
    assert.deepEqual(await c.check(s.target), { healthy: true, status: 200 });
    assert.ok(performance.now() - t0 < 250, 'verdict waited for the body');
    await waitFor('hung-body connection destroyed', () => s.open() === 0, 1500);
  });

  it('a large body is cut off rather than drained', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 'x');
    const s = await startServer((_req, res) => {
      res.writeHead(500, { 'Content-Length': big.length });
      res.end(big);
    });
    const c = checker({ timeoutMs: 2000, cacheTtlMs: 0 });
    assert.deepEqual(await c.check(s.target), { healthy: false, status: 500, reason: 'status 500' });
    await waitFor('connection dropped', () => s.open() === 0, 1500);
  });

  it('reuses a keep-alive connection for successive probes', async () => {
    const s = await statusServer(200);
    const c = checker({ cacheTtlMs: 0 });
    for (let i = 0; i < 5; i++) assert.equal((await c.check(s.target)).healthy, true);
    assert.equal(s.requests.length, 5);
    assert.equal(s.connections(), 1);
  });

  it('retries once on a fresh connection when a pooled socket was closed by the backend', async () => {
    // First request on each connection is answered (keep-alive); anything later on the same
    // connection gets a reset, as when the backend's idle timeout races our reuse.
    let answered = 0;
    const server = net.createServer((socket) => {
      let served = false;
      socket.on('data', () => {
        if (served) {
          socket.resetAndDestroy();
          return;
        }
        served = true;
        answered++;
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok');
      });
      socket.on('error', () => {});
    });
    const s = await track(server, '127.0.0.1', []);
    const c = checker({ cacheTtlMs: 0 });
    assert.deepEqual(await c.check(s.target), { healthy: true, status: 200 });
    assert.deepEqual(await c.check(s.target), { healthy: true, status: 200 });
    assert.equal(answered, 2);
    assert.equal(s.connections(), 2);
    assert.equal(c.probes, 2, 'the retry is part of the same probe');
  });
});

describe('HealthChecker over IPv6', () => {
  it('probes [::1] with a bracketed Host header (or proves ::1 is unavailable here)', async () => {
    let s: TestServer;
    try {
      s = await statusServer(204, {}, '::1');
    } catch (err) {
      // No IPv6 loopback on this machine: assert that is what happened, not some other failure.
      assert.ok(['EADDRNOTAVAIL', 'EAFNOSUPPORT', 'EINVAL'].includes((err as NodeJS.ErrnoException).code ?? ''), String(err));
      return;
    }
    const c = checker();
    assert.deepEqual(await c.check(s.target), { healthy: true, status: 204 });
    assert.deepEqual(s.requests, [{ method: 'GET', url: '/', host: `[::1]:${s.target.port}`, userAgent: HEALTH_USER_AGENT }]);
    assert.deepEqual(await c.check({ ip: '::1', port: await closedPort() }), { healthy: false, reason: 'ECONNREFUSED' });
  });
});

describe('HealthChecker cache', () => {
  it('two checks within the TTL make one probe; after the TTL a new probe runs', async () => {
    const s = await statusServer(200);
    const clock = manualClock();
    const c = checker({ cacheTtlMs: 1000, now: clock.now });
    assert.equal((await c.check(s.target)).healthy, true);
    clock.advance(999);
    assert.equal((await c.check(s.target)).healthy, true);
    assert.equal(c.probes, 1);
    assert.equal(s.requests.length, 1);
    clock.advance(1);
    assert.equal((await c.check(s.target)).healthy, true);
    assert.equal(c.probes, 2);
    assert.equal(s.requests.length, 2);
  });

  it('the TTL runs from when the probe finished', async () => {
    const clock = manualClock();
    let release: (() => void) | undefined;
    const s = await startServer((_req, res) => {
      release = () => res.end();
    });
    const c = checker({ cacheTtlMs: 1000, now: clock.now });
    const pending = c.check(s.target);
    await waitFor('request arrived', () => release !== undefined);
    clock.advance(5000); // a slow probe
    release?.();
    await pending;
    clock.advance(999);
    await c.check(s.target);
    assert.equal(c.probes, 1);
  });

  it('a fresh result is returned without a new promise', async () => {
    const s = await statusServer(200);
    const c = checker({ cacheTtlMs: 60_000 });
    await c.check(s.target);
    assert.equal(c.check(s.target), c.check(s.target));
  });

  it('50 concurrent checks share exactly one probe', async () => {
    const s = await startServer((_req, res) => {
      setTimeout(() => res.end('ok'), 30);
    });
    const c = checker({ cacheTtlMs: 1000 });
    const results = await Promise.all(Array.from({ length: 50 }, () => c.check(s.target)));
    assert.equal(c.probes, 1);
    assert.equal(s.requests.length, 1);
    for (const r of results) assert.deepEqual(r, { healthy: true, status: 200 });
  });

  it('TTL 0: 50 concurrent checks make 50 probes, and sequential checks each probe', async () => {
    const s = await startServer((_req, res) => {
      setTimeout(() => res.end('ok'), 5);
    });
    const c = checker({ cacheTtlMs: 0 });
    const results = await Promise.all(Array.from({ length: 50 }, () => c.check(s.target)));
    assert.equal(c.probes, 50);
    assert.equal(s.requests.length, 50);
    for (const r of results) assert.deepEqual(r, { healthy: true, status: 200 });
    await c.check(s.target);
    await c.check(s.target);
    assert.equal(c.probes, 52);
    assert.equal(s.requests.length, 52);
    // Probe per request, as the original did: no probe waits for another's connection.
    assert.equal(s.connections(), 50);
  });

  it('caches unhealthy results too', async () => {
    const s = await statusServer(503);
    const c = checker({ cacheTtlMs: 60_000 });
    await c.check(s.target);
    assert.deepEqual(await c.check(s.target), { healthy: false, status: 503, reason: 'status 503' });
    assert.equal(s.requests.length, 1);
  });

  it('keys by ip and port', async () => {
    const a = await statusServer(200);
    const b = await statusServer(500);
    const c = checker({ cacheTtlMs: 60_000 });
    assert.equal((await c.check(a.target)).healthy, true);
    assert.equal((await c.check(b.target)).healthy, false);
    assert.equal(c.probes, 2);
  });

  it('markUnhealthy: the next check is unhealthy without a probe; after the TTL a probe makes it healthy', async () => {
    const s = await statusServer(200);
    const clock = manualClock();
    const c = checker({ cacheTtlMs: 1000, now: clock.now });
    assert.equal((await c.check(s.target)).healthy, true);
    c.markUnhealthy(s.target, 'ECONNRESET');
    assert.deepEqual(await c.check(s.target), { healthy: false, reason: 'marked by proxy: ECONNRESET' });
    clock.advance(999);
    assert.equal((await c.check(s.target)).healthy, false);
    assert.equal(c.probes, 1);
    assert.equal(s.requests.length, 1);
    clock.advance(1);
    assert.deepEqual(await c.check(s.target), { healthy: true, status: 200 });
    assert.equal(c.probes, 2);
    assert.equal(s.requests.length, 2);
  });

  it('markUnhealthy on a VM never probed works too', async () => {
    const s = await statusServer(200);
    const c = checker({ cacheTtlMs: 60_000 });
    c.markUnhealthy(s.target, 'ECONNREFUSED');
    assert.deepEqual(await c.check(s.target), { healthy: false, reason: 'marked by proxy: ECONNREFUSED' });
    assert.equal(c.probes, 0);
    assert.equal(s.requests.length, 0);
  });

  it('a probe in flight during markUnhealthy answers its waiters but does not overwrite the mark', async () => {
    const clock = manualClock();
    let release: (() => void) | undefined;
    const s = await startServer((_req, res) => {
      release = () => res.end('ok');
    });
    const c = checker({ cacheTtlMs: 1000, now: clock.now });
    const before = c.check(s.target);
    await waitFor('probe in flight', () => release !== undefined);
    c.markUnhealthy(s.target, 'ECONNRESET');
    assert.equal((await c.check(s.target)).healthy, false, 'a check after the mark must not join the old probe');
    release?.();
    assert.deepEqual(await before, { healthy: true, status: 200 });
    assert.deepEqual(await c.check(s.target), { healthy: false, reason: 'marked by proxy: ECONNRESET' });
    assert.equal(c.probes, 1);
  });

  it('TTL 0: markUnhealthy is recorded for diagnostics but every check still probes', async () => {
    const s = await statusServer(200);
    const c = checker({ cacheTtlMs: 0 });
    c.markUnhealthy(s.target, 'ECONNRESET');
    assert.equal(c.last(s.target)?.result.healthy, false);
    assert.deepEqual(await c.check(s.target), { healthy: true, status: 200 });
    assert.equal(c.probes, 1);
    assert.equal(c.last(s.target)?.result.healthy, true);
  });

  it('last() gives the last result, when it was recorded and its age', async () => {
    const s = await statusServer(500);
    const clock = manualClock(5_000);
    const c = checker({ cacheTtlMs: 1000, now: clock.now });
    assert.equal(c.last(s.target), undefined);
    await c.check(s.target);
    clock.advance(250);
    assert.deepEqual(c.last(s.target), {
      result: { healthy: false, status: 500, reason: 'status 500' },
      checkedAt: 5_000,
      ageMs: 250,
    });
  });

  it('prunes entries older than max(ttl * 10, 60 s) when new VMs come in', () => {
    const clock = manualClock();
    const c = checker({ cacheTtlMs: 1000, now: clock.now });
    const old = { ip: '10.0.0.1', port: 8080 };
    const recent = { ip: '10.0.0.2', port: 8080 };
    c.markUnhealthy(old, 'ECONNRESET');
    clock.advance(30_000);
    c.markUnhealthy(recent, 'ECONNRESET');
    clock.advance(30_000);
    c.markUnhealthy({ ip: '10.0.0.3', port: 8080 }, 'ECONNRESET'); // insert: prune pass
    assert.equal(c.last(old), undefined);
    assert.notEqual(c.last(recent), undefined);
    // Many VMs coming and going: a prune pass also runs every 256 inserts.
    for (let i = 0; i < 300; i++) c.markUnhealthy({ ip: '10.1.0.1', port: 10_000 + i }, 'x');
    clock.advance(60_000);
    for (let i = 0; i < 256; i++) c.markUnhealthy({ ip: '10.2.0.1', port: 10_000 + i }, 'x');
    assert.equal(c.last({ ip: '10.1.0.1', port: 10_000 }), undefined);
    assert.equal(c.last({ ip: '10.1.0.1', port: 10_299 }), undefined);
  });

  it('rejects invalid options', () => {
    assert.throws(() => new HealthChecker({ timeoutMs: 0, cacheTtlMs: 0, logger: silent }), RangeError);
    assert.throws(() => new HealthChecker({ timeoutMs: 2000, cacheTtlMs: -1, logger: silent }), RangeError);
    assert.throws(() => new HealthChecker({ timeoutMs: 2000, cacheTtlMs: Number.NaN, logger: silent }), RangeError);
  });
});

describe('HealthChecker logging', () => {
  it('debug per probe, warn on turning unhealthy (once), info on recovery', async () => {
    let status = 500;
    const s = await startServer((_req, res) => {
      res.statusCode = status;
      res.end();
    });
    const clock = manualClock();
    const { logger, records } = captureLogger();
    const c = checker({ cacheTtlMs: 1000, now: clock.now, logger });
    const target = `127.0.0.1:${s.target.port}`;

    await c.check(s.target);
    const probe = records.find((r) => r.msg === 'health probe');
    assert.ok(probe);
    assert.equal(probe.level, 20);
    assert.deepEqual(
      { target: probe.target, healthy: probe.healthy, status: probe.status, reason: probe.reason },
      { target, healthy: false, status: 500, reason: 'status 500' },
    );
    assert.equal(typeof probe.durationMs, 'number');
    const warns = () => records.filter((r) => r.msg === 'vm unhealthy');
    assert.equal(warns().length, 1);
    assert.equal(warns()[0]?.level, 40);
    assert.equal(warns()[0]?.previous, 'unknown');
    assert.equal(warns()[0]?.target, target);

    clock.advance(1000);
    await c.check(s.target); // still unhealthy: no second warn
    assert.equal(warns().length, 1);

    status = 200;
    clock.advance(1000);
    await c.check(s.target);
    const recovered = records.filter((r) => r.msg === 'vm healthy again');
    assert.equal(recovered.length, 1);
    assert.equal(recovered[0]?.level, 30);
    const healthyProbe = records.filter((r) => r.msg === 'health probe').at(-1);
    assert.deepEqual(
      { healthy: healthyProbe?.healthy, status: healthyProbe?.status, reason: healthyProbe?.reason },
      { healthy: true, status: 200, reason: null },
    );

    c.markUnhealthy(s.target, 'ECONNRESET'); // healthy -> unhealthy
    assert.equal(warns().length, 2);
    assert.equal(warns()[1]?.previous, 'healthy');
    assert.equal(warns()[1]?.source, 'passive');
    assert.equal(records.filter((r) => r.msg === 'health probe').length, 3);
  });
});

describe('HealthChecker.close', () => {
  it('resolves probes in flight as closed and leaves no open sockets', async () => {
    const hung = await startServer(() => {
      // never answer
    });
    const ok = await statusServer(200);
    const c = checker({ timeoutMs: 5000, cacheTtlMs: 1000 });
    assert.equal((await c.check(ok.target)).healthy, true); // leaves a pooled keep-alive socket
    assert.equal(ok.open(), 1);
    const pending = [c.check(hung.target), c.check(hung.target), c.check(hung.target)];
    await waitFor('probe reached the hung server', () => hung.requests.length === 1);
    const t0 = performance.now();
    c.close();
    for (const r of await Promise.all(pending)) assert.deepEqual(r, { healthy: false, reason: 'closed' });
    assert.ok(performance.now() - t0 < 500);
    await waitFor('all server connections closed', () => hung.open() === 0 && ok.open() === 0);
    // After close: no probing.
    assert.deepEqual(await c.check(ok.target), { healthy: false, reason: 'closed' });
    assert.equal(c.probes, 2);
    assert.equal(ok.requests.length, 1);
  });

  it('TTL 0: every concurrent probe has its own connection, and close() cancels them all', async () => {
    const hung = await startServer(() => {
      // never answer
    });
    const c = checker({ timeoutMs: 5000, cacheTtlMs: 0 });
    const pending = Array.from({ length: 10 }, () => c.check(hung.target));
    await waitFor('10 probes in flight', () => hung.requests.length === 10);
    c.close();
    for (const r of await Promise.all(pending)) assert.deepEqual(r, { healthy: false, reason: 'closed' });
    await waitFor('all server connections closed', () => hung.open() === 0);
    await delay(100);
    assert.equal(hung.open(), 0);
    assert.equal(hung.connections(), 10);
    assert.equal(hung.requests.length, 10);
  });
});

describe('peek (the request path fast path)', () => {
  it('returns a fresh result; a just-expired healthy one while one background probe refreshes it; never an expired unhealthy one', async () => {
    let status = 200;
    let probes = 0;
    const server = http.createServer((_req, res) => {
      probes++;
      res.writeHead(status).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const target = { ip: '127.0.0.1', port: (server.address() as { port: number }).port };
    let clock = 0;
    const c = new HealthChecker({ timeoutMs: 500, cacheTtlMs: 1000, logger: pino({ level: 'silent' }), now: () => clock });
    try {
      assert.equal(c.peek(target), undefined, 'nothing cached yet');
      assert.equal((await c.check(target)).healthy, true);
      assert.equal(probes, 1);
      clock = 999;
      assert.equal(c.peek(target)?.healthy, true);
      assert.equal(probes, 1, 'fresh: no probe');
      clock = 1200; // expired, within TTL + timeout: served, one refresh started
      status = 500;
      assert.equal(c.peek(target)?.healthy, true);
      assert.equal(c.peek(target)?.healthy, true);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(probes, 2, 'exactly one background probe');
      assert.equal(c.peek(target)?.healthy, false, 'the refresh found it unhealthy');
      clock = 2300 + 1000; // the unhealthy result expired: never served stale
      assert.equal(c.peek(target), undefined);
      clock = 10_000; // long idle: even a healthy result is too old to use
      status = 200;
      assert.equal((await c.check(target)).healthy, true);
      clock = 10_000 + 1000 + 500;
      assert.equal(c.peek(target), undefined, 'more than TTL + timeout old');
    } finally {
      c.close();
      server.close();
    }
  });
});
