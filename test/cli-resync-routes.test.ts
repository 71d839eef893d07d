import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { closedPort, request, startBackend, type Backend } from './support/backend.js';
import { describeRun, runCli, spawnLong } from './support/cli.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';
import { Seeder } from './support/seed.js';
import { REGION_A, REGION_B, startTestService, type TestService } from './support/service.js';

// `edgeproxy resync` and `edgeproxy routes` as real processes against a running proxy (in this
// process, real sockets, real Postgres), and SIGHUP to a real `edgeproxy serve` process.

let pg: PgServer;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

describe('resync and routes against a running proxy', { concurrency: 1 }, () => {
  let db: TestDatabase;
  let seed: Seeder;
  let vm: Backend;
  let svc: TestService;
  let addr: string;

  before(async () => {
    db = await createDatabase(pg);
    seed = await Seeder.connect(db.url);
    vm = await startBackend('vm-a');
    await seed.region(REGION_A, '127.0.0.1');
    await seed.region(REGION_B, '192.0.2.7');
    await seed.route({ name: 'same.example', regionId: REGION_A, vmPort: vm.port });
    await seed.route({ name: 'cross.example', regionId: REGION_B, vmIp: '10.9.8.7', vmPort: 3000 });
    svc = await startTestService({ databaseUrl: db.url, adminAddr: { host: '127.0.0.1', port: 0 }, updateIntervalMs: 60_000 });
    addr = `127.0.0.1:${svc.adminPort}`;
    await svc.waitForLog((l) => l.msg === 'route table loaded');
  });
  after(async () => {
    await svc.stop('test');
    await vm.close();
    await seed.close();
    await db.drop();
  });

  it('routes: a table for people, sorted, with kind, target and region', async () => {
    const r = await runCli(['routes', '--admin-addr', addr]);
    assert.equal(r.code, 0, describeRun(r));
    const lines = r.stdout.split('\n');
    assert.match(lines[0]!, /^HOST\s+KIND\s+TARGET\s+VM\s+VM REGION$/);
    assert.match(lines[1]!, new RegExp(`^cross\\.example\\s+cross-region\\s+192\\.0\\.2\\.7:80\\s+10\\.9\\.8\\.7:3000\\s+${REGION_B}$`));
    assert.match(
      lines[2]!,
      new RegExp(`^same\\.example\\s+same-region\\s+127\\.0\\.0\\.1:${vm.port}\\s+127\\.0\\.0\\.1:${vm.port}\\s+${REGION_A}$`),
    );
    assert.match(lines[3]!, /^2 routes; this proxy's region .*sync mode poll, fed by poll, state polling$/);
  });

  it('routes --limit / --contains: a page of the table, saying so', async () => {
    const r = await runCli(['routes', '--limit', '1', '--admin-addr', addr]);
    assert.equal(r.code, 0, describeRun(r));
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.match(lines[1]!, /^cross\.example /);
    assert.match(lines[2]!, /^2 routes \(the first 1 shown; --limit\); /);
    const same = await runCli(['routes', '--contains', 'same', '--admin-addr', addr]);
    assert.match(same.stdout, /^same\.example /m);
    assert.match(same.stdout, /^1 route containing "same"; /m);
  });

  it('routes --json: the admin API document', async () => {
    const r = await runCli(['routes', '--json'], { EDGEPROXY_ADMIN_ADDR: addr });
    assert.equal(r.code, 0, describeRun(r));
    const doc = JSON.parse(r.stdout) as { count: number; routes: { host: string }[] };
    assert.equal(doc.count, 2);
    assert.deepEqual(
      doc.routes.map((x) => x.host),
      ['cross.example', 'same.example'],
    );
  });

  it('routes <host>: why, for same region (with health), cross region and not found (exit 1)', async () => {
    await request(svc.port, { host: 'same.example' });
    const same = await runCli(['routes', 'Same.Example', '--admin-addr', addr]);
    assert.equal(same.code, 0, describeRun(same));
    assert.match(same.stdout, /^same\.example: same-region\n/);
    assert.match(same.stdout, /last health check: healthy \(status 200\)/);

    const cross = await runCli(['routes', 'cross.example', '--admin-addr', addr]);
    assert.equal(cross.code, 0, describeRun(cross));
    assert.match(cross.stdout, /^cross\.example: cross-region\n/);
    assert.match(cross.stdout, /load balancer 192\.0\.2\.7:80/);

    const missing = await runCli(['routes', 'nope.example', '--admin-addr', addr]);
    assert.equal(missing.code, 1, describeRun(missing));
    assert.match(missing.stdout, /^nope\.example: not-found\n/);
    assert.equal(missing.stderr, 'edgeproxy: nope.example is not routed\n');

    const json = await runCli(['routes', 'cross.example', '--json', '--admin-addr', addr]);
    assert.equal((JSON.parse(json.stdout) as { decision: string }).decision, 'cross-region');
  });

  it('resync: prints the counts; -v lists the hosts; --json for scripts', async () => {
    const none = await runCli(['resync', '--admin-addr', addr]);
    assert.equal(none.code, 0, describeRun(none));
    assert.match(none.stdout, /^resync done in [0-9.]+ ms: 2 routes \(0 added, 0 removed, 0 changed\)\n$/);

    await seed.route({ name: 'new.example', regionId: REGION_A, vmPort: vm.port });
    await seed.query(`UPDATE domains SET verified_at = NULL WHERE name = 'cross.example'`);
    const verbose = await runCli(['resync', '-v', '--admin-addr', addr]);
    assert.equal(verbose.code, 0, describeRun(verbose));
    assert.match(verbose.stdout, /: 2 routes \(1 added, 1 removed, 0 changed\)\n {2}\+ new\.example\n {2}- cross\.example\n$/);
    assert.equal((await request(svc.port, { host: 'new.example' })).status, 200, 'in effect when resync returns');

    const json = await runCli(['resync', '--json'], { EDGEPROXY_ADMIN_ADDR: addr });
    assert.equal(json.code, 0, describeRun(json));
    const doc = JSON.parse(json.stdout) as Record<string, unknown>;
    assert.equal(doc.ok, true);
    assert.equal(doc.routes, 2);
    assert.deepEqual([doc.added, doc.removed, doc.changed], [[], [], []]);
  });

  it('resync and routes: an unreachable proxy → exit 1 with a hint', async () => {
    const port = await closedPort();
    for (const command of ['resync', 'routes']) {
      const r = await runCli([command, '--admin-addr', `127.0.0.1:${port}`]);
      assert.equal(r.code, 1, describeRun(r));
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        new RegExp(
          `^edgeproxy: cannot reach the proxy's admin API at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\): is \`edgeproxy serve\` running`,
        ),
      );
    }
  });
});

