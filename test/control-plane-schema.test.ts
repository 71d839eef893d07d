import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { runDoctor, type CheckResult } from '../src/cli/doctor-checks.js';
import { ConfigError, DEFAULTS, resolveConfig, type SyncMode } from '../src/config/config.js';
import { DiagnosedError } from '../src/db/diagnosis.js';
import { loadRoutes } from '../src/db/load-routes.js';
import { checkPublication, ensurePublication } from '../src/db/publication.js';
import { ROUTES_QUERY, routesQuery } from '../src/db/routes-query.js';
import { DOCUMENTED_REGION_ADDRESS_COLUMN } from '../src/table/rows.js';
import { startBackend, request, type Backend } from './support/backend.js';
import { describeRun, runCli } from './support/cli.js';
import { ControlPlane } from './support/control-plane.js';
import { startPostgres, type PgServer } from './support/postgres.js';
import { eventually, REGION_A, REGION_B, startTestService, type TestService } from './support/service.js';

// EdgeProxy against the control plane's own schema (test/fixtures/control-plane-schema.sql): its
// regions keep their load balancer's address in load_balancer_ipv4, and there is no public_ipv4.

const COLUMN = 'load_balancer_ipv4';
const PUBLICATION = 'CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms, regions';

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server.stop();
});

describe('EDGEPROXY_REGION_ADDRESS_COLUMN', () => {
  const env = { EDGEPROXY_DATABASE_URL: 'postgres://edge@db/zeitwork', EDGEPROXY_REGION_ID: REGION_A };

  it('defaults to the documented column; the routing query is then the documented query itself', () => {
    assert.equal(DEFAULTS.regionAddressColumn, DOCUMENTED_REGION_ADDRESS_COLUMN);
    assert.equal(routesQuery(DEFAULTS.regionAddressColumn), ROUTES_QUERY);
  });

  it('another column changes that one column of the documented query, quoted', () => {
    const query = routesQuery(COLUMN);
    assert.equal(query, ROUTES_QUERY.replace('r.public_ipv4 as region_public_ip', 'r."load_balancer_ipv4" as region_public_ip'));
    assert.notEqual(query, ROUTES_QUERY);
  });

  it('is a plain column name: anything else is refused, naming the variable or flag', () => {
    assert.equal(resolveConfig({}, { ...env, EDGEPROXY_REGION_ADDRESS_COLUMN: ` ${COLUMN} ` }).regionAddressColumn, COLUMN);
    assert.equal(
      resolveConfig({ 'region-address-column': 'lb_ip' }, { ...env, EDGEPROXY_REGION_ADDRESS_COLUMN: COLUMN }).regionAddressColumn,
      'lb_ip',
    );
    for (const bad of ['load-balancer', 'LoadBalancer', '4ip', 'ip"; DROP TABLE regions; --', 'x'.repeat(64)]) {
      assert.throws(
        () => resolveConfig({}, { ...env, EDGEPROXY_REGION_ADDRESS_COLUMN: bad }),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.code === 'CONFIG_INVALID' &&
          err.message ===
            `EDGEPROXY_REGION_ADDRESS_COLUMN: ${JSON.stringify(bad)} must be a plain PostgreSQL column name: a-z, 0-9 and _, not starting with a digit, at most 63 characters`,
        bad,
      );
    }
    assert.throws(() => resolveConfig({ 'region-address-column': 'a b' }, env), /^ConfigError: --region-address-column: "a b" must be/);
  });
});

/** The control plane's schema with two regions: ours (A) and B, whose load balancer is at 127.0.0.2. */
async function controlPlane(): Promise<ControlPlane> {
  const cp = await ControlPlane.create(server);
  await cp.region(REGION_A, '127.0.0.1', '::1');
  await cp.region(REGION_B, '127.0.0.2', '::1');
  return cp;
}

