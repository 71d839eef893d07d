import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { isFailure } from '../../src/errors.js';
import { StorageKey } from '../../src/tls/storage-key.js';

export interface TestCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

/**
 * A self-signed certificate (P-256) for `names` from the system's openssl, valid from now for
 * `days`. The first name is the subject's CN; all go in subjectAltName unless `san` is false.
 */
export function makeCertificate(names: readonly string[], { days = 30, san = true } = {}): TestCertificate {
  const dir = mkdtempSync(path.join(tmpdir(), 'edgeproxy-cert-'));
  try {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    const subject = ['-subj', `/CN=${names[0]}`];
    const altNames = san ? ['-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`] : [];
    const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    const out = ['-days', String(days), '-keyout', key, '-out', cert];
    execFileSync('openssl', ['req', '-x509', ...curve, ...subject, ...altNames, ...out], { stdio: 'ignore' });
    return { certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A storage key for tests (base64 of 32 random bytes), as an operator makes one with `openssl rand -base64 32`. */
export function makeStorageKeyText(): string {
  return randomBytes(32).toString('base64');
}

/**
 * Writes a certificate row as EdgeProxy's issuer does: its own id, the key sealed with the storage
 * key for that id. Returns the id.
 */
export async function storeCertificate(
  db: pg.Client,
  storageKeyText: string,
  cert: TestCertificate,
  opts: { readonly id?: string } = {},
): Promise<string> {
  const key = StorageKey.parse(storageKeyText);
  if (isFailure(key)) throw new Error(key.message);
  const id = opts.id ?? randomUUID();
  const leaf = new X509Certificate(cert.certPem);
  const names = (leaf.subjectAltName ?? '').split(', ').flatMap((e) => (e.startsWith('DNS:') ? [e.slice(4)] : []));
  await db.query(
    `INSERT INTO edgeproxy_certificates (id, names, chain_pem, key_sealed, issuer, not_before, not_after)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [
      id,
      names,
      cert.certPem,
      key.seal(Buffer.from(cert.keyPem), `certificate ${id}`),
      leaf.issuer,
      new Date(leaf.validFrom),
      new Date(leaf.validTo),
    ],
  );
  return id;
}
