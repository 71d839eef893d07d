import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startBackend, startProxy, type Backend, type TestProxy } from './support/backend.js';
import { connect, type HeldConnection } from './support/connections.js';
import { eventually } from './support/service.js';
import { openWs, startWsBackend, UPGRADE, type WsBackend } from './support/websocket.js';

/**
 * Draining (SIGTERM): one rule for both kinds of request. A plain request is served on a
 * connection that is then closed; a WebSocket upgrade is refused (503 `draining`) because the
 * long-lived connection it opens would be cut by the drain; at the deadline every connection left
 * is cut, upgraded ones included.
 */

let vm: Backend;
let slow: Backend;
let ws: WsBackend;
let p: TestProxy;
before(async () => {
  vm = await startBackend('vm');
  slow = await startBackend('slow', (_req, res) => {
    setTimeout(() => res.end('slow answer'), 300);
  });
  ws = await startWsBackend();
});
after(async () => {
  await vm.close();
  await slow.close();
  await ws.close();
});

async function freshProxy(): Promise<TestProxy> {
  p = await startProxy({});
  p.routes({ 'app.example': { vmPort: vm.port }, 'slow.example': { vmPort: slow.port }, 'ws.example': { vmPort: ws.port } });
  return p;
}

/**
 * Sends the head of a request in two parts and starts the drain in between, so the request
 * arrives on a connection that was busy (not idle) when the drain began. Resolves with all the
 * proxy sent until it closed the connection, and the drain's own result.
 */
function acrossDrainStart(
  proxy: TestProxy,
  first: string,
  rest: string,
  graceMs = 3000,
): Promise<{ text: string; closedByProxy: boolean; drained: Promise<boolean> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(proxy.port, '127.0.0.1');
    let text = '';
    let drained: Promise<boolean> | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closedByProxy: false, drained: drained! });
    }, 3000);
    socket.on('error', reject);
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('end', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closedByProxy: true, drained: drained! });
    });
    socket.on('connect', () => {
      socket.write(first);
      setTimeout(() => {
        drained = proxy.proxy.drain(graceMs);
        setTimeout(() => socket.write(rest), 50);
      }, 50);
    });
  });
}

describe('draining', () => {
  it('a plain request that arrives while draining is served, with Connection: close', async () => {
    const proxy = await freshProxy();
    try {
      const r = await acrossDrainStart(proxy, 'GET /late HTTP/1.1\r\nHost: app.example\r\n', '\r\n');
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.match(r.text, /\r\nconnection: close\r\n/i);
      assert.ok(r.text.includes('\r\nvm GET /late\r\n'), r.text);
      assert.equal(r.closedByProxy, true, 'the connection is not kept for another request');
      assert.equal(await r.drained, true);
      await eventually('observed', () => proxy.observed.requests.some((o) => o.kind === 'same-region' && o.status === 200));
    } finally {
      await proxy.close();
    }
  });

  it('a keep-alive connection idle when the drain begins: its next request is answered, with Connection: close', async () => {
    const proxy = await freshProxy();
    try {
      const c = await connect(proxy.port);
      assert.equal(await c.get('app.example'), 200);
      assert.match(c.lastHead, /\r\nconnection: keep-alive\r\n/i);
      const drained = proxy.proxy.drain(3000);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(await c.get('app.example'), 200);
      assert.match(c.lastHead, /\r\nconnection: close\r\n/i);
      await c.closed;
      assert.equal(await drained, true);
    } finally {
      await proxy.close();
    }
  });

  it('a request in flight when the drain begins is answered with Connection: close', async () => {
    const proxy = await freshProxy();
    try {
      const c = await connect(proxy.port);
      const answer = c.get('slow.example');
      await eventually('the request reached the VM', () => slow.proxied().length > 0);
      const drained = proxy.proxy.drain(3000);
      assert.equal(await answer, 200);
      assert.match(c.lastHead, /\r\nconnection: close\r\n/i);
      await c.closed;
      assert.equal(await drained, true);
    } finally {
      await proxy.close();
    }
  });

  it('a connection that stays idle is closed by the drain about a second in, and the drain ends', async () => {
    const proxy = await freshProxy();
    try {
      const c: HeldConnection = await connect(proxy.port);
      assert.equal(await c.get('app.example'), 200);
      const t0 = performance.now();
      assert.equal(await proxy.proxy.drain(10_000), true);
      await c.closed;
      const ms = performance.now() - t0;
      assert.ok(ms >= 900 && ms < 5000, `closed ${Math.round(ms)} ms after the drain began`);
    } finally {
      await proxy.close();
    }
  });

  it('an upgrade that arrives while draining: 503 "draining" with Retry-After and Connection: close, never forwarded', async () => {
    const proxy = await freshProxy();
    const upgrades = ws.upgrades.length;
    try {
      const head = UPGRADE('ws.example');
      const r = await acrossDrainStart(proxy, head.slice(0, 30), head.slice(30));
      assert.match(r.text, /^HTTP\/1\.1 503 /);
      assert.match(r.text, /\r\nRetry-After: 1\r\n/);
      assert.match(r.text, /\r\nConnection: close\r\n/);
      assert.ok(r.text.endsWith('\r\n\r\nService Unavailable - shutting down'), r.text);
      assert.equal(r.closedByProxy, true);
      assert.equal(ws.upgrades.length, upgrades, 'nothing reached the VM');
      assert.equal(proxy.health.probes, 0, 'not even a health probe');
      const seen = await eventually('observed', () => proxy.observed.requests.find((o) => o.kind === 'draining'));
      assert.equal(seen.status, 503);
      const line = await proxy.waitFor((l) => l.msg === 'upgrade refused: shutting down');
      assert.deepEqual([line.code, line.status, line.host, line.url], ['UPGRADE_DRAINING', 503, 'ws.example', '/chat']);
      assert.equal(await r.drained, true);
    } finally {
      await proxy.close();
    }
  });

  it('an open WebSocket is cut when the grace period is over, and the drain ends', async () => {
    const proxy = await freshProxy();
    try {
      const c = await openWs(proxy.port, 'ws.example');
      assert.match(c.head, /^HTTP\/1\.1 101 /);
      const closed = new Promise<void>((r) => c.socket.once('close', () => r()));
      const t0 = Date.now();
      const drained = await proxy.proxy.drain(300);
      const ms = Date.now() - t0;
      assert.equal(drained, false);
      assert.ok(ms >= 250 && ms < 1500, `drain ended after ${ms} ms`);
      await closed;
      await eventually('the upstream side closed too', () => ws.open() === 0);
      await eventually('observed with its 101', () => proxy.observed.requests.some((o) => o.kind === 'same-region' && o.status === 101));
    } finally {
      await proxy.close();
    }
  });

  it('a WebSocket that closes within the grace period lets the drain finish early', async () => {
    const proxy = await freshProxy();
    try {
      const c = await openWs(proxy.port, 'ws.example');
      const t0 = Date.now();
      const draining = proxy.proxy.drain(5000);
      c.socket.write('last words');
      assert.equal(await c.read(), 'last words', 'still flowing while draining');
      c.socket.end();
      assert.equal(await draining, true);
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      await proxy.close();
    }
  });
});
