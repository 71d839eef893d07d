import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Upstream } from './decide.js';
import type { Forwarder } from './forward.js';
import type { H2Request } from './h2-exchange.js';
import type { RouteKind } from './observer.js';
import { ERRORS, sendError, sendRawError, type AnswerTarget, type ErrorKind } from './responses.js';
import type { ForwardErrorInfo } from './upstream-errors.js';

/**
 * One request on its way through the proxy. The server runs a single flow over it (checks,
 * routing, loop guard, health, failure mapping, logs, metrics); the two kinds of request differ
 * only in how an answer is written and in the last step:
 * - a plain request: answers on its response, forwarded with undici; on HTTP/1.1 `ProxyResponse`
 *   (a ServerResponse), on HTTP/2 `H2Response` (h2-exchange.ts, a stream's response);
 * - a WebSocket upgrade (`UpgradeExchange`): answers on the raw socket, forwarded with http-proxy-3.
 */
export interface Exchange {
  readonly req: ClientRequest;
  /** A protocol upgrade: it must be a WebSocket one, and the upstream gets its Upgrade header. */
  readonly upgrade: boolean;
  /** performance.now() when the request arrived. */
  started: number;
  kind: RouteKind;
  routeHost: string;
  upstream: Upstream | undefined;
  requestId: string;
  /** performance.now() when forwarding started / the upstream's response headers arrived (0 = not yet). */
  forwardStarted: number;
  upstreamAt: number;
  /** The status the client got (or is getting); 0 = nothing sent yet. */
  readonly sentStatus: number;
  /** The whole answer went out (and, for an upgrade, the connection ended without a failure). */
  readonly completed: boolean;
  /** The client connection is gone: there is nothing left to forward. */
  readonly clientGone: boolean;
  /** Writes the error table's answer; cuts the connection when another answer has already started. */
  answer(kind: ErrorKind): void;
  /** The server is draining: the refusal to send, or undefined to serve it (on a closing connection). */
  whileDraining(): ErrorKind | undefined;
  /** The last step: hands the exchange to its forwarder. */
  forwardWith(forwarder: Forwarder): void;
}

/** A client's request: HTTP/1.1's IncomingMessage, or an HTTP/2 stream's request with HTTP/1.1 headers. */
export type ClientRequest = IncomingMessage | H2Request;

/**
 * A plain request's exchange, on HTTP/1.1 or HTTP/2: what the request forwarder writes the
 * upstream's response to, with backpressure.
 */
export interface PlainExchange extends Exchange {
  /** Forwarding attempts so far (a stale pooled connection allows one retry). */
  attempts: number;
  sink: ExchangeSink | undefined;
  /** Aborts the upstream request when the client leaves first. */
  cancel: { cancel(): void } | undefined;
  readonly writableNeedDrain: boolean;
  readonly writableFinished: boolean;
  writeHead(status: number, statusText: string | undefined, headers: string[]): unknown;
  write(chunk: Uint8Array): boolean;
  end(): unknown;
  on(event: 'close' | 'drain', listener: () => void): unknown;
}

/** Receives what the forwarders learn about an exchange (implemented by ProxyServer). */
export interface ExchangeSink {
  /** The server is draining: every response from now on closes its connection. */
  readonly draining: boolean;
  forwardFailed(exchange: Exchange, info: ForwardErrorInfo): void;
  finished(exchange: Exchange): void;
}

// A mixin's base must be typed with any[] constructor parameters (TypeScript's rule for mixins).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Constructor = new (...args: any[]) => object;

/**
 * The routing fields both kinds carry, declared once. They are plain fields on the exchange
 * itself so the hot path needs no closures or side tables.
 */
export function withExchangeFields<B extends Constructor>(Base: B) {
  return class extends Base {
    started = 0;
    kind: RouteKind = 'rejected';
    forwardStarted = 0;
    upstreamAt = 0;
    requestId = '';
    routeHost = '';
    upstream: Upstream | undefined = undefined;
  };
}

