import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { ClientHello } from '../src/tls/client-hello.js';
import { createTlsFront, type HandshakeRefusal } from '../src/tls/tls-front.js';
import { makeCertificate } from './support/certificates.js';

const shop = makeCertificate(['shop.example.test']);
const shopContext = tls.createSecureContext({ cert: shop.certPem, key: shop.keyPem });
// Names whose certificate is on its way (an on-demand order): select answers with a promise.
const later = makeCertificate(['later.example.test', 'none.example.test', 'never.example.test']);
const laterContext = tls.createSecureContext({ cert: later.certPem, key: later.keyPem });
const after100ms = <T>(value: T) => new Promise<T>((resolve) => setTimeout(() => resolve(value), 100));

function selectFor(name: string | undefined): tls.SecureContext | undefined | Promise<tls.SecureContext | undefined> {
  switch (name?.toLowerCase()) {
    case 'shop.example.test':
      return shopContext;
    case 'later.example.test':
      return after100ms(laterContext);
    case 'none.example.test':
      return after100ms(undefined);
    case 'never.example.test':
      return new Promise(() => {});
    default:
      return undefined;
  }
}

describe('TLS front: the certificate is chosen from the ClientHello before TLS starts', () => {
  const hellos: ClientHello[] = [];
  const refusals: HandshakeRefusal[] = [];
  // A real HTTP/1.1 server behind the front, answering with what it saw.
  const app = http.createServer((req, res) => {
    const socket = req.socket as tls.TLSSocket;
    res.end(`${req.headers.host} ${socket.encrypted ? 'encrypted' : 'plain'} ${socket.alpnProtocol}`);
  });
  const front = createTlsFront({
    select: (hello) => {
      hellos.push(hello);
      return selectFor(hello.serverName);
    },
    alpn: ['h2', 'http/1.1'],
    handshakeTimeoutMs: 500,
    onSecure: (socket) => app.emit('connection', socket),
    onRefused: (r) => refusals.push(r),
  });
  let port = 0;

  before(async () => {
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    port = (front.address() as net.AddressInfo).port;
  });
  after(() => {
    front.close();
    app.close();
  });

  const get = (servername: string) =>
    new Promise<{ status: number; body: string; cert: tls.PeerCertificate }>((resolve, reject) => {
      const req = https.get(
        { host: '127.0.0.1', port, servername, headers: { host: servername }, ca: [shop.certPem, later.certPem], agent: false },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body, cert: (res.socket as tls.TLSSocket).getPeerCertificate() }));
        },
      );
      req.on('error', reject);
    });

  it('a name with a certificate: verified handshake, the request reaches the HTTP server over TLS', async () => {
    const r = await get('shop.example.test');
    assert.equal(r.status, 200);
    // https.get offers no ALPN: such clients speak HTTP/1.1.
    assert.equal(r.body, 'shop.example.test encrypted false');
    assert.equal(r.cert.subject.CN, 'shop.example.test');
    assert.equal(hellos.at(-1)?.serverName, 'shop.example.test');
  });

  it('ALPN: h2 is chosen when the client offers it, http/1.1 otherwise', async () => {
    const alpnOf = (protocols: string[]) =>
      new Promise<string | false | null>((resolve, reject) => {
        const s = tls.connect(
          { host: '127.0.0.1', port, servername: 'shop.example.test', ca: shop.certPem, ALPNProtocols: protocols },
          () => {
            resolve(s.alpnProtocol);
            s.destroy();
          },
        );
        s.on('error', reject);
      });
    assert.equal(await alpnOf(['http/1.1', 'h2']), 'h2');
    assert.equal(await alpnOf(['http/1.1']), 'http/1.1');
  });

  it('session tickets: a client offering the ticket of its last connection resumes (TLS 1.3), one offering none does not', async () => {
    // One request per connection; the ticket the server sends after the handshake is kept.
    const connection = (session: Buffer | undefined) =>
      new Promise<{ reused: boolean; protocol: string | null; ticket: Buffer | undefined }>((resolve, reject) => {
        let ticket: Buffer | undefined;
        const s = tls.connect({ host: '127.0.0.1', port, servername: 'shop.example.test', ca: shop.certPem, session }, () =>
          s.write('GET / HTTP/1.1\r\nHost: shop.example.test\r\nConnection: close\r\n\r\n'),
        );
        s.on('session', (t: Buffer) => (ticket = t));
        s.on('data', () => undefined);
        s.on('end', () => resolve({ reused: s.isSessionReused(), protocol: s.getProtocol(), ticket }));
        s.on('error', reject);
      });
    const first = await connection(undefined);
    assert.equal(first.protocol, 'TLSv1.3');
    assert.equal(first.reused, false);
    assert.ok(first.ticket !== undefined, 'the server sent a session ticket');
    const second = await connection(first.ticket);
    assert.equal(second.reused, true, 'the ticket was accepted');
    assert.equal((await connection(undefined)).reused, false);
  });

  it('a name without a certificate: the client gets unrecognized_name, and the refusal names the host', async () => {
    await assert.rejects(get('other.example.test'), (err: NodeJS.ErrnoException) => {
      // OpenSSL reports the alert it received (the code is EPROTO when it arrives during a write).
      assert.match(err.message, /tlsv1 unrecognized name.*SSL alert number 112/);
      return true;
    });
    const r = refusals.at(-1)!;
    assert.deepEqual([r.reason, r.serverName, r.remoteAddress], ['unrecognized-name', 'other.example.test', '127.0.0.1']);
  });

  it('a certificate on its way (a promise): the handshake waits for it, then completes with it', async () => {
    const started = performance.now();
    const r = await get('later.example.test');
    assert.equal(r.status, 200);
    assert.equal(r.cert.subject.CN, 'later.example.test');
    assert.ok(performance.now() - started >= 90);
  });

  it('a promise that ends without a certificate: unrecognized_name, saying none arrived in time', async () => {
    await assert.rejects(get('none.example.test'), /unrecognized name/);
    const r = refusals.at(-1)!;
    assert.deepEqual(
      [r.reason, r.detail, r.serverName],
      ['unrecognized-name', 'no certificate for this name arrived in time', 'none.example.test'],
    );
  });

  it('a promise that never settles: the handshake deadline still closes the connection', async () => {
    const started = performance.now();
    await assert.rejects(get('never.example.test'));
    assert.ok(performance.now() - started >= 450);
    assert.equal(refusals.at(-1)?.reason, 'handshake-timeout');
  });

  it('plain HTTP on the HTTPS port: closed with a decode_error alert, never parsed as HTTP', async () => {
    const reply = await new Promise<Buffer>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: shop.example.test\r\n\r\n'));
      let got = Buffer.alloc(0);
      s.on('data', (c: Buffer) => (got = Buffer.concat([got, c])));
      s.on('close', () => resolve(got));
    });
    assert.equal(reply.toString('hex'), '15030300020232');
    assert.equal(refusals.at(-1)?.reason, 'not-tls');
  });

  it('a client that sends nothing, or half a hello, is closed at the handshake timeout', async () => {
    for (const bytes of [Buffer.alloc(0), Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])]) {
      const started = performance.now();
      await new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
        s.on('close', () => resolve());
        s.on('error', () => {});
      });
      const ms = performance.now() - started;
      assert.ok(ms >= 450, `closed after ${Math.round(ms)} ms`);
      assert.equal(refusals.at(-1)?.reason, 'handshake-timeout');
    }
  });
});
