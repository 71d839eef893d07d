import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import https from 'node:https';
import http2, { type ClientHttp2Session, type OutgoingHttpHeaders } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { MAX_CONCURRENT_STREAMS } from '../src/proxy/h2-sessions.js';
import { closedPort } from './support/backend.js';
import { data, frame, FRAME, H2_ERROR, headers, rawH2, type RawH2Answer } from './support/h2-raw.js';
import { certificateFiles, handshakes, startHttpsService, type CertificateFiles, type HttpsService } from './support/https-service.js';
import { startPostgres, type PgServer } from './support/postgres.js';
import { eventually, REGION_A } from './support/service.js';

/**
 * HTTP/2 on the HTTPS port (ALPN `h2`, else `http/1.1`): the same request flow as HTTP/1.1, each
 * request forwarded to the VM as HTTP/1.1 with Host = :authority. Real Postgres-backed service,
 * real backends, Node's http2 client, curl, and a raw client for what those refuse to send.
 */

let pg: PgServer;
let cert: CertificateFiles;

/** URLs whose request reached the VM (its head), and how each body ended there: `complete` (its end came) or `aborted`. */
const arrived = new Set<string>();
const bodies = new Map<string, 'complete' | 'aborted'>();
/** Responses of `/slow/...` held until the test lets them go. */
const held = new Map<string, () => void>();
/** `/slow/...` answers that closed before they ended: the proxy gave up the VM's request. */
const cutShort = new Set<string>();

/**
 * The VM: `/echo` describes what it received; `/big` sends 1 MiB; `/dies` fails in the middle of
 * its answer; `/slow/…` answers when released; else one line.
 */
function vmHandler(req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '';
  arrived.add(url);
  const hash = createHash('sha256');
  let length = 0;
  req.on('data', (c: Buffer) => {
    hash.update(c);
    length += c.length;
  });
  req.on('close', () => {
    if (!bodies.has(url)) bodies.set(url, req.complete ? 'complete' : 'aborted');
  });
  req.on('end', () => {
    bodies.set(url, 'complete');
    if (url === '/echo') {
      const h = req.headers;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, httpVersion: req.httpVersion, length, sha: hash.digest('hex'), headers: h }));
    } else if (url === '/big') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.alloc(1 << 20, 7));
    } else if (url === '/dies') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part ');
      setTimeout(() => req.socket.destroy(), 20);
    } else if (url.startsWith('/slow/')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('slow ');
      res.on('close', () => {
        if (!res.writableFinished) cutShort.add(url);
      });
      held.set(url, () => res.end('done'));
    } else {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`vm ${req.method} ${url}`);
    }
  });
}

before(async () => {
  pg = await startPostgres();
  cert = certificateFiles(['app.example', 'nowhere.example']);
});
after(async () => {
  await pg.stop();
  cert.remove();
});

const start = (overrides: Parameters<typeof startHttpsService>[1] = {}) =>
  startHttpsService(pg, { tlsDefaultCertFile: cert.certFile, tlsDefaultKeyFile: cert.keyFile, ...overrides }, vmHandler);

function connect(port: number, servername = 'app.example'): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, { servername, ca: cert.certPem });
    session.once('remoteSettings', () => resolve(session));
    session.once('error', reject);
  });
}

interface H2Reply {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
}

function h2Request(session: ClientHttp2Session, fields: OutgoingHttpHeaders, body?: Buffer | string): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request(fields);
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    stream.on('response', (h) => (head = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    stream.end(body);
  });
}

const get = (session: ClientHttp2Session, path: string, authority = 'app.example') =>
  h2Request(session, { ':method': 'GET', ':path': path, ':authority': authority });

