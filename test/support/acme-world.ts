/**
 * What the ACME tests stand on, started once per file: a real PostgreSQL with one database, the
 * real test CA (Caddy, acme-ca.ts), one backend VM, and routes to it in REGION_A. The options a
 * proxy needs to serve what the stream brings, or to issue as well, are built here so that every
 * file starts its proxies the same way.
 */
import type { Config } from '../../src/config/config.js';
import { startTestCa, type TestCa, type TestCaOptions } from './acme-ca.js';
import { startBackend, type Backend } from './backend.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './postgres.js';
import { Seeder } from './seed.js';
import { eventually, REGION_A, type TestService } from './service.js';

export interface AcmeWorld {
  readonly server: PgServer;
  readonly ca: TestCa;
  readonly db: TestDatabase;
  readonly seed: Seeder;
  readonly vm: Backend;
  /** Stops what start made (the proxies a test started are its own to stop first). */
  stop(): Promise<void>;
}

export interface AcmeWorldOptions {
  readonly ca: TestCaOptions;
  /** Routed to the VM; verified unless said otherwise. */
  readonly routes: readonly { readonly name: string; readonly verified?: boolean }[];
}

export async function startAcmeWorld(opts: AcmeWorldOptions): Promise<AcmeWorld> {
  const [server, ca] = await Promise.all([startPostgres(), startTestCa(opts.ca)]);
  const started: { db?: TestDatabase; seed?: Seeder; vm?: Backend } = {};
  const stop = async (): Promise<void> => {
    await started.vm?.close();
    await started.seed?.client.end();
    await started.db?.drop();
    await Promise.all([server.stop(), ca.stop()]);
  };
  try {
    const db = (started.db = await createDatabase(server));
    const seed = (started.seed = await Seeder.connect(db.url));
    const vm = (started.vm = await startBackend('vm'));
    await seed.region(REGION_A, '192.0.2.10');
    for (const r of opts.routes) await seed.route({ name: r.name, regionId: REGION_A, vmPort: vm.port, verified: r.verified ?? true });
    return { server, ca, db, seed, vm, stop };
  } catch (err) {
    await stop(); // nothing left running when the setup itself fails
    throw err;
  }
}

type ServiceOptions = Partial<Config> & { databaseUrl: string };

/** A proxy that serves the certificates the stream brings (HTTPS on a free port) and issues none. */
export function servingOptions(world: AcmeWorld, storageKey: string): ServiceOptions {
  return { databaseUrl: world.db.url, syncMode: 'auto', httpsAddr: { host: '127.0.0.1', port: 0 }, tlsStorageKey: storageKey };
}

/** A proxy that issues from the test CA too: its HTTP port on `httpHost`:80, where the CA resolves the names for HTTP-01. */
export function issuingOptions(world: AcmeWorld, storageKey: string, httpHost: string): ServiceOptions {
  return {
    ...servingOptions(world, storageKey),
    httpAddr: { host: httpHost, port: 80 },
    primaryDatabaseUrl: world.db.url,
    acmeDirectoryUrl: world.ca.directoryUrl,
    acmeCaRootsFile: world.ca.rootsFile,
  };
}

/** Waits until each proxy's table routes `name` (its first table is in). */
export async function firstTable(proxies: readonly TestService[], name: string): Promise<void> {
  for (const p of proxies) await eventually('the first table', () => p.store.current?.routes.get(name) !== undefined, 15_000);
}
