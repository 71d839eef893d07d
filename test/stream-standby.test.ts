/**
 * EdgeProxy next to a read replica: streaming from a PostgreSQL 16+ standby (decoding on a
 * standby), and the fallback to polling on a PostgreSQL 15 standby.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { existsSync } from 'node:fs';
import { applyMigrations, createDatabase, startPostgres, type PgServer } from './support/postgres.js';
import { waitForQueryTable } from './support/routes.js';
import { Seeder } from './support/seed.js';
import { startStandby, waitForReplay } from './support/standby.js';
import { REGION_A, REGION_B, startTestService } from './support/service.js';

async function pair(primary: PgServer) {
  const db = await createDatabase(primary, { migrate: false });
  await applyMigrations(db.url);
  const seed = await Seeder.connect(db.url);
  await seed.region(REGION_A, '127.0.0.1');
  await seed.region(REGION_B, '10.0.0.2');
  await seed.query(
    'CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms, regions, edgeproxy_certificates, edgeproxy_acme_challenges',
  );
  await seed.route({ name: 'replica.example', regionId: REGION_A, vmPort: 3000 });
  const standby = await startStandby(primary);
  const onStandby = new pg.Client({ connectionString: standby.url(db.name) });
  await onStandby.connect();
  await waitForReplay(seed.client, onStandby);
  return { db, seed, standby, onStandby };
}

describe('streaming from a PostgreSQL 16+ standby', () => {
  let primary: PgServer;
  before(async () => {
    primary = await startPostgres();
  });
  after(async () => {
    await primary.stop();
  });

  it('bootstraps on the standby and applies changes committed on the primary', async (t) => {
    if (primary.majorVersion < 16) {
      // The default binaries are the pinned embedded PostgreSQL 18; this only happens with EDGEPROXY_TEST_PG_BIN.
      assert.fail(`this test needs PostgreSQL >= 16 binaries, got ${primary.majorVersion}`);
    }
    const p0 = await pair(primary);
    // Slot creation on a standby waits for a running-transactions record from the primary,
    // which an idle primary writes rarely: nudge it, as docs/streaming.md tells operators to.
    const nudge = setInterval(() => void p0.seed.query('SELECT pg_log_standby_snapshot()').catch(() => undefined), 100);
    const service = await startTestService({
      databaseUrl: p0.standby.url(p0.db.name),
      syncMode: 'replication',
      updateIntervalMs: 60_000,
      logLevel: 'info',
    });
    try {
      await service.waitForLog((l) => l.msg === 'replication stream started', 20_000);
      clearInterval(nudge);
      assert.equal(service.store.current?.routes.get('replica.example')?.vmPort, 3000);
      const ids = await p0.seed.route({ name: 'new.example', regionId: REGION_B, vmPort: 3001 });
      await waitForReplay(p0.seed.client, p0.onStandby);
      await waitForQueryTable(service.store, p0.onStandby, 10_000);
      await p0.seed.query('UPDATE vms SET port = 4001 WHERE id = $1', [ids.vmId]);
      await waitForReplay(p0.seed.client, p0.onStandby);
      await waitForQueryTable(service.store, p0.onStandby, 10_000);
      assert.equal(service.store.current?.routes.get('new.example')?.vmPort, 4001);
      assert.equal(service.status().state, 'streaming');
      const slot = await p0.onStandby.query(`SELECT temporary FROM pg_replication_slots WHERE slot_type = 'logical'`);
      assert.deepEqual(slot.rows, [{ temporary: true }], 'the logical slot lives on the standby');
      t.diagnostic(`standby: PostgreSQL ${p0.standby.majorVersion}`);
    } finally {
      clearInterval(nudge);
      await service.stop('test done');
      await p0.onStandby.end();
      await p0.seed.close();
      await p0.standby.stop();
    }
  });
});

describe('a PostgreSQL 15 standby', () => {
  const bin15 = '/usr/lib/postgresql/15/bin';
  let primary: PgServer;
  before(async () => {
    assert.ok(existsSync(`${bin15}/postgres`), `Debian's PostgreSQL 15 at ${bin15} (.ci/run installs postgresql-15 when it is missing)`);
    primary = await startPostgres({ binDir: bin15 });
  });
  after(async () => {
    await primary.stop();
  });

  it('polls, with one warning saying decoding on a standby needs PostgreSQL 16', async () => {
    const p0 = await pair(primary);
    const service = await startTestService({
      databaseUrl: p0.standby.url(p0.db.name),
      syncMode: 'auto',
      updateIntervalMs: 100,
      logLevel: 'info',
    });
    try {
      const warn = await service.waitForLog((l) => l.msg.startsWith('logical replication unavailable'));
      assert.match(String(warn.reason), /PostgreSQL 15\.\d+ standby, and logical decoding on a standby needs PostgreSQL 16 or later/);
      await waitForQueryTable(service.store, p0.onStandby);
      await p0.seed.route({ name: 'later.example', regionId: REGION_A, vmPort: 3001 });
      await waitForReplay(p0.seed.client, p0.onStandby);
      await waitForQueryTable(service.store, p0.onStandby);
      assert.equal(service.store.current?.source, 'poll');
    } finally {
      await service.stop('test done');
      await p0.onStandby.end();
      await p0.seed.close();
      await p0.standby.stop();
    }
  });
});