describe('HTTP/2 on the HTTPS port', () => {
  let t: HttpsService;
  let session: ClientHttp2Session;
  before(async () => {
    t = await start();
    session = await connect(t.httpsPort);
  });
  after(async () => {
    session.close();
    await t.close();
  });

  it('a GET goes to the VM as HTTP/1.1 with Host = :authority, no pseudo-header, X-Forwarded-Proto https', async () => {
    const r = await get(session, '/echo');
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body.toString()) as { method: string; httpVersion: string; headers: Record<string, string> };
    assert.equal(seen.method, 'GET');
    assert.equal(seen.httpVersion, '1.1');
    assert.equal(seen.headers.host, 'app.example');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-host'], 'app.example');
    assert.deepEqual(
      Object.keys(seen.headers).filter((n) => n.startsWith(':')),
      [],
    );
    assert.equal(seen.headers['transfer-encoding'], undefined, 'a GET without a body is sent without one');
    assert.equal(await handshakes(t.proxy, 'ok', 'h2'), 1);
  });

  it('a POST body streams to the VM (chunked when the client gave no content-length), and a 1 MiB answer streams back', async () => {
    const body = Buffer.alloc(300_000, 'x');
    const sha = createHash('sha256').update(body).digest('hex');
    const unsized = await h2Request(session, { ':method': 'POST', ':path': '/echo', ':authority': 'app.example' }, body);
    const seen = JSON.parse(unsized.body.toString()) as { length: number; sha: string; headers: Record<string, string> };
    assert.deepEqual([unsized.status, seen.length, seen.sha], [200, body.length, sha]);
    assert.equal(seen.headers['transfer-encoding'], 'chunked');
    const sized = await h2Request(
      session,
      { ':method': 'POST', ':path': '/echo', ':authority': 'app.example', 'content-length': String(body.length) },
      body,
    );
    const seen2 = JSON.parse(sized.body.toString()) as { length: number; sha: string; headers: Record<string, string> };
    assert.deepEqual([seen2.length, seen2.sha, seen2.headers['content-length']], [body.length, sha, String(body.length)]);
    const big = await get(session, '/big');
    assert.equal(big.status, 200);
    assert.equal(big.body.length, 1 << 20);
    assert.equal(big.headers['content-type'], 'application/octet-stream');
  });

  it('the error table over h2: unknown host 404 "Service Not Found"; a VM that is down 503 "Service Unavailable - VM not responding"', async () => {
    const unknown = await get(session, '/', 'nowhere.example');
    assert.deepEqual([unknown.status, unknown.body.toString()], [404, 'Service Not Found']);
    await t.seed.route({ name: 'down.example', regionId: REGION_A, vmPort: await closedPort() });
    await eventually('down.example routed', () => t.proxy.store.current?.routes.get('down.example'));
    const down = await get(session, '/', 'down.example');
    assert.deepEqual([down.status, down.body.toString()], [503, 'Service Unavailable - VM not responding']);
    assert.equal(down.headers['content-type'], 'text/plain; charset=utf-8');
  });

  it('Node limits the session: at most MAX_CONCURRENT_STREAMS streams at once', () => {
    assert.equal(session.remoteSettings.maxConcurrentStreams, MAX_CONCURRENT_STREAMS);
  });

  it('CONNECT is refused with 405 and Allow, as on HTTP/1.1', async () => {
    const r = await h2Request(session, { ':method': 'CONNECT', ':authority': 'app.example:443' });
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
  });

  it('curl --http2 is served over h2, curl --http1.1 over HTTP/1.1, on the same port', async () => {
    const curl = async (version: string) => {
      const { stdout } = await promisify(execFile)('curl', [
        version,
        '-sS',
        '--cacert',
        cert.certFile,
        '--resolve',
        `app.example:${t.httpsPort}:127.0.0.1`,
        '-w',
        '\n%{http_version} %{http_code}',
        `https://app.example:${t.httpsPort}/curl`,
      ]);
      return stdout;
    };
    assert.equal(await curl('--http2'), 'vm GET /curl\n2 200');
    assert.equal(await curl('--http1.1'), 'vm GET /curl\n1.1 200');
  });

  it('a client that offers only http/1.1 (or no ALPN) gets HTTP/1.1 with the same answer', async () => {
    const h1 = (alpn: string[] | undefined) =>
      new Promise<{ status: number; body: string; version: string }>((resolve, reject) => {
        const options: https.RequestOptions & { ALPNProtocols?: string[] } = {
          host: '127.0.0.1',
          port: t.httpsPort,
          servername: 'app.example',
          ca: cert.certPem,
          agent: false,
          ALPNProtocols: alpn,
          path: '/h1',
          headers: { host: 'app.example' },
        };
        const req = https.get(options, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body, version: res.httpVersion }));
        });
        req.on('error', reject);
      });
    const before = await handshakes(t.proxy, 'ok', 'http/1.1');
    assert.deepEqual(await h1(['http/1.1']), { status: 200, body: 'vm GET /h1', version: '1.1' });
    assert.deepEqual(await h1(undefined), { status: 200, body: 'vm GET /h1', version: '1.1' });
    assert.equal(await handshakes(t.proxy, 'ok', 'http/1.1'), before + 2);
  });
});

