import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { MAX_CLIENT_HELLO, readClientHello } from '../src/tls/client-hello.js';

/** The bytes a real Node TLS client sends first, caught by a plain TCP server. */
async function helloFrom(opts: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => {
    server.once('connection', (s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (readClientHello(buf).kind !== 'partial') {
          resolve(buf);
          s.destroy();
        }
      });
    });
  });
  const client = tls.connect({ port, host: '127.0.0.1', ...opts });
  client.on('error', () => {});
  const bytes = await got;
  client.destroy();
  server.close();
  return bytes;
}

describe('ClientHello: SNI and ALPN read before TLS starts', () => {
  it('reads the server name and the offered protocols of a real client, in order', async () => {
    const hello = readClientHello(await helloFrom({ servername: 'Shop.Example.com', ALPNProtocols: ['h2', 'http/1.1'] }));
    assert.deepEqual(hello, { kind: 'hello', serverName: 'Shop.Example.com', alpn: ['h2', 'http/1.1'] });
  });

  it('no SNI (a client connecting by IP address) and no ALPN', async () => {
    const hello = readClientHello(await helloFrom({ servername: '' }));
    assert.deepEqual(hello, { kind: 'hello', serverName: undefined, alpn: [] });
  });

  it('TLS 1.2-only clients too', async () => {
    const hello = readClientHello(await helloFrom({ servername: 'a.test', maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] }));
    assert.deepEqual(hello, { kind: 'hello', serverName: 'a.test', alpn: ['http/1.1'] });
  });

  it('every prefix of a ClientHello is partial, never invalid or a wrong answer; bytes after it do not matter', async () => {
    const bytes = await helloFrom({ servername: 'a.test', ALPNProtocols: ['h2'] });
    for (let n = 0; n < bytes.length; n++) assert.equal(readClientHello(bytes.subarray(0, n)).kind, 'partial', `prefix ${n}`);
    assert.deepEqual(readClientHello(Buffer.concat([bytes, Buffer.from('trailing')])), {
      kind: 'hello',
      serverName: 'a.test',
      alpn: ['h2'],
    });
  });

  it('a ClientHello split over two records is joined', async () => {
    const bytes = await helloFrom({ servername: 'split.test', ALPNProtocols: ['http/1.1'] });
    const body = bytes.subarray(5, 5 + bytes.readUInt16BE(3));
    const record = (b: Buffer) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, b.length >> 8, b.length & 0xff]), b]);
    const split = Buffer.concat([record(body.subarray(0, 3)), record(body.subarray(3))]);
    assert.deepEqual(readClientHello(split), { kind: 'hello', serverName: 'split.test', alpn: ['http/1.1'] });
  });

  it('not TLS, or a hello whose lengths lie: invalid with a reason', async () => {
    for (const [bytes, reason] of [
      [Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n'), /not a TLS handshake record/],
      [Buffer.from('SSH-2.0-OpenSSH_9.0\r\n'), /not a TLS handshake record/],
      [Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00]), /impossible length/],
      [Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]), /not a ClientHello/],
      [Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff]), /larger than 64 KiB/],
      [Buffer.from([0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03]), /runs past its end/],
    ] as const) {
      const r = readClientHello(bytes);
      assert.equal(r.kind, 'invalid', bytes.toString('hex'));
      assert.match((r as { reason: string }).reason, reason);
    }
    assert.ok(MAX_CLIENT_HELLO >= 16_384);
  });

  it('every single-byte change of a real ClientHello is read without throwing, and a changed name is never a wrong host', async () => {
    const bytes = await helloFrom({ servername: 'mutate.test', ALPNProtocols: ['h2', 'http/1.1'] });
    for (let i = 0; i < bytes.length; i++) {
      for (const flip of [0x01, 0x80, 0xff]) {
        const copy = Buffer.from(bytes);
        copy[i]! ^= flip;
        const r = readClientHello(copy);
        if (r.kind === 'hello' && r.serverName !== undefined && r.serverName !== 'mutate.test') {
          // Only a change inside the name itself may change the name, and then to printable ASCII.
          assert.match(r.serverName, /^[\x21-\x7e]+$/, `byte ${i}`);
          assert.equal(r.serverName.length, 'mutate.test'.length, `byte ${i}`);
        }
      }
    }
  });
});
