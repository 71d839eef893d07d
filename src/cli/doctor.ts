import { redactDatabaseUrl, type SyncMode } from '../config/config.js';
import { DOCUMENTED_REGION_ADDRESS_COLUMN } from '../table/rows.js';
import { readStorageKey } from '../tls/storage-key-source.js';
import { runDoctor, type CheckResult } from './doctor-checks.js';
import { CommandFailed } from './exit.js';

export interface DoctorArgs {
  readonly databaseUrl: string;
  readonly publication: string;
  readonly syncMode: SyncMode;
  readonly regionAddressColumn: string;
  readonly regionId: string | undefined;
  readonly primaryDatabaseUrl: string | undefined;
  readonly tlsStorageKey: string | undefined;
  readonly tlsStorageKeyFile: string | undefined;
  /** undefined: EDGEPROXY_ACME_DIRECTORY_URL=off. */
  readonly acmeDirectoryUrl: string | undefined;
  readonly acmeCaRootsFile: string | undefined;
  readonly json: boolean;
}

const MARK: Record<CheckResult['status'], string> = { pass: 'PASS', fail: 'FAIL', warn: 'WARN', skip: 'SKIP' };

/** `edgeproxy doctor`: one line per check, the fix under each failure; exit 1 if any check failed. */
export async function doctorCommand(args: DoctorArgs, out: (text: string) => void): Promise<void> {
  const results = await runDoctor({
    databaseUrl: args.databaseUrl,
    publication: args.publication,
    syncMode: args.syncMode,
    regionAddressColumn: args.regionAddressColumn,
    regionId: args.regionId,
    tls: {
      storageKey: readStorageKey(args.tlsStorageKey, args.tlsStorageKeyFile),
      primaryConfigured: args.primaryDatabaseUrl !== undefined,
    },
    acme: { directoryUrl: args.acmeDirectoryUrl, caRootsFile: args.acmeCaRootsFile, primaryDatabaseUrl: args.primaryDatabaseUrl },
  });
  const failed = results.filter((r) => r.status === 'fail').length;
  const warned = results.filter((r) => r.status === 'warn').length;
  if (args.json) {
    out(
      `${JSON.stringify({ ok: failed === 0, database: redactDatabaseUrl(args.databaseUrl), publication: args.publication, syncMode: args.syncMode, regionAddressColumn: args.regionAddressColumn, checks: results })}\n`,
    );
  } else {
    // The address column only when it is not the documented one: it is what makes the routing query differ.
    const column =
      args.regionAddressColumn === DOCUMENTED_REGION_ADDRESS_COLUMN ? '' : `, region address column ${args.regionAddressColumn}`;
    out(
      `edgeproxy doctor: ${redactDatabaseUrl(args.databaseUrl)}, publication "${args.publication}", sync mode ${args.syncMode}${column}\n`,
    );
    const width = Math.max(...results.map((r) => r.check.length));
    for (const r of results) {
      out(`${MARK[r.status]}  ${r.check.padEnd(width)}  ${r.detail}\n`);
      if (r.fix !== undefined) out(`      ${' '.repeat(width)}  fix: ${r.fix}\n`);
    }
    const passed = results.filter((r) => r.status === 'pass').length;
    out(
      `${passed} passed, ${failed} failed, ${warned} warning${warned === 1 ? '' : 's'}, ${results.length - passed - failed - warned} skipped\n`,
    );
  }
  if (failed > 0) throw new CommandFailed(`${failed} check${failed === 1 ? '' : 's'} failed`);
}