/** A request's fields for the raw client: POST to `path` on app.example, plus `extra`. */
const fields = (path: string, extra: [string, string][] = [], authority: string | null = 'app.example'): [string, string][] => [
  [':method', 'POST'],
  [':scheme', 'https'],
  [':path', path],
  ...(authority === null ? [] : ([[':authority', authority]] as [string, string][])),
  ...extra,
];

describe('hostile input over HTTP/2: what nghttp2 refuses, what the flow refuses, and what the VM never gets', () => {
  let t: HttpsService;
  before(async () => {
    t = await start();
    // A first request warms the health cache, so the hostile ones are forwarded at once.
    const session = await connect(t.httpsPort);
    assert.equal((await get(session, '/warm')).status, 200);
    session.close();
  });
  after(() => t.close());

  const raw = (steps: Parameters<typeof rawH2>[2], done: (a: RawH2Answer) => boolean) =>
    rawH2(t.httpsPort, { servername: 'app.example', ca: cert.certPem }, steps, done);
  const resetOrGone = (stream: number) => (a: RawH2Answer) => a.reset(stream) !== undefined || a.goaway() !== undefined;

  /** After a good request on a new connection has been answered, `path` has not reached the VM as a whole request. */
  async function neverComplete(path: string): Promise<void> {
    const session = await connect(t.httpsPort);
    assert.equal((await get(session, `/after${path}`)).status, 200);
    session.close();
    assert.notEqual(bodies.get(path), 'complete', `${path} reached the VM as a complete request`);
  }

  // Refused by nghttp2 with RST_STREAM PROTOCOL_ERROR before any request event: nothing to route.
  const refusedByNghttp2: [string, [string, string][], string | null][] = [
    ['transfer-encoding: chunked', [['transfer-encoding', 'chunked']], 'app.example'],
    ['connection: keep-alive', [['connection', 'keep-alive']], 'app.example'],
    ['upgrade: websocket (no h2c, no WebSocket over h2)', [['upgrade', 'websocket']], 'app.example'],
    ['keep-alive', [['keep-alive', 'timeout=5']], 'app.example'],
    ['proxy-connection', [['proxy-connection', 'keep-alive']], 'app.example'],
    ['te other than trailers', [['te', 'gzip']], 'app.example'],
    ['an upper-case field name', [['X-Upper', '1']], 'app.example'],
    ['two :authority', [[':authority', 'other.example']], 'app.example'],
    [
      'two host fields',
      [
        ['host', 'app.example'],
        ['host', 'other.example'],
      ],
      null,
    ],
    ['neither :authority nor host', [], null],
    ['content-length on a stream ended by its HEADERS', [['content-length', '4']], 'app.example'],
    ['userinfo in :authority', [], 'user@app.example'],
  ];
  for (const [what, extra, authority] of refusedByNghttp2) {
    it(`${what}: RST_STREAM PROTOCOL_ERROR, nothing reaches the VM`, async () => {
      const path = `/refused/${what.replace(/\W+/g, '-')}`;
      const a = await raw([headers(1, fields(path, extra, authority))], resetOrGone(1));
      assert.equal(a.reset(1), H2_ERROR.PROTOCOL_ERROR);
      assert.equal(a.responded(1), false);
      await neverComplete(path);
      assert.equal(arrived.has(path), false);
    });
  }

  it('content-length larger than the DATA: the stream is reset and the VM, which had the start, sees it aborted', async () => {
    const path = '/cl-short';
    const a = await raw(
      [
        headers(1, fields(path, [['content-length', '5']]), false),
        data(1, 'abc', false),
        () => eventually('the VM has the request', () => arrived.has(path)),
        data(1, '', true),
      ],
      resetOrGone(1),
    );
    assert.equal(a.reset(1), H2_ERROR.PROTOCOL_ERROR);
    assert.equal(await eventually('the VM saw the body end', () => bodies.get(path)), 'aborted');
  });

  it('content-length smaller than the DATA: the session is ended with GOAWAY, and never a whole request at the VM', async () => {
    const path = '/cl-long';
    const a = await raw([headers(1, fields(path, [['content-length', '3']]), false), data(1, 'abcde', true)], resetOrGone(1));
    // nghttp2 treats DATA beyond the declared length as a connection error: the whole session goes.
    assert.ok((a.goaway() ?? 0) !== H2_ERROR.NO_ERROR, `GOAWAY with an error code, got ${String(a.goaway())}`);
    assert.equal(a.responded(1), false);
    await neverComplete(path);
  });

  it('a client that resets its stream mid-body (no content-length): the VM sees the body aborted, not a shorter whole request', async () => {
    const path = '/reset-mid-body';
    await raw(
      [
        headers(1, fields(path), false),
        data(1, 'ab', false),
        () => eventually('the VM has the request', () => arrived.has(path)),
        frame(FRAME.RST_STREAM, 0, 1, Buffer.from([0, 0, 0, H2_ERROR.CANCEL])),
        () => eventually('the VM saw the body end', () => bodies.has(path)),
      ],
      () => bodies.has(path),
    );
    assert.equal(await eventually('the VM saw the body end', () => bodies.get(path)), 'aborted');
  });

  it(':authority and a host field naming another host: 400 HOST_AUTHORITY_CONFLICT on that stream, the next stream is served', async () => {
    const path = '/conflict';
    const a = await raw(
      [headers(1, fields(path, [['host', 'other.example']])), headers(3, fields('/next'))],
      (x) => x.body(1) !== undefined && x.body(3) !== undefined,
    );
    assert.equal(a.body(1), 'Bad Request');
    assert.equal(a.body(3), 'vm POST /next');
    const line = await t.proxy.waitForLog((l) => l.msg === 'request rejected' && l.url === path);
    assert.deepEqual([line.code, line.status, line.host], ['HOST_AUTHORITY_CONFLICT', 400, 'app.example']);
    assert.equal(arrived.has(path), false);
  });

  it('a host field equal to :authority (any case) is the same host: served', async () => {
    const a = await raw([headers(1, fields('/same-host', [['host', 'APP.example']]))], (x) => x.body(1) !== undefined);
    assert.equal(a.body(1), 'vm POST /same-host');
  });

  it('a field value with CR LF (a smuggled request line) is dropped by nghttp2, never forwarded', async () => {
    const a = await raw([headers(1, fields('/echo', [['x-smuggle', 'a\r\nGET /evil HTTP/1.1']]))], (x) => x.body(1) !== undefined);
    const seen = JSON.parse(a.body(1)!) as { headers: Record<string, string> };
    assert.equal(seen.headers['x-smuggle'], undefined);
    assert.equal(arrived.has('/evil'), false);
  });

  it('a host field and no :authority: routed by the host field', async () => {
    const a = await raw([headers(1, fields('/host-only', [['host', 'app.example']], null))], (x) => x.body(1) !== undefined);
    assert.equal(a.body(1), 'vm POST /host-only');
  });

  it('an absolute :path is refused by nghttp2; OPTIONS * reaches the flow and gets its 400', async () => {
    const abs = await raw(
      [
        headers(1, [
          [':method', 'GET'],
          [':scheme', 'https'],
          [':path', 'http://other.example/'],
          [':authority', 'app.example'],
        ]),
      ],
      resetOrGone(1),
    );
    assert.equal(abs.reset(1), H2_ERROR.PROTOCOL_ERROR);
    const star = await raw(
      [
        headers(1, [
          [':method', 'OPTIONS'],
          [':scheme', 'https'],
          [':path', '*'],
          [':authority', 'app.example'],
        ]),
      ],
      (x) => x.body(1) !== undefined,
    );
    assert.equal(star.body(1), 'Bad Request');
    const line = await t.proxy.waitForLog((l) => l.msg === 'request rejected' && l.url === '*');
    assert.equal(line.code, 'REQUEST_TARGET_NOT_PATH');
  });
});

