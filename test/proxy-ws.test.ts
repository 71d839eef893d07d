import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { RouteStore } from '../src/sync/route-store.js';
import { closedPort, OTHER_REGION, rawExchange, request, startBlackhole, startProxy, type TestProxy } from './support/backend.js';
import { eventually } from './support/service.js';
import { openWs, startWsBackend, UPGRADE, type WsBackend } from './support/websocket.js';

/**
 * WebSocket upgrades: same routing, health and error rules as plain requests; bytes flow both
 * ways once switched; closing either side closes the other; nothing is left open.
 */

let ws: WsBackend;
let p: TestProxy;
before(async () => {
  ws = await startWsBackend();
  p = await startProxy({ crossRegionPort: ws.port, forwarder: { headerTimeoutMs: 400 } });
  deadPort = await closedPort();
  routeAll();
});

let deadPort = 0;
/** The table of `p`; `near.example` goes to the current `ws` (a test replaces it). */
function routeAll(): void {
  p.routes({
    'near.example': { vmPort: ws.port },
    'far.example': { vmPort: 1, region: OTHER_REGION },
    'dead.example': { vmPort: deadPort },
  });
}
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

  it('an upstream that refuses the upgrade: its answer is relayed on a closing connection, observed with its status', async () => {
    ws.mode = 'refuse';
    const q = await startProxy({});
    try {
      q.routes({ 'near.example': { vmPort: ws.port } });
      const r = await rawExchange(q.port, [UPGRADE('near.example')]);
      assert.match(r.text, /^HTTP\/1\.1 403 /);
      assert.ok(r.text.includes('no ws!'));
      assert.match(r.text, /\r\nconnection: close\r\n/i);
      assert.doesNotMatch(r.text, /\r\nconnection: upgrade/i);
      const seen = await eventually('the refusal observed', () => q.observed.requests[0]);
      assert.equal(q.observed.requests.length, 1);
      assert.equal(seen.kind, 'same-region');
      assert.equal(seen.status, 403, "the VM's status, not 499");
      assert.ok(seen.upstreamSeconds !== undefined && seen.upstreamSeconds <= seen.seconds);
      const routed = await q.waitFor((l) => l.msg === 'request routed');
      assert.equal(routed.status, 403);
      assert.equal(routed.completed, true);
    } finally {
      ws.mode = 'echo';
      await q.close();
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
    routeAll();
  });
});

describe('WebSocket upgrades: health fast path, timeouts, clients that leave', () => {
  it('an upgrade to a VM whose health was just checked uses the cached result: no probe, no wait', async () => {
    const q = await startProxy({ healthCacheTtlMs: 300 });
    try {
      q.routes({ 'near.example': { vmPort: ws.port } });
      assert.equal((await request(q.port, { host: 'near.example' })).status, 200);
      assert.equal(q.health.probes, 1);
      const fresh = await openWs(q.port, 'near.example');
      assert.match(fresh.head, /^HTTP\/1\.1 101 /);
      fresh.socket.destroy();
      assert.equal(q.health.probes, 1, 'the fresh result served the upgrade');
      // Just expired (by less than one probe timeout): the last healthy result is used at once
      // and one probe refreshes it in the background. That probe hangs here: an upgrade that
      // waited for it would get nothing for the whole probe timeout (2 s), then 503.
      await new Promise((r) => setTimeout(r, 400));
      ws.healthHangs = true;
      const t0 = Date.now();
      const stale = await openWs(q.port, 'near.example');
      const ms = Date.now() - t0;
      assert.match(stale.head, /^HTTP\/1\.1 101 /);
      assert.ok(ms < 1000, `switched after ${ms} ms`);
      assert.equal(q.health.probes, 2, 'one background refresh');
      stale.socket.destroy();
    } finally {
      ws.healthHangs = false;
      await q.close();
    }
  });

  it('connect timeout → 502 within the timeout, logged with code UPSTREAM_CONNECT_TIMEOUT', async () => {
    const blackhole = await startBlackhole();
    const q = await startProxy({ crossRegionPort: blackhole.port, forwarder: { connectTimeoutMs: 300 } });
    try {
      q.routes({ 'far.example': { vmPort: 1, region: OTHER_REGION } });
      const r = await rawExchange(q.port, [UPGRADE('far.example')], { timeoutMs: 4000 });
      assert.match(r.text, /^HTTP\/1\.1 502 /);
      assert.ok(r.text.endsWith('Bad Gateway'));
      assert.ok(r.ms >= 250 && r.ms < 2000, `answered after ${r.ms} ms`);
      const line = await q.waitFor((l) => l.msg === 'proxy error');
      const err = line.err as { code: string; message: string; connectionFailed: boolean };
      assert.deepEqual(
        [err.code, err.message, err.connectionFailed],
        ['UPSTREAM_CONNECT_TIMEOUT', 'connect took longer than 300 ms', false],
      );
      await eventually('observed', () => q.observed.requests.some((o) => o.kind === 'cross-region' && o.status === 502));
    } finally {
      await q.close();
      await blackhole.close();
    }
  });

  it('a client whose connection resets before the upstream answered: the upstream request is aborted, nothing is logged as a proxy error', async () => {
    const q = await startProxy({});
    ws.mode = 'silent';
    try {
      q.routes({ 'near.example': { vmPort: ws.port } });
      const upgrades = ws.upgrades.length;
      const client = net.connect(q.port, '127.0.0.1');
      client.on('error', () => undefined);
      client.write(UPGRADE('near.example'));
      await eventually('the upgrade reached the VM', () => ws.upgrades.length > upgrades && ws.open() === 1);
      client.resetAndDestroy();
      await eventually('the upstream connection closed', () => ws.open() === 0, 2000);
      const seen = await eventually('observed', () => q.observed.requests.find((o) => o.kind === 'same-region'));
      assert.equal(seen.status, 499);
      assert.equal(q.logs.filter((l) => l.msg === 'proxy error' || l.msg === 'vm unhealthy' || l.level === 'error').length, 0);
    } finally {
      ws.mode = 'echo';
      await q.close();
    }
  });
});

