import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { OTHER_REGION, rawExchange, request, startBackend, startBlackhole, startProxy, type Backend } from './support/backend.js';

/** Upstream timeouts of plain requests and client timeouts (slowloris, slow bodies, idle). */

let blackhole: Awaited<ReturnType<typeof startBlackhole>>;
let silent: net.Server;
let sse: Backend;
before(async () => {
  blackhole = await startBlackhole();
  // Accepts and reads, never answers.
  silent = net.createServer((s) => {
    s.on('error', () => undefined);
    s.resume();
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  // Server-sent events: one event every 150 ms, 8 in all, nothing in between.
  sse = await startBackend('sse', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let n = 0;
    const t = setInterval(() => {
      res.write(`data: ${n}\n\n`);
      if (++n === 8) {
        clearInterval(t);
        res.end();
      }
    }, 150);
    res.on('close', () => clearInterval(t));
  });
});
after(async () => {
  await blackhole.close();
  silent.close();
  await sse.close();
});

describe('upstream timeouts', () => {
  it('connect timeout → 502, within the timeout, and the VM is not marked unhealthy', async () => {
    const p = await startProxy({ crossRegionPort: blackhole.port, forwarder: { connectTimeoutMs: 300 } });
    try {
      p.routes({ 'far.example': { vmPort: 1, region: OTHER_REGION } });
      const t0 = Date.now();
      const r = await request(p.port, { host: 'far.example' });
      const ms = Date.now() - t0;
      assert.equal(r.status, 502);
      assert.equal(r.body, 'Bad Gateway');
      assert.ok(ms >= 250 && ms < 2000, `answered after ${ms} ms`);
      const line = p.logs.find((l) => l.msg === 'proxy error') as { err: { code: string } } | undefined;
      assert.equal(line?.err.code, 'UPSTREAM_CONNECT_TIMEOUT');
    } finally {
      await p.close();
    }
  });

  it('response-header timeout → 504 "Gateway Timeout"', async () => {
    const port = (silent.address() as net.AddressInfo).port;
    const p = await startProxy({ crossRegionPort: port, forwarder: { headerTimeoutMs: 300 } });
    try {
      p.routes({ 'slow.example': { vmPort: 1, region: OTHER_REGION } });
      const t0 = Date.now();
      const r = await request(p.port, { host: 'slow.example' });
      const ms = Date.now() - t0;
      assert.equal(r.status, 504);
      assert.equal(r.body, 'Gateway Timeout');
      assert.ok(ms >= 250 && ms < 2000, `answered after ${ms} ms`);
      assert.equal(p.observed.requests.at(-1)?.status, 504);
    } finally {
      await p.close();
    }
  });

  it('SSE streams event by event and is not cut by the header timeout or any write timeout', async () => {
    const p = await startProxy({ forwarder: { headerTimeoutMs: 200 } });
    try {
      p.routes({ 'sse.example': { vmPort: sse.port } });
      const arrivals: number[] = [];
      const t0 = Date.now();
      const body = await new Promise<string>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: p.port, path: '/events', headers: { host: 'sse.example' }, agent: false }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => {
              text += c;
              arrivals.push(Date.now() - t0);
            });
            res.on('end', () => resolve(text));
            res.on('error', reject);
          })
          .on('error', reject);
      });
      assert.equal(body, Array.from({ length: 8 }, (_, i) => `data: ${i}\n\n`).join(''));
      // Unbuffered: the first event arrived long before the last one was sent (~1.2 s).
      assert.ok(arrivals.length >= 4, `arrived in ${arrivals.length} chunks`);
      assert.ok(arrivals[0]! < 700, `first event after ${arrivals[0]} ms`);
    } finally {
      await p.close();
    }
  });
});

describe('client timeouts', () => {
  it('slowloris: a client trickling its headers gets 408 and is closed after the header timeout', async () => {
    const vm = await startBackend('vm');
    const p = await startProxy({ server: { timeouts: { headerTimeoutMs: 400, requestTimeoutMs: 5000, idleTimeoutMs: 5000 } } });
    try {
      p.routes({ 'app.example': { vmPort: vm.port } });
      const chunks = ['GET / HTTP/1.1\r\n', 'Host: app.example\r\n', ...Array.from({ length: 40 }, (_, i) => `X-${i}: y\r\n`)];
      const r = await rawExchange(p.port, chunks, { gapMs: 100, timeoutMs: 4000 });
      assert.equal(r.closed, true, 'the proxy closed the connection');
      assert.ok(r.ms < 1500, `closed after ${r.ms} ms`);
      assert.match(r.text, /^HTTP\/1\.1 408 /);
      assert.equal(vm.requests.length, 0);
    } finally {
      await p.close();
      await vm.close();
    }
  });

  it('a request body sent too slowly: 408 (or cut) after the request timeout, upstream request aborted', async () => {
    let upstreamClosed = false;
    const vm = await startBackend('vm', (req, res) => {
      req.resume();
      req.on('close', () => (upstreamClosed = true));
      req.on('end', () => res.end('done'));
    });
    const p = await startProxy({ server: { timeouts: { headerTimeoutMs: 300, requestTimeoutMs: 600, idleTimeoutMs: 5000 } } });
    try {
      p.routes({ 'app.example': { vmPort: vm.port } });
      const chunks = [
        'POST /up HTTP/1.1\r\nHost: app.example\r\nContent-Length: 100000\r\n\r\n',
        ...Array.from({ length: 40 }, () => 'x'.repeat(10)),
      ];
      const r = await rawExchange(p.port, chunks, { gapMs: 100, timeoutMs: 4000 });
      assert.equal(r.closed, true);
      assert.ok(r.ms < 2500, `closed after ${r.ms} ms`);
      assert.ok(r.text === '' || /^HTTP\/1\.1 408 /.test(r.text), r.text);
      const deadline = Date.now() + 2000;
      while (!upstreamClosed && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      assert.equal(upstreamClosed, true, 'the upstream request was aborted');
    } finally {
      await p.close();
      await vm.close();
    }
  });

  it('idle keep-alive connections are closed after the idle timeout', async () => {
    const vm = await startBackend('vm');
    const p = await startProxy({ server: { timeouts: { headerTimeoutMs: 2000, requestTimeoutMs: 5000, idleTimeoutMs: 300 } } });
    try {
      p.routes({ 'app.example': { vmPort: vm.port } });
      const r = await rawExchange(p.port, ['GET / HTTP/1.1\r\nHost: app.example\r\n\r\n'], { timeoutMs: 3000 });
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.equal(r.closed, true);
      assert.ok(r.ms >= 250 && r.ms < 1500, `idle connection closed after ${r.ms} ms`);
    } finally {
      await p.close();
      await vm.close();
    }
  });
});
