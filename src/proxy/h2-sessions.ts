import http2, { type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { H2Request, H2Response } from './h2-exchange.js';
import { limitRequestTime } from './h2-request-timeout.js';

/** Streams a client may have open at once on one connection (nginx's http2_max_concurrent_streams is 128). */
export const MAX_CONCURRENT_STREAMS = 100;

export interface H2SessionsOptions {
  /** A session with no open stream is closed with GOAWAY after this (EDGEPROXY_IDLE_TIMEOUT). */
  readonly idleTimeoutMs: number;
  /** A request whose body has not ended after this gets 408 (EDGEPROXY_CLIENT_REQUEST_TIMEOUT; 0 = no limit). */
  readonly requestTimeoutMs: number;
  /** Each request, on the one request flow. */
  readonly onRequest: (req: H2Request, res: H2Response) => void;
  /** A CONNECT request (no extended CONNECT: RFC 8441 is not offered). */
  readonly onConnect: (req: H2Request, res: H2Response) => void;
}

/**
 * HTTP/2 on connections the HTTPS listener has secured with ALPN `h2`: Node's `http2` server
 * (its compatibility API, with the exchange classes of h2-exchange.ts) is given each TLS socket
 * and runs a session on it. Kept here: the sessions, for the drain (GOAWAY, then cut), and the
 * idle rule (HTTP/1.1's keep-alive timeout: a session without an open stream for
 * `idleTimeoutMs` is closed), and each request's time to arrive whole (h2-request-timeout.ts).
 * Responses are not timed: SSE and long downloads stay open while both ends do, as on HTTP/1.1.
 */
export class H2Sessions {
  readonly #server: ReturnType<typeof createServer>;
  readonly #sessions = new Set<ServerHttp2Session>();
  readonly #idleTimeoutMs: number;
  #closing = false;

  constructor(opts: H2SessionsOptions) {
    this.#idleTimeoutMs = opts.idleTimeoutMs;
    this.#server = createServer();
    this.#server.on('request', (req: H2Request, res: H2Response) => {
      limitRequestTime(req, res, opts.requestTimeoutMs);
      opts.onRequest(req, res);
    });
    this.#server.on('connect', opts.onConnect);
    this.#server.on('session', (session: ServerHttp2Session) => this.#track(session));
  }

  /** Runs an HTTP/2 session on a socket whose handshake chose `h2`. */
  accept(socket: TLSSocket): void {
    this.#server.emit('connection', socket);
  }

  /** Open sessions (for tests and the drain). */
  get size(): number {
    return this.#sessions.size;
  }

  /** GOAWAY on every session, and on any that starts later: streams in flight finish, no new one is accepted. */
  close(): void {
    this.#closing = true;
    for (const session of this.#sessions) session.close();
  }

  /**
   * Cuts every session left (the drain's deadline) with GOAWAY CANCEL: with NO_ERROR, streams cut
   * in the middle of a response could pass for complete ones.
   */
  destroy(): void {
    for (const session of this.#sessions) session.destroy(new Error('the shutdown grace period is over'), http2.constants.NGHTTP2_CANCEL);
  }

  #track(session: ServerHttp2Session): void {
    this.#sessions.add(session);
    const idle = new IdleClose(session, this.#idleTimeoutMs);
    session.on('stream', (stream: ServerHttp2Stream) => idle.opened(stream));
    session.once('close', () => {
      this.#sessions.delete(session);
      idle.stop();
    });
    // Session errors (a peer's protocol error, a reset socket) end the session; nothing to add.
    session.on('error', ignore);
    if (this.#closing) session.close();
  }
}

function createServer() {
  return http2.createServer({
    Http2ServerRequest: H2Request,
    Http2ServerResponse: H2Response,
    settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS },
  });
}

/** Closes a session (GOAWAY) once it has had no open stream for `ms`. */
class IdleClose {
  #open = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #closed = (): void => this.#streamClosed();

  constructor(
    readonly session: ServerHttp2Session,
    readonly ms: number,
  ) {
    this.#arm();
  }

  opened(stream: ServerHttp2Stream): void {
    this.#open += 1;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    stream.once('close', this.#closed);
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  #streamClosed(): void {
    this.#open -= 1;
    if (this.#open === 0) this.#arm();
  }

  #arm(): void {
    this.#timer = setTimeout(() => this.session.close(), this.ms);
    this.#timer.unref();
  }
}

function ignore(): void {}