describe('the control plane schema with EDGEPROXY_REGION_ADDRESS_COLUMN=load_balancer_ipv4', () => {
  const started: { cp: ControlPlane; svc?: TestService; backends: Backend[] }[] = [];
  after(async () => {
    for (const s of started) {
      await s.svc?.stop('test done');
      for (const b of s.backends) await b.close();
      await s.cp.close();
    }
  });

  for (const [mode, ready] of [
    ['replication', 'replication stream started'],
    ['poll', 'route table loaded'],
  ] as const satisfies readonly [SyncMode, string][]) {
    it(`mode ${mode}: routes load, a change is routed, other regions are reached at their load balancer address`, async () => {
      const cp = await controlPlane();
      const vm = await startBackend('vm-a');
      const lb = await startBackend('lb-b', undefined, '127.0.0.2');
      // Where region B's load balancer moves to: the same port on another address.
      const moved = await startBackend('lb-b-moved', undefined, '127.0.0.3', lb.port);
      const late = await startBackend('vm-late');
      const run: (typeof started)[number] = { cp, backends: [vm, lb, moved, late] };
      started.push(run);
      await cp.route('same.example', REGION_A, '127.0.0.1', vm.port);
      await cp.route('cross.example', REGION_B, '10.9.8.7', 3000);
      await cp.route('cross.example', REGION_B, '10.9.8.8', 3000); // names are not unique
      await cp.query(PUBLICATION);
      const svc = await startTestService({
        databaseUrl: cp.db.url,
        syncMode: mode,
        regionAddressColumn: COLUMN,
        crossRegionPort: lb.port,
        updateIntervalMs: mode === 'poll' ? 100 : 60_000,
      });
      run.svc = svc;
      await svc.waitForLog((l) => l.msg === ready);
      assert.equal(svc.store.current?.source, mode === 'poll' ? 'poll' : 'stream');

      assert.equal((await request(svc.port, { host: 'same.example' })).body, 'vm-a GET /');
      const cross = await request(svc.port, { host: 'cross.example', path: '/cart' });
      assert.equal(cross.status, 200);
      assert.equal(cross.body, 'lb-b GET /cart');
      assert.equal(lb.proxied()[0]?.headers.host, 'cross.example');
      assert.ok(svc.store.current?.regionAddresses.has('127.0.0.2'), "region B's load balancer is a trusted hop");

      await cp.route('late.example', REGION_A, '127.0.0.1', late.port);
      await eventually('the new route', async () => (await request(svc.port, { host: 'late.example' })).body === 'vm-late GET /', 10_000);
      await cp.query(`UPDATE regions SET load_balancer_ipv4 = '127.0.0.3' WHERE id = $1`, [REGION_B]);
      await eventually(
        'the moved load balancer',
        async () => (await request(svc.port, { host: 'cross.example' })).body === 'lb-b-moved GET /',
        10_000,
      );
      assert.equal(svc.store.current?.source, mode === 'poll' ? 'poll' : 'stream', 'the same source all along');
    });
  }

  it('doctor passes with --region-address-column load_balancer_ipv4', async () => {
    const cp = await controlPlane();
    started.push({ cp, backends: [] });
    await cp.route('shop.example', REGION_B, '10.9.8.7', 3000);
    await cp.query(PUBLICATION);
    const run = await runCli(['doctor', '--json', '--region-address-column', COLUMN], { EDGEPROXY_DATABASE_URL: cp.db.url });
    const doc = JSON.parse(run.stdout) as { ok: boolean; regionAddressColumn: string; checks: CheckResult[] };
    assert.equal(run.code, 0, describeRun(run));
    assert.equal(doc.regionAddressColumn, COLUMN);
    // The control plane's own schema has no edgeproxy_* tables until `edgeproxy migrate` runs there.
    assert.deepEqual(
      doc.checks.filter((c) => c.status !== 'pass').map((c) => [c.check, c.status]),
      [
        ['certificate tables', 'warn'],
        ['certificate storage', 'skip'],
        // No primary, and the ACME directory off (the tests' CLI default): no issuance to check.
        ['ACME directory', 'skip'],
        ['primary writable', 'skip'],
      ],
    );
    assert.match(doc.checks.find((c) => c.check === 'routing query')!.detail, /^1 row → 1 route in \d+ ms$/);
  });
});

