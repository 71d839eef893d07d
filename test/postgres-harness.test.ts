import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { ROUTES_QUERY } from '../src/db/routes-query.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';

const external = Boolean(process.env.EDGEPROXY_TEST_DATABASE_URL);

let server: PgServer;
let db1: TestDatabase;
let db2: TestDatabase;

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function portAccepts(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

before(async () => {
  const t0 = performance.now();
  server = await startPostgres();
  const t1 = performance.now();
  db1 = await createDatabase(server);
  const t2 = performance.now();
  db2 = await createDatabase(server);
  const t3 = performance.now();
  console.error(
    `# harness timings: startPostgres ${Math.round(t1 - t0)} ms, createDatabase ${Math.round(t2 - t1)} ms / ${Math.round(t3 - t2)} ms`,
  );
});

after(async () => {
  await db1?.drop();
  await db2?.drop();
  await server?.stop();
});

test('server facts', async () => {
  assert.ok(server.port > 0);
  assert.ok(server.majorVersion >= 15, `major ${server.majorVersion}`);
  assert.equal(server.external, external);
  if (!external) {
    assert.equal(server.host, '127.0.0.1');
    assert.ok(server.binDir && fs.existsSync(server.binDir));
    assert.ok(server.dataDir && fs.existsSync(server.dataDir));
    assert.equal(server.url('x'), `postgres://postgres@127.0.0.1:${server.port}/x`);
  }
  await withClient(db1.url, async (c) => {
    const r = await c.query<Record<string, string>>(
      `SELECT current_setting('wal_level') AS wal_level,
              current_setting('max_replication_slots') AS slots,
              current_setting('max_wal_senders') AS senders,
              current_setting('synchronous_commit') AS sync_commit,
              current_setting('server_version_num') AS version_num,
              current_setting('fsync') AS fsync`,
    );
    const row = r.rows[0];
    assert.ok(row);
    assert.equal(row.wal_level, 'logical');
    assert.equal(row.sync_commit, 'on');
    assert.equal(Math.floor(Number(row.version_num) / 10_000), server.majorVersion);
    if (!external) {
      assert.equal(row.slots, '20');
      assert.equal(row.senders, '20');
      assert.equal(row.fsync, 'off');
    }
  });
});

test('two databases, both migrated, isolated from each other', async () => {
  assert.notEqual(db1.name, db2.name);
  for (const db of [db1, db2]) {
    await withClient(db.url, async (c) => {
      const tables = await c.query<{ t: string }>(
        `SELECT table_name AS t FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1`,
      );
      assert.deepEqual(
        tables.rows.map((r) => r.t),
        // The control-plane schema, then EdgeProxy's own tables (migrations/edgeproxy).
        [
          'deployments',
          'domains',
          'edgeproxy_acme_accounts',
          'edgeproxy_acme_challenges',
          'edgeproxy_acme_orders',
          'edgeproxy_certificates',
          'regions',
          'vms',
        ],
      );
      const enums = await c.query<{ typ: string; labels: string[] }>(
        `SELECT t.typname AS typ, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
         FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname ORDER BY 1`,
      );
      assert.deepEqual(enums.rows, [
        { typ: 'deployment_status', labels: ['pending', 'building', 'ready', 'failed', 'inactive'] },
        { typ: 'vm_status', labels: ['pending', 'starting', 'running', 'stopping', 'stopped', 'failed'] },
      ]);
    });
  }
  await withClient(db1.url, (c) =>
    c.query(`INSERT INTO regions (id, name, code, public_ipv4) VALUES ($1, 'only-in-db1', 'x', '192.0.2.1')`, [randomUUID()]),
  );
  const inDb2 = await withClient(db2.url, (c) => c.query(`SELECT 1 FROM regions WHERE name = 'only-in-db1'`));
  assert.equal(inDb2.rowCount, 0);
});

test('a full route chain comes back from the documented query', async () => {
  const region = randomUUID();
  const vm = randomUUID();
  const deployment = randomUUID();
  const pendingDeployment = randomUUID();
  await withClient(db2.url, async (c) => {
    await c.query(`INSERT INTO regions (id, name, code, public_ipv4) VALUES ($1, 'Frankfurt', 'fra', '203.0.113.7')`, [region]);
    await c.query(`INSERT INTO vms (id, region_id, status, private_ip, port) VALUES ($1, $2, 'running', '10.0.0.5', 3000)`, [vm, region]);
    await c.query(`INSERT INTO deployments (id, status, vm_id) VALUES ($1, 'ready', $2), ($3, 'pending', $2)`, [
      deployment,
      vm,
      pendingDeployment,
    ]);
    await c.query(
      `INSERT INTO domains (id, name, deployment_id, verified_at) VALUES
         ($1, 'app.example.com', $4, now()),
         ($2, 'app.example.com', $4, now()),            -- duplicate names are allowed
         ($3, 'unverified.example.com', $4, NULL),
         ($5, 'pending.example.com', $6, now())`,
      [randomUUID(), randomUUID(), randomUUID(), deployment, randomUUID(), pendingDeployment],
    );
    const routes = await c.query(ROUTES_QUERY);
    const expected = {
      domain_name: 'app.example.com',
      vm_private_ip: '10.0.0.5',
      vm_port: 3000,
      vm_region_id: region,
      region_public_ip: '203.0.113.7',
    };
    assert.deepEqual(routes.rows, [expected, expected]);

    // ids have no default; plain foreign keys refuse to orphan rows, re-pointing works.
    await assert.rejects(c.query(`INSERT INTO regions (name, code, public_ipv4) VALUES ('x', 'x', '192.0.2.1')`), {
      code: '23502',
    });
    await assert.rejects(c.query(`DELETE FROM vms WHERE id = $1`, [vm]), { code: '23503' });
    await c.query(`UPDATE domains SET deployment_id = $1 WHERE name = 'app.example.com'`, [pendingDeployment]);
    assert.equal((await c.query(ROUTES_QUERY)).rowCount, 0);
  });
});

test('drop() removes a database even with a logical replication slot in it', async () => {
  const db = await createDatabase(server, { migrate: false });
  const slot = `harness_${process.pid}`;
  await withClient(db.url, async (c) => {
    const tables = await c.query(`SELECT 1 FROM information_schema.tables WHERE table_schema = 'public'`);
    assert.equal(tables.rowCount, 0, 'migrate: false leaves the database empty');
    await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
  });
  await db.drop();
  await db.drop(); // idempotent
  await withClient(server.url('postgres'), async (c) => {
    assert.equal((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [db.name])).rowCount, 0);
    assert.equal((await c.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount, 0);
  });
});

test('restart keeps data and port', { skip: external && 'external server' }, async () => {
  const port = server.port;
  const pidBefore = server.pid;
  const t0 = performance.now();
  await server.restart();
  console.error(`# harness timings: restart ${Math.round(performance.now() - t0)} ms`);
  assert.equal(server.port, port);
  assert.notEqual(server.pid, pidBefore);
  const r = await withClient(db1.url, (c) => c.query(`SELECT 1 FROM regions WHERE name = 'only-in-db1'`));
  assert.equal(r.rowCount, 1);
});

test('stop closes the port and removes the data folder', { skip: external && 'external server' }, async () => {
  const { port, dataDir } = server;
  assert.ok(await portAccepts(port, server.host));
  await server.stop();
  assert.equal(server.pid, undefined);
  assert.equal(await portAccepts(port, server.host), false);
  assert.ok(dataDir && !fs.existsSync(dataDir));
  await server.stop(); // idempotent
  await db1.drop(); // no-op once the server is gone
  await assert.rejects(server.restart());
});
