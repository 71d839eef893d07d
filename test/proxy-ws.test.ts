import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { closedPort, OTHER_REGION, rawExchange, startProxy, type TestProxy } from './support/backend.js';
import { eventually } from './support/service.js';

/**
 * WebSocket upgrades: same routing, health and error rules as plain requests; bytes flow both
 * ways once switched; closing either side closes the other; nothing is left open.
 */

interface WsBackend {
  port: number;
  upgrades: http.IncomingHttpHeaders[];
  open: () => number;
  /** What the next upgrade gets: 'echo' (101 then echo bytes), 'refuse' (403), 'silent'. */
  mode: 'echo' | 'refuse' | 'silent';
  close(): Promise<void>;
}

async function startWsBackend(): Promise<WsBackend> {
  const sockets = new Set<net.Socket>();
  const server = http.createServer((_req, res) => res.end('health ok'));
  const b: WsBackend = {
    port: 0,
    upgrades: [],
    open: () => sockets.size,
    mode: 'echo',
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    b.upgrades.push(req.headers);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (b.mode === 'refuse') {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nConnection: close\r\n\r\nno ws!');
      return;
    }
    if (b.mode === 'silent') {
      // Reads (so it sees the proxy hang up) but never answers; upgrade sockets are half-open.
      socket.resume();
      socket.on('end', () => socket.end());
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: test\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as net.AddressInfo).port;
  return b;
}

const UPGRADE = (host: string, extra = '') =>
  `GET /chat HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/** Opens an upgraded connection through the proxy; resolves once the 101 head arrived. */
function openWs(port: number, host: string): Promise<{ socket: net.Socket; head: string; read(): Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf = '';
    let waiter: ((s: string) => void) | undefined;
    let resolved = false;
    socket.on('error', reject);
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      if (!resolved) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        resolved = true;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        resolve({
          socket,
          head,
          read: () =>
            new Promise<string>((r) => {
              if (buf !== '') {
                const out = buf;
                buf = '';
                r(out);
              } else waiter = r;
            }),
        });
      } else if (waiter !== undefined) {
        const w = waiter;
        waiter = undefined;
        const out = buf;
        buf = '';
        w(out);
      }
    });
    socket.on('connect', () => socket.write(UPGRADE(host)));
  });
}

let ws: WsBackend;
let p: TestProxy;
before(async () => {
  ws = await startWsBackend();
  p = await startProxy({ crossRegionPort: ws.port, forwarder: { headerTimeoutMs: 400 } });
  p.routes({
    'near.example': { vmPort: ws.port },
    'far.example': { vmPort: 1, region: OTHER_REGION },
    'dead.example': { vmPort: await closedPort() },
  });
});
after(async () => {
  await p.close();
  await ws.close();
});

describe('WebSocket proxying', () => {
  it('same region: health-checked, switched to 101, bytes flow both ways, forwarded headers set', async () => {
    const c = await openWs(p.port, 'near.example');
    assert.match(c.head, /^HTTP\/1\.1 101 /);
    c.socket.write('hello over ws');
    assert.equal(await c.read(), 'hello over ws');
    const h = ws.upgrades.at(-1)!;
    assert.equal(h.host, 'near.example');
    assert.equal(h.upgrade, 'websocket');
    assert.match(String(h.connection), /upgrade/i);
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.match(String(h['x-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal(h['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==');
    assert.equal(h['cdn-loop'], undefined);
    // Quiet for longer than the upstream header timeout (400 ms): still open, still flowing.
    await new Promise((r) => setTimeout(r, 700));
    c.socket.write('still here');
    assert.equal(await c.read(), 'still here');
    c.socket.destroy();
  });

  it('cross region: marked with CDN-Loop; a marked upgrade that would cross again → 508', async () => {
    const c = await openWs(p.port, 'far.example');
    assert.match(c.head, /^HTTP\/1\.1 101 /);
    assert.equal(ws.upgrades.at(-1)!['cdn-loop'], 'edgeproxy');
    c.socket.destroy();
    const r = await rawExchange(p.port, [UPGRADE('far.example', 'CDN-Loop: edgeproxy\r\n')]);
    assert.match(r.text, /^HTTP\/1\.1 508 /);
    assert.ok(r.text.endsWith('Loop Detected'));
  });

  it('unknown host → 404, missing Host → 400, a VM failing its probe → 503', async () => {
    const nf = await rawExchange(p.port, [UPGRADE('nowhere.example')]);
    assert.match(nf.text, /^HTTP\/1\.1 404 /);
    assert.ok(nf.text.endsWith('Service Not Found'));
    const noHost = await rawExchange(p.port, ['GET /chat HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n']);
    assert.match(noHost.text, /^HTTP\/1\.1 400 /);
    const dead = await rawExchange(p.port, [UPGRADE('dead.example')]);
    assert.match(dead.text, /^HTTP\/1\.1 503 /, 'the probe finds nothing listening');
    assert.ok(dead.text.endsWith('Service Unavailable - VM not responding'));
  });

  it('an upstream that refuses the upgrade: its answer is relayed', async () => {
    ws.mode = 'refuse';
    try {
      const r = await rawExchange(p.port, [UPGRADE('near.example')]);
      assert.match(r.text, /^HTTP\/1\.1 403 /);
      assert.ok(r.text.includes('no ws!'));
    } finally {
      ws.mode = 'echo';
    }
  });

  it('an upstream that never answers the upgrade → 504', async () => {
    ws.mode = 'silent';
    try {
      const r = await rawExchange(p.port, [UPGRADE('near.example')], { timeoutMs: 3000 });
      assert.match(r.text, /^HTTP\/1\.1 504 /);
    } finally {
      ws.mode = 'echo';
    }
  });

  it('closing either side closes the other; 200 connections leave nothing open', async () => {
    const conns = await Promise.all(Array.from({ length: 200 }, () => openWs(p.port, 'near.example')));
    await eventually('all upstream sockets open', () => ws.open() >= 200);
    // Half closed by the client, half by the upstream.
    conns.slice(0, 100).forEach((c) => c.socket.destroy());
    const closedByUpstream = conns.slice(100).map((c) => new Promise<void>((r) => c.socket.once('close', () => r())));
    await eventually('client-closed ones gone upstream', () => ws.open() <= 100);
    await ws.close();
    await Promise.all(closedByUpstream);
    const count = () => new Promise<number>((r) => p.proxy.server.getConnections((_e, n) => r(n)));
    await eventually('no connection left on the proxy', async () => (await count()) === 0);
    ws = await startWsBackend();
    p.routes({ 'near.example': { vmPort: ws.port } });
  });
});
