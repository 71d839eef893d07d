/**
 * A TLS handshake load: `concurrency` loops, each opening a connection, completing TLS 1.3,
 * sending one `GET /` with `Connection: close` and reading the response until the server closes,
 * then the next connection. Full handshakes (no session offered) or resumed ones (each loop offers the
 * last session ticket it received); every connection's `isSessionReused()` is counted, so a
 * server that never resumes shows it.
 */
import tls from 'node:tls';

export interface HandshakeOptions {
  readonly port: number;
  readonly servername: string;
  readonly seconds: number;
  readonly concurrency: number;
  readonly resume: boolean;
  /** The key-exchange groups the client offers (`tls.connect`'s `ecdhCurve`); undefined = Node's default. */
  readonly groups?: string;
}

export interface HandshakeFigures {
  readonly perSecond: number;
  readonly handshakes: number;
  /** Connections on which the client saw `isSessionReused()`. */
  readonly reused: number;
  readonly errors: number;
  readonly protocol: string | undefined;
  /** The key-exchange group of the last full handshake (`X25519`, `X25519MLKEM768`, …). */
  readonly group: string | undefined;
}

interface Tally {
  handshakes: number;
  reused: number;
  errors: number;
  protocol: string | undefined;
  group: string | undefined;
}

/** One connection: resolves with the session ticket the server sent (if any). */
function connection(o: HandshakeOptions, session: Buffer | undefined, tally: Tally): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    let ticket: Buffer | undefined;
    let ok = false;
    const s = tls.connect({
      host: '127.0.0.1',
      port: o.port,
      servername: o.servername,
      session,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      ...(o.groups === undefined ? {} : { ecdhCurve: o.groups }),
    });
    s.on('session', (t: Buffer) => (ticket = t));
    s.once('secureConnect', () => {
      tally.handshakes++;
      if (s.isSessionReused()) tally.reused++;
      tally.protocol = s.getProtocol() ?? undefined;
      const group = s.getEphemeralKeyInfo();
      if (group !== null && 'name' in group && typeof group.name === 'string') tally.group = group.name;
      // write, not end: a half-close before the answer reads as a client gone (nginx: 499).
      s.write(`GET / HTTP/1.1\r\nHost: ${o.servername}\r\nConnection: close\r\n\r\n`);
    });
    s.on('data', (b: Buffer) => (ok ||= b.subarray(0, 12).toString() === 'HTTP/1.1 200'));
    s.on('end', () => s.end());
    s.on('error', () => undefined);
    s.once('close', () => {
      if (!ok) tally.errors++;
      resolve(ticket ?? session);
    });
  });
}

async function loop(o: HandshakeOptions, until: number, tally: Tally): Promise<void> {
  let session: Buffer | undefined;
  while (performance.now() < until) {
    const next = await connection(o, session, tally);
    if (o.resume) session = next;
  }
}

export async function handshakeLoad(o: HandshakeOptions): Promise<HandshakeFigures> {
  const tally: Tally = { handshakes: 0, reused: 0, errors: 0, protocol: undefined, group: undefined };
  const started = performance.now();
  const until = started + o.seconds * 1000;
  await Promise.all(Array.from({ length: o.concurrency }, () => loop(o, until, tally)));
  const elapsed = (performance.now() - started) / 1000;
  return { ...tally, perSecond: tally.handshakes / elapsed };
}
