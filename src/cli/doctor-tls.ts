/**
 * `edgeproxy doctor`'s certificate checks: the TLS tables `edgeproxy migrate` creates, readable by
 * this role, and the storage key able to open every stored certificate's key. Certificates are
 * opened here exactly as the proxy opens them (tls-state.ts), so both say the same.
 */
import pg from 'pg';
import { isFailure } from '../errors.js';
import { readTlsRows } from '../db/tls-rows.js';
import { loadCertificate } from '../tls/certificate.js';
import type { StorageKey } from '../tls/storage-key.js';
import { TLS_TABLES } from '../tls/tls-tables.js';
import type { CheckResult } from './doctor-checks.js';

export const TLS_CHECKS = ['certificate tables', 'certificate storage'] as const;

export interface TlsDoctorOptions {
  /** From EDGEPROXY_TLS_STORAGE_KEY or _FILE; undefined when neither is set. */
  readonly storageKey: StorageKey | undefined;
  /** Whether EDGEPROXY_PRIMARY_DATABASE_URL is set (this proxy may issue). */
  readonly primaryConfigured: boolean;
}

export async function tlsChecks(client: pg.Client, role: string, opts: TlsDoctorOptions): Promise<CheckResult[]> {
  const { rows } = await client.query<{ name: string; exists: boolean; can: boolean | null }>(
    `SELECT t.name, to_regclass(t.name) IS NOT NULL AS exists,
            CASE WHEN to_regclass(t.name) IS NULL THEN NULL ELSE has_table_privilege(to_regclass(t.name), 'SELECT') END AS can
       FROM unnest($1::text[]) AS t(name)`,
    [TLS_TABLES],
  );
  const missing = rows.filter((r) => !r.exists).map((r) => r.name);
  const denied = rows.filter((r) => r.exists && r.can !== true).map((r) => r.name);
  if (missing.length > 0) {
    return [
      result('certificate tables', 'warn', `${missing.join(', ')} not found: HTTPS serves only the default certificate`, {
        fix: 'on the primary: `edgeproxy migrate` (it creates only the edgeproxy_* tables)',
      }),
      result('certificate storage', 'skip', 'not checked: no certificate tables'),
    ];
  }
  if (denied.length > 0) {
    return [
      result('certificate tables', 'warn', `role ${role} may not SELECT from ${denied.join(', ')}: certificates are not served`, {
        fix: `on the primary: GRANT SELECT ON ${TLS_TABLES.join(', ')} TO ${pg.escapeIdentifier(role)};`,
      }),
      result('certificate storage', 'skip', 'not checked: the certificate tables cannot be read'),
    ];
  }
  const tls = (await readTlsRows(client))!;
  const count = tls.edgeproxy_certificates.length;
  return [
    result('certificate tables', 'pass', `${TLS_TABLES.join(', ')} readable; ${count} certificate${count === 1 ? '' : 's'} stored`),
    storageCheck(tls.edgeproxy_certificates, opts),
  ];
}

function storageCheck(certificates: readonly Record<string, unknown>[], opts: TlsDoctorOptions): CheckResult {
  const issuing = opts.primaryConfigured ? '' : '; EDGEPROXY_PRIMARY_DATABASE_URL is not set: this proxy issues no certificate';
  const key = opts.storageKey;
  if (key === undefined) {
    return result(
      'certificate storage',
      certificates.length > 0 ? 'fail' : 'warn',
      `no storage key: stored certificates cannot be served${issuing}`,
      {
        fix: 'give every proxy the same EDGEPROXY_TLS_STORAGE_KEY (or _FILE): 32 random bytes in base64 (`openssl rand -base64 32`)',
        code: 'TLS_KEY_NO_STORAGE_KEY',
      },
    );
  }
  const bad = certificates.flatMap((row) => {
    const id = String(row.id);
    const loaded = loadCertificate({ id, chainPem: String(row.chain_pem), sealedKey: row.key_sealed as Buffer }, key);
    return isFailure(loaded) ? [loaded] : [];
  });
  if (bad.length > 0) {
    return result(
      'certificate storage',
      'fail',
      `${bad.length} of ${certificates.length} stored certificates cannot be served: ${bad[0]!.message}`,
      {
        fix:
          bad[0]!.code === 'TLS_KEY_OTHER_STORAGE_KEY'
            ? 'give every proxy the same EDGEPROXY_TLS_STORAGE_KEY'
            : 'replace or delete those rows',
        code: bad[0]!.code,
      },
    );
  }
  const detail = `storage key ${key.id} opens all ${certificates.length} stored certificate${certificates.length === 1 ? '' : 's'}${issuing}`;
  return result(
    'certificate storage',
    opts.primaryConfigured ? 'pass' : 'warn',
    detail,
    opts.primaryConfigured
      ? {}
      : {
          fix: 'set EDGEPROXY_PRIMARY_DATABASE_URL to the primary for on-demand issuance',
        },
  );
}

function result(
  check: string,
  status: CheckResult['status'],
  detail: string,
  more: Partial<Pick<CheckResult, 'fix' | 'code'>> = {},
): CheckResult {
  return { check, status, detail, ...more };
}
