import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../src/log/logger.js';
import { DEFAULTS } from '../src/config/config.js';
import { Forwarder } from '../src/proxy/forward.js';
import { HealthChecker } from '../src/proxy/health.js';
import { ProxyServer } from '../src/proxy/server.js';
import { RouteStore } from '../src/sync/route-store.js';
import { RouteTable } from '../src/table/route-table.js';
import { DEFAULT_SERVER_OPTIONS, defaultForwarderOptions, request } from './support/backend.js';
import { eventually, REGION_A, REGION_B } from './support/service.js';

/**
 * Plain requests' forwarding (src/proxy/forward-request.ts, undici) against upstreams that
 * misbehave at the byte level. Cross-region routes are used so that no health probe is involved:
 * every request goes straight to the upstream.
 */
let upstream: net.Server;
let upstreamPort = 0;
let openUpstreamSockets = 0;
let behaviour: (socket: net.Socket, head: string) => void = () => undefined;
const logLines: Record<string, unknown>[] = [];

before(async () => {
  upstream = net.createServer((socket) => {
    openUpstreamSockets += 1;
    socket.on('close', () => (openUpstreamSockets -= 1));
    socket.on('error', () => undefined);
    let head = '';
    socket.on('data', (c: Buffer) => {
      head += c.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        const h = head;
        head = '';
        behaviour(socket, h);
      }
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamPort = (upstream.address() as net.AddressInfo).port;
});

after(() => {
  upstream.close();
});

describe('forwarding plain requests', () => {
  let proxy: ProxyServer;
  let proxyPort = 0;
  let forwarder: Forwarder;
  let health: HealthChecker;

  before(async () => {
    const logger = createLogger('info', { write: (l: string) => logLines.push(JSON.parse(l) as Record<string, unknown>) });
    const store = new RouteStore();
    store.publish(
      RouteTable.from([
        ['bad.example', { host: 'bad.example', vmIp: '10.0.0.1', vmPort: 1, vmRegionId: REGION_B, regionPublicIp: '127.0.0.1' }],
      ]),
      'poll',
      { regionAddresses: new Set(['127.0.0.1']) },
    );
    health = new HealthChecker({ timeoutMs: DEFAULTS.healthTimeoutMs, cacheTtlMs: DEFAULTS.healthCacheTtlMs, logger });
    // Idle pooled upstream connections (e.g. one opened for a request whose client left before it
    // was sent) close after this; the socket counts below wait for them.
    forwarder = new Forwarder({ ...defaultForwarderOptions(), idleTimeoutMs: 500 });
    proxy = new ProxyServer({
      ...DEFAULT_SERVER_OPTIONS,
      store,
      health,
      forwarder,
      regionId: REGION_A,
      crossRegionPort: upstreamPort,
      logger,
    });
    proxyPort = (await proxy.listen('127.0.0.1', 0)).port;
  });

  after(async () => {
    await proxy.drain(100);
    forwarder.close();
    health.close();
  });

  const BAD_RESPONSES: Record<string, string> = {
    'status code below 100': 'HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok',
    'status code above 999': 'HTTP/1.1 1000 Odd\r\nContent-Length: 2\r\n\r\nok',
    'non-numeric status': 'HTTP/1.1 abc Odd\r\nContent-Length: 2\r\n\r\nok',
    'control character in a header value': 'HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\nok',
    'space in a header name': 'HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: 2\r\n\r\nok',
    'garbage instead of HTTP': 'SSH-2.0-OpenSSH_9.0\r\n\r\n',
    'both Content-Length and Transfer-Encoding':
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
  };

  describe('upstreams answering with invalid HTTP', () => {
    for (const [name, raw] of Object.entries(BAD_RESPONSES)) {
      it(`${name} → 502, and the proxy keeps serving`, async () => {
        behaviour = (socket) => socket.end(raw, 'latin1');
        const r = await request(proxyPort, { host: 'bad.example' });
        assert.equal(r.status, 502);
        assert.equal(r.body, 'Bad Gateway');
        behaviour = (socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
        const ok = await request(proxyPort, { host: 'bad.example' });
        assert.equal(ok.status, 200);
        assert.equal(ok.body, 'hello');
      });
    }
  });

  describe('clients that go away', () => {
    it('1,000 downloads aborted mid-body leave no upstream socket open and little memory behind', async () => {
      // The upstream starts an endless body and keeps writing while the socket is writable.
      behaviour = (socket) => {
        socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
        const chunk = `4000\r\n${'x'.repeat(0x4000)}\r\n`;
        const pump = () => {
          while (!socket.destroyed && socket.write(chunk));
        };
        socket.on('drain', pump);
        pump();
      };
      global.gc?.();
      const heapBefore = process.memoryUsage().heapUsed;
      const aborts: Promise<void>[] = [];
      for (let i = 0; i < 1000; i++) {
        aborts.push(
          new Promise<void>((resolve) => {
            const req = http.get(
              { host: '127.0.0.1', port: proxyPort, path: `/big/${i}`, headers: { host: 'bad.example' }, agent: false },
              (res) => {
                res.once('data', () => {
                  req.destroy();
                  resolve();
                });
              },
            );
            req.on('error', () => resolve());
          }),
        );
        if (aborts.length % 50 === 0) await Promise.all(aborts.slice(-50));
      }
      await Promise.all(aborts);
      await eventually('every upstream socket closed', () => openUpstreamSockets === 0, 5000);
      await eventually(
        'no client connection left on the proxy',
        () => (proxy.server as unknown as { _connections: number })._connections === 0,
        5000,
      );
      global.gc?.();
      const growth = process.memoryUsage().heapUsed - heapBefore;
      assert.ok(growth < 50 * 1024 * 1024, `heap grew by ${Math.round(growth / 1024 / 1024)} MiB`);
    });

    it('an upload aborted mid-body is aborted upstream too', async () => {
      let upstreamSawClose = false;
      behaviour = (socket) => socket.on('close', () => (upstreamSawClose = true));
      await new Promise<void>((resolve) => {
        const req = http.request({
          host: '127.0.0.1',
          port: proxyPort,
          method: 'POST',
          path: '/upload',
          headers: { host: 'bad.example', 'content-length': '1000000' },
          agent: false,
        });
        req.on('error', () => resolve());
        req.write(Buffer.alloc(10_000));
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 100);
      });
      await eventually('the upstream connection closed', () => upstreamSawClose && openUpstreamSockets === 0, 3000);
    });

    it('1,000 uploads aborted mid-body leave no upstream socket and no client connection open', async () => {
      // The upstream reads the upload and never answers.
      behaviour = () => undefined;
      let handlesBefore = 0;
      const handles = () => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
      handlesBefore = handles();
      for (let batch = 0; batch < 20; batch++) {
        await Promise.all(
          Array.from(
            { length: 50 },
            (_, i) =>
              new Promise<void>((resolve) => {
                const req = http.request({
                  host: '127.0.0.1',
                  port: proxyPort,
                  method: 'POST',
                  path: `/up/${batch}/${i}`,
                  headers: { host: 'bad.example', 'content-length': '100000' },
                  agent: false,
                });
                req.on('error', () => resolve());
                req.write(Buffer.alloc(5_000), () =>
                  setTimeout(() => {
                    req.destroy();
                    resolve();
                  }, 5),
                );
              }),
          ),
        );
      }
      await eventually('every upstream socket closed', () => openUpstreamSockets === 0, 5000);
      await eventually(
        'no client connection left on the proxy',
        () => (proxy.server as unknown as { _connections: number })._connections === 0,
        5000,
      );
      // Pooled keep-alive sockets may stay; nothing proportional to the 1,000 requests may.
      await eventually('no handle left per aborted request', () => handles() <= handlesBefore + 10, 5000);
    });

    it('an upstream that refuses a POST with a body → 502 to the client (the body is not lost in a crash)', async () => {
      const s = net.createServer();
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      const port = (s.address() as net.AddressInfo).port;
      await new Promise<void>((r) => s.close(() => r()));
      const logger = createLogger('info', { write: () => undefined });
      const store = new RouteStore();
      store.publish(
        RouteTable.from([
          ['x.example', { host: 'x.example', vmIp: '10.0.0.1', vmPort: 1, vmRegionId: REGION_B, regionPublicIp: '127.0.0.1' }],
        ]),
        'poll',
        { regionAddresses: new Set() },
      );
      const f = new Forwarder(defaultForwarderOptions());
      const p = new ProxyServer({
        ...DEFAULT_SERVER_OPTIONS,
        store,
        health,
        forwarder: f,
        regionId: REGION_A,
        crossRegionPort: port,
        logger,
      });
      const pp = (await p.listen('127.0.0.1', 0)).port;
      try {
        const r = await request(pp, { host: 'x.example', method: 'POST', body: Buffer.alloc(200_000, 1) });
        assert.equal(r.status, 502);
        assert.equal(r.body, 'Bad Gateway');
      } finally {
        await p.drain(100);
        f.close();
      }
    });
  });
});
