// What reading the ClientHello ourselves costs per handshake, against Node's own SNICallback.
//
//   npm exec -- node --import tsx bench/tls-front.ts [--handshakes 1000] [--rounds 3]
//
// Two servers in this process, the same P-256 certificate chosen by name: `sni-callback`
// (tls.createServer + SNICallback) and `front` (src/tls/tls-front.ts). Each round makes
// `--handshakes` sequential TLS 1.3 connections to each (order alternating per round), one
// request byte echoed, and reports the median and p99 of connect → first byte back.
import net from 'node:net';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { createTlsFront } from '../src/tls/tls-front.js';
import { makeCertificate } from '../test/support/certificates.js';

const { values } = parseArgs({ options: { handshakes: { type: 'string', default: '1000' }, rounds: { type: 'string', default: '3' } } });
const handshakes = Number(values.handshakes);
const rounds = Number(values.rounds);
const cert = makeCertificate(['bench.example.test']);
const context = tls.createSecureContext({ cert: cert.certPem, key: cert.keyPem });
const echo = (s: tls.TLSSocket) => s.once('data', (b: Buffer) => s.end(b));

const sniServer = tls.createServer({ SNICallback: (_name, cb) => cb(null, context), ALPNProtocols: ['h2', 'http/1.1'] }, echo);
const front = createTlsFront({
  select: () => context,
  alpn: ['h2', 'http/1.1'],
  handshakeTimeoutMs: 10_000,
  onSecure: echo,
  onRefused: (r) => console.error('refused', r),
});

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

function once(port: number): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const s = tls.connect(
      { port, host: '127.0.0.1', servername: 'bench.example.test', ca: cert.certPem, ALPNProtocols: ['http/1.1'] },
      () => s.write('x'),
    );
    s.once('data', () => {
      resolve(performance.now() - started);
      s.destroy();
    });
    s.on('error', reject);
  });
}

const targets = { 'sni-callback': await listen(sniServer), front: await listen(front) };
const results: Record<string, number[][]> = { 'sni-callback': [], front: [] };
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? (['sni-callback', 'front'] as const) : (['front', 'sni-callback'] as const);
  for (const name of order) {
    const ms: number[] = [];
    for (let i = 0; i < 50; i++) await once(targets[name]); // warm-up
    for (let i = 0; i < handshakes; i++) ms.push(await once(targets[name]));
    results[name]!.push(ms.sort((a, b) => a - b));
  }
}
const at = (ms: number[], q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))]!.toFixed(3);
for (const [name, runs] of Object.entries(results)) {
  console.log(JSON.stringify({ target: name, handshakes, rounds: runs.map((ms) => ({ p50Ms: at(ms, 0.5), p99Ms: at(ms, 0.99) })) }));
}
sniServer.close();
front.close();
