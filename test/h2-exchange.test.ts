import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { H2Request, H2Response } from '../src/proxy/h2-exchange.js';

/**
 * The HTTP/2 exchange classes on a real (cleartext) http2 server and Node's client: what the flow
 * reads of a request, and how a body and a response end when a stream is cut.
 */
const createServer = () => http2.createServer({ Http2ServerRequest: H2Request, Http2ServerResponse: H2Response });
let server: ReturnType<typeof createServer>;
let port: number;
let onRequest: (req: H2Request, res: H2Response) => void = () => undefined;

before(async () => {
  server = createServer();
  server.on('request', (req: H2Request, res: H2Response) => onRequest(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** Sends one request and resolves with what the server side saw, once `onRequest` has run. */
function exchange<T>(fields: http2.OutgoingHttpHeaders, body: string | undefined, see: (req: H2Request, res: H2Response) => T): Promise<T> {
  const client = http2.connect(`http://127.0.0.1:${port}`);
  client.on('error', () => undefined);
  return new Promise<T>((resolve) => {
    onRequest = (req, res) => {
      resolve(see(req, res));
      res.end();
    };
    const stream = client.request(fields);
    stream.on('error', () => undefined);
    stream.resume();
    stream.end(body);
  }).finally(() => client.close());
}

describe('H2Request', () => {
  it('headers are HTTP/1.1 ones: no pseudo-header, Host from :authority; method and url from :method and :path', async () => {
    const seen = await exchange(
      { ':method': 'GET', ':path': '/a?b=1', ':authority': 'app.example:8443', 'x-one': '1' },
      undefined,
      (req) => ({
        headers: { ...req.headers },
        method: req.method,
        url: req.url,
        conflict: req.hostConflict,
        bodyless: req.bodyless,
      }),
    );
    assert.deepEqual(seen, {
      headers: { host: 'app.example:8443', 'x-one': '1' },
      method: 'GET',
      url: '/a?b=1',
      conflict: false,
      bodyless: true,
    });
  });

  it('headers can be replaced, as on IncomingMessage (the flow sets the upstream ones)', async () => {
    const seen = await exchange({ ':path': '/', ':authority': 'app.example' }, undefined, (req) => {
      req.headers = { host: 'replaced.example' };
      return req.headers.host;
    });
    assert.equal(seen, 'replaced.example');
  });

  it('a host field naming another host than :authority is a conflict; the same host in another case is not', async () => {
    const other = await exchange(
      { ':path': '/', ':authority': 'app.example', host: 'other.example' },
      undefined,
      (req) => req.hostConflict,
    );
    const same = await exchange({ ':path': '/', ':authority': 'app.example', host: 'APP.EXAMPLE' }, undefined, (req) => [
      req.hostConflict,
      req.headers.host,
    ]);
    assert.equal(other, true);
    assert.deepEqual(same, [false, 'app.example']);
  });

  it('a request with DATA is not bodyless', async () => {
    assert.equal(await exchange({ ':method': 'POST', ':path': '/', ':authority': 'app.example' }, 'x', (req) => req.bodyless), false);
  });

  it('a client that resets its stream mid-body fails the body instead of ending it', async () => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => undefined);
    try {
      const outcome = new Promise<string>((resolve) => {
        onRequest = (req) => {
          // Node's client close() sends END_STREAM before RST_STREAM (a complete body); losing the connection cannot.
          req.on('data', () => client.destroy());
          req.on('end', () => resolve('ended'));
          req.on('error', (err) => resolve(`failed: ${err.message}`));
        };
      });
      const stream = client.request({ ':method': 'POST', ':path': '/', ':authority': 'app.example' });
      stream.on('error', () => undefined);
      stream.write('part');
      assert.match(await outcome, /^failed: the client reset the HTTP\/2 stream/);
    } finally {
      client.close();
    }
  });
});

describe('H2Response', () => {
  it('destroy() resets the stream with INTERNAL_ERROR, so a response cut short never looks complete', async () => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => undefined);
    try {
      onRequest = (_req, res) => {
        res.writeHead(200);
        res.write('part');
        setTimeout(() => res.destroy(), 20);
      };
      const stream = client.request({ ':path': '/', ':authority': 'app.example' });
      let ended = false;
      stream.on('end', () => (ended = true));
      stream.on('error', () => undefined);
      stream.resume();
      await new Promise((resolve) => stream.on('close', resolve));
      assert.equal(stream.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
      assert.equal(ended, false);
    } finally {
      client.close();
    }
  });

  it('is a plain exchange: no upgrade, sentStatus once headers went out, clientGone once the stream is', async () => {
    const seen = await exchange({ ':path': '/', ':authority': 'app.example' }, undefined, (_req, res) => {
      const before = [res.upgrade, res.sentStatus, res.clientGone];
      res.writeHead(204, {});
      return [...before, res.sentStatus];
    });
    assert.deepEqual(seen, [false, 0, false, 204]);
  });

  it("a header list (the forwarder's) goes out as one HEADERS frame (a refused one leaves nothing behind), and the body ends on its last DATA frame without asking for trailers", async () => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => undefined);
    try {
      let askedForTrailers = false;
      let refused = '';
      onRequest = (_req, res) => {
        res.stream.on('wantTrailers', () => (askedForTrailers = true));
        try {
          res.writeHead(1000, undefined as unknown as string, ['X-Refused', '1']);
        } catch (err) {
          refused = (err as NodeJS.ErrnoException).code ?? '';
        }
        res.writeHead(201, undefined as unknown as string, [
          'Content-Type',
          'text/plain',
          'Set-Cookie',
          'a=1',
          'set-cookie',
          'b=2',
          '__proto__',
          'p',
        ]);
        res.write('bo');
        res.end('dy');
      };
      const stream = client.request({ ':path': '/', ':authority': 'app.example' });
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', (h) => resolve(h)));
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      await new Promise((resolve) => stream.on('close', resolve));
      assert.equal(refused, 'ERR_HTTP2_STATUS_INVALID');
      assert.deepEqual(
        [
          headers[':status'],
          headers['content-type'],
          headers['set-cookie'],
          Object.getOwnPropertyDescriptor(headers, '__proto__')?.value,
          headers['x-refused'],
        ],
        [201, 'text/plain', ['a=1', 'b=2'], 'p', undefined],
      );
      assert.equal(typeof headers.date, 'string');
      assert.deepEqual(
        [Buffer.concat(chunks).toString(), stream.rstCode, askedForTrailers],
        ['body', http2.constants.NGHTTP2_NO_ERROR, false],
      );
    } finally {
      client.close();
    }
  });
});
