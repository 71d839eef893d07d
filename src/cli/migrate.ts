import { redactDatabaseUrl } from '../config/config.js';
import { migrate, type MigrationSet } from '../db/migrate.js';

export interface MigrateArgs {
  readonly databaseUrl: string;
  /** Also the development copy of the control plane's schema (first: EdgeProxy's tables need none of it, but a dev database needs both). */
  readonly devSchema: boolean;
  readonly dryRun: boolean;
  readonly json: boolean;
  readonly verbose: boolean;
}

/** `edgeproxy migrate`: applies EdgeProxy's own tables (and with --dev-schema the development schema) and says what it applied. */
export async function migrateCommand(args: MigrateArgs, out: (text: string) => void, err: (text: string) => void): Promise<void> {
  const sets: MigrationSet[] = args.devSchema ? ['control-plane', 'edgeproxy'] : ['edgeproxy'];
  const applied: string[] = [];
  for (const set of sets) {
    const result = await migrate({
      databaseUrl: args.databaseUrl,
      set,
      dryRun: args.dryRun,
      ...(args.verbose ? { log: (l: string) => err(`${l}\n`) } : {}),
    });
    applied.push(...result.applied.map((name) => `${set}/${name}`));
  }
  const target = redactDatabaseUrl(args.databaseUrl);
  if (args.json) {
    out(`${JSON.stringify({ database: target, dryRun: args.dryRun, applied })}\n`);
    return;
  }
  if (applied.length === 0) out(`${target} is up to date: no migration to apply\n`);
  else {
    out(`${args.dryRun ? 'would apply' : 'applied'} ${applied.length} migration${applied.length === 1 ? '' : 's'} to ${target}:\n`);
    for (const name of applied) out(`  ${name}\n`);
  }
}