/** What both plain responses (HTTP/1.1's ServerResponse, HTTP/2's Http2ServerResponse) offer. */
interface Response extends AnswerTarget {
  readonly statusCode: number;
  readonly writableFinished: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ResponseConstructor = new (...args: any[]) => Response;

/**
 * A plain request's exchange over a response class: the parts HTTP/1.1 and HTTP/2 share. What
 * differs is in the subclasses: when the client is gone and what draining changes.
 */
export function withPlainExchange<B extends ResponseConstructor>(Base: B) {
  return class extends withExchangeFields(Base) {
    attempts = 0;
    sink: ExchangeSink | undefined = undefined;
    cancel: { cancel(): void } | undefined = undefined;

    get upgrade(): boolean {
      return false;
    }

    get sentStatus(): number {
      return this.headersSent ? this.statusCode : 0;
    }

    get completed(): boolean {
      return this.writableFinished;
    }

    answer(kind: ErrorKind): void {
      try {
        sendError(this, kind);
      } catch {
        this.destroy();
      }
    }
  };
}

/** A plain request on HTTP/1.1: the server's response object (`http.createServer({ ServerResponse: ProxyResponse })`). */
export class ProxyResponse extends withPlainExchange(ServerResponse<IncomingMessage>) implements PlainExchange {
  get clientGone(): boolean {
    return this.destroyed;
  }

  /** Served, but its connection is not kept for another request (writeHead sees to it). */
  whileDraining(): undefined {
    return undefined;
  }

  /**
   * Every head written while the server drains says `Connection: close` and the connection ends
   * after it, also for a request that was in flight when the drain began: the client then opens
   * its next connection to whoever listens now instead of reusing this one (README, Restart).
   * `end()` without a head comes here too (`_implicitHeader`).
   */
  override writeHead(...args: [number, ...unknown[]]): this {
    if (this.sink?.draining === true) this.shouldKeepAlive = false;
    return (super.writeHead as (...a: unknown[]) => this)(...args);
  }

  forwardWith(forwarder: Forwarder): void {
    forwarder.requests.forward(this);
  }
}

/**
 * `close` listener shared by every response (no per-request closure). `completed`, not
 * `writableFinished`: an HTTP/2 response reports `writableFinished` on any closed stream, one the
 * client reset mid-answer included, and the VM's request must be aborted then too.
 */
export function onExchangeClose(this: PlainExchange): void {
  if (!this.completed) this.cancel?.cancel();
  this.sink?.finished(this);
}

/**
 * A WebSocket upgrade: no ServerResponse, answers go straight to the socket. The upstream's answer
 * (101, or a refusal http-proxy-3 relays) sets `sentStatus`; the exchange finishes when the
 * client socket closes, which for a switched connection is the end of the whole session.
 */
export class UpgradeExchange extends withExchangeFields(class {}) implements Exchange {
  readonly upgrade = true;
  sentStatus = 0;
  #cut = false;

  constructor(
    readonly req: IncomingMessage,
    readonly socket: Duplex,
    /** The bytes that arrived after the request head (the first WebSocket frames). */
    readonly head: Buffer,
    readonly sink: ExchangeSink,
  ) {
    super();
    this.started = performance.now();
    socket.on('error', ignore);
    socket.once('close', () => sink.finished(this));
  }

  get completed(): boolean {
    return this.sentStatus !== 0 && !this.#cut;
  }

  get clientGone(): boolean {
    return this.socket.destroyed;
  }

  answer(kind: ErrorKind): void {
    if (this.sentStatus !== 0 || (this.socket as Duplex & { bytesWritten?: number }).bytesWritten !== 0) {
      this.#cut = true;
      this.socket.destroy();
      return;
    }
    this.sentStatus = ERRORS[kind].status;
    sendRawError(this.socket, kind);
  }

  /** Refused: it would open a long-lived connection that the drain is about to cut. */
  whileDraining(): ErrorKind {
    return 'draining';
  }

  forwardWith(forwarder: Forwarder): void {
    forwarder.upgrades.forward(this);
  }

  /** The upstream answered: 101 (bytes flow from now on) or another status, relayed as is. */
  upstreamAnswered(status: number): void {
    this.upstreamAt = performance.now();
    this.sentStatus = status;
  }
}

function ignore(): void {}
