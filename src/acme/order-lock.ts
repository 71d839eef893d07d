import type pg from 'pg';

/**
 * The fleet's per-name order lock and backoff, in `edgeproxy_acme_orders` on the primary. One
 * proxy orders a name at a time: `take` is one UPSERT that succeeds only when the row is unlocked
 * (or its lock expired: a proxy that died frees the name after `lockTtlMs`) and the name is not
 * backing off. While the order runs, `renew` pushes the expiry out; `release` frees the name and
 * records the outcome. A failure doubles the name's wait (`retry_after`), up to a cap, and the
 * count survives restarts, so a broken domain cannot burn the CA's rate limits.
 */
export interface OrderLockOptions {
  readonly pool: pg.Pool;
  /** Who holds a lock: unique per process (`host pid random`). */
  readonly owner: string;
  readonly lockTtlMs: number;
  /** The wait after the first failure; doubled after each further one, at most `maxBackoffMs`. */
  readonly baseBackoffMs: number;
  readonly maxBackoffMs: number;
}

export type TakeResult =
  | { readonly kind: 'taken' }
  /** Another proxy orders it now (until `lockedUntil`, ms since the epoch, unless it renews). */
  | { readonly kind: 'busy'; readonly lockedBy: string; readonly lockedUntil: number }
  /** Failed recently: no order before `retryAfter` (ms since the epoch). */
  | { readonly kind: 'backing-off'; readonly retryAfter: number; readonly failures: number };

export interface Released {
  readonly failures: number;
  /** When the name may be ordered again; undefined after a success. */
  readonly retryAfter: number | undefined;
}

interface StateRow {
  readonly locked_by: string | null;
  readonly locked_until: Date | null;
  readonly retry_after: Date | null;
  readonly failures: number;
  /** retry_after is later than now() by the database's clock. */
  readonly waiting: boolean | null;
  /** locked_until is later than now(): another holds the lock. */
  readonly locked: boolean | null;
}

export class OrderLocks {
  readonly #opts: OrderLockOptions;

  constructor(opts: OrderLockOptions) {
    this.#opts = opts;
  }

  get owner(): string {
    return this.#opts.owner;
  }

  /**
   * Takes the name's lock if it is free and not backing off (`ignoreBackoff`: an operator's forced
   * renewal); else says who has it or until when it waits.
   */
  async take(name: string, { ignoreBackoff = false } = {}): Promise<TakeResult> {
    const { pool, owner, lockTtlMs } = this.#opts;
    const taken = await pool.query(
      `INSERT INTO edgeproxy_acme_orders AS o (name, locked_by, locked_until, updated_at)
       VALUES ($1, $2, now() + $3 * interval '1 millisecond', now())
       ON CONFLICT (name) DO UPDATE SET locked_by = EXCLUDED.locked_by, locked_until = EXCLUDED.locked_until, updated_at = now()
       WHERE (o.locked_until IS NULL OR o.locked_until < now()) AND (o.retry_after IS NULL OR o.retry_after <= now() OR $4)
       RETURNING name`,
      [name, owner, lockTtlMs, ignoreBackoff],
    );
    if (taken.rowCount === 1) return { kind: 'taken' };
    const state = await this.#state(name);
    if (state?.locked !== true && state?.retry_after != null && state.waiting) {
      return { kind: 'backing-off', retryAfter: state.retry_after.getTime(), failures: state.failures };
    }
    // Locked by another (or freed between the two queries: the next attempt takes it).
    return { kind: 'busy', lockedBy: state?.locked_by ?? '', lockedUntil: state?.locked_until?.getTime() ?? Date.now() };
  }

  /** Pushes the lock's expiry out; false when this process no longer holds it. */
  async renew(name: string): Promise<boolean> {
    const { rowCount } = await this.#opts.pool.query(
      `UPDATE edgeproxy_acme_orders SET locked_until = now() + $3 * interval '1 millisecond', updated_at = now()
       WHERE name = $1 AND locked_by = $2`,
      [name, this.#opts.owner, this.#opts.lockTtlMs],
    );
    return rowCount === 1;
  }

  /** Frees the name without an order (another proxy's certificate was there after all): outcome and backoff unchanged. */
  async release(name: string): Promise<void> {
    await this.#opts.pool.query(
      'UPDATE edgeproxy_acme_orders SET locked_by = NULL, locked_until = NULL, updated_at = now() WHERE name = $1 AND locked_by = $2',
      [name, this.#opts.owner],
    );
  }

  /** Frees the name after a success: the failure count and the wait are cleared. */
  async succeeded(name: string): Promise<Released> {
    await this.#opts.pool.query(
      `UPDATE edgeproxy_acme_orders SET locked_by = NULL, locked_until = NULL, failures = 0, retry_after = NULL,
         last_outcome = 'issued', last_error = NULL, updated_at = now()
       WHERE name = $1 AND locked_by = $2`,
      [name, this.#opts.owner],
    );
    return { failures: 0, retryAfter: undefined };
  }

  /** Frees the name after a failure: one more failure, and the doubled wait before the next order. */
  async failed(name: string, error: string): Promise<Released> {
    const { pool, owner, baseBackoffMs, maxBackoffMs } = this.#opts;
    const { rows } = await pool.query<{ failures: number; retry_after: Date }>(
      `UPDATE edgeproxy_acme_orders SET locked_by = NULL, locked_until = NULL, failures = failures + 1,
         retry_after = now() + least($3 * power(2, failures), $4) * interval '1 millisecond',
         last_outcome = 'failed', last_error = left($5, 1000), updated_at = now()
       WHERE name = $1 AND locked_by = $2
       RETURNING failures, retry_after`,
      [name, owner, baseBackoffMs, maxBackoffMs, error],
    );
    const row = rows[0];
    return row === undefined ? { failures: 0, retryAfter: undefined } : { failures: row.failures, retryAfter: row.retry_after.getTime() };
  }

  async #state(name: string): Promise<StateRow | undefined> {
    const { rows } = await this.#opts.pool.query<StateRow>(
      'SELECT locked_by, locked_until, retry_after, failures, retry_after > now() AS waiting, locked_until > now() AS locked FROM edgeproxy_acme_orders WHERE name = $1',
      [name],
    );
    return rows[0];
  }
}
