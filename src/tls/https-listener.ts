import type net from 'node:net';
import type tls from 'node:tls';
import { listenOn, type ListenOptions } from '../listen.js';
import type { Logger } from '../log/logger.js';
import { CertificateIndex } from './certificate-index.js';
import type { LoadedCertificate } from './certificate.js';
import type { ClientHello } from './client-hello.js';
import { createTlsFront, type HandshakeRefusal, type SelectedContext } from './tls-front.js';

export interface HttpsListenerOptions {
  /** The certificates of the current snapshot, read on every handshake (never a query); undefined before the first snapshot. */
  readonly certificates?: () => CertificateIndex<LoadedCertificate> | undefined;
  /**
   * On-demand issuance: asked for a name the index has no certificate for; a promise of the
   * certificate when an order runs (the handshake waits for it), undefined when none is made.
   */
  readonly issue?: (serverName: string) => Promise<tls.SecureContext | undefined> | undefined;
  /** Served when no certificate matches the name, or the client sent no SNI. */
  readonly defaultCertificate: LoadedCertificate | undefined;
  readonly handshakeTimeoutMs: number;
  /**
   * The session ticket keys (48 bytes) every context this listener serves with is given, so that
   * a ticket issued by one thread resumes on any other (worker threads share the main thread's);
   * undefined: each context keeps the random keys Node gave it.
   */
  readonly ticketKeys?: Buffer;
  /** Where secured connections go: the proxy, which serves HTTP/2 or HTTP/1.1 by `socket.alpnProtocol`. */
  readonly accept: (socket: tls.TLSSocket) => void;
  readonly logger: Logger;
  /** Told about every handshake: `ok` with the protocol served, or why it was refused. Cheap; must not throw. */
  readonly onHandshake?: (result: 'ok' | HandshakeRefusal['reason'], protocol?: ServedProtocol) => void;
}

/** ALPN, in our order of preference: HTTP/2 when the client offers it, else HTTP/1.1. */
export const ALPN_PROTOCOLS = ['h2', 'http/1.1'] as const;

/** What a secured connection is served with; a client that offers no ALPN gets HTTP/1.1. */
export type ServedProtocol = (typeof ALPN_PROTOCOLS)[number];

export function servedProtocol(socket: tls.TLSSocket): ServedProtocol {
  return socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1';
}

const NO_CERTIFICATES = CertificateIndex.empty<LoadedCertificate>();

/**
 * The public HTTPS port: TLS terminated here with the certificate of the SNI name (exact, then a
 * wildcard one label deep, then the default one), then the same request flow as the HTTP port,
 * over HTTP/2 or HTTP/1.1 as ALPN chose.
 */
export class HttpsListener {
  readonly #opts: HttpsListenerOptions;
  /** The TCP listener (the client connection limit is shared with the HTTP port's through it). */
  readonly server: net.Server;
  /** Known once listening: read on every plain request that may be redirected, so not a getsockname each time. */
  #port: number | undefined;
  /** The ticket keys each context was last given (each is built once per certificate version; a handshake only looks it up). */
  readonly #keyed = new WeakMap<tls.SecureContext, Buffer>();
  #ticketKeys: Buffer | undefined;

  constructor(opts: HttpsListenerOptions) {
    this.#opts = opts;
    this.#ticketKeys = opts.ticketKeys;
    this.server = createTlsFront({
      select: (hello) => this.#select(hello),
      alpn: ALPN_PROTOCOLS,
      handshakeTimeoutMs: opts.handshakeTimeoutMs,
      onSecure: (socket) => {
        opts.onHandshake?.('ok', servedProtocol(socket));
        opts.accept(socket);
      },
      onRefused: (r) => this.#refused(r),
    });
  }

  /** A certificate from memory, so that a handshake never waits on the database. */
  #select(hello: ClientHello): SelectedContext {
    const index = this.#opts.certificates?.() ?? NO_CERTIFICATES;
    const found = hello.serverName === undefined ? undefined : index.lookup(hello.serverName, Date.now());
    if (found !== undefined) return this.#keys(found.context);
    const fallback = this.#opts.defaultCertificate?.context;
    const issuing = hello.serverName === undefined ? undefined : this.#opts.issue?.(hello.serverName);
    return issuing === undefined ? this.#keys(fallback) : issuing.then((context) => this.#keys(context ?? fallback));
  }

  /** New ticket keys (a rotation): each context takes them at its next handshake. */
  setTicketKeys(keys: Buffer): void {
    this.#ticketKeys = keys;
  }

  /** `context`, with the shared ticket keys set the first time it is served and after each rotation. */
  #keys(context: tls.SecureContext | undefined): tls.SecureContext | undefined {
    const keys = this.#ticketKeys;
    if (context === undefined || keys === undefined || this.#keyed.get(context) === keys) return context;
    (context.context as { setTicketKeys(keys: Buffer): void }).setTicketKeys(keys);
    this.#keyed.set(context, keys);
    return context;
  }

  #refused(r: HandshakeRefusal): void {
    this.#opts.onHandshake?.(r.reason);
    // Scanners and old clients refuse handshakes all day: debug, counted by the metric.
    this.#opts.logger.debug(
      { reason: r.reason, detail: r.detail, serverName: r.serverName, remote: r.remoteAddress },
      'TLS handshake refused',
    );
  }

  async listen(host: string | undefined, port: number, opts?: ListenOptions): Promise<{ address: string; port: number }> {
    const listening = await listenOn(this.server, host, port, opts);
    this.#port = listening.port;
    return listening;
  }

  /** The port it listens on; undefined before listen() and after close(). */
  get port(): number | undefined {
    return this.#port;
  }

  /** Stops accepting connections; those already secured belong to the HTTP server's drain. */
  close(): Promise<void> {
    this.#port = undefined;
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** What a listener hands its secured connections to: the proxy's request flow (ProxyServer). */
export interface SecureConnectionSink {
  acceptSecure(socket: tls.TLSSocket): void;
  shareConnectionLimit(listener: net.Server): void;
}

/**
 * The HTTPS listener of a thread that serves (the main thread, or a worker): its secured
 * connections go into `proxy`'s flow and count in the proxy's client connection limit.
 */
export function httpsListenerFor(proxy: SecureConnectionSink, opts: Omit<HttpsListenerOptions, 'accept'>): HttpsListener {
  const listener = new HttpsListener({ ...opts, accept: (socket) => proxy.acceptSecure(socket) });
  proxy.shareConnectionLimit(listener.server);
  return listener;
}
