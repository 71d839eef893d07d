import type { Config } from '../../src/config/config.js';
import { createDatabase, type PgServer, type TestDatabase } from './postgres.js';
import { Seeder } from './seed.js';
import { startTestService, type TestService } from './service.js';

export interface StreamFixture {
  readonly db: TestDatabase;
  readonly seed: Seeder;
  /** Starts the proxy on this database: mode replication, polling interval 60 s, unless `more` says otherwise. */
  proxy(more?: Partial<Config>): Promise<TestService>;
  /** Stops every proxy started, closes the seeder, drops the database. */
  close(): Promise<void>;
}

/** A fresh database on `server` with the given regions (id → public address) and a way to start proxies on it. */
export async function streamFixture(
  server: PgServer,
  regions: Readonly<Record<string, string>>,
  defaults: Partial<Config> = {},
): Promise<StreamFixture> {
  const db = await createDatabase(server);
  const seed = await Seeder.connect(db.url);
  for (const [id, ip] of Object.entries(regions)) await seed.region(id, ip);
  const cleanups: (() => Promise<void>)[] = [];
  return {
    db,
    seed,
    async proxy(more = {}) {
      const s = await startTestService({ databaseUrl: db.url, syncMode: 'replication', updateIntervalMs: 60_000, ...defaults, ...more });
      cleanups.push(() => s.stop('test done'));
      return s;
    },
    async close() {
      for (const c of cleanups.reverse()) await c();
      await seed.close().catch(() => undefined); // a test may have closed it already (restart test)
      await db.drop();
    },
  };
}
