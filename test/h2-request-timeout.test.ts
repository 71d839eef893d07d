import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { type ClientHttp2Session } from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { certificateFiles, startHttpsService, type CertificateFiles, type HttpsService } from './support/https-service.js';
import { startPostgres, type PgServer } from './support/postgres.js';
import { eventually } from './support/service.js';

/**
 * EDGEPROXY_CLIENT_REQUEST_TIMEOUT on HTTP/2 streams: the real service (HTTPS port, ALPN h2), a
 * real VM, Node's http2 client. A stream whose request does not end in time gets 408 (or is cut
 * once its response has started), its upstream request is aborted, and the session goes on.
 */

const TIMEOUT_MS = 800;

let pg: PgServer;
let cert: CertificateFiles;
let t: HttpsService;
/** How each request's body ended at the VM, by URL. */
const bodies = new Map<string, 'complete' | 'aborted'>();

/** `/early/…` answers its headers at once, before the body; everything else answers once the body has ended. */
function vmHandler(req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '';
  req.on('close', () => {
    if (!bodies.has(url)) bodies.set(url, req.complete ? 'complete' : 'aborted');
  });
  if (url.startsWith('/early/')) {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('early ');
  }
  req.resume();
  req.on('end', () => {
    bodies.set(url, 'complete');
    if (url.startsWith('/late/')) setTimeout(() => res.end(`vm ${url}`), TIMEOUT_MS * 2);
    else res.end(`vm ${url}`);
  });
}

before(async () => {
  pg = await startPostgres();
  cert = certificateFiles(['app.example']);
  t = await startHttpsService(
    pg,
    { tlsDefaultCertFile: cert.certFile, tlsDefaultKeyFile: cert.keyFile, clientRequestTimeoutMs: TIMEOUT_MS },
    vmHandler,
  );
});
after(async () => {
  await t?.close();
  await pg?.stop();
  cert?.remove();
});

function connect(): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${t.httpsPort}`, { servername: 'app.example', ca: cert.certPem });
    session.once('remoteSettings', () => resolve(session));
    session.once('error', reject);
  });
}

interface Outcome {
  readonly status: number;
  readonly body: string;
  /** The RST_STREAM code the stream closed with (0 = NO_ERROR; a stream ended cleanly also reads 0). */
  readonly rstCode: number | undefined;
  readonly aborted: boolean;
  readonly ms: number;
}

/** A POST whose body is `parts`, one every `gapMs`, ended only when `end` is true. */
function post(session: ClientHttp2Session, path: string, opts: { parts: number; gapMs: number; end: boolean }): Promise<Outcome> {
  return new Promise((resolve) => {
    const started = Date.now();
    const stream = session.request({ ':method': 'POST', ':path': path, ':authority': 'app.example' });
    let status = 0;
    let body = '';
    let sent = 0;
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.setEncoding('utf8').on('data', (c: string) => (body += c));
    stream.on('error', () => undefined);
    const timer = setInterval(() => {
      if (stream.destroyed || stream.closed) return clearInterval(timer);
      sent += 1;
      if (sent < opts.parts || !opts.end) stream.write('x'.repeat(10));
      else {
        clearInterval(timer);
        stream.end('x'.repeat(10));
      }
    }, opts.gapMs);
    stream.on('close', () => {
      clearInterval(timer);
      resolve({ status, body, rstCode: stream.rstCode, aborted: stream.aborted, ms: Date.now() - started });
    });
  });
}

function get(session: ClientHttp2Session, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'GET', ':path': path, ':authority': 'app.example' });
    let status = 0;
    let body = '';
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.setEncoding('utf8').on('data', (c: string) => (body += c));
    stream.on('end', () => resolve({ status, body }));
    stream.on('error', reject);
    stream.end();
  });
}

describe('EDGEPROXY_CLIENT_REQUEST_TIMEOUT on HTTP/2 streams', () => {
  it('a request body that does not end in time: 408 Request Timeout, the stream reset with NO_ERROR, the upstream request aborted; the session serves on', async () => {
    const session = await connect();
    try {
      // Beside it, on the same session: an upload that ends in time, and a request that starts after the 408.
      const [slow, quick] = await Promise.all([
        post(session, '/never-ends', { parts: 1000, gapMs: 100, end: false }),
        post(session, '/in-time', { parts: 3, gapMs: 50, end: true }),
      ]);
      assert.equal(slow.status, 408);
      assert.equal(slow.body, 'Request Timeout');
      assert.equal(slow.rstCode, http2.constants.NGHTTP2_NO_ERROR);
      assert.ok(slow.ms >= TIMEOUT_MS - 50 && slow.ms < TIMEOUT_MS + 3000, `answered after ${slow.ms} ms`);
      await eventually('the upstream request aborted', () => bodies.get('/never-ends') === 'aborted');
      assert.deepEqual([quick.status, quick.body], [200, 'vm /in-time']);
      assert.equal(session.closed || session.destroyed, false, 'the session is still open');
      assert.deepEqual(await get(session, '/after'), { status: 200, body: 'vm /after' });
    } finally {
      session.close();
    }
  });

  it('a response already started: the stream is cut (RST_STREAM INTERNAL_ERROR), as HTTP/1.1 cuts the connection', async () => {
    const session = await connect();
    try {
      const cut = await post(session, '/early/upload', { parts: 1000, gapMs: 100, end: false });
      assert.equal(cut.status, 200);
      assert.equal(cut.body, 'early ');
      assert.equal(cut.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
      await eventually('the upstream request aborted', () => bodies.get('/early/upload') === 'aborted');
      assert.deepEqual(await get(session, '/after-cut'), { status: 200, body: 'vm /after-cut' });
    } finally {
      session.close();
    }
  });

  it('only the request is timed: a whole request whose answer takes longer, and a GET, are not cut', async () => {
    const session = await connect();
    try {
      const [late, slowAnswer] = await Promise.all([
        post(session, '/late/upload', { parts: 2, gapMs: 50, end: true }),
        get(session, '/late/get'),
      ]);
      assert.deepEqual([late.status, late.body, late.rstCode], [200, 'vm /late/upload', http2.constants.NGHTTP2_NO_ERROR]);
      assert.ok(late.ms >= TIMEOUT_MS * 2, `answered after ${late.ms} ms`);
      assert.deepEqual(slowAnswer, { status: 200, body: 'vm /late/get' });
    } finally {
      session.close();
    }
  });
});