describe('the control plane schema without the option', () => {
  const DETAIL =
    "column regions.public_ipv4 does not exist (the region's load balancer address, EDGEPROXY_REGION_ADDRESS_COLUMN); regions has load_balancer_ipv4 (text), load_balancer_ipv6 (text)";
  const FIX = 'set EDGEPROXY_REGION_ADDRESS_COLUMN=load_balancer_ipv4 (or --region-address-column load_balancer_ipv4)';
  let cp: ControlPlane;
  before(async () => {
    cp = await controlPlane();
    await cp.route('shop.example', REGION_B, '10.9.8.7', 3000);
    await cp.query(PUBLICATION); // as an operator would have: the publication is not what is wrong
  });
  after(async () => {
    await cp.close();
  });

  it('doctor exits 1 naming regions.public_ipv4 and suggesting load_balancer_ipv4, and blames no publication', async () => {
    const run = await runCli(['doctor', '--json'], { EDGEPROXY_DATABASE_URL: cp.db.url });
    assert.equal(run.code, 1, describeRun(run));
    const checks = new Map((JSON.parse(run.stdout) as { checks: CheckResult[] }).checks.map((c) => [c.check, c]));
    assert.deepEqual(checks.get('routing query'), {
      check: 'routing query',
      status: 'fail',
      detail: DETAIL,
      fix: FIX,
      code: 'SCHEMA_COLUMN_MISSING',
    });
    assert.equal(checks.get('publication')?.status, 'pass');
    assert.equal(checks.get('route rows')?.status, 'skip');
    const failed = [...checks.values()].filter((c) => c.status === 'fail').map((c) => c.check);
    assert.deepEqual(failed, ['routing query']);

    const human = await runCli(['doctor'], { EDGEPROXY_DATABASE_URL: cp.db.url });
    assert.equal(human.code, 1);
    assert.ok(human.stdout.includes(`FAIL  routing query           ${DETAIL}\n`), human.stdout);
    assert.ok(human.stdout.includes(`fix: ${FIX}\n`), human.stdout);
    assert.doesNotMatch(human.stdout + human.stderr, /ALTER PUBLICATION/);
  });

  it('serve (mode auto) logs the same diagnosis from the stream and from each poll, never the ALTER PUBLICATION advice', async () => {
    const svc = await startTestService({ databaseUrl: cp.db.url, syncMode: 'auto', updateIntervalMs: 100 });
    try {
      const stream = await svc.waitForLog((l) => l.msg.startsWith('logical replication unavailable'));
      assert.equal(stream.code, 'SCHEMA_COLUMN_MISSING');
      assert.equal(stream.step, 'check_publication');
      assert.equal(stream.reason, `${DETAIL}. Fix: ${FIX}`);
      const poll = await svc.waitForLog((l) => l.msg === 'route table load failed; not ready yet');
      const err = poll.err as { code: string; message: string };
      assert.equal(err.code, 'SCHEMA_COLUMN_MISSING');
      assert.equal(err.message, `${DETAIL}. Fix: ${FIX}`);
      // It keeps trying (the column may be added), with the same words each time.
      await svc.waitForLog((l) => l.msg === 'route table load failed; not ready yet' && l.failures === 2);
      assert.equal(svc.store.current, undefined);
      assert.equal((await request(svc.port, { host: 'shop.example' })).status, 503);
      assert.deepEqual(
        svc.logs.filter((l) => JSON.stringify(l).includes('ALTER PUBLICATION')),
        [],
      );
    } finally {
      await svc.stop('test done');
    }
  });

  it('serve in mode replication refuses to start, saying why', async () => {
    await assert.rejects(startTestService({ databaseUrl: cp.db.url, syncMode: 'replication' }), {
      code: 'SYNC_START_FAILED',
      message: `streaming is unavailable (EDGEPROXY_SYNC_MODE=replication): ${DETAIL}. Fix: ${FIX}`,
    });
  });

  it('the stream, doctor and the poller say the same words', async () => {
    const doctor = await runDoctor({
      databaseUrl: cp.db.url,
      publication: 'edgeproxy',
      syncMode: 'auto',
      regionAddressColumn: 'public_ipv4',
    });
    const check = doctor.find((c) => c.check === 'routing query')!;
    const pool = new pg.Pool({ connectionString: cp.db.url, max: 2 }); // one for the publication check, one for loadRoutes
    const client = await pool.connect();
    try {
      const caps = { inRecovery: false, serverVersionNum: serverVersionNum() };
      await assert.rejects(ensurePublication(client, 'edgeproxy', caps, 'public_ipv4'), (err: unknown) => {
        assert.ok(err instanceof DiagnosedError);
        assert.equal(err.message, `${check.detail}. Fix: ${check.fix}`);
        return true;
      });
      await assert.rejects(loadRoutes(pool, 'public_ipv4'), {
        code: 'SCHEMA_COLUMN_MISSING',
        message: `${check.detail}. Fix: ${check.fix}`,
      });
    } finally {
      client.release();
      await pool.end();
    }
  });
});

