import net from 'node:net';
import tls from 'node:tls';
import { MAX_CLIENT_HELLO, readClientHello, type ClientHello } from './client-hello.js';

/**
 * The TCP side of the HTTPS listener: reads each connection's ClientHello, asks `select` for the
 * certificate of its server name, and only then starts TLS on the socket with that certificate.
 * A name with no certificate gets a fatal `unrecognized_name` alert (RFC 6066 §3), a connection
 * that is not TLS or sends its hello too slowly is closed. The secured socket goes to `onSecure`,
 * which hands it to the HTTP/1.1 or HTTP/2 server by its negotiated protocol.
 */
export interface TlsFrontOptions {
  /**
   * The certificate for this hello, from memory (the route table's snapshot): never a query. A
   * promise when it is on its way (an on-demand order): the handshake waits for it, within the
   * handshake deadline; undefined from it, as from here, means no certificate.
   */
  readonly select: (hello: ClientHello) => SelectedContext;
  /** ALPN protocols in the server's order of preference (`h2`, `http/1.1`). */
  readonly alpn: readonly string[];
  /** The ClientHello and the whole handshake must be done within this (slow-handshake floods hold no socket longer). */
  readonly handshakeTimeoutMs: number;
  readonly onSecure: (socket: tls.TLSSocket) => void;
  /** A connection that ended before TLS started, and why (for logs and metrics). */
  readonly onRefused: (refusal: HandshakeRefusal) => void;
}

export type SelectedContext = tls.SecureContext | undefined | Promise<tls.SecureContext | undefined>;

export type RefusalReason = 'not-tls' | 'handshake-timeout' | 'unrecognized-name' | 'handshake-failed';

/** Every refusal with what it means (metric label values; a reason missing here does not compile). */
export const REFUSAL_HELP = {
  'not-tls': 'the first bytes were not a well-formed TLS ClientHello (answered with a decode_error alert)',
  'handshake-timeout': 'the ClientHello and handshake did not finish within EDGEPROXY_TLS_HANDSHAKE_TIMEOUT',
  'unrecognized-name': 'no certificate for the SNI name and no default certificate (answered with an unrecognized_name alert)',
  'handshake-failed': 'TLS itself failed after the certificate was chosen (no shared protocol version or cipher, a client alert)',
} as const satisfies Record<RefusalReason, string>;

export const REFUSAL_REASONS = Object.keys(REFUSAL_HELP) as RefusalReason[];

export interface HandshakeRefusal {
  readonly reason: RefusalReason;
  readonly detail: string;
  readonly serverName: string | undefined;
  readonly remoteAddress: string | undefined;
}

/** A fatal alert record: TLS 1.2 record version (accepted by 1.3 clients), level 2, description. */
function alert(description: number): Buffer {
  return Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]);
}
const UNRECOGNIZED_NAME = alert(112);
const DECODE_ERROR = alert(50);

/** The options, and the ALPN list in its wire form, built once for every connection (Node converts a string list per socket). */
interface Front extends TlsFrontOptions {
  readonly alpnWire: Buffer;
}

export function createTlsFront(opts: TlsFrontOptions): net.Server {
  const front: Front = {
    ...opts,
    alpnWire: Buffer.concat(opts.alpn.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')]))),
  };
  return net.createServer({ noDelay: true }, (socket) => new PendingHandshake(socket, front).start());
}

/** One connection from its first byte until TLS takes it over (or it is refused). */
class PendingHandshake {
  readonly #socket: net.Socket;
  readonly #opts: Front;
  #buffered: Buffer = Buffer.alloc(0);
  #timer: NodeJS.Timeout | undefined;
  #secured: tls.TLSSocket | undefined;
  #done = false;
  readonly #onData = (chunk: Buffer): void => this.#read(chunk);

  constructor(socket: net.Socket, opts: Front) {
    this.#socket = socket;
    this.#opts = opts;
  }

  start(): void {
    this.#socket.on('error', ignore);
    this.#socket.on('data', this.#onData);
    const ms = this.#opts.handshakeTimeoutMs;
    this.#timer = setTimeout(() => this.#refuse('handshake-timeout', `the handshake did not finish within ${ms} ms`), ms);
    this.#timer.unref();
  }

  #read(chunk: Buffer): void {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    const hello = readClientHello(this.#buffered);
    if (hello.kind === 'partial') {
      // readClientHello refuses anything larger by its length fields; this bounds what a client can make us hold.
      if (this.#buffered.length > MAX_CLIENT_HELLO + 5 * 4) this.#refuse('not-tls', 'a ClientHello larger than 64 KiB', DECODE_ERROR);
      return;
    }
    this.#socket.removeListener('data', this.#onData);
    this.#socket.pause();
    if (hello.kind === 'invalid') {
      this.#refuse('not-tls', hello.reason, DECODE_ERROR);
      return;
    }
    const selected = this.#opts.select(hello);
    if (selected instanceof Promise) {
      // The socket stays paused meanwhile; the deadline (or the client leaving) ends the wait.
      selected.then(
        (context) => this.#chosen(context, hello, 'no certificate for this name arrived in time'),
        (err: unknown) => this.#refuse('handshake-failed', `choosing the certificate failed: ${String(err)}`, undefined, hello.serverName),
      );
      return;
    }
    this.#chosen(selected, hello, 'no certificate for this name');
  }

  #chosen(context: tls.SecureContext | undefined, hello: ClientHello, missing: string): void {
    if (this.#done || this.#socket.destroyed) return;
    if (context === undefined) {
      this.#refuse('unrecognized-name', missing, UNRECOGNIZED_NAME, hello.serverName);
      return;
    }
    this.#secure(context, hello.serverName);
  }

  #secure(secureContext: tls.SecureContext, serverName: string | undefined): void {
    const socket = this.#socket;
    // The hello goes back in front of the stream for OpenSSL to read it as if nothing had looked.
    socket.unshift(this.#buffered);
    const secured = new tls.TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: this.#opts.alpnWire });
    this.#secured = secured;
    const failed = (err: Error): void => this.#refuse('handshake-failed', err.message, undefined, serverName);
    secured.once('error', failed);
    secured.once('secure', () => {
      clearTimeout(this.#timer);
      secured.removeListener('error', failed);
      // What Node's own TLS server does before 'secureConnection': an HTTP/2 session started on a
      // socket still marked as connecting waits for a 'secureConnect' that a server socket never emits.
      (secured as tls.TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
      this.#opts.onSecure(secured);
    });
  }

  #refuse(reason: RefusalReason, detail: string, answer?: Buffer, serverName?: string): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    this.#socket.removeListener('data', this.#onData);
    this.#opts.onRefused({ reason, detail, serverName, remoteAddress: this.#socket.remoteAddress });
    if (this.#secured !== undefined) this.#secured.destroy();
    if (answer === undefined) this.#socket.destroy();
    // Destroyed once written: a client that ignores the alert holds nothing.
    else this.#socket.end(answer, () => this.#socket.destroy());
  }
}

function ignore(): void {}
