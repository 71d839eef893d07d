import { EdgeProxyError, type ErrorCode } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { IssuedCertificate } from './issue.js';
import type { OrderLocks } from './order-lock.js';

/** Why an order was asked for (a log field). `forced`: an operator's renewal, not waiting for the backoff nor the renewal time. */
export type OrderReason = 'on-demand' | 'renewal' | 'forced';

export type OrderOutcome =
  | { readonly kind: 'issued'; readonly certificate: IssuedCertificate }
  /** `message`: what the CA (or the primary) said, for the operator who forced a renewal. */
  | { readonly kind: 'failed'; readonly code: ErrorCode; readonly message: string; readonly retryAfter: number | undefined }
  /** Another proxy orders the name now: its certificate comes by the stream. */
  | { readonly kind: 'busy'; readonly lockedUntil: number }
  | { readonly kind: 'backing-off'; readonly retryAfter: number }
  /** Once the lock was held, the primary had a certificate that is not due (another proxy's, stored meanwhile). */
  | { readonly kind: 'not-needed' };

export type OrderOutcomeKind = OrderOutcome['kind'];

/** Every outcome with what it means (metric label values; one missing here does not compile). */
export const ORDER_OUTCOME_HELP = {
  issued: 'this proxy ordered the name and stored its certificate',
  failed: 'the order failed (the name backs off), or the primary could not be asked for the lock',
  busy: 'another proxy orders the name now; its certificate comes by the stream',
  'backing-off': 'the name failed recently and waits until retry_after',
  'not-needed': 'once the lock was held, the primary had a certificate stored meanwhile',
} as const satisfies Record<OrderOutcomeKind, string>;

export const ORDER_OUTCOMES = Object.keys(ORDER_OUTCOME_HELP) as OrderOutcomeKind[];

export interface OrderRunnerOptions {
  readonly locks: OrderLocks;
  /** One order with the CA (issueCertificate with its client and pool). */
  readonly issue: (name: string) => Promise<IssuedCertificate>;
  /**
   * Asked once the lock is held: does the name still need an order? The caller decided from its
   * snapshot, which may be older than another proxy's order that ended just before.
   */
  readonly needed: (name: string) => Promise<boolean>;
  readonly lockTtlMs: number;
  readonly logger: Logger;
  /** Told about every outcome (metrics); must not throw. */
  readonly onOutcome?: (kind: OrderOutcomeKind) => void;
}

/**
 * The one flow of an order, for on-demand issuance and renewal alike: the name's fleet lock,
 * renewed while the order runs, then the outcome recorded (a failure backs the name off).
 * Never throws: a database or CA failure is an outcome.
 */
export class OrderRunner {
  readonly #opts: OrderRunnerOptions;

  constructor(opts: OrderRunnerOptions) {
    this.#opts = opts;
  }

  async run(name: string, reason: OrderReason): Promise<OrderOutcome> {
    const outcome = await this.#run(name, reason);
    this.#opts.onOutcome?.(outcome.kind);
    return outcome;
  }

  async #run(name: string, reason: OrderReason): Promise<OrderOutcome> {
    const { locks } = this.#opts;
    let taken;
    try {
      taken = await locks.take(name, { ignoreBackoff: reason === 'forced' });
    } catch (err) {
      return this.#lockUnavailable(name, reason, err);
    }
    if (taken.kind === 'busy') return { kind: 'busy', lockedUntil: taken.lockedUntil };
    if (taken.kind === 'backing-off') return { kind: 'backing-off', retryAfter: taken.retryAfter };
    try {
      if (reason !== 'forced' && !(await this.#opts.needed(name))) {
        await locks.release(name);
        return { kind: 'not-needed' };
      }
    } catch (err) {
      await locks.release(name).catch(() => undefined);
      return this.#lockUnavailable(name, reason, err);
    }
    return this.#order(name, reason);
  }

  async #order(name: string, reason: OrderReason): Promise<OrderOutcome> {
    const { locks, logger } = this.#opts;
    const started = Date.now();
    logger.info({ name, reason }, 'ACME order started');
    const heartbeat = this.#heartbeat(name);
    try {
      const certificate = await this.#opts.issue(name);
      // Stored: a primary that fails now only delays freeing the name until the lock expires.
      await locks.succeeded(name).catch(() => undefined);
      logger.info(
        { name, reason, id: certificate.id, notAfter: new Date(certificate.notAfter).toISOString(), elapsedMs: Date.now() - started },
        'certificate issued',
      );
      return { kind: 'issued', certificate };
    } catch (err) {
      const e = err instanceof EdgeProxyError ? err : new EdgeProxyError('ACME_ORDER_FAILED', String((err as Error).message ?? err));
      const released = await locks.failed(name, e.message).catch(() => ({ failures: undefined, retryAfter: undefined }));
      logger.warn(
        {
          name,
          reason,
          err: { code: e.code, message: e.message, fix: e.fix },
          failures: released.failures,
          retryAfter: released.retryAfter === undefined ? undefined : new Date(released.retryAfter).toISOString(),
          elapsedMs: Date.now() - started,
        },
        'ACME order failed',
      );
      return { kind: 'failed', code: e.code, message: e.message, retryAfter: released.retryAfter };
    } finally {
      clearInterval(heartbeat);
    }
  }

  #lockUnavailable(name: string, reason: OrderReason, err: unknown): OrderOutcome {
    const message = `the primary could not be asked for the order lock of ${name}: ${(err as Error).message}`;
    this.#opts.logger.warn({ name, reason, err: { code: 'ACME_LOCK_UNAVAILABLE', message } }, 'ACME order lock unavailable');
    return { kind: 'failed', code: 'ACME_LOCK_UNAVAILABLE', message, retryAfter: undefined };
  }

  /** Renews the lock every third of its lifetime while the order runs; says once if another proxy took it. */
  #heartbeat(name: string): NodeJS.Timeout {
    let warned = false;
    const timer = setInterval(() => {
      void this.#opts.locks.renew(name).then(
        (held) => {
          if (held || warned) return;
          warned = true;
          this.#opts.logger.warn({ name, code: 'ACME_LOCK_LOST' }, 'ACME order lock lost');
        },
        () => undefined,
      );
    }, this.#opts.lockTtlMs / 3);
    timer.unref();
    return timer;
  }
}