describe('HTTP/2 sessions: drain, idle timeout, a response cut short', () => {
  /** Starts `/slow/<name>` on `session`: resolves once the VM holds it, with the reply to come. */
  async function slow(session: ClientHttp2Session, name: string): Promise<{ reply: Promise<H2Reply> }> {
    const reply = get(session, `/slow/${name}`);
    reply.catch(() => undefined);
    await eventually(`the VM holds /slow/${name}`, () => held.has(`/slow/${name}`));
    return { reply };
  }

  it('stop sends GOAWAY: the request in flight finishes, no new stream is accepted, the drain ends in time', async () => {
    const t = await start();
    try {
      const session = await connect(t.httpsPort);
      const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
      const { reply: inFlight } = await slow(session, 'drain');
      assert.equal(t.proxy.proxy.h2Sessions, 1);
      const stopping = t.proxy.stop('test');
      assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
      await assert.rejects(get(session, '/after-goaway'));
      held.get('/slow/drain')!();
      const r = await inFlight;
      assert.deepEqual([r.status, r.body.toString()], [200, 'slow done']);
      await stopping;
      const stopped = await t.proxy.waitForLog((l) => l.msg === 'stopped');
      assert.equal(stopped.drained, true);
      await eventually('the session is gone', () => t.proxy.proxy.h2Sessions === 0);
    } finally {
      await t.close();
    }
  });

  it('at the drain deadline a session still busy is cut', async () => {
    const t = await start({ shutdownTimeoutMs: 300 });
    try {
      const session = await connect(t.httpsPort);
      const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
      const { reply: inFlight } = await slow(session, 'cut');
      await t.proxy.stop('test');
      await assert.rejects(inFlight);
      await closed;
      const stopped = await t.proxy.waitForLog((l) => l.msg === 'stopped');
      assert.equal(stopped.drained, false);
    } finally {
      held.get('/slow/cut')?.();
      await t.close();
    }
  });

  it('a session without an open stream is closed after EDGEPROXY_IDLE_TIMEOUT; an open stream keeps it', async () => {
    const t = await start({ idleTimeoutMs: 400 });
    try {
      const session = await connect(t.httpsPort);
      const closed = new Promise<number>((resolve) => session.once('close', () => resolve(performance.now())));
      const { reply: inFlight } = await slow(session, 'idle');
      // The held stream outlasts the idle timeout: the session stays.
      await new Promise((r) => setTimeout(r, 800));
      assert.equal(session.closed || session.destroyed, false);
      held.get('/slow/idle')!();
      assert.equal((await inFlight).status, 200);
      const idleFrom = performance.now();
      const at = await closed;
      assert.ok(at - idleFrom >= 300, `closed ${Math.round(at - idleFrom)} ms after its last stream`);
    } finally {
      await t.close();
    }
  });

  it('a client that resets its stream mid-answer: the VM request is aborted at once, not left open on its connection', async () => {
    // Left open, it held a VM connection until the VM's keep-alive timeout cut it, which the
    // next request on that pooled connection met as UPSTREAM_CLOSED (a 502, and the VM marked down).
    const t = await start();
    try {
      const session = await connect(t.httpsPort);
      const stream = session.request({ ':method': 'GET', ':path': '/slow/reset', ':authority': 'app.example' });
      stream.on('error', () => undefined);
      await new Promise((resolve) => stream.once('data', resolve));
      stream.close(http2.constants.NGHTTP2_CANCEL);
      await eventually('the VM sees its answer aborted', () => cutShort.has('/slow/reset'), 2000);
      const r = await get(session, '/after-reset');
      assert.deepEqual([r.status, r.body.toString()], [200, 'vm GET /after-reset']);
      session.close();
    } finally {
      held.get('/slow/reset')?.();
      await t.close();
    }
  });

  it('a VM that fails in the middle of its answer: the stream is reset (INTERNAL_ERROR), never ended as if complete', async () => {
    // Its own service: the failure marks the VM unhealthy (passive health) for the tests after it.
    const t = await start();
    const session = await connect(t.httpsPort);
    const stream = session.request({ ':method': 'GET', ':path': '/dies', ':authority': 'app.example' });
    let ended = false;
    let failed: unknown;
    stream.on('end', () => (ended = true));
    stream.on('error', (err) => (failed = err));
    stream.resume();
    await new Promise((resolve) => stream.on('close', resolve));
    assert.equal(stream.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
    assert.equal(ended, false);
    assert.match(String(failed), /NGHTTP2_INTERNAL_ERROR/);
    await t.proxy.waitForLog((l) => l.msg === 'proxy error' && (l.err as { code?: string }).code === 'UPSTREAM_CLOSED');
    session.close();
    await t.close();
  });
});