describe('resync that fails', () => {
  it('exit 1 with the database error when the reload fails; routes says the table is not loaded', async () => {
    const port = await closedPort();
    const svc = await startTestService({
      databaseUrl: `postgres://postgres@127.0.0.1:${port}/nothing`,
      adminAddr: { host: '127.0.0.1', port: 0 },
    });
    try {
      const addr = `127.0.0.1:${svc.adminPort}`;
      const r = await runCli(['resync', '--admin-addr', addr]);
      assert.equal(r.code, 1, describeRun(r));
      assert.match(r.stderr, /^edgeproxy: resync failed: .*ECONNREFUSED/);
      const routes = await runCli(['routes', '--admin-addr', addr]);
      assert.equal(routes.code, 1, describeRun(routes));
      assert.match(routes.stderr, /route table is not loaded yet/);
    } finally {
      await svc.stop('test');
    }
  });
});

describe('SIGHUP to edgeproxy serve', () => {
  it('runs a full resync, logged with what changed; the process keeps serving', async () => {
    const db = await createDatabase(pg);
    const seed = await Seeder.connect(db.url);
    const vm = await startBackend('vm');
    await seed.region(REGION_A);
    await seed.route({ name: 'one.example', regionId: REGION_A, vmPort: vm.port });
    const p = spawnLong(['src/cli/bin.ts', 'serve'], {
      EDGEPROXY_DATABASE_URL: db.url,
      EDGEPROXY_REGION_ID: REGION_A,
      EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
      EDGEPROXY_ADMIN_ADDR: '127.0.0.1:0',
      EDGEPROXY_UPDATE_INTERVAL: '1h',
      EDGEPROXY_SYNC_MODE: 'poll',
    });
    try {
      const port = (await p.waitFor((l) => l.msg === 'listening')).port as number;
      const admin = (await p.waitFor((l) => l.msg === 'admin API listening')).port as number;
      assert.notEqual(admin, port);
      await p.waitFor((l) => l.msg === 'route table loaded');
      await seed.route({ name: 'two.example', regionId: REGION_A, vmPort: vm.port });
      assert.equal((await request(port, { host: 'two.example' })).status, 404, 'not loaded yet: the interval is an hour');
      p.child.kill('SIGHUP');
      await p.waitFor((l) => l.msg === 'resync requested' && l.trigger === 'sighup');
      const done = await p.waitFor((l) => l.msg === 'resync finished');
      assert.equal(done.trigger, 'sighup');
      assert.equal(done.added, 1);
      assert.equal(done.routes, 2);
      assert.equal((await request(port, { host: 'two.example' })).status, 200);
      const metrics = await request(admin, { path: '/metrics' });
      assert.match(metrics.body, /^edgeproxy_resyncs_total\{trigger="sighup",result="ok"\} 1$/m);
      p.child.kill('SIGTERM');
      assert.equal((await p.exited).code, 0);
    } finally {
      p.child.kill('SIGKILL');
      await vm.close();
      await seed.close();
      await db.drop();
    }
  });
});
