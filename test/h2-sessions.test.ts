import assert from 'node:assert/strict';
import http2, { type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { H2Response } from '../src/proxy/h2-exchange.js';
import { H2Sessions, MAX_CONCURRENT_STREAMS } from '../src/proxy/h2-sessions.js';
import { makeCertificate, type TestCertificate } from './support/certificates.js';
import { eventually } from './support/service.js';

/**
 * H2Sessions on secured sockets from a real TLS server (ALPN h2), Node's http2 client: the
 * stream limit, the idle rule, GOAWAY on close(), CANCEL on destroy(), CONNECT to its handler.
 */
let cert: TestCertificate;
before(() => {
  cert = makeCertificate(['app.example']);
});

interface Rig {
  readonly sessions: H2Sessions;
  readonly port: number;
  /** Responses the test holds open (answered by the test). */
  readonly held: H2Response[];
  connect(): Promise<ClientHttp2Session>;
  close(): Promise<void>;
}

async function rig(idleTimeoutMs = 30_000): Promise<Rig> {
  const held: H2Response[] = [];
  const sessions = new H2Sessions({
    idleTimeoutMs,
    requestTimeoutMs: 0,
    onRequest: (req, res) => {
      if (req.url === '/hold') held.push(res);
      else res.end('ok');
    },
    onConnect: (_req, res) => {
      res.writeHead(405, {});
      res.end();
    },
  });
  const server = tls.createServer({ cert: cert.certPem, key: cert.keyPem, ALPNProtocols: ['h2'] }, (socket) => sessions.accept(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    sessions,
    port,
    held,
    connect: () =>
      new Promise((resolve, reject) => {
        const s = http2.connect(`https://127.0.0.1:${port}`, { servername: 'app.example', ca: cert.certPem });
        s.once('remoteSettings', () => resolve(s));
        s.once('error', reject);
      }),
    close: async () => {
      sessions.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function request(
  session: ClientHttp2Session,
  path: string,
  method = 'GET',
): Promise<{ status: number; body: string; rst: number | undefined }> {
  return new Promise((resolve) => {
    const stream = session.request(method === 'CONNECT' ? { ':method': method, ':authority': 'app.example:443' } : { ':path': path });
    let status = 0;
    let body = '';
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('data', (c: Buffer) => (body += c.toString()));
    stream.on('error', () => undefined);
    stream.on('close', () => resolve({ status, body, rst: stream.rstCode }));
    stream.end();
  });
}

describe('H2Sessions', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.close());

  it('serves requests on the session and offers MAX_CONCURRENT_STREAMS', async () => {
    const s = await r.connect();
    assert.equal(s.remoteSettings.maxConcurrentStreams, MAX_CONCURRENT_STREAMS);
    assert.deepEqual(await request(s, '/'), { status: 200, body: 'ok', rst: 0 });
    assert.equal(r.sessions.size, 1);
    s.close();
    await eventually('the session is forgotten', () => r.sessions.size === 0);
  });

  it('CONNECT goes to onConnect, not to the request handler', async () => {
    const s = await r.connect();
    assert.equal((await request(s, '', 'CONNECT')).status, 405);
    s.close();
  });
});

describe('H2Sessions lifecycle', () => {
  it('a session with no open stream is closed after the idle timeout, not while a stream is open', async () => {
    const r = await rig(300);
    try {
      const s = await r.connect();
      const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
      const held = request(s, '/hold');
      await eventually('held', () => r.held.length === 1);
      await new Promise((resolve) => setTimeout(resolve, 600));
      assert.equal(s.closed || s.destroyed, false, 'closed with a stream open');
      r.held[0]!.end('late');
      assert.equal((await held).body, 'late');
      const idleFrom = performance.now();
      await closed;
      assert.ok(performance.now() - idleFrom >= 250);
    } finally {
      await r.close();
    }
  });

  it('close() sends GOAWAY NO_ERROR and lets the stream in flight finish; sessions that start later get it too', async () => {
    const r = await rig();
    try {
      const s = await r.connect();
      const goaway = new Promise<number>((resolve) => s.once('goaway', (code: number) => resolve(code)));
      const held = request(s, '/hold');
      await eventually('held', () => r.held.length === 1);
      r.sessions.close();
      assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
      r.held[0]!.end('finished');
      assert.deepEqual(await held, { status: 200, body: 'finished', rst: 0 });
      const late = http2.connect(`https://127.0.0.1:${r.port}`, { servername: 'app.example', ca: cert.certPem });
      late.on('error', () => undefined);
      const lateCode = await new Promise<number | undefined>((resolve) => {
        late.once('goaway', (code: number) => resolve(code));
        late.once('close', () => resolve(undefined));
      });
      assert.equal(lateCode, http2.constants.NGHTTP2_NO_ERROR);
    } finally {
      await r.close();
    }
  });

  it('destroy() cuts the sessions left with CANCEL: a held response errors, it does not end', async () => {
    const r = await rig();
    try {
      const s = await r.connect();
      s.on('error', () => undefined);
      const held = request(s, '/hold');
      await eventually('held', () => r.held.length === 1);
      r.held[0]!.write('part');
      r.sessions.destroy();
      const got = await held;
      assert.equal(got.rst, http2.constants.NGHTTP2_CANCEL);
      await eventually('the session is forgotten', () => r.sessions.size === 0);
    } finally {
      await r.close();
    }
  });
});