/** The test server's version as server_version_num (checkPublication asks for column lists from 15 on). */
function serverVersionNum(): number {
  return server.majorVersion * 10_000;
}

describe('a column the documented query reads by name, missing', () => {
  it('doctor and the poller name it and what the table has instead; no setting is offered', async () => {
    const cp = await controlPlane();
    try {
      await cp.query('ALTER TABLE vms RENAME COLUMN port TO vm_port');
      const doctor = await runDoctor({ databaseUrl: cp.db.url, publication: 'edgeproxy', syncMode: 'poll', regionAddressColumn: COLUMN });
      const check = doctor.find((c) => c.check === 'routing query')!;
      assert.equal(check.status, 'fail');
      assert.equal(check.code, 'SCHEMA_COLUMN_MISSING');
      assert.equal(check.detail, 'column vms.port does not exist (the documented query reads it); vms has vm_port (integer)');
      assert.equal(
        check.fix,
        "vms.port is read by that name (only the region's address column is a setting): check that EDGEPROXY_DATABASE_URL points at the control plane's database",
      );
      const pool = new pg.Pool({ connectionString: cp.db.url, max: 1 });
      try {
        await assert.rejects(loadRoutes(pool, COLUMN), { code: 'SCHEMA_COLUMN_MISSING', message: `${check.detail}. Fix: ${check.fix}` });
      } finally {
        await pool.end();
      }
    } finally {
      await cp.close();
    }
  });
});

describe('the publication check reads the configured column', () => {
  it('a column list that leaves out load_balancer_ipv4 is named with its fix; a column the table lacks is not blamed on the list', async () => {
    const cp = await controlPlane();
    try {
      await cp.query('CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms, regions (id, name)');
      const configured = await checkPublication(cp.client, 'edgeproxy', serverVersionNum(), COLUMN);
      assert.deepEqual(configured.filtered, ["regions's column list leaves out load_balancer_ipv4"]);
      assert.equal(configured.fixSql, 'ALTER PUBLICATION "edgeproxy" SET TABLE "domains", "deployments", "vms", "regions";');
      const documented = await checkPublication(cp.client, 'edgeproxy', serverVersionNum(), 'public_ipv4');
      assert.deepEqual(documented.filtered, []);
      assert.equal(documented.fixSql, undefined);
      assert.deepEqual(
        documented.columns.missing.map((m) => `${m.table}.${m.column}`),
        ['regions.public_ipv4'],
      );
    } finally {
      await cp.close();
    }
  });
});
