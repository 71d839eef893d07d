import { isIP } from 'node:net';
import type tls from 'node:tls';
import type { Logger } from '../log/logger.js';
import { normaliseHost } from '../table/host.js';
import type { OrderOutcome, OrderRunner } from './order-runner.js';
import { certificateArrives, type TlsView } from './tls-view.js';

export interface OnDemandOptions {
  readonly view: TlsView;
  readonly runner: Pick<OrderRunner, 'run'>;
  /** Attempts (orders, or waits on another proxy's order) in flight at once in this process. */
  readonly maxOrders: number;
  /** How long one handshake waits for the certificate (EDGEPROXY_ACME_HANDSHAKE_WAIT). */
  readonly handshakeWaitMs: number;
  /** The fleet lock's lifetime: the longest another proxy's order can hold a name without renewing. */
  readonly lockTtlMs: number;
  readonly logger: Logger;
}

/** One name's attempt: every handshake for it waits on the same promise. */
interface Attempt {
  readonly certificate: Promise<tls.SecureContext | undefined>;
}

/** After an order that stored a certificate, how long the attempt waits for the stream to bring it (polling may take an interval). */
const ARRIVAL_MS = 60_000;
/**
 * When the primary already had a certificate (`not-needed`): the stream brings it within ms, or
 * this proxy cannot open it (another storage key); after this, handshakes stop waiting for it.
 */
const STORED_ELSEWHERE_MS = 3_000;
/** After a failure the primary recorded no wait for (the primary unreachable): how long this proxy leaves the name alone. */
const LOCAL_HOLD_MS = 30_000;

/**
 * On-demand issuance, gated by the route table. Called from the handshake for a name the index
 * has no certificate for; decides from memory only (the snapshot, this process's attempts and
 * backoff copy), so the handshake never waits on the database: an order runs in the background
 * and the handshake waits, at most `handshakeWaitMs`, for a snapshot with the certificate.
 */
export class OnDemandIssuer {
  readonly #opts: OnDemandOptions;
  readonly #attempts = new Map<string, Attempt>();
  /** Name → no attempt before this time (ms since the epoch): the primary's retry_after, copied. */
  readonly #notBefore = new Map<string, number>();

  constructor(opts: OnDemandOptions) {
    this.#opts = opts;
  }

  /** Attempts in flight (for metrics and tests). */
  get inFlight(): number {
    return this.#attempts.size;
  }

  /**
   * A promise of the certificate for `serverName`, or undefined when no order is made for it: not
   * a host name, an IP literal, no route, a certificate already there, backing off, or this
   * process at its cap. A handshake for a name with an attempt running joins it.
   */
  certificateFor(serverName: string): Promise<tls.SecureContext | undefined> | undefined {
    const host = normaliseHost(serverName);
    if (host === undefined || isIP(host) !== 0) return undefined;
    const snapshot = this.#opts.view.current;
    if (snapshot === undefined || snapshot.routes.get(host) === undefined) return undefined;
    if (snapshot.tls.certificates.lookup(host, Date.now()) !== undefined) return undefined;
    const attempt = this.#attempts.get(host) ?? this.#start(host);
    return attempt === undefined ? undefined : bounded(attempt.certificate, this.#opts.handshakeWaitMs);
  }

  #start(host: string): Attempt | undefined {
    const notBefore = this.#notBefore.get(host);
    if (notBefore !== undefined) {
      if (notBefore > Date.now()) return undefined;
      this.#notBefore.delete(host);
    }
    if (this.#attempts.size >= this.#opts.maxOrders) {
      this.#opts.logger.debug({ name: host, maxOrders: this.#opts.maxOrders }, 'on-demand issuance at its cap; no order');
      return undefined;
    }
    let giveUp!: () => void;
    const gaveUp = new Promise<void>((resolve) => (giveUp = resolve));
    const attempt: Attempt = { certificate: certificateArrives(this.#opts.view, host, gaveUp) };
    this.#attempts.set(host, attempt);
    const finish = (): void => {
      giveUp();
      if (this.#attempts.get(host) === attempt) this.#attempts.delete(host);
    };
    void attempt.certificate.then(finish);
    void this.#opts.runner.run(host, 'on-demand').then((outcome) => {
      const holdMs = this.#holdAfter(host, outcome);
      if (holdMs <= 0) finish();
      else setTimeout(finish, holdMs).unref();
    });
    return attempt;
  }

  /** How long the attempt keeps waiting for a certificate after the order's outcome; records the backoff. */
  #holdAfter(host: string, outcome: OrderOutcome): number {
    switch (outcome.kind) {
      case 'issued':
        return ARRIVAL_MS;
      case 'not-needed':
        this.#notBefore.set(host, Date.now() + ARRIVAL_MS);
        return STORED_ELSEWHERE_MS;
      case 'busy':
        return Math.min(Math.max(outcome.lockedUntil - Date.now(), 1000), this.#opts.lockTtlMs);
      case 'backing-off':
        this.#notBefore.set(host, outcome.retryAfter);
        return 0;
      case 'failed':
        this.#notBefore.set(host, outcome.retryAfter ?? Date.now() + LOCAL_HOLD_MS);
        return 0;
    }
  }
}

/** `promise`, or undefined after `ms`. */
function bounded<T>(promise: Promise<T | undefined>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    timer.unref();
    void promise.then((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}
