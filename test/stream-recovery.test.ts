import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { SyncStartError } from '../src/sync/sync.js';
import { startPostgres, type PgServer } from './support/postgres.js';
import { waitForQueryTable } from './support/routes.js';
import { Seeder } from './support/seed.js';
import { eventually, REGION_A } from './support/service.js';
import { streamFixture, type StreamFixture } from './support/stream-fixture.js';

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server.stop();
});

const setup = (srv: PgServer = server) => streamFixture(srv, { [REGION_A]: '127.0.0.1' }, { logLevel: 'info' });

/** A role with the given attributes that may read the routing tables; its URL (trust auth: no password). */
async function role(t: StreamFixture, attributes: string): Promise<string> {
  const name = `r_${randomUUID().slice(0, 8)}`;
  await t.seed.query(`CREATE ROLE ${name} LOGIN ${attributes}`);
  await t.seed.query(`GRANT SELECT ON domains, deployments, vms, regions TO ${name}`);
  const url = new URL(t.db.url);
  url.username = name;
  return url.toString();
}

const started = (l: { msg: string }) => l.msg === 'replication stream started';

/** Every series of the exposition's counters (`# TYPE … counter`), by name and labels. */
function counters(text: string): Map<string, number> {
  const names = new Set([...text.matchAll(/^# TYPE (\S+) counter$/gm)].map((m) => m[1]!));
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m !== null && names.has(m[1]!)) out.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return out;
}

describe('consistent bootstrap', () => {
  it('loses nothing when a writer commits continuously while the proxy bootstraps', async () => {
    const t = await setup();
    try {
      const writer = new pg.Client({ connectionString: t.db.url });
      await writer.connect();
      let stop = false;
      let commits = 0;
      const vms: string[] = [];
      const writing = (async () => {
        while (!stop) {
          const vm = randomUUID();
          const dep = randomUUID();
          await writer.query('BEGIN');
          await writer.query(`INSERT INTO vms (id, region_id, status, private_ip, port) VALUES ($1, $2, 'running', '10.0.0.1', 3000)`, [
            vm,
            REGION_A,
          ]);
          await writer.query(`INSERT INTO deployments (id, status, vm_id) VALUES ($1, 'ready', $2)`, [dep, vm]);
          await writer.query(`INSERT INTO domains (id, name, deployment_id, verified_at) VALUES ($1, $2, $3, now())`, [
            randomUUID(),
            `w${commits}.example`,
            dep,
          ]);
          const earlier = vms[Math.floor(Math.random() * vms.length)];
          if (earlier) await writer.query('UPDATE vms SET port = port + 1 WHERE id = $1', [earlier]);
          await writer.query('COMMIT');
          vms.push(vm);
          commits++;
        }
      })();
      await eventually('some commits', () => commits > 50);
      const p = await t.proxy();
      await p.waitForLog(started);
      const atStart = commits;
      await eventually('more commits after the bootstrap', () => commits > atStart + 100, 10_000);
      stop = true;
      await writing;
      await waitForQueryTable(p.store, writer);
      assert.equal(p.store.current?.routes.size, commits);
      assert.equal(p.status().reconnects, 0);
      await writer.end();
    } finally {
      await t.close();
    }
  });
});

describe('recovery', () => {
  it('TRUNCATE → a fresh bootstrap, and the table follows', async () => {
    const t = await setup();
    try {
      await t.seed.route({ name: 'gone.example', regionId: REGION_A, vmPort: 3000 });
      const p = await t.proxy();
      await p.waitForLog(started);
      await t.seed.query('TRUNCATE domains');
      await t.seed.route({ name: 'new.example', regionId: REGION_A, vmPort: 3001 });
      const line = await p.waitForLog((l) => l.msg === 'replication stream needs a fresh bootstrap');
      assert.match(String(line.reason), /TRUNCATE of domains/);
      await waitForQueryTable(p.store, t.seed.client);
      assert.deepEqual([...p.store.current!.routes.keys()], ['new.example']);
      await eventually('streaming again', () => p.status().state === 'streaming');
      assert.equal(p.status().reconnects, 1);
    } finally {
      await t.close();
    }
  });

  it('ALTER TABLE: an unrelated column streams on; a read column changing type → a fresh bootstrap', async () => {
    const t = await setup();
    try {
      const ids = await t.seed.route({ name: 'alter.example', regionId: REGION_A, vmPort: 3000 });
      const p = await t.proxy();
      await p.waitForLog(started);
      await t.seed.query('ALTER TABLE vms ADD COLUMN note text');
      await t.seed.query(`UPDATE vms SET port = 3001, note = 'x' WHERE id = $1`, [ids.vmId]);
      await waitForQueryTable(p.store, t.seed.client);
      assert.equal(p.status().reconnects, 0, 'a new column nobody reads needs no bootstrap');
      await t.seed.query('ALTER TABLE vms ALTER COLUMN port TYPE bigint');
      await t.seed.query(`UPDATE vms SET port = 3002 WHERE id = $1`, [ids.vmId]);
      const line = await p.waitForLog((l) => l.msg === 'replication stream needs a fresh bootstrap');
      assert.match(String(line.reason), /vms\.port changed type/);
      await eventually('streaming again', () => p.status().state === 'streaming' && p.status().reconnects === 1);
      await waitForQueryTable(p.store, t.seed.client);
      assert.equal(p.store.current?.routes.get('alter.example')?.vmPort, 3002);
    } finally {
      await t.close();
    }
  });

  it('a killed walsender: keeps serving, polls meanwhile (auto), reconnects and catches up', async () => {
    const t = await setup();
    try {
      await t.seed.route({ name: 'one.example', regionId: REGION_A, vmPort: 3000 });
      const p = await t.proxy({ syncMode: 'auto', updateIntervalMs: 200 });
      await p.waitForLog(started);
      const killed = await t.seed.query(
        `SELECT pg_terminate_backend(active_pid) AS ok FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL`,
      );
      assert.equal(killed.rows.length, 1);
      await t.seed.route({ name: 'two.example', regionId: REGION_A, vmPort: 3001 });
      const lost = await p.waitForLog((l) => l.msg === 'replication stream lost; serving the last table');
      assert.equal(lost.polling, true);
      assert.ok(p.store.current!.routes.size >= 1, 'still serving');
      await waitForQueryTable(p.store, t.seed.client);
      await eventually('streaming again', () => p.status().state === 'streaming', 10_000);
      assert.equal(p.status().reconnects, 1);
      await t.seed.route({ name: 'three.example', regionId: REGION_A, vmPort: 3002 });
      await waitForQueryTable(p.store, t.seed.client);
      assert.equal(p.store.current?.source, 'stream');
    } finally {
      await t.close();
    }
  });

  it('mode replication never polls: a resync while the stream is down is a bootstrap', async () => {
    const t = await setup();
    try {
      await t.seed.route({ name: 'only-stream.example', regionId: REGION_A, vmPort: 3000 });
      const p = await t.proxy({ updateIntervalMs: 50 });
      await p.waitForLog(started);
      await t.seed.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database()`);
      await p.waitForLog((l) => l.msg === 'replication stream lost; serving the last table');
      const outcome = await p.resync();
      assert.equal(outcome.ok, true, JSON.stringify(outcome));
      assert.equal(p.status().state, 'streaming');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(p.poller.loads, 0, 'no poll ran in mode replication');
      assert.equal(p.store.current?.source, 'stream');
    } finally {
      await t.close();
    }
  });

  it('a role without REPLICATION: polls, with one warning saying why and how to enable streaming', async () => {
    const t = await setup();
    try {
      await t.seed.route({ name: 'poll.example', regionId: REGION_A, vmPort: 3000 });
      await t.seed.query(
        'CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms, regions, edgeproxy_certificates, edgeproxy_acme_challenges',
      );
      const url = await role(t, '');
      const p = await t.proxy({ databaseUrl: url, syncMode: 'auto', updateIntervalMs: 100 });
      const warn = await p.waitForLog((l) => l.msg.startsWith('logical replication unavailable'));
      assert.equal(warn.level, 'warn');
      assert.match(
        String(warn.reason),
        /^role "r_[0-9a-f]+" lacks the REPLICATION attribute\. Fix: ALTER ROLE "r_[0-9a-f]+" WITH REPLICATION;$/,
      );
      assert.equal(warn.step, 'check_server');
      await waitForQueryTable(p.store, t.seed.client);
      await t.seed.route({ name: 'later.example', regionId: REGION_A, vmPort: 3001 });
      await waitForQueryTable(p.store, t.seed.client);
      assert.equal(p.store.current?.source, 'poll');
      assert.equal(p.status().state, 'polling');
      assert.equal(p.logs.filter((l) => l.msg.startsWith('logical replication unavailable')).length, 1);
    } finally {
      await t.close();
    }
  });

  it('mode replication on a role without REPLICATION: start fails, saying why', async () => {
    const t = await setup();
    try {
      const url = await role(t, '');
      await assert.rejects(t.proxy({ databaseUrl: url }), (err: Error) => {
        assert.ok(err instanceof SyncStartError);
        assert.match(err.message, /EDGEPROXY_SYNC_MODE=replication.*REPLICATION attribute/);
        return true;
      });
    } finally {
      await t.close();
    }
  });

  it('a missing publication this role may not create: start fails with the SQL to run', async () => {
    const t = await setup();
    try {
      const url = await role(t, 'REPLICATION');
      await assert.rejects(t.proxy({ databaseUrl: url, syncMode: 'auto' }), (err: Error) => {
        assert.match(err.message, /publication "edgeproxy" does not exist/);
        assert.ok(
          err.message.includes(
            'CREATE PUBLICATION "edgeproxy" FOR TABLE "domains", "deployments", "vms", "regions", "edgeproxy_certificates", "edgeproxy_acme_challenges";',
          ),
          err.message,
        );
        return true;
      });
      // With the publication in place, the same role streams.
      await t.seed.query(
        'CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms, regions, edgeproxy_certificates, edgeproxy_acme_challenges',
      );
      const p = await t.proxy({ databaseUrl: url });
      await p.waitForLog(started);
    } finally {
      await t.close();
    }
  });

  it('counters never go down: bootstraps that failed stay counted after the stream recovers', async () => {
    const t = await setup();
    const samples: Map<string, number>[] = [];
    let sampling = true;
    try {
      await t.seed.query(
        'CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms, regions, edgeproxy_certificates, edgeproxy_acme_challenges',
      );
      const url = await role(t, 'REPLICATION');
      const name = new URL(url).username;
      const p = await t.proxy({ databaseUrl: url });
      await p.waitForLog(started);
      const sampler = (async () => {
        while (sampling) {
          samples.push(counters((await p.metrics.exposition()).body));
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      // New connections are refused from now on: every bootstrap fails at its first step.
      await t.seed.query(`ALTER ROLE ${name} NOLOGIN`);
      await t.seed.query(
        `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL`,
      );
      await eventually('two failed bootstraps', () => p.status().fullLoadFailures >= 2, 10_000);
      assert.equal(p.status().state, 'stream-retrying');
      await t.seed.query(`ALTER ROLE ${name} LOGIN`);
      await eventually('streaming again', () => p.status().state === 'streaming', 15_000);
      await new Promise((r) => setTimeout(r, 100));
      sampling = false;
      await sampler;
      const last = samples.at(-1)!;
      assert.ok(
        (last.get('edgeproxy_full_load_failures_total') ?? 0) >= 2,
        `failures counted: ${last.get('edgeproxy_full_load_failures_total')}`,
      );
      assert.ok((last.get('edgeproxy_stream_reconnects_total') ?? 0) >= 2);
      for (let i = 1; i < samples.length; i++) {
        for (const [series, value] of samples[i - 1]!) {
          const next = samples[i]!.get(series) ?? 0;
          assert.ok(next >= value, `${series} went down from ${value} to ${next} (sample ${i} of ${samples.length})`);
        }
      }
    } finally {
      sampling = false;
      await t.close();
    }
  });

  it('a PostgreSQL restart: serves the last table throughout, then streams again', async () => {
    const t = await setup();
    try {
      await t.seed.route({ name: 'restart.example', regionId: REGION_A, vmPort: 3000 });
      const p = await t.proxy({ syncMode: 'auto', updateIntervalMs: 200 });
      await p.waitForLog(started);
      await t.seed.close();
      await server.restart();
      assert.equal(p.store.current?.routes.get('restart.example')?.vmPort, 3000);
      await eventually('streaming again', () => p.status().state === 'streaming' && p.status().reconnects >= 1, 20_000);
      const seed = await Seeder.connect(t.db.url);
      try {
        await seed.route({ name: 'after-restart.example', regionId: REGION_A, vmPort: 3001 });
        await waitForQueryTable(p.store, seed.client);
      } finally {
        await seed.close();
      }
    } finally {
      await t.close();
    }
  });
});

describe('a server without logical WAL', () => {
  let replica: PgServer;
  before(async () => {
    replica = await startPostgres({ walLevel: 'replica' });
  });
  after(async () => {
    await replica.stop();
  });

  it('mode auto polls, with one warning naming wal_level and the fix', async () => {
    const t = await setup(replica);
    try {
      await t.seed.route({ name: 'walrep.example', regionId: REGION_A, vmPort: 3000 });
      const p = await t.proxy({ syncMode: 'auto', updateIntervalMs: 100 });
      const warn = await p.waitForLog((l) => l.msg.startsWith('logical replication unavailable'));
      assert.match(String(warn.reason), /wal_level is 'replica'.*ALTER SYSTEM SET wal_level = logical/);
      await waitForQueryTable(p.store, t.seed.client);
      await t.seed.route({ name: 'walrep2.example', regionId: REGION_A, vmPort: 3001 });
      await waitForQueryTable(p.store, t.seed.client);
      assert.equal(p.status().state, 'polling');
    } finally {
      await t.close();
    }
  });

  it('mode replication refuses to start', async () => {
    const t = await setup(replica);
    try {
      await assert.rejects(t.proxy(), /streaming is unavailable .*wal_level/);
    } finally {
      await t.close();
    }
  });
});
