import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OTHER_REGION, request, startBackend, startProxy } from './support/backend.js';
import { eventually } from './support/service.js';

/** Passive health (refused or reset while proxying marks the VM at once) and the metrics hook. */

describe('passive health', () => {
  it('connection refused while proxying → 502, then 503 without a probe until a probe succeeds', async () => {
    const vm = await startBackend('vm');
    const p = await startProxy({ healthCacheTtlMs: 400 });
    try {
      p.routes({ 'app.example': { vmPort: vm.port } });
      assert.equal((await request(p.port, { host: 'app.example' })).status, 200);
      assert.equal(p.health.probes, 1);
      await vm.close(); // the VM dies right after a healthy probe; the result is still fresh
      assert.equal((await request(p.port, { host: 'app.example' })).status, 502);
      const marked = await p.waitFor((l) => l.msg === 'vm unhealthy' && l.source === 'passive');
      assert.match(String(marked.reason), /ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET/);
      for (let i = 0; i < 5; i++) {
        const r = await request(p.port, { host: 'app.example' });
        assert.equal(r.status, 503);
        assert.equal(r.body, 'Service Unavailable - VM not responding');
      }
      assert.equal(p.health.probes, 1, 'no probe while the passive mark is fresh');
      // After the TTL a probe runs; the VM is still down, so it stays 503.
      await new Promise((r) => setTimeout(r, 450));
      assert.equal((await request(p.port, { host: 'app.example' })).status, 503);
      assert.equal(p.health.probes, 2);
    } finally {
      await p.close();
    }
  });

  it('connection reset while proxying marks the VM; it is routed again once a probe succeeds', async () => {
    let resetting = true;
    const vm = await startBackend('vm', (req, res) => {
      if (resetting) req.socket.destroy();
      else res.end('back');
    });
    const p = await startProxy({ healthCacheTtlMs: 300 });
    try {
      p.routes({ 'app.example': { vmPort: vm.port } });
      assert.equal((await request(p.port, { host: 'app.example' })).status, 502);
      await p.waitFor((l) => l.msg === 'vm unhealthy' && l.source === 'passive');
      const probes = p.health.probes;
      assert.equal((await request(p.port, { host: 'app.example' })).status, 503);
      assert.equal(p.health.probes, probes);
      resetting = false;
      await eventually(
        'routed again after a good probe',
        async () => (await request(p.port, { host: 'app.example' })).body === 'back',
        3000,
      );
      await p.waitFor((l) => l.msg === 'vm healthy again' && l.source === 'probe');
    } finally {
      await p.close();
      await vm.close();
    }
  });

  it('an upstream that dies mid-response: the client sees the cut (no hang) and the VM is marked', async () => {
    const vm = await startBackend('vm', (_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const p = await startProxy({});
    try {
      p.routes({ 'app.example': { vmPort: vm.port } });
      const t0 = Date.now();
      await assert.rejects(request(p.port, { host: 'app.example' }), /aborted|socket hang up|ECONNRESET|terminated/);
      assert.ok(Date.now() - t0 < 3000);
      const marked = await p.waitFor((l) => l.msg === 'vm unhealthy' && l.source === 'passive');
      assert.equal(marked.reason, 'marked by proxy: UPSTREAM_CLOSED');
      const line = p.logs.find((l) => l.msg === 'proxy error') as { err: { code: string; connectionFailed: boolean } } | undefined;
      assert.deepEqual([line?.err.code, line?.err.connectionFailed], ['UPSTREAM_CLOSED', true]);
    } finally {
      await p.close();
      await vm.close();
    }
  });

  it('a reset from a cross-region load balancer gives 502 and marks nothing', async () => {
    const lb = await startBackend('lb', (req) => req.socket.destroy());
    const p = await startProxy({ crossRegionPort: lb.port });
    try {
      p.routes({ 'far.example': { vmPort: 1, region: OTHER_REGION } });
      assert.equal((await request(p.port, { host: 'far.example' })).status, 502);
      assert.equal(p.logs.filter((l) => l.msg === 'vm unhealthy').length, 0);
    } finally {
      await p.close();
      await lb.close();
    }
  });
});

describe('observer (metrics hook)', () => {
  it('is called once per request with kind, status, duration and upstream time, and once per probe', async () => {
    const vm = await startBackend('vm');
    const p = await startProxy({});
    try {
      p.routes({ 'app.example': { vmPort: vm.port } });
      await request(p.port, { host: 'app.example' });
      await request(p.port, { host: 'app.example' });
      await request(p.port, { host: 'missing.example' });
      await eventually('three requests observed', () => p.observed.requests.length === 3);
      const [a, b, c] = p.observed.requests;
      assert.equal(a!.kind, 'same-region');
      assert.equal(a!.status, 200);
      assert.ok(a!.upstreamSeconds !== undefined && a!.upstreamSeconds >= 0 && a!.upstreamSeconds <= a!.seconds);
      assert.equal(b!.status, 200);
      assert.deepEqual([c!.kind, c!.status, c!.upstreamSeconds], ['not-found', 404, undefined]);
      assert.equal(p.observed.probes.length, 1);
      assert.equal(p.observed.probes[0]!.healthy, true);
    } finally {
      await p.close();
      await vm.close();
    }
  });

  it('reports 499 for a request whose client left before the response', async () => {
    const vm = await startBackend('vm', () => undefined); // never answers
    const p = await startProxy({});
    try {
      p.routes({ 'app.example': { vmPort: vm.port } });
      await assert.rejects(request(p.port, { host: 'app.example', timeoutMs: 200 }));
      await eventually('observed', () => p.observed.requests.length === 1);
      assert.equal(p.observed.requests[0]!.status, 499);
    } finally {
      await p.close();
      await vm.close();
    }
  });
});

describe('keep-alive race', () => {
  it('a pooled connection reset as it is reused: a GET is sent again on a new connection, nothing is marked', async () => {
    // Answers the first request on each connection with keep-alive, resets on the second: what an
    // upstream closing an idle connection just as the proxy reuses it looks like.
    const { createServer } = await import('node:net');
    let connections = 0;
    const upstream = createServer((socket) => {
      connections++;
      let seen = 0;
      let head = '';
      socket.on('error', () => undefined);
      socket.on('data', (c: Buffer) => {
        head += c.toString('latin1');
        while (head.includes('\r\n\r\n')) {
          head = head.slice(head.indexOf('\r\n\r\n') + 4);
          if (++seen === 1) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok');
          else socket.resetAndDestroy();
        }
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = (upstream.address() as { port: number }).port;
    const p = await startProxy({});
    try {
      p.routes({ 'app.example': { vmPort: port } });
      assert.equal((await request(p.port, { host: 'app.example' })).status, 200);
      const second = await request(p.port, { host: 'app.example' });
      assert.equal(second.status, 200, 'retried on a fresh connection');
      assert.equal(second.body, 'ok');
      assert.equal(p.logs.filter((l) => l.msg === 'vm unhealthy').length, 0);
      assert.ok(connections >= 2);
    } finally {
      await p.close();
      upstream.close();
    }
  });
});
