/**
 * `edgeproxy migrate`: applies a set of migrations/ with node-pg-migrate (its plain-SQL loader: a
 * file without `-- Up Migration` / `-- Down Migration` markers is one up migration). Each set
 * records its applied files in its own table, so running it again applies only new files; all
 * pending files of a set run in one transaction, under node-pg-migrate's advisory lock.
 *
 * Two sets: `edgeproxy` (migrations/edgeproxy/: the tables EdgeProxy owns, safe on a production
 * primary) and `control-plane` (migrations/control-plane/: the development/test copy of the
 * control plane's schema; never for production, where the control plane owns it).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';

export type MigrationSet = 'edgeproxy' | 'control-plane';

/** Where each set's files are (under migrations/) and the table that records what was applied. */
export const MIGRATION_SETS: { readonly [S in MigrationSet]: { readonly folder: string; readonly table: string } } = {
  edgeproxy: { folder: 'edgeproxy', table: 'edgeproxy_migrations' },
  // pgmigrations: what the development schema has been recorded in since the first version.
  'control-plane': { folder: 'control-plane', table: 'pgmigrations' },
};

export interface MigrateOptions {
  readonly databaseUrl: string;
  /** Default `edgeproxy`. */
  readonly set?: MigrationSet;
  /** Defaults to the set's folder in the package's migrations/ (tests give their own). */
  readonly dir?: string;
  /** List what would run without running it. */
  readonly dryRun?: boolean;
  /** Progress lines from node-pg-migrate (not secrets: it never prints the URL). */
  readonly log?: (line: string) => void;
}

export interface MigrateResult {
  /** Names of the migrations applied now (or, with dryRun, that would be). */
  readonly applied: readonly string[];
}

/** The set's folder in migrations/, next to src/ (tsx) or next to dist/ (built). */
export function defaultMigrationsDir(set: MigrationSet): string {
  for (const rel of ['../../migrations', '../../../migrations']) {
    const dir = fileURLToPath(new URL(`${rel}/${MIGRATION_SETS[set].folder}`, import.meta.url));
    if (existsSync(dir)) return dir;
  }
  throw new Error(`the migrations/${MIGRATION_SETS[set].folder} folder was not found next to the program`);
}

export async function migrate(opts: MigrateOptions): Promise<MigrateResult> {
  const client = new pg.Client({
    connectionString: opts.databaseUrl,
    application_name: 'edgeproxy migrate',
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const log = opts.log ?? (() => undefined);
    const set = opts.set ?? 'edgeproxy';
    const ran = await runner({
      dbClient: client,
      dir: opts.dir ?? defaultMigrationsDir(set),
      // Only the .sql files: the folder also holds a README.
      ignorePattern: '(?!.*\\.sql$).*',
      direction: 'up',
      migrationsTable: MIGRATION_SETS[set].table,
      checkOrder: true,
      singleTransaction: true,
      dryRun: opts.dryRun ?? false,
      log,
      logger: { debug: () => undefined, info: log, warn: log, error: log },
    });
    return { applied: ran.map((m) => m.name) };
  } finally {
    await client.end().catch(() => undefined);
  }
}
