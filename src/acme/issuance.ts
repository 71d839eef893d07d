import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type acme from 'acme-client';
import type pg from 'pg';
import type { Config } from '../config/config.js';
import { createPool } from '../db/pool.js';
import type { Logger } from '../log/logger.js';
import type { StorageKey } from '../tls/storage-key.js';
import { loadAccount } from './account.js';
import { latestCertificate } from './certificate-rows.js';
import { configureAcmeHttp, readCaRoots } from './directory-trust.js';
import { asAcmeError, issueCertificate } from './issue.js';
import { OnDemandIssuer } from './on-demand.js';
import { OrderLocks } from './order-lock.js';
import { OrderRunner, type OrderOutcome, type OrderOutcomeKind } from './order-runner.js';
import { Renewal } from './renewal.js';
import { renewAt } from './renew-at.js';
import { challengeArrives, type TlsView } from './tls-view.js';

export type IssuanceConfig = Pick<
  Config,
  | 'primaryDatabaseUrl'
  | 'acmeDirectoryUrl'
  | 'acmeEmail'
  | 'acmeCaRootsFile'
  | 'acmeHandshakeWaitMs'
  | 'acmeMaxOrders'
  | 'replicationTimeoutMs'
>;

export interface IssuanceDeps {
  readonly view: TlsView;
  readonly storageKey: StorageKey | undefined;
  readonly logger: Logger;
  readonly onOutcome?: (kind: OrderOutcomeKind) => void;
  /** Overrides for tests: the renewal clock and pass interval, the lifetime asked of the CA. */
  readonly renewalNow?: () => number;
  readonly renewalIntervalMs?: number;
  readonly lifetimeMs?: number;
}

export interface Issuance {
  readonly onDemand: OnDemandIssuer;
  readonly renewal: Renewal;
  readonly runner: OrderRunner;
  /** The primary's pool (orders, locks, tokens, certificates). */
  readonly pool: pg.Pool;
  /** An operator's renewal of `name` now (`edgeproxy certs renew`): ignores its backoff and renewal time, not the fleet lock. */
  renewNow(name: string): Promise<OrderOutcome>;
  /** Starts background renewal. */
  start(): void;
  stop(): Promise<void>;
}

/** The fleet lock's lifetime; renewed every third of it while an order runs. */
const LOCK_TTL_MS = 60_000;
const BASE_BACKOFF_MS = 60_000;
const MAX_BACKOFF_MS = 6 * 3600_000;
const RENEWAL_INTERVAL_MS = 10 * 60_000;
/** How long an order waits for its HTTP-01 token to reach the snapshot before telling the CA to validate. */
const CHALLENGE_SERVED_WAIT_MS = 5_000;

/** Why this proxy issues no certificate, or undefined when it does. */
export function issuanceOff(config: IssuanceConfig, storageKey: StorageKey | undefined): string | undefined {
  if (config.acmeDirectoryUrl === undefined) return 'EDGEPROXY_ACME_DIRECTORY_URL is off';
  if (config.primaryDatabaseUrl === undefined) return 'EDGEPROXY_PRIMARY_DATABASE_URL is not set (writes go to the primary)';
  if (storageKey === undefined) return 'no storage key (EDGEPROXY_TLS_STORAGE_KEY or EDGEPROXY_TLS_STORAGE_KEY_FILE) to seal private keys';
  return undefined;
}

/**
 * On-demand issuance and renewal, not started, or undefined (said once, with why) when the
 * settings leave this proxy serving stored certificates only. Throws ConfigError for an
 * unreadable EDGEPROXY_ACME_CA_ROOTS.
 */
export function createIssuance(config: IssuanceConfig, deps: IssuanceDeps): Issuance | undefined {
  const off = issuanceOff(config, deps.storageKey);
  if (off !== undefined) {
    const level = config.acmeDirectoryUrl === undefined ? 'info' : 'warn';
    deps.logger[level]({ reason: off }, 'on-demand certificate issuance off; serving stored certificates only');
    return undefined;
  }
  configureAcmeHttp(readCaRoots(config.acmeCaRootsFile));
  const pool = createPool({
    databaseUrl: config.primaryDatabaseUrl!,
    applicationName: `edgeproxy acme ${os.hostname()} ${process.pid}`.slice(0, 63),
    queryTimeoutMs: config.replicationTimeoutMs,
    logger: deps.logger,
  });
  const owner = `${os.hostname()} ${process.pid} ${randomBytes(4).toString('hex')}`;
  const now = deps.renewalNow ?? Date.now;
  const runner = createRunner(config, deps, pool, owner, now);
  const { view, logger } = deps;
  const onDemand = new OnDemandIssuer({
    view,
    runner,
    maxOrders: config.acmeMaxOrders,
    handshakeWaitMs: config.acmeHandshakeWaitMs,
    lockTtlMs: LOCK_TTL_MS,
    logger,
  });
  const renewal = new Renewal({ pool, view, runner, intervalMs: deps.renewalIntervalMs ?? RENEWAL_INTERVAL_MS, logger, now });
  logger.info({ directoryUrl: config.acmeDirectoryUrl, email: config.acmeEmail ?? null, owner }, 'on-demand certificate issuance on');
  return {
    onDemand,
    renewal,
    runner,
    pool,
    renewNow: (name) => runner.run(name, 'forced'),
    start: () => renewal.start(),
    async stop() {
      await renewal.stop();
      await pool.end().catch(() => undefined);
    },
  };
}

/** The one order flow both on-demand issuance and renewal use: the fleet lock on `pool`, then one order with the CA. */
function createRunner(config: IssuanceConfig, deps: IssuanceDeps, pool: pg.Pool, owner: string, now: () => number): OrderRunner {
  const directoryUrl = config.acmeDirectoryUrl!;
  const storageKey = deps.storageKey!;
  const locks = new OrderLocks({ pool, owner, lockTtlMs: LOCK_TTL_MS, baseBackoffMs: BASE_BACKOFF_MS, maxBackoffMs: MAX_BACKOFF_MS });
  const account = memoised(() => loadAccount({ pool, directoryUrl, email: config.acmeEmail, storageKey, logger: deps.logger }));
  return new OrderRunner({
    locks,
    lockTtlMs: LOCK_TTL_MS,
    logger: deps.logger,
    onOutcome: deps.onOutcome,
    needed: async (name) => {
      const latest = await latestCertificate(pool, name);
      return latest === undefined || now() >= renewAt(latest.notBefore, latest.notAfter, 0);
    },
    issue: async (name) => {
      const client = await account().catch((err: unknown) => {
        throw asAcmeError(err, name);
      });
      const challengeServed = (token: string) => challengeArrives(deps.view, token, delay(CHALLENGE_SERVED_WAIT_MS));
      return issueCertificate({ pool, client, storageKey, challengeServed, lifetimeMs: deps.lifetimeMs }, name);
    },
  });
}

/** `load()` once; a failure is not kept, so the next call tries again (a CA down at the first order). */
function memoised(load: () => Promise<acme.Client>): () => Promise<acme.Client> {
  let pending: Promise<acme.Client> | undefined;
  return () => {
    pending ??= load().catch((err: unknown) => {
      pending = undefined;
      throw err;
    });
    return pending;
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
