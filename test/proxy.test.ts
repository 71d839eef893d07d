import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { closedPort, request, startBackend, type Backend } from './support/backend.js';
import { createDatabase, startPostgres, type PgServer } from './support/postgres.js';
import { Seeder } from './support/seed.js';
import { eventually, REGION_A, REGION_B, startTestService, type TestService } from './support/service.js';

let pg: PgServer;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

/** A database with both regions, a seeder on it, and a way to start the proxy against it. */
async function setup() {
  const db = await createDatabase(pg);
  const seed = await Seeder.connect(db.url);
  await seed.region(REGION_A, '127.0.0.1');
  await seed.region(REGION_B, '127.0.0.1');
  const cleanups: (() => Promise<void>)[] = [];
  return {
    db,
    seed,
    async backend(name: string, handler?: Parameters<typeof startBackend>[1], host?: string): Promise<Backend> {
      const b = await startBackend(name, handler, host);
      cleanups.push(() => b.close());
      return b;
    },
    async proxy(overrides: Parameters<typeof startTestService>[0] extends infer T ? Partial<T> : never = {}): Promise<TestService> {
      const s = await startTestService({ databaseUrl: db.url, ...overrides });
      cleanups.push(() => s.stop('test done'));
      await eventually('first route table load', () => s.store.ready);
      return s;
    },
    async close() {
      for (const c of cleanups.reverse()) await c();
      await seed.close();
      await db.drop();
    },
  };
}

describe('error table', () => {
  it('unknown host → 404 "Service Not Found", text/plain, logged at warn', async () => {
    const t = await setup();
    try {
      const p = await t.proxy();
      const r = await request(p.port, { host: 'nowhere.example' });
      assert.equal(r.status, 404);
      assert.equal(r.body, 'Service Not Found');
      assert.match(String(r.headers['content-type']), /^text\/plain/);
      await p.waitForLog((l) => l.level === 'warn' && l.msg === 'no route for host' && l.host === 'nowhere.example');
    } finally {
      await t.close();
    }
  });

  it('same-region VM failing its health check → 503 "Service Unavailable - VM not responding"', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      vm.healthStatus = 500;
      await t.seed.route({ name: 'sick.example', regionId: REGION_A, vmPort: vm.port });
      const p = await t.proxy();
      const r = await request(p.port, { host: 'sick.example' });
      assert.equal(r.status, 503);
      assert.equal(r.body, 'Service Unavailable - VM not responding');
      assert.match(String(r.headers['content-type']), /^text\/plain/);
      assert.equal(vm.proxied().length, 0, 'nothing forwarded to an unhealthy VM');
      assert.equal(vm.probes().length, 1);
    } finally {
      await t.close();
    }
  });

  it('health probe that times out, 404s, or finds nothing listening → 503', async () => {
    const t = await setup();
    try {
      // Accepts connections and never answers, not even health probes.
      const silent = http.createServer(() => undefined);
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const notFound = await t.backend('nf');
      notFound.healthStatus = 404;
      const dead = await closedPort();
      await t.seed.route({ name: 'slow.example', regionId: REGION_A, vmPort: (silent.address() as { port: number }).port });
      await t.seed.route({ name: 'nf.example', regionId: REGION_A, vmPort: notFound.port });
      await t.seed.route({ name: 'dead.example', regionId: REGION_A, vmPort: dead });
      const p = await t.proxy({ healthTimeoutMs: 300 });
      for (const host of ['slow.example', 'nf.example', 'dead.example']) {
        const started = Date.now();
        const r = await request(p.port, { host });
        assert.equal(r.status, 503, host);
        assert.equal(r.body, 'Service Unavailable - VM not responding');
        assert.ok(Date.now() - started < 2000, `${host} answered within the probe timeout`);
      }
      silent.closeAllConnections();
      silent.close();
    } finally {
      await t.close();
    }
  });

  it('a healthy VM that drops the proxied connection → 502 "Bad Gateway"', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm', (req) => req.socket.destroy());
      await t.seed.route({ name: 'flaky.example', regionId: REGION_A, vmPort: vm.port });
      const p = await t.proxy();
      const r = await request(p.port, { host: 'flaky.example', path: '/page' });
      assert.equal(r.status, 502);
      assert.equal(r.body, 'Bad Gateway');
      await p.waitForLog((l) => l.level === 'error' && l.msg === 'proxy error');
    } finally {
      await t.close();
    }
  });

  it('a cross-region load balancer that refuses connections → 502', async () => {
    const t = await setup();
    try {
      await t.seed.route({ name: 'far.example', regionId: REGION_B, vmPort: 9 });
      const p = await t.proxy({ crossRegionPort: await closedPort() });
      const r = await request(p.port, { host: 'far.example' });
      assert.equal(r.status, 502);
      assert.equal(r.body, 'Bad Gateway');
    } finally {
      await t.close();
    }
  });

  it('before the first successful load → 503 with Retry-After (not 404) and not ready', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      await t.seed.route({ name: 'app.example', regionId: REGION_A, vmPort: vm.port });
      // A database URL nothing answers on: every load fails.
      const dead = await closedPort();
      const p = await startTestService({ databaseUrl: `postgres://postgres@127.0.0.1:${dead}/nothing` });
      try {
        await p.waitForLog((l) => l.level === 'error' && l.msg === 'route table load failed; not ready yet');
        const r = await request(p.port, { host: 'app.example' });
        assert.equal(r.status, 503);
        assert.equal(r.headers['retry-after'], '1');
        assert.equal(r.body, 'Service Unavailable - routes not loaded yet');
        assert.equal(p.store.ready, false);
      } finally {
        await p.stop('test');
      }
    } finally {
      await t.close();
    }
  });
});

