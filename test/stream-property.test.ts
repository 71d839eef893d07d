/**
 * Property test against real Postgres: random inserts, updates, deletes, re-pointed foreign keys,
 * status flips, primary-key changes and multi-statement (sometimes rolled-back) transactions over
 * the four tables. After each transaction the streamed route table must equal the documented
 * query's result exactly. EDGEPROXY_STREAM_PROPERTY_STEPS (default 300) and
 * EDGEPROXY_STREAM_PROPERTY_SEED reproduce or lengthen a run.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, it } from 'node:test';
import pg from 'pg';
import { createDatabase, startPostgres, type PgServer } from './support/postgres.js';
import { waitForQueryTable } from './support/routes.js';
import { REGION_A, startTestService } from './support/service.js';

const STEPS = Number(process.env.EDGEPROXY_STREAM_PROPERTY_STEPS ?? 300);
const SEED = Number(process.env.EDGEPROXY_STREAM_PROPERTY_SEED ?? Math.floor(Math.random() * 2 ** 31));

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server.stop();
});

function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick<T>(xs: readonly T[]): T | undefined {
      return xs.length === 0 ? undefined : xs[Math.floor(next() * xs.length)];
    },
    chance: (p: number) => next() < p,
  };
}

// A small name pool, so duplicates, renames onto taken names and case/dot variants happen often.
const NAMES = ['a.example', 'b.example', 'c.example', 'd.example', 'A.Example.', 'e.example', 'bad name', 'f.example'];
const DEP_STATUS = ['ready', 'ready', 'failed', 'pending'];
const VM_STATUS = ['running', 'running', 'stopped', 'starting'];

it(`streamed table equals the documented query after every transaction (${STEPS} steps, seed ${SEED})`, async () => {
  const db = await createDatabase(server);
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  const r = rng(SEED);
  const regions = [REGION_A, randomUUID(), randomUUID()];
  for (const [i, id] of regions.entries()) {
    await c.query(`INSERT INTO regions (id, name, code, public_ipv4) VALUES ($1, $2, $2, $3)`, [id, `r${i}`, `10.0.0.${i + 1}`]);
  }
  const service = await startTestService({ databaseUrl: db.url, syncMode: 'replication', updateIntervalMs: 60_000, logLevel: 'info' });
  try {
    await service.waitForLog((l) => l.msg === 'replication stream started');
    const ids = async (table: string): Promise<string[]> =>
      (await c.query<{ id: string }>(`SELECT id FROM ${table} ORDER BY id`)).rows.map((x) => x.id);
    const ops: ((q: (sql: string, params?: unknown[]) => Promise<unknown>) => Promise<void>)[] = [
      // a whole chain
      async (q) => {
        const vm = randomUUID();
        const dep = randomUUID();
        await q(`INSERT INTO vms (id, region_id, status, private_ip, port) VALUES ($1, $2, $3, $4, $5)`, [
          vm,
          r.pick(regions),
          r.pick(VM_STATUS),
          `10.1.${r.int(4)}.${r.int(250) + 1}`,
          r.chance(0.05) ? null : 3000 + r.int(5),
        ]);
        await q(`INSERT INTO deployments (id, status, vm_id) VALUES ($1, $2, $3)`, [dep, r.pick(DEP_STATUS), vm]);
        await q(`INSERT INTO domains (id, name, deployment_id, verified_at) VALUES ($1, $2, $3, $4)`, [
          randomUUID(),
          r.pick(NAMES),
          dep,
          r.chance(0.8) ? new Date() : null,
        ]);
      },
      // a domain onto an existing deployment (or none)
      async (q) => {
        const dep = r.chance(0.9) ? r.pick(await ids('deployments')) : null;
        await q(`INSERT INTO domains (id, name, deployment_id, verified_at) VALUES ($1, $2, $3, now())`, [
          randomUUID(),
          r.pick(NAMES),
          dep ?? null,
        ]);
      },
      async (q) => {
        const d = r.pick(await ids('domains'));
        if (d)
          await q(`UPDATE domains SET deployment_id = $2 WHERE id = $1`, [
            d,
            r.chance(0.85) ? (r.pick(await ids('deployments')) ?? null) : null,
          ]);
      },
      async (q) => {
        const d = r.pick(await ids('domains'));
        if (d) await q(`UPDATE domains SET verified_at = CASE WHEN verified_at IS NULL THEN now() ELSE NULL END WHERE id = $1`, [d]);
      },
      async (q) => {
        const d = r.pick(await ids('domains'));
        if (d) await q(`UPDATE domains SET name = $2 WHERE id = $1`, [d, r.pick(NAMES)]);
      },
      // primary-key change (nothing references domains)
      async (q) => {
        const d = r.pick(await ids('domains'));
        if (d) await q(`UPDATE domains SET id = $2 WHERE id = $1`, [d, randomUUID()]);
      },
      async (q) => {
        const d = r.pick(await ids('deployments'));
        if (d) await q(`UPDATE deployments SET status = $2 WHERE id = $1`, [d, r.pick(DEP_STATUS)]);
      },
      async (q) => {
        const d = r.pick(await ids('deployments'));
        if (d) await q(`UPDATE deployments SET vm_id = $2 WHERE id = $1`, [d, r.chance(0.9) ? (r.pick(await ids('vms')) ?? null) : null]);
      },
      async (q) => {
        const v = r.pick(await ids('vms'));
        if (v) await q(`UPDATE vms SET status = $2 WHERE id = $1`, [v, r.pick(VM_STATUS)]);
      },
      async (q) => {
        const v = r.pick(await ids('vms'));
        if (v) await q(`UPDATE vms SET port = $2, private_ip = $3 WHERE id = $1`, [v, 3000 + r.int(5), `10.2.0.${r.int(250) + 1}`]);
      },
      async (q) => {
        const v = r.pick(await ids('vms'));
        if (v) await q(`UPDATE vms SET region_id = $2 WHERE id = $1`, [v, r.pick(regions)]);
      },
      // a column no route reads: the change must not disturb anything
      async (q) => {
        const v = r.pick(await ids('vms'));
        if (v) await q(`UPDATE vms SET metadata = $2 WHERE id = $1`, [v, JSON.stringify({ blob: randomUUID().repeat(200) })]);
      },
      async (q) => {
        await q(`UPDATE regions SET public_ipv4 = $2 WHERE id = $1`, [r.pick(regions), `10.0.${r.int(3)}.${r.int(250) + 1}`]);
      },
      async (q) => {
        const d = r.pick(await ids('domains'));
        if (d) await q(`DELETE FROM domains WHERE id = $1`, [d]);
      },
      async (q) => {
        const d = r.pick(await ids('deployments'));
        if (!d) return;
        await q(`UPDATE domains SET deployment_id = NULL WHERE deployment_id = $1`, [d]);
        await q(`DELETE FROM deployments WHERE id = $1`, [d]);
      },
      async (q) => {
        const v = r.pick(await ids('vms'));
        if (!v) return;
        await q(`UPDATE deployments SET vm_id = NULL WHERE vm_id = $1`, [v]);
        await q(`DELETE FROM vms WHERE id = $1`, [v]);
      },
      // the same row changed twice in one transaction
      async (q) => {
        const v = r.pick(await ids('vms'));
        if (!v) return;
        await q(`UPDATE vms SET status = 'stopped' WHERE id = $1`, [v]);
        await q(`UPDATE vms SET status = $2, port = $3 WHERE id = $1`, [v, r.pick(VM_STATUS), 3000 + r.int(5)]);
      },
    ];
    let committedWrites = 0;
    let rolledBack = 0;
    let maxRoutes = 0;
    for (let step = 0; step < STEPS; step++) {
      const n = 1 + r.int(4);
      const rollback = r.chance(0.1);
      await c.query('BEGIN');
      let wrote = false; // a transaction that changed no row is not sent on the stream
      for (let i = 0; i < n; i++) {
        await r.pick(ops)!(async (sql, params) => {
          const res = await c.query(sql, params);
          wrote ||= (res.rowCount ?? 0) > 0;
          return res;
        });
      }
      await c.query(rollback ? 'ROLLBACK' : 'COMMIT');
      if (rollback) rolledBack++;
      else if (wrote) committedWrites++;
      try {
        await waitForQueryTable(service.store, c, 5000);
      } catch (err) {
        assert.fail(`step ${step} (seed ${SEED}): ${(err as Error).message}`);
      }
      maxRoutes = Math.max(maxRoutes, service.store.current?.routes.size ?? 0);
    }
    // Every committed transaction that wrote a row arrives once; the last ones may change no route,
    // so give them a moment to arrive.
    for (let i = 0; service.status().transactions < committedWrites && i < 250; i++) await new Promise((res) => setTimeout(res, 20));
    const status = service.status();
    assert.equal(status.state, 'streaming', 'no resync was needed');
    assert.equal(status.reconnects, 0);
    assert.equal(
      status.transactions,
      committedWrites,
      `${status.transactions} transactions applied for ${committedWrites} commits that wrote rows`,
    );
    assert.ok(rolledBack > 0 || STEPS < 50);
    assert.ok(maxRoutes > 0, 'the run produced some routes');
  } finally {
    await service.stop('test done');
    await c.end();
    await db.drop();
  }
});
