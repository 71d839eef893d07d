import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startPostgres, type PgServer } from './support/postgres.js';
import { waitForQueryTable } from './support/routes.js';
import { REGION_A, REGION_B } from './support/service.js';
import { streamFixture } from './support/stream-fixture.js';

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server.stop();
});

const setup = () => streamFixture(server, { [REGION_A]: '127.0.0.1', [REGION_B]: '10.9.9.9' });

describe('streaming', () => {
  it('bootstraps rows in every status and verification state exactly as the documented query reads them', async () => {
    const t = await setup();
    try {
      const vmStatuses = ['pending', 'starting', 'running', 'stopping', 'stopped', 'failed'];
      const deploymentStatuses = ['pending', 'building', 'ready', 'failed', 'inactive'];
      let n = 0;
      for (const vmStatus of vmStatuses) {
        for (const deploymentStatus of deploymentStatuses) {
          for (const verified of [true, false]) {
            n++;
            await t.seed.route({ name: `s${n}.example`, regionId: REGION_A, vmPort: 3000 + n, vmStatus, deploymentStatus, verified });
          }
        }
      }
      const p = await t.proxy();
      await p.waitForLog((l) => l.msg === 'replication stream started');
      assert.equal(p.store.current?.source, 'stream');
      // Straight from the bootstrap, before any change streams: only running + ready + verified.
      assert.deepEqual([...(p.store.current?.routes.keys() ?? [])], ['s25.example']);
      await waitForQueryTable(p.store, t.seed.client);
    } finally {
      await t.close();
    }
  });

  it('bootstraps from a snapshot, then applies each committed change', async () => {
    const t = await setup();
    try {
      await t.seed.route({ name: 'before.example', regionId: REGION_A, vmPort: 3001 });
      const p = await t.proxy();
      const started = await p.waitForLog((l) => l.msg === 'replication stream started');
      assert.equal(started.publicationCreated, true);
      assert.deepEqual(
        p.logs.filter((l) => l.msg === 'replication setup step').map((l) => l.step),
        ['check_server', 'check_publication', 'connect_replication', 'create_slot', 'load_snapshot', 'start_streaming', 'streaming'],
      );
      assert.equal(p.store.current?.source, 'stream');
      assert.equal(p.store.current?.routes.get('before.example')?.vmPort, 3001);
      const ids = await t.seed.route({ name: 'after.example', regionId: REGION_B, vmPort: 3002 });
      await waitForQueryTable(p.store, t.seed.client);
      assert.equal(p.store.current?.routes.get('after.example')?.regionPublicIp, '10.9.9.9');
      await t.seed.query(`UPDATE vms SET port = 4002 WHERE id = $1`, [ids.vmId]);
      await waitForQueryTable(p.store, t.seed.client);
      assert.equal(p.store.current?.routes.get('after.example')?.vmPort, 4002);
      await t.seed.query(`UPDATE deployments SET status = 'failed' WHERE id = $1`, [ids.deploymentId]);
      await waitForQueryTable(p.store, t.seed.client);
      assert.equal(p.store.current?.routes.get('after.example'), undefined);
      const status = p.status();
      assert.equal(status.state, 'streaming');
      assert.equal(status.feeding, 'stream');
      assert.ok(status.transactions >= 3, `transactions ${status.transactions}`);
      assert.match(String(status.lsn), /^[0-9A-F]+\/[0-9A-F]+$/);
      assert.equal(p.store.current?.position?.lsn, status.lsn);
      assert.ok(status.lagMs !== undefined && status.lagMs < 5000, `lag ${status.lagMs}`);
      assert.deepEqual([...(p.store.current?.regionAddresses ?? [])].sort(), ['10.9.9.9', '127.0.0.1']);
      // The applied position is reported back (status update at least every second), so the
      // server can release WAL.
      const confirmed = async () =>
        (
          await t.seed.query(
            `SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE database = current_database()`,
            [status.lsn],
          )
        ).rows[0]?.ok === true;
      const t0 = Date.now();
      while (!(await confirmed())) {
        assert.ok(Date.now() - t0 < 2500, 'confirmed_flush_lsn reached the applied LSN within 2.5 s');
        await new Promise((r) => setTimeout(r, 50));
      }
      // Operators can see the proxy and its temporary slot.
      const seen = await t.seed.query(
        `SELECT r.application_name, s.temporary, s.slot_name FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.database = current_database()`,
      );
      assert.equal(seen.rows.length, 1);
      assert.match(String(seen.rows[0].application_name), /^edgeproxy .+ stream$/);
      assert.equal(seen.rows[0].temporary, true);
      assert.match(String(seen.rows[0].slot_name), /^edgeproxy_[a-z0-9_]+$/);
    } finally {
      await t.close();
    }
  });

  it('a resync while streaming is a fresh bootstrap, and reports no change when the stream was right', async () => {
    const t = await setup();
    try {
      await t.seed.route({ name: 'r1.example', regionId: REGION_A, vmPort: 3001 });
      await t.seed.route({ name: 'bad name.example', regionId: REGION_A, vmPort: 3009 });
      const p = await t.proxy();
      await p.waitForLog((l) => l.msg === 'replication stream started');
      await t.seed.route({ name: 'r2.example', regionId: REGION_A, vmPort: 3002 });
      await waitForQueryTable(p.store, t.seed.client);
      const outcome = await p.resync();
      assert.equal(outcome.ok, true);
      if (!outcome.ok) return;
      assert.deepEqual(outcome.diff, { added: [], removed: [], changed: [] });
      assert.equal(outcome.routes, 2);
      assert.equal(p.status().reconnects, 1);
      assert.equal(p.status().state, 'streaming');
      assert.equal(p.logs.filter((l) => l.msg === 'replication stream started').length, 2);
      // The bad row was reported by the first bootstrap, not again by the second.
      assert.equal(
        p.logs.filter((l) => l.msg === 'skipped a route row' && (l.row as { domain: string }).domain === 'bad name.example').length,
        1,
      );
      await t.seed.route({ name: 'r3.example', regionId: REGION_A, vmPort: 3003 });
      await waitForQueryTable(p.store, t.seed.client);
    } finally {
      await t.close();
    }
  });
});