describe('routing', () => {
  it('routes by normalised Host: case, trailing dot, port, IDN', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      await t.seed.route({ name: 'App.Example.COM', regionId: REGION_A, vmPort: vm.port });
      await t.seed.route({ name: 'bücher.example', regionId: REGION_A, vmPort: vm.port });
      const p = await t.proxy();
      for (const host of [
        'app.example.com',
        'APP.example.com.',
        'app.example.com:8080',
        'xn--bcher-kva.example',
        'XN--BCHER-KVA.example:80',
      ]) {
        const r = await request(p.port, { host, path: '/x?y=1' });
        assert.equal(r.status, 200, host);
        assert.equal(r.body, 'vm GET /x?y=1');
      }
      // The Host header reaches the VM unchanged.
      assert.equal(vm.proxied()[2]!.headers.host, 'app.example.com:8080');
    } finally {
      await t.close();
    }
  });

  it('headers a Connection header lists stop at the proxy, in both directions (Host never does)', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm', (_req, res) => {
        res.writeHead(200, { connection: 'X-Internal, keep-alive', 'x-internal': 'secret', 'x-public': 'yes' });
        res.end('ok');
      });
      await t.seed.route({ name: 'hop.example', regionId: REGION_A, vmPort: vm.port });
      const p = await t.proxy();
      const r = await request(p.port, {
        host: 'hop.example',
        headers: { connection: 'X-Hop, Host, keep-alive', 'x-hop': 'drop me', 'x-end': 'keep me' },
      });
      assert.equal(r.status, 200);
      const seen = vm.proxied().at(-1)!.headers;
      assert.equal(seen['x-hop'], undefined, 'a request header the client listed in Connection');
      assert.equal(seen['x-end'], 'keep me');
      assert.equal(seen.host, 'hop.example');
      assert.equal(r.headers['x-internal'], undefined, 'a response header the VM listed in Connection');
      assert.equal(r.headers['x-public'], 'yes');
    } finally {
      await t.close();
    }
  });

  it('each clause of the documented query: unverified domain, non-ready deployment, non-running VM, no VM', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      await t.seed.route({ name: 'ok.example', regionId: REGION_A, vmPort: vm.port });
      await t.seed.route({ name: 'unverified.example', regionId: REGION_A, vmPort: vm.port, verified: false });
      await t.seed.route({ name: 'building.example', regionId: REGION_A, vmPort: vm.port, deploymentStatus: 'building' });
      await t.seed.route({ name: 'stopped.example', regionId: REGION_A, vmPort: vm.port, vmStatus: 'stopped' });
      const novm = await t.seed.route({ name: 'novm.example', regionId: REGION_A, vmPort: vm.port });
      await t.seed.query('UPDATE deployments SET vm_id = NULL WHERE id = $1', [novm.deploymentId]);
      const p = await t.proxy();
      assert.equal((await request(p.port, { host: 'ok.example' })).status, 200);
      for (const host of ['unverified.example', 'building.example', 'stopped.example', 'novm.example']) {
        assert.equal((await request(p.port, { host })).status, 404, host);
      }
      assert.equal(p.store.current?.routes.size, 1);
    } finally {
      await t.close();
    }
  });

  it("same region → the VM directly; other region → that region's load balancer, Host preserved, no health probe", async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      const lb = await t.backend('lb');
      await t.seed.route({ name: 'near.example', regionId: REGION_A, vmPort: vm.port });
      await t.seed.route({ name: 'far.example', regionId: REGION_B, vmIp: '10.255.0.9', vmPort: 3000 });
      const p = await t.proxy({ crossRegionPort: lb.port });
      const near = await request(p.port, { host: 'near.example', path: '/a' });
      assert.equal(near.body, 'vm GET /a');
      const far = await request(p.port, { host: 'far.example', path: '/b' });
      assert.equal(far.body, 'lb GET /b');
      assert.equal(lb.proxied()[0]!.headers.host, 'far.example');
      assert.equal(lb.probes().length, 0, 'load balancers are not health-checked');
      assert.equal(vm.probes().length, 1);
    } finally {
      await t.close();
    }
  });

  it('reaches a VM on an IPv6 address', async () => {
    const t = await setup();
    try {
      const vm6 = await t.backend('vm6', undefined, '::1');
      await t.seed.route({ name: 'v6.example', regionId: REGION_A, vmIp: '::1', vmPort: vm6.port });
      const p = await t.proxy();
      const r = await request(p.port, { host: 'v6.example' });
      assert.equal(r.status, 200);
      assert.equal(r.body, 'vm6 GET /');
      assert.equal(vm6.probes()[0]!.headers.host, `[::1]:${vm6.port}`);
    } finally {
      await t.close();
    }
  });

  it('sets X-Forwarded-For (appended, no port), X-Forwarded-Proto and X-Forwarded-Host', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      await t.seed.route({ name: 'hdr.example', regionId: REGION_A, vmPort: vm.port });
      const p = await t.proxy();
      await request(p.port, { host: 'hdr.example' });
      await request(p.port, { host: 'hdr.example', headers: { 'x-forwarded-for': '203.0.113.7' } });
      const [first, second] = vm.proxied();
      assert.equal(first!.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(second!.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
      assert.equal(first!.headers['x-forwarded-proto'], 'http');
      assert.equal(first!.headers['x-forwarded-host'], 'hdr.example');
    } finally {
      await t.close();
    }
  });

  it('streams bodies both ways without buffering them whole', async () => {
    const t = await setup();
    try {
      // The VM echoes the upload back as it arrives and answers before the upload ends.
      const vm = await t.backend('echo', (req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        req.pipe(res);
      });
      await t.seed.route({ name: 'stream.example', regionId: REGION_A, vmPort: vm.port });
      const p = await t.proxy();
      const echoed = await new Promise<number>((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port: p.port, method: 'POST', path: '/up', headers: { host: 'stream.example' }, agent: false },
          (res) => {
            let got = 0;
            let sentMore = false;
            res.on('data', (c: Buffer) => {
              got += c.length;
              // The first chunk came back before the upload finished: nothing buffered it whole.
              if (!sentMore) {
                sentMore = true;
                for (let i = 0; i < 64; i++) req.write(Buffer.alloc(64 * 1024, 1));
                req.end();
              }
            });
            res.on('end', () => resolve(got));
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.write(Buffer.alloc(64 * 1024, 1));
      });
      assert.equal(echoed, 65 * 64 * 1024);
    } finally {
      await t.close();
    }
  });

  it('duplicate domain names: every load picks the same row by the documented rule and warns naming them', async () => {
    const t = await setup();
    try {
      const a = await t.backend('a');
      const b = await t.backend('b');
      // 127.0.0.1 sorts before 127.0.0.2; both VMs are in region A, so the IP decides.
      await t.seed.route({ name: 'dup.example', regionId: REGION_A, vmIp: '127.0.0.2', vmPort: b.port });
      await t.seed.route({ name: 'DUP.example.', regionId: REGION_A, vmIp: '127.0.0.1', vmPort: a.port });
      const p = await t.proxy();
      const r = await request(p.port, { host: 'dup.example' });
      assert.equal(r.body, 'a GET /');
      const warn = await p.waitForLog((l) => l.level === 'warn' && String(l.msg).startsWith('duplicate domain name'));
      assert.equal(warn.host, 'dup.example');
      assert.equal((warn.others as unknown[]).length, 1);
    } finally {
      await t.close();
    }
  });
});

