import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { clientConnectionLimit } from '../src/proxy/connection-limit.js';
import { createLogger } from '../src/log/logger.js';
import { checkCertificate, type LoadedCertificate } from '../src/tls/certificate.js';
import { HttpsListener } from '../src/tls/https-listener.js';
import { startBackend, startProxy, type Backend, type TestProxy } from './support/backend.js';
import { makeCertificate } from './support/certificates.js';
import { eventually } from './support/service.js';

describe('clientConnectionLimit', () => {
  it('keeps a quarter of the open-files limit, at least 256 descriptors, for the other side', () => {
    assert.equal(clientConnectionLimit(400), 144);
    assert.equal(clientConnectionLimit(20_000), 15_000);
    assert.equal(clientConnectionLimit(100), 1);
    assert.equal(clientConnectionLimit(undefined), undefined);
    assert.equal(clientConnectionLimit(Infinity), undefined);
  });
});

const NAME = 'app.example';
const LIMIT = 3;
const REQUEST = `GET / HTTP/1.1\r\nHost: ${NAME}\r\n\r\n`;
const certificate = makeCertificate([NAME]);

/** A connection that was served once and stays open (keep-alive), or one closed on arrival. */
type Outcome = { kind: 'served'; socket: net.Socket } | { kind: 'closed' };

/** Every client socket opened, destroyed when the suite ends (whether or not a test failed). */
const opened: net.Socket[] = [];

/** Sends one keep-alive request on `socket` once `ready` fires: served (200, the socket held) or closed without an answer. */
function outcome(socket: net.Socket, ready: string): Promise<Outcome> {
  opened.push(socket);
  return new Promise((resolve) => {
    let answer = '';
    socket.once(ready, () => socket.write(REQUEST));
    socket.on('data', (b: Buffer) => {
      answer += b.toString('latin1');
      if (answer.startsWith('HTTP/1.1 200') && answer.includes('\r\n\r\n')) resolve({ kind: 'served', socket });
    });
    socket.on('error', () => undefined);
    socket.once('close', () => resolve({ kind: 'closed' }));
  });
}

const plain = (port: number) => outcome(net.connect(port, '127.0.0.1'), 'connect');
const secure = (port: number) =>
  outcome(
    tls.connect({ port, host: '127.0.0.1', servername: NAME, ca: certificate.certPem, ALPNProtocols: ['http/1.1'] }),
    'secureConnect',
  );

function served(o: Outcome): net.Socket {
  assert.equal(o.kind, 'served', 'the connection was closed, not served');
  return (o as { socket: net.Socket }).socket;
}

/** Closes a held connection and waits until the proxy has let it go: a new one of the same kind is served again. */
async function release(socket: net.Socket, again: () => Promise<Outcome>): Promise<net.Socket> {
  socket.destroy();
  return eventually(
    'a new connection served once one was closed',
    async () => {
      const o = await again();
      return o.kind === 'served' ? o.socket : undefined;
    },
    15_000,
  );
}

describe('one client connection limit for the HTTP and HTTPS ports', () => {
  let vm: Backend;
  let t: TestProxy;
  let https: HttpsListener;
  let httpsPort: number;

  before(async () => {
    vm = await startBackend('vm');
    t = await startProxy({ server: { maxConnections: LIMIT } });
    t.routes({ [NAME]: { vmPort: vm.port } });
    const loaded = checkCertificate('default', 'the test certificate', certificate.certPem, certificate.keyPem) as LoadedCertificate;
    https = new HttpsListener({
      defaultCertificate: loaded,
      handshakeTimeoutMs: 10_000,
      accept: (socket) => t.proxy.acceptSecure(socket),
      logger: createLogger('info', { write: () => undefined }),
    });
    t.proxy.shareConnectionLimit(https.server);
    httpsPort = (await https.listen('127.0.0.1', 0)).port;
  });
  after(async () => {
    for (const s of opened) s.destroy();
    await https.close();
    await t.close();
    await vm.close();
  });

  it('refuses HTTPS connections past the limit as plain ones, and frees a place when one closes', async () => {
    // Two HTTPS connections and one plain one fill the limit of three.
    const held = [served(await secure(httpsPort)), served(await secure(httpsPort)), served(await plain(t.port))];
    // Past it, a new connection to either port is closed on arrival: no handshake, no answer.
    assert.equal((await secure(httpsPort)).kind, 'closed');
    assert.equal((await plain(t.port)).kind, 'closed');
    const line = await t.waitFor((l) => l.msg === 'client connection limit reached; new connections are closed');
    assert.equal(line.code, 'CLIENT_CONNECTION_LIMIT');
    assert.equal(line.limit, LIMIT);
    // Closing an HTTPS connection frees its place, for either port.
    const plainAgain = await release(held[0]!, () => plain(t.port));
    assert.equal((await secure(httpsPort)).kind, 'closed');
    // And a plain connection's place can go to an HTTPS one.
    const secureAgain = await release(plainAgain, () => secure(httpsPort));
    assert.equal((await plain(t.port)).kind, 'closed');
    for (const s of [held[1]!, held[2]!, secureAgain]) s.destroy();
    // All closed: the three places are free again.
    await eventually(
      'every place free again',
      async () => {
        const all = await Promise.all([secure(httpsPort), plain(t.port), secure(httpsPort)]);
        for (const o of all) if (o.kind === 'served') o.socket.destroy();
        return all.every((o) => o.kind === 'served');
      },
      15_000,
    );
  });
});