describe('duplicate names while streaming', () => {
  it('are warned about at bootstrap and when a change makes or alters one, not on every change', async () => {
    const t = await setup();
    try {
      await t.seed.route({ name: 'dup.example', regionId: REGION_A, vmPort: 3001 });
      await t.seed.route({ name: 'DUP.example.', regionId: REGION_A, vmPort: 3002 });
      const p = await t.proxy();
      const first = await p.waitForLog((l) => l.msg === 'duplicate domain name');
      assert.equal(first.host, 'dup.example');
      assert.equal((first.chosen as { vmPort: number }).vmPort, 3001);
      const third = await t.seed.route({ name: 'dup.example', regionId: REGION_A, vmPort: 3000 });
      await waitForQueryTable(p.store, t.seed.client);
      const warnings = () => p.logs.filter((l) => l.msg === 'duplicate domain name');
      assert.equal(warnings().length, 2, 'a third row is a new duplicate set');
      assert.equal((warnings()[1]!.chosen as { vmPort: number }).vmPort, 3000);
      // A change that leaves the duplicate set as it is says nothing more.
      await t.seed.query(`UPDATE vms SET vcpus = 2 WHERE id = $1`, [third.vmId]);
      await t.seed.query(`UPDATE domains SET verification_token = 'x' WHERE id = $1`, [third.domainId]);
      await t.seed.route({ name: 'other.example', regionId: REGION_A, vmPort: 3003 });
      await waitForQueryTable(p.store, t.seed.client);
      assert.equal(warnings().length, 2);
    } finally {
      await t.close();
    }
  });
});

describe('region addresses (trusted for X-Forwarded-For)', () => {
  for (const syncMode of ['replication', 'poll'] as const) {
    it(`include regions without routes (mode ${syncMode})`, async () => {
      const t = await setup();
      try {
        await t.seed.route({ name: 'a.example', regionId: REGION_A, vmPort: 3001 });
        const p = await t.proxy({ syncMode });
        for (let i = 0; !p.store.ready && i < 200; i++) await new Promise((r) => setTimeout(r, 10));
        // REGION_B (10.9.9.9) has no VM: the documented query never names it.
        assert.deepEqual([...(p.store.current?.regionAddresses ?? [])].sort(), ['10.9.9.9', '127.0.0.1']);
        if (syncMode === 'replication') {
          // A region's new address streams in like any other change.
          await t.seed.query(`UPDATE regions SET public_ipv4 = '10.9.9.10' WHERE id = $1`, [REGION_B]);
          const addresses = () => [...(p.store.current?.regionAddresses ?? [])].sort().join(',');
          for (let i = 0; addresses() !== '10.9.9.10,127.0.0.1' && i < 250; i++) await new Promise((r) => setTimeout(r, 20));
          assert.equal(addresses(), '10.9.9.10,127.0.0.1');
        }
      } finally {
        await t.close();
      }
    });
  }
});
