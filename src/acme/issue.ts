import { randomUUID } from 'node:crypto';
import acme from 'acme-client';
import type pg from 'pg';
import { EdgeProxyError, isFailure } from '../errors.js';
import { checkCertificate } from '../tls/certificate.js';
import type { StorageKey } from '../tls/storage-key.js';

export interface IssueOptions {
  /** The primary: challenge tokens and the certificate are written there. */
  readonly pool: pg.Pool;
  readonly client: acme.Client;
  readonly storageKey: StorageKey;
  /**
   * Resolves once the proxies can answer the token (this proxy's snapshot has it: the stream
   * delivered it), so that the CA is not told to validate before anyone can answer. Bounded by
   * the caller; absent = the token is answered as soon as it is written.
   */
  readonly challengeServed?: (token: string) => Promise<void>;
  /** Asks the CA for this lifetime (the order's notAfter, RFC 8555 §7.4); absent = the CA's default. */
  readonly lifetimeMs?: number;
}

export interface IssuedCertificate {
  readonly id: string;
  readonly names: readonly string[];
  readonly notBefore: number;
  readonly notAfter: number;
  readonly issuer: string;
}

/** How long a stored challenge token is kept at most, should the order's clean-up not run (a crash). */
const CHALLENGE_TTL_MS = 10 * 60_000;

/**
 * One ACME order for `name`, HTTP-01 only: the challenge token is written to
 * `edgeproxy_acme_challenges` on the primary (streamed to every proxy, whichever the CA reaches
 * answers it), the CA validates, the token is removed; then a new ECDSA P-256 key, its CSR, the
 * finalized order, and the certificate stored in `edgeproxy_certificates` with its key sealed for
 * its row (`certificate <id>`). Throws EdgeProxyError ACME_DIRECTORY_UNREACHABLE or
 * ACME_ORDER_FAILED; no message holds a key.
 */
export async function issueCertificate(opts: IssueOptions, name: string): Promise<IssuedCertificate> {
  try {
    const order = await opts.client.createOrder({ identifiers: [{ type: 'dns', value: name }], ...lifetime(opts.lifetimeMs) });
    for (const authz of await opts.client.getAuthorizations(order)) {
      if (authz.status !== 'valid') await answerHttp01(opts, name, authz);
    }
    const key = await acme.crypto.createPrivateEcdsaKey('P-256');
    const [, csr] = await acme.crypto.createCsr({ altNames: [name] }, key);
    const finalized = await opts.client.finalizeOrder(order, csr);
    const chain = await opts.client.getCertificate(finalized);
    return await store(opts, chain, key);
  } catch (err) {
    throw asAcmeError(err, name);
  }
}

async function answerHttp01(opts: IssueOptions, name: string, authz: acme.Authorization): Promise<void> {
  const challenge = authz.challenges.find((c) => c.type === 'http-01');
  if (challenge === undefined) throw new EdgeProxyError('ACME_ORDER_FAILED', `the CA offers no http-01 challenge for ${name}`);
  const keyAuthorization = await opts.client.getChallengeKeyAuthorization(challenge);
  await opts.pool.query(
    `INSERT INTO edgeproxy_acme_challenges (token, key_authorization, name, expires_at)
     VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
     ON CONFLICT (token) DO UPDATE SET key_authorization = EXCLUDED.key_authorization, name = EXCLUDED.name, expires_at = EXCLUDED.expires_at`,
    [challenge.token, keyAuthorization, name, CHALLENGE_TTL_MS],
  );
  try {
    await opts.challengeServed?.(challenge.token);
    await opts.client.completeChallenge(challenge);
    await opts.client.waitForValidStatus(authz);
  } finally {
    await opts.pool.query('DELETE FROM edgeproxy_acme_challenges WHERE token = $1', [challenge.token]);
  }
}

/** Removes the tokens of orders that never cleaned up (a proxy that died mid-order); returns how many. */
export async function deleteExpiredChallenges(pool: pg.Pool): Promise<number> {
  const { rowCount } = await pool.query('DELETE FROM edgeproxy_acme_challenges WHERE expires_at < now()');
  return rowCount ?? 0;
}

/** Checks the chain the CA sent against the key (as a stored one is checked), then stores it. */
async function store(opts: IssueOptions, chainPem: string, keyPem: Buffer): Promise<IssuedCertificate> {
  const id = randomUUID();
  const checked = checkCertificate(id, `the certificate the CA issued`, chainPem, keyPem);
  if (isFailure(checked)) throw new EdgeProxyError('ACME_ORDER_FAILED', checked.message);
  const { names, notBefore, notAfter, issuer } = checked;
  await opts.pool.query(
    `INSERT INTO edgeproxy_certificates (id, names, chain_pem, key_sealed, issuer, not_before, not_after)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [
      id,
      names.map((n) => n.toLowerCase()),
      chainPem,
      opts.storageKey.seal(keyPem, `certificate ${id}`),
      issuer,
      new Date(notBefore),
      new Date(notAfter),
    ],
  );
  return { id, names, notBefore, notAfter, issuer };
}

function lifetime(ms: number | undefined): { notAfter?: string } {
  return ms === undefined ? {} : { notAfter: new Date(Date.now() + ms).toISOString() };
}

/** What went wrong, as one of our codes: the CA not reached at all, or the CA saying no. */
export function asAcmeError(err: unknown, name: string): EdgeProxyError {
  if (err instanceof EdgeProxyError) return err;
  const e = err as { message?: string; isAxiosError?: boolean; response?: unknown; code?: string };
  const message = e.message ?? String(err);
  const unreachable = (e.isAxiosError === true && e.response === undefined) || message.startsWith('Attempting to read ACME directory');
  if (unreachable) {
    // No `cause`: an axios error carries its request (the signed JWS); the message is enough.
    return new EdgeProxyError('ACME_DIRECTORY_UNREACHABLE', `the ACME directory cannot be reached: ${message}`, {
      fix: 'check EDGEPROXY_ACME_DIRECTORY_URL, the network path to the CA and, for a private CA, EDGEPROXY_ACME_CA_ROOTS',
    });
  }
  return new EdgeProxyError('ACME_ORDER_FAILED', `the order for ${name} failed: ${message}`);
}
