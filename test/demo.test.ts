import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import pg from 'pg';
import { request } from './support/backend.js';
import { describeRun, runCli, spawnLong, type LongRun } from './support/cli.js';
import { eventually } from './support/service.js';

// `npm run demo` (scripts/demo.ts) as a real process in its own process group: it starts, the
// printed commands work (including the route change), Ctrl-C (SIGINT to the group) stops
// everything, and a second run on the same ports works.

interface Started {
  readonly run: LongRun;
  readonly proxy: number;
  readonly admin: number;
  readonly control: number;
  readonly databaseUrl: string;
  readonly dataDir: string;
  readonly moveSql: string;
}

async function startDemo(ports: { proxy: number; admin: number; control: number }): Promise<Started> {
  const run = spawnLong(
    ['scripts/demo.ts'],
    {
      EDGEPROXY_HTTP_ADDR: `127.0.0.1:${ports.proxy}`,
      EDGEPROXY_ADMIN_ADDR: `127.0.0.1:${ports.admin}`,
      EDGEPROXY_DEMO_CONTROL_ADDR: `127.0.0.1:${ports.control}`,
      ...(process.env.EDGEPROXY_TEST_PG_TMPDIR ? { EDGEPROXY_TEST_PG_TMPDIR: process.env.EDGEPROXY_TEST_PG_TMPDIR } : {}),
    },
    { ownProcessGroup: true },
  );
  const text = (l: Record<string, unknown>) => (typeof l.text === 'string' ? l.text : '');
  const where = text(await run.waitFor((l) => text(l).startsWith('  proxy http://'), 30_000));
  const m = /proxy http:\/\/127\.0\.0\.1:(\d+) +admin API http:\/\/127\.0\.0\.1:(\d+) +demo control http:\/\/127\.0\.0\.1:(\d+)/.exec(
    where,
  );
  assert.ok(m, where);
  const db = /at (postgres:\/\/\S+) .*; data in (\S+)\)$/.exec(text(await run.waitFor((l) => text(l).startsWith('  PostgreSQL '))))!;
  assert.ok(existsSync(db[2]!), db[2]);
  const move = text(await run.waitFor((l) => text(l).includes('/sql --data "UPDATE')));
  const sql = /--data "(.*)"$/.exec(move)![1]!;
  await run.waitFor((l) => text(l).startsWith('Ctrl-C stops everything'));
  return { run, proxy: Number(m[1]), admin: Number(m[2]), control: Number(m[3]), databaseUrl: db[1]!, dataDir: db[2]!, moveSql: sql };
}

/** Ctrl-C: SIGINT to the whole process group (the demo and its PostgreSQL). */
async function ctrlC(d: Started): Promise<void> {
  process.kill(-d.run.child.pid!, 'SIGINT');
  const { code } = await d.run.exited;
  assert.equal(code, 0, d.run.output().slice(-2000));
  assert.match(d.run.output(), /stopped; nothing left running\.\n/);
  // Nothing listens any more: not the proxy, the admin API, the control endpoint, nor PostgreSQL.
  for (const port of [d.proxy, d.admin, d.control]) await assert.rejects(request(port, { path: '/' }), /ECONNREFUSED/);
  const client = new pg.Client({ connectionString: d.databaseUrl, connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  await assert.rejects(client.connect(), /ECONNREFUSED/);
  assert.equal(existsSync(d.dataDir), false, `${d.dataDir} removed`);
}

describe('npm run demo', () => {
  it('serves the seeded routes, shows a database change taking effect, stops on Ctrl-C, and runs again on the same ports', async () => {
    const first = await startDemo({ proxy: 0, admin: 0, control: 0 });
    try {
      const shop = await request(first.proxy, { host: 'shop.demo.test' });
      assert.equal(shop.status, 200);
      assert.match(shop.body, /^Hello from vm-1 /);
      assert.match((await request(first.proxy, { host: 'blog.demo.test' })).body, /^Hello from vm-2 /);
      assert.match((await request(first.proxy, { host: 'api.demo.test' })).body, /remote region's load balancer.*api\.demo\.test/);
      assert.equal((await request(first.proxy, { host: 'status.demo.test' })).status, 503);
      assert.equal((await request(first.proxy, { host: 'nope.demo.test' })).status, 404);

      const changed = await request(first.control, { path: '/sql', method: 'POST', body: first.moveSql });
      assert.equal(changed.body, 'UPDATE 1\n');
      await eventually(
        'shop.demo.test on vm-2',
        async () => /^Hello from vm-2 /.test((await request(first.proxy, { host: 'shop.demo.test' })).body),
        10_000,
      );

      const routes = JSON.parse((await request(first.admin, { path: '/routes' })).body) as { count: number };
      assert.equal(routes.count, 4);
      // The printed operator commands work against it, and the demo database passes doctor.
      const [table, doctor] = await Promise.all([
        runCli(['routes', '--admin-addr', `127.0.0.1:${first.admin}`]),
        runCli(['doctor', '--database-url', first.databaseUrl]),
      ]);
      assert.equal(table.code, 0, describeRun(table));
      assert.match(table.stdout, /^shop\.demo\.test +same-region /m);
      assert.match(table.stdout, /^api\.demo\.test +cross-region /m);
      assert.equal(doctor.code, 0, describeRun(doctor));
      // The one warning: doctor is given no storage key (the demo serves no stored certificate).
      assert.match(doctor.stdout, /\nWARN {2}certificate storage +no storage key/);
      // No primary and no ACME directory (off for tests): the issuance checks are skipped.
      assert.match(doctor.stdout, /14 passed, 0 failed, 1 warning, 2 skipped/);
    } catch (err) {
      process.kill(-first.run.child.pid!, 'SIGKILL');
      throw err;
    }
    await ctrlC(first);

    const second = await startDemo({ proxy: first.proxy, admin: first.admin, control: first.control });
    try {
      assert.equal(second.proxy, first.proxy);
      assert.match((await request(second.proxy, { host: 'shop.demo.test' })).body, /^Hello from vm-1 /, 'a fresh database');
    } catch (err) {
      process.kill(-second.run.child.pid!, 'SIGKILL');
      throw err;
    }
    await ctrlC(second);
  });
});