describe('health checks', () => {
  it('cached: a burst of concurrent requests shares one probe; TTL 0 probes per request', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      await t.seed.route({ name: 'burst.example', regionId: REGION_A, vmPort: vm.port });
      const p = await t.proxy({ healthCacheTtlMs: 60_000 });
      const replies = await Promise.all(Array.from({ length: 40 }, () => request(p.port, { host: 'burst.example' })));
      assert.ok(replies.every((r) => r.status === 200));
      assert.equal(vm.probes().length, 1);
      assert.equal(vm.proxied().length, 40);

      const vm0 = await t.backend('vm0');
      await t.seed.route({ name: 'ttl0.example', regionId: REGION_A, vmPort: vm0.port });
      const p0 = await t.proxy({ healthCacheTtlMs: 0 });
      await eventually('route loaded', () => p0.store.current?.routes.has('ttl0.example'));
      await Promise.all(Array.from({ length: 10 }, () => request(p0.port, { host: 'ttl0.example' })));
      await request(p0.port, { host: 'ttl0.example' });
      assert.equal(vm0.probes().length, 11);
    } finally {
      await t.close();
    }
  });

  it('a VM that recovers is routed again after the cache TTL', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      vm.healthStatus = 503;
      await t.seed.route({ name: 'heal.example', regionId: REGION_A, vmPort: vm.port });
      const p = await t.proxy({ healthCacheTtlMs: 200 });
      assert.equal((await request(p.port, { host: 'heal.example' })).status, 503);
      vm.healthStatus = 302; // a redirect on / counts as healthy
      assert.equal((await request(p.port, { host: 'heal.example' })).status, 503, 'still cached');
      await eventually('healthy again', async () => (await request(p.port, { host: 'heal.example' })).status === 200);
    } finally {
      await t.close();
    }
  });
});

