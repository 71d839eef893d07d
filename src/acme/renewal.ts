import type pg from 'pg';
import type { Logger } from '../log/logger.js';
import { deleteSupersededExpired, latestCertificates, type LatestCertificate } from './certificate-rows.js';
import { deleteExpiredChallenges } from './issue.js';
import type { OrderOutcomeKind, OrderRunner } from './order-runner.js';
import { jitterOf, renewAt } from './renew-at.js';
import type { TlsView } from './tls-view.js';

export interface RenewalOptions {
  /** The primary, where the certificate rows are read. */
  readonly pool: pg.Pool;
  readonly view: TlsView;
  readonly runner: Pick<OrderRunner, 'run'>;
  /** How often the certificates are looked at. */
  readonly intervalMs: number;
  readonly logger: Logger;
  /** The clock renewal decides by (tests move it forward; the handshake's clock is untouched). */
  readonly now?: () => number;
  /** Fixes the per-name jitter (tests); random per process otherwise. */
  readonly seed?: number;
}

/**
 * Background renewal: every interval, each name whose latest certificate is past its renewal time
 * (two thirds of the lifetime, jittered: renew-at.ts) and still has a route is ordered again, one
 * name after the other, through the same fleet lock as on-demand orders, so one proxy renews a
 * name. The old certificate keeps being served until the new one arrives by the stream (the index
 * serves the valid one that expires last), so a renewal never fails a handshake. Once expired,
 * the old row is deleted by a later pass (deleteSupersededExpired), never the last of a name.
 */
export class Renewal {
  readonly #opts: RenewalOptions;
  readonly #now: () => number;
  readonly #seed: number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(opts: RenewalOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
  }

  start(): void {
    this.#schedule(Math.random() * Math.min(this.#opts.intervalMs, 5000));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /**
   * One pass: orders every name that is due; resolves with each ordered name's outcome. Expired
   * tokens, and expired certificates that a newer valid one replaces, are removed first.
   */
  async checkOnce(): Promise<Map<string, OrderOutcomeKind>> {
    await deleteExpiredChallenges(this.#opts.pool);
    await this.#deleteExpiredCertificates();
    const outcomes = new Map<string, OrderOutcomeKind>();
    for (const cert of await latestCertificates(this.#opts.pool)) {
      if (this.#stopped) break;
      if (!this.#due(cert)) continue;
      const outcome = await this.#opts.runner.run(cert.name, 'renewal');
      outcomes.set(cert.name, outcome.kind);
    }
    return outcomes;
  }

  async #deleteExpiredCertificates(): Promise<void> {
    const deleted = await deleteSupersededExpired(this.#opts.pool);
    if (deleted.length === 0) return;
    const certificates = deleted.map((d) => ({ id: d.id, names: d.names, notAfter: new Date(d.notAfter).toISOString() }));
    this.#opts.logger.info({ count: deleted.length, certificates }, 'expired certificates deleted');
  }

  #due(cert: LatestCertificate): boolean {
    if (this.#now() < renewAt(cert.notBefore, cert.notAfter, jitterOf(cert.name, this.#seed))) return false;
    // A domain that lost its route is not renewed: its certificate runs out.
    return this.#opts.view.current?.routes.get(cert.name) !== undefined;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.checkOnce()
        .then(
          () => undefined,
          (err: unknown) => this.#opts.logger.warn({ err: { message: (err as Error).message } }, 'certificate renewal check failed'),
        )
        .finally(() => this.#schedule(this.#opts.intervalMs));
    }, ms);
    this.#timer.unref();
  }
}
