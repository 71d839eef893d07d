/**
 * `edgeproxy migrate`: applies migrations/*.sql with node-pg-migrate (its plain-SQL loader: a
 * file without `-- Up Migration` / `-- Down Migration` markers is one up migration). Applied
 * files are recorded in the `pgmigrations` table, so running it again applies only new files;
 * all pending files run in one transaction, under node-pg-migrate's advisory lock.
 * For development and tests: the production schema belongs to the control plane.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';

export interface MigrateOptions {
  readonly databaseUrl: string;
  /** Defaults to the package's migrations/ folder. */
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

export const MIGRATIONS_TABLE = 'pgmigrations';

/** migrations/ next to src/ (tsx) or next to dist/ (built). */
export function defaultMigrationsDir(): string {
  for (const rel of ['../../migrations', '../../../migrations']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(dir)) return dir;
  }
  throw new Error('the migrations/ folder was not found next to the program');
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
    const ran = await runner({
      dbClient: client,
      dir: opts.dir ?? defaultMigrationsDir(),
      // Only the .sql files: the folder also holds a README.
      ignorePattern: '(?!.*\\.sql$).*',
      direction: 'up',
      migrationsTable: MIGRATIONS_TABLE,
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