describe('reloads', () => {
  it('picks up database changes within the update interval', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      const p = await t.proxy({ updateIntervalMs: 100 });
      assert.equal((await request(p.port, { host: 'late.example' })).status, 404);
      const seeded = await t.seed.route({ name: 'late.example', regionId: REGION_A, vmPort: vm.port });
      await eventually('new route served', async () => (await request(p.port, { host: 'late.example' })).status === 200, 3000);
      await t.seed.query('UPDATE vms SET status = $1 WHERE id = $2', ['stopped', seeded.vmId]);
      await eventually('route removed', async () => (await request(p.port, { host: 'late.example' })).status === 404, 3000);
      await p.waitForLog((l) => l.msg === 'route table updated' && l.removed === 1);
    } finally {
      await t.close();
    }
  });

  it('a failing reload keeps serving the last good table, logs an error, and recovers', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      await t.seed.route({ name: 'keep.example', regionId: REGION_A, vmPort: vm.port });
      const p = await t.proxy({ updateIntervalMs: 100 });
      assert.equal((await request(p.port, { host: 'keep.example' })).status, 200);
      // Break the documented query for real: the table it joins disappears.
      await t.seed.query('ALTER TABLE vms RENAME TO vms_gone');
      const failed = await p.waitForLog((l) => l.msg === 'route table reload failed; serving the last good table');
      assert.equal(failed.level, 'error');
      assert.equal(failed.servingRoutes, 1);
      assert.equal((failed.err as { code?: string }).code, '42P01');
      assert.equal((await request(p.port, { host: 'keep.example' })).status, 200, 'still routed while reloads fail');
      assert.equal(p.store.current?.routes.size, 1);
      await t.seed.query('ALTER TABLE vms_gone RENAME TO vms');
      await p.waitForLog((l) => l.msg === 'route table reload recovered');
    } finally {
      await t.close();
    }
  });
});

