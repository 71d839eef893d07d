import acme from 'acme-client';
import type pg from 'pg';
import type { Logger } from '../log/logger.js';
import type { StorageKey } from '../tls/storage-key.js';

export interface AccountOptions {
  /** The primary: accounts are read and written there. */
  readonly pool: pg.Pool;
  readonly directoryUrl: string;
  readonly email: string | undefined;
  readonly storageKey: StorageKey;
  readonly logger: Logger;
}

/** How a client polls an authorization or order: quick first, a local CA answers in milliseconds. */
const POLL = { backoffMin: 100, backoffMax: 2000, backoffAttempts: 12 } as const;

/** The sealed account key is bound to its directory: a key moved to another CA's row does not open. */
export const accountKeyContext = (directoryUrl: string): string => `acme account ${directoryUrl}`;

interface AccountRow {
  readonly email: string | null;
  readonly account_url: string | null;
  readonly key_sealed: Buffer;
}

/**
 * The ACME client for the directory with this fleet's account: the stored one (its key opened with
 * the storage key), or a new one registered with the CA and stored. Two proxies registering at
 * once both reach the CA, but only the first row is kept and both use it. The key never leaves
 * this module except inside the client, and no log line has it.
 */
export async function loadAccount(opts: AccountOptions): Promise<acme.Client> {
  const stored = await readAccount(opts);
  if (stored !== undefined) return clientFor(opts, stored);
  const accountKey = await acme.crypto.createPrivateEcdsaKey('P-256');
  const client = new acme.Client({ directoryUrl: opts.directoryUrl, accountKey, ...POLL });
  await client.createAccount({ termsOfServiceAgreed: true, ...contact(opts.email) });
  const inserted = await opts.pool.query(
    `INSERT INTO edgeproxy_acme_accounts (directory_url, email, account_url, key_sealed) VALUES ($1, $2, $3, $4)
     ON CONFLICT (directory_url) DO NOTHING`,
    [opts.directoryUrl, opts.email ?? null, client.getAccountUrl(), opts.storageKey.seal(accountKey, accountKeyContext(opts.directoryUrl))],
  );
  if (inserted.rowCount === 1) {
    opts.logger.info({ directoryUrl: opts.directoryUrl, accountUrl: client.getAccountUrl() }, 'ACME account registered');
    return client;
  }
  // Another proxy stored its account first: use that one, so that the fleet has one.
  return clientFor(opts, (await readAccount(opts))!);
}

async function readAccount(opts: AccountOptions): Promise<AccountRow | undefined> {
  const { rows } = await opts.pool.query<AccountRow>(
    'SELECT email, account_url, key_sealed FROM edgeproxy_acme_accounts WHERE directory_url = $1',
    [opts.directoryUrl],
  );
  return rows[0];
}

async function clientFor(opts: AccountOptions, row: AccountRow): Promise<acme.Client> {
  const accountKey = opts.storageKey.open(row.key_sealed, accountKeyContext(opts.directoryUrl));
  const client = new acme.Client({ directoryUrl: opts.directoryUrl, accountKey, accountUrl: row.account_url ?? undefined, ...POLL });
  if (row.account_url === null) await client.createAccount({ termsOfServiceAgreed: true, ...contact(opts.email) });
  if ((row.email ?? undefined) !== opts.email) {
    await client.updateAccount(contact(opts.email));
    await opts.pool.query('UPDATE edgeproxy_acme_accounts SET email = $2 WHERE directory_url = $1', [
      opts.directoryUrl,
      opts.email ?? null,
    ]);
    opts.logger.info({ directoryUrl: opts.directoryUrl, email: opts.email ?? null }, 'ACME account contact updated');
  }
  return client;
}

function contact(email: string | undefined): { contact: string[] } {
  return { contact: email === undefined ? [] : [`mailto:${email}`] };
}
