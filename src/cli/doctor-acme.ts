/**
 * `edgeproxy doctor`'s issuance checks: the ACME directory reachable and answering as a directory
 * through the transport the proxy uses (EDGEPROXY_ACME_CA_ROOTS included), and the primary
 * writable for what issuance writes. Nothing is written: the primary check asks for the
 * privileges and whether the server is in recovery. They run after the certificate checks (the
 * storage key), so doctor covers all issuance needs: the directory, the primary, the key.
 */
import pg from 'pg';
import { describePgError } from '../db/errors.js';
import { serverAddress } from '../db/diagnosis.js';
import type { CheckResult } from './doctor-checks.js';

export const ACME_CHECKS = ['ACME directory', 'primary writable'] as const;

export interface AcmeDoctorOptions {
  /** undefined = issuance off (EDGEPROXY_ACME_DIRECTORY_URL=off). */
  readonly directoryUrl: string | undefined;
  readonly caRootsFile: string | undefined;
  /** undefined = EDGEPROXY_PRIMARY_DATABASE_URL not set. */
  readonly primaryDatabaseUrl: string | undefined;
  readonly connectTimeoutMs?: number;
}

/** What issuance writes on the primary, and the privileges it needs on each. */
const WRITES = {
  edgeproxy_acme_orders: ['SELECT', 'INSERT', 'UPDATE'],
  edgeproxy_acme_challenges: ['INSERT', 'UPDATE', 'DELETE'],
  edgeproxy_acme_accounts: ['SELECT', 'INSERT', 'UPDATE'],
  edgeproxy_certificates: ['SELECT', 'INSERT'],
} as const;

export async function acmeChecks(opts: AcmeDoctorOptions): Promise<CheckResult[]> {
  return [await directoryCheck(opts), await primaryCheck(opts)];
}

async function directoryCheck(opts: AcmeDoctorOptions): Promise<CheckResult> {
  const check = 'ACME directory';
  if (opts.directoryUrl === undefined) return { check, status: 'skip', detail: 'EDGEPROXY_ACME_DIRECTORY_URL is off: no issuance' };
  // Loaded only to ask a directory: acme-client and its HTTP stack add half a second to doctor's start.
  const [{ default: acme }, { configureAcmeHttp, readCaRoots }, { asAcmeError }] = await Promise.all([
    import('acme-client'),
    import('../acme/directory-trust.js'),
    import('../acme/issue.js'),
  ]);
  configureAcmeHttp(readCaRoots(opts.caRootsFile));
  const started = performance.now();
  try {
    const { data } = await acme.axios.get<Record<string, unknown>>(opts.directoryUrl);
    if (typeof data?.newOrder !== 'string' || typeof data.newNonce !== 'string') {
      return {
        check,
        status: 'fail',
        detail: `${opts.directoryUrl} answers, but not with an ACME directory`,
        fix: 'check EDGEPROXY_ACME_DIRECTORY_URL',
        code: 'ACME_DIRECTORY_UNREACHABLE',
      };
    }
    return {
      check,
      status: 'pass',
      detail: `${opts.directoryUrl} answers as an ACME directory in ${Math.round(performance.now() - started)} ms`,
    };
  } catch (err) {
    const e = asAcmeError(err, 'the directory');
    return {
      check,
      status: 'fail',
      detail: e.message,
      fix: e.fix ?? 'check EDGEPROXY_ACME_DIRECTORY_URL',
      code: 'ACME_DIRECTORY_UNREACHABLE',
    };
  }
}

async function primaryCheck(opts: AcmeDoctorOptions): Promise<CheckResult> {
  const check = 'primary writable';
  if (opts.primaryDatabaseUrl === undefined) {
    return { check, status: 'skip', detail: 'EDGEPROXY_PRIMARY_DATABASE_URL is not set: this proxy issues no certificate' };
  }
  const where = serverAddress(opts.primaryDatabaseUrl);
  const client = new pg.Client({
    connectionString: opts.primaryDatabaseUrl,
    application_name: 'edgeproxy doctor',
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await privileges(client, where);
  } catch (err) {
    const d = describePgError(err);
    return {
      check,
      status: 'fail',
      detail: `EDGEPROXY_PRIMARY_DATABASE_URL (${where}): ${d.message}`,
      fix: "check the primary's URL, its pg_hba.conf and the role's password",
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function privileges(client: pg.Client, where: string): Promise<CheckResult> {
  const check = 'primary writable';
  const { rows } = await client.query<{ recovery: boolean; role: string }>('SELECT pg_is_in_recovery() AS recovery, current_user AS role');
  const { recovery, role } = rows[0]!;
  if (recovery) {
    return {
      check,
      status: 'fail',
      detail: `${where} is a standby (in recovery): it cannot be written`,
      fix: 'point EDGEPROXY_PRIMARY_DATABASE_URL at the primary',
    };
  }
  // One privilege per call: has_table_privilege with a list is true when any one of them is held.
  const { rows: found } = await client.query<{ tbl: string; priv: string; exists: boolean; ok: boolean | null }>(
    `SELECT w.tbl, w.priv, to_regclass(w.tbl) IS NOT NULL AS exists,
            CASE WHEN to_regclass(w.tbl) IS NULL THEN NULL ELSE has_table_privilege(to_regclass(w.tbl), w.priv) END AS ok
       FROM unnest($1::text[], $2::text[]) AS w(tbl, priv)`,
    [Object.entries(WRITES).flatMap(([t, ps]) => ps.map(() => t)), Object.values(WRITES).flatMap((ps) => [...ps])],
  );
  const absent = [...new Set(found.filter((r) => !r.exists).map((r) => r.tbl))];
  if (absent.length > 0) {
    return { check, status: 'fail', detail: `${absent.join(', ')} not found on ${where}`, fix: 'on the primary: `edgeproxy migrate`' };
  }
  const missing = Object.keys(WRITES).flatMap((t) => {
    const privs = found.filter((r) => r.tbl === t && r.ok !== true).map((r) => r.priv);
    return privs.length === 0 ? [] : [`${privs.join(', ')} ON ${t}`];
  });
  if (missing.length > 0) {
    return {
      check,
      status: 'fail',
      detail: `role ${role} may not write what issuance writes (${missing.join('; ')})`,
      fix: missing.map((m) => `GRANT ${m} TO ${pg.escapeIdentifier(role)};`).join(' '),
    };
  }
  return { check, status: 'pass', detail: `${where} is a primary; role ${role} may write orders, tokens, accounts and certificates` };
}