describe('schemas', () => {
  it('works against a minimal schema with text statuses and only the documented columns', async () => {
    const db = await createDatabase(pg, { migrate: false });
    const seed = await Seeder.connect(db.url);
    const vm = await startBackend('vm');
    try {
      await seed.query(`
        CREATE TABLE regions (id uuid PRIMARY KEY, public_ipv4 text);
        CREATE TABLE vms (id uuid PRIMARY KEY, private_ip text, port int, region_id uuid, status text);
        CREATE TABLE deployments (id uuid PRIMARY KEY, status text, vm_id uuid);
        CREATE TABLE domains (id uuid PRIMARY KEY, name text, deployment_id uuid, verified_at timestamptz);
        INSERT INTO regions VALUES ('${REGION_A}', '127.0.0.1');
        INSERT INTO vms VALUES ('00000000-0000-4000-8000-000000000001', '127.0.0.1', ${vm.port}, '${REGION_A}', 'running');
        INSERT INTO deployments VALUES ('00000000-0000-4000-8000-000000000002', 'ready', '00000000-0000-4000-8000-000000000001');
        INSERT INTO domains VALUES ('00000000-0000-4000-8000-000000000003', 'plain.example', '00000000-0000-4000-8000-000000000002', now());
      `);
      const p = await startTestService({ databaseUrl: db.url });
      try {
        await eventually('loaded', () => p.store.ready);
        const r = await request(p.port, { host: 'plain.example' });
        assert.equal(r.status, 200);
        assert.equal(r.body, 'vm GET /');
      } finally {
        await p.stop('test');
      }
    } finally {
      await vm.close();
      await seed.close();
      await db.drop();
    }
  });

  it('skips a row with an invalid VM address, logs it naming the domain, and keeps the others', async () => {
    const t = await setup();
    try {
      const vm = await t.backend('vm');
      await t.seed.route({ name: 'good.example', regionId: REGION_A, vmPort: vm.port });
      const bad = await t.seed.route({ name: 'noport.example', regionId: REGION_A, vmPort: vm.port });
      await t.seed.query('UPDATE vms SET port = NULL WHERE id = $1', [bad.vmId]);
      const p = await t.proxy();
      assert.equal((await request(p.port, { host: 'good.example' })).status, 200);
      assert.equal((await request(p.port, { host: 'noport.example' })).status, 404);
      const warn = await p.waitForLog((l) => l.level === 'warn' && String(l.msg).startsWith('skipped a route row'));
      assert.deepEqual(warn.row, { domain: 'noport.example', field: 'vm_port', value: 'null', reason: 'not a port number 1-65535' });
    } finally {
      await t.close();
    }
  });
});