describe('one request flow: plain requests and upgrades log the same lines', () => {
  /** The fields of a log line, without the ones every line has. */
  const fields = (l: Record<string, unknown>) =>
    Object.keys(l)
      .filter((k) => !['time', 'level', 'pid', 'hostname', 'service'].includes(k))
      .sort();
  const plain = (q: TestProxy, host: string, path: string, headers: Record<string, string> = {}) =>
    rawExchange(q.port, [
      `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n${Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')}\r\n`,
    ]);
  const upgrade = (q: TestProxy, host: string, path: string, headers: Record<string, string> = {}) =>
    rawExchange(
      q.port,
      [
        UPGRADE(
          host,
          Object.entries(headers)
            .map(([k, v]) => `${k}: ${v}\r\n`)
            .join(''),
        ).replace('GET /chat ', `GET ${path} `),
      ],
      // A switched connection stays open: the client hangs up after a second.
      { timeoutMs: 1000 },
    );

  /** Runs one case as a plain request and as an upgrade; returns the two `msg` lines it logged. */
  async function both(q: TestProxy, msg: string, send: (via: typeof plain) => Promise<{ text: string }>, url?: string) {
    const lines: Record<string, unknown>[] = [];
    for (const via of [plain, upgrade]) {
      const from = q.logs.length;
      const r = await send(via);
      const line = await eventually(`${msg} (${via === plain ? 'plain' : 'upgrade'})`, () =>
        q.logs.slice(from).find((l) => l.msg === msg && (url === undefined || l.url === url)),
      );
      lines.push({ ...line, status: r.text.slice(9, 12) });
    }
    const [a, b] = lines as [Record<string, unknown>, Record<string, unknown>];
    assert.deepEqual(
      fields(b).filter((k) => k !== 'status'),
      fields(a).filter((k) => k !== 'status'),
      `${msg}: same fields`,
    );
    assert.equal(b.level, a.level, `${msg}: same level`);
    return [a, b] as const;
  }

  it("'request rejected' (with code), 'no route for host', 'loop detected; answered 508', 'request routed'", async () => {
    const [r1, r2] = await both(p, 'request rejected', (via) => via(p, 'near.example', 'http://other.example/x'));
    for (const l of [r1, r2]) assert.equal(l.code, 'REQUEST_TARGET_OTHER_HOST');
    assert.deepEqual([r1.reason, r1.status, r2.status], ['absolute-form request target names another host', '400', '400']);
    const [n1, n2] = await both(p, 'no route for host', (via) => via(p, 'nowhere.example', '/n'));
    assert.deepEqual([n1.code, n2.code, n1.status, n2.status], ['NO_ROUTE', 'NO_ROUTE', '404', '404']);
    const [l1, l2] = await both(p, 'loop detected; answered 508', (via) => via(p, 'far.example', '/l', { 'CDN-Loop': 'edgeproxy' }));
    assert.deepEqual([l1.cdnLoop, l2.cdnLoop, l1.status, l2.status], ['edgeproxy', 'edgeproxy', '508', '508']);
    const [d1, d2] = await both(p, 'request routed', (via) => via(p, 'near.example', '/d'), '/d');
    assert.deepEqual(
      [d1.kind, d2.kind, d1.url, d2.url, d1.completed, d2.completed],
      ['same-region', 'same-region', '/d', '/d', true, true],
    );
    assert.equal(d2.status, '101');
  });

  it("'request rejected' for upgrades that are not WebSocket GETs, with code UPGRADE_NOT_WEBSOCKET", async () => {
    for (const raw of [
      'GET / HTTP/1.1\r\nHost: near.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n',
      UPGRADE('near.example').replace('GET /chat ', 'POST /chat '),
    ]) {
      const from = p.logs.length;
      const r = await rawExchange(p.port, [raw]);
      assert.match(r.text, /^HTTP\/1\.1 400 /);
      const line = await eventually('logged', () => p.logs.slice(from).find((l) => l.msg === 'request rejected'));
      assert.equal(line.code, 'UPGRADE_NOT_WEBSOCKET');
      assert.equal(line.reason, 'only WebSocket GET upgrades are proxied');
    }
  });

  it("'proxy error' for an upstream that refuses the connection", async () => {
    const q = await startProxy({ crossRegionPort: await closedPort() });
    try {
      q.routes({ 'far.example': { vmPort: 1, region: OTHER_REGION } });
      const [a, b] = await both(q, 'proxy error', (via) => via(q, 'far.example', '/e'));
      for (const l of [a, b]) {
        assert.equal(l.kind, 'cross-region');
        assert.equal(l.status, '502');
        for (const k of ['code', 'connectionFailed', 'message']) assert.ok(k in (l.err as object), `err.${k}`);
        assert.equal((l.err as { code: string }).code, 'ECONNREFUSED');
      }
    } finally {
      await q.close();
    }
  });

  it("'internal error' when routing throws", async () => {
    const store = {
      get current(): never {
        throw new Error('simulated bug in the route table');
      },
    } as unknown as RouteStore;
    const q = await startProxy({ server: { store } });
    try {
      const [a, b] = await both(q, 'internal error', (via) => via(q, 'any.example', '/boom'));
      for (const l of [a, b]) {
        assert.equal(l.status, '500');
        assert.equal(l.url, '/boom');
        assert.match(JSON.stringify(l.err), /simulated bug/);
      }
    } finally {
      await q.close();
    }
  });
});
