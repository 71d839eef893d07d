import { redactDatabaseUrl } from '../config/config.js';
import { migrate } from '../db/migrate.js';

export interface MigrateArgs {
  readonly databaseUrl: string;
  readonly dryRun: boolean;
  readonly json: boolean;
  readonly verbose: boolean;
}

/** `edgeproxy migrate`: applies migrations/ (node-pg-migrate) and says what it applied. */
export async function migrateCommand(args: MigrateArgs, out: (text: string) => void, err: (text: string) => void): Promise<void> {
  const result = await migrate({
    databaseUrl: args.databaseUrl,
    dryRun: args.dryRun,
    ...(args.verbose ? { log: (l: string) => err(`${l}\n`) } : {}),
  });
  if (args.json) {
    out(`${JSON.stringify({ database: redactDatabaseUrl(args.databaseUrl), dryRun: args.dryRun, applied: result.applied })}\n`);
    return;
  }
  const target = redactDatabaseUrl(args.databaseUrl);
  if (result.applied.length === 0) out(`${target} is up to date: no migration to apply\n`);
  else {
    out(
      `${args.dryRun ? 'would apply' : 'applied'} ${result.applied.length} migration${result.applied.length === 1 ? '' : 's'} to ${target}:\n`,
    );
    for (const name of result.applied) out(`  ${name}\n`);
  }
}
