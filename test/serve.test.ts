import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULTS } from '../src/config/config.js';
import { createLogger } from '../src/log/logger.js';
import { Forwarder } from '../src/proxy/forward.js';
import { HealthChecker } from '../src/proxy/health.js';
import { ProxyServer } from '../src/proxy/server.js';
import type { RouteStore } from '../src/sync/route-store.js';
import { DEFAULT_SERVER_OPTIONS, defaultForwarderOptions, request, startBackend } from './support/backend.js';
import { createDatabase, startPostgres, type PgServer } from './support/postgres.js';
import { Seeder } from './support/seed.js';
import { eventually, REGION_A } from './support/service.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

let pg: PgServer;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

interface Proc {
  readonly child: ChildProcess;
  readonly lines: Record<string, unknown>[];
  readonly stderr: string[];
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * The first table is in, whichever way (mode auto): a first poll, or a stream bootstrap that
 * finished first (the poll that was running then is dropped and logs nothing).
 */
const tableLoaded = (l: Record<string, unknown>) => l.msg === 'route table loaded' || l.msg === 'replication stream started';

/** `edgeproxy serve` as a real process, stdout parsed as JSON log lines. */
function spawnServe(env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', 'serve'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      EDGEPROXY_ADMIN_ADDR: '127.0.0.1:0',
      EDGEPROXY_HTTPS_ADDR: 'off',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buf = '';
  child.stdout!.on('data', (c: Buffer) => {
    buf += c.toString('utf8');
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
      buf = buf.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) if (w.pred(line)) w.resolve(line);
    }
  });
  child.stderr!.on('data', (c: Buffer) => stderr.push(c.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    lines,
    stderr,
    exited,
    waitFor(pred, timeoutMs = 10_000) {
      const found = lines.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`log line not seen; stderr: ${stderr.join('')}; stdout: ${JSON.stringify(lines.slice(-5))}`)),
          timeoutMs,
        );
        waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
  };
}

describe('edgeproxy serve (a real process)', () => {
  it('SIGTERM: stops accepting, lets the in-flight request finish, closes the database, exits 0', async () => {
    const db = await createDatabase(pg);
    const seed = await Seeder.connect(db.url);
    let releaseSlow: () => void = () => undefined;
    let markStarted: () => void = () => undefined;
    const slowStarted = new Promise<void>((resolve) => (markStarted = resolve));
    const vm = await startBackend('vm', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('started ');
      releaseSlow = () => res.end('finished late');
      markStarted();
    });
    await seed.region(REGION_A);
    await seed.route({ name: 'slow.example', regionId: REGION_A, vmPort: vm.port });
    const p = spawnServe({
      EDGEPROXY_DATABASE_URL: db.url.replace('postgres://postgres@', 'postgres://postgres:hunter2secret@'),
      EDGEPROXY_REGION_ID: REGION_A,
      EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
      EDGEPROXY_UPDATE_INTERVAL: '200ms',
      EDGEPROXY_SHUTDOWN_TIMEOUT: '10s',
    });
    try {
      const listening = await p.waitFor((l) => l.msg === 'listening');
      const port = listening.port as number;
      await p.waitFor(tableLoaded);
      const inFlight = request(port, { host: 'slow.example' });
      inFlight.catch(() => undefined); // awaited below; keeps an early failure from hiding behind it
      await slowStarted;
      const apps = await seed.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'edgeproxy %'`);
      assert.ok((apps.rows[0] as { n: number }).n >= 1, 'the proxy is connected, with its application_name');
      p.child.kill('SIGTERM');
      await p.waitFor((l) => String(l.msg).startsWith('shutting down'));
      // New connections are refused while the old request is still running.
      await assert.rejects(request(port, { host: 'slow.example' }), /ECONNREFUSED/);
      releaseSlow();
      const reply = await inFlight;
      assert.equal(reply.status, 200);
      assert.equal(reply.body, 'started finished late');
      const { code } = await p.exited;
      assert.equal(code, 0);
      assert.ok(p.lines.some((l) => l.msg === 'stopped' && l.drained === true));
      // A backend leaves pg_stat_activity a moment after its client has gone: wait for it, briefly.
      const left = async () =>
        (
          (await seed.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'edgeproxy %'`)).rows[0] as {
            n: number;
          }
        ).n;
      await eventually('database connections closed', async () => (await left()) === 0, 5000);
      const all = p.lines.map((l) => JSON.stringify(l)).join('\n') + p.stderr.join('');
      assert.ok(!all.includes('hunter2secret'), 'the database password never appears in the logs');
      assert.ok(all.includes('postgres://postgres:***@'), 'the database URL is logged redacted');
    } finally {
      p.child.kill('SIGKILL');
      await vm.close();
      await seed.close();
      await db.drop();
    }
  });

  it('the shutdown grace period is bounded: a request that never finishes is cut and the process still exits 0', async () => {
    const db = await createDatabase(pg);
    const seed = await Seeder.connect(db.url);
    const vm = await startBackend('vm', (_req, res) => {
      res.writeHead(200);
      res.write('forever');
    });
    await seed.region(REGION_A);
    await seed.route({ name: 'forever.example', regionId: REGION_A, vmPort: vm.port });
    const p = spawnServe({
      EDGEPROXY_DATABASE_URL: db.url,
      EDGEPROXY_REGION_ID: REGION_A,
      EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
      EDGEPROXY_SHUTDOWN_TIMEOUT: '300ms',
    });
    try {
      const port = (await p.waitFor((l) => l.msg === 'listening')).port as number;
      await p.waitFor(tableLoaded);
      const cut = request(port, { host: 'forever.example' }).then(
        () => 'completed',
        () => 'cut',
      );
      await new Promise((r) => setTimeout(r, 200));
      const started = Date.now();
      p.child.kill('SIGINT');
      const { code } = await p.exited;
      assert.equal(code, 0);
      assert.ok(Date.now() - started < 5000);
      assert.equal(await cut, 'cut');
      assert.ok(p.lines.some((l) => l.msg === 'shutdown grace period over; cut the remaining connections'));
    } finally {
      p.child.kill('SIGKILL');
      await vm.close();
      await seed.close();
      await db.drop();
    }
  });
});

describe('internal errors', () => {
  it('an unexpected exception while routing → 500 "Internal Server Error", logged with context, and the server keeps serving', async () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (l: string) => lines.push(l) });
    let broken = true;
    const store = {
      get current() {
        if (broken) throw new Error('simulated bug in the route table');
        return undefined;
      },
    } as unknown as RouteStore;
    const health = new HealthChecker({ timeoutMs: DEFAULTS.healthTimeoutMs, cacheTtlMs: DEFAULTS.healthCacheTtlMs, logger });
    const forwarder = new Forwarder(defaultForwarderOptions());
    const proxy = new ProxyServer({ ...DEFAULT_SERVER_OPTIONS, store, health, forwarder, regionId: REGION_A, logger });
    const { port } = await proxy.listen('127.0.0.1', 0);
    try {
      const r = await request(port, { host: 'any.example', path: '/boom' });
      assert.equal(r.status, 500);
      assert.equal(r.body, 'Internal Server Error');
      const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'internal error');
      assert.ok(logged);
      assert.equal(logged.level, 'error');
      assert.equal(logged.host, 'any.example');
      assert.equal(logged.url, '/boom');
      assert.match(JSON.stringify(logged.err), /simulated bug/);
      broken = false;
      const after = await request(port, { host: 'any.example' });
      assert.equal(after.status, 503, 'still serving (not ready: the stub store has no table)');
    } finally {
      await proxy.drain(100);
      health.close();
      forwarder.close();
    }
  });
});

describe('replication slots', () => {
  it('SIGTERM while the slot creation waits for an open transaction: stops at once, exits 0, leaves no slot', async () => {
    const db = await createDatabase(pg);
    const seed = await Seeder.connect(db.url);
    const blocker = await Seeder.connect(db.url);
    await blocker.query('BEGIN');
    await blocker.query('SELECT txid_current()'); // holds an xid: CREATE_REPLICATION_SLOT waits for it
    const p = spawnServe({
      EDGEPROXY_DATABASE_URL: db.url,
      EDGEPROXY_REGION_ID: REGION_A,
      EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
      EDGEPROXY_SYNC_MODE: 'replication',
    });
    try {
      await p.waitFor((l) => l.msg === 'listening');
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(!p.lines.some((l) => l.msg === 'replication stream started'), 'the slot creation is still waiting');
      const t0 = Date.now();
      p.child.kill('SIGTERM');
      const { code } = await p.exited;
      assert.equal(code, 0);
      assert.ok(Date.now() - t0 < 3000, `stopped in ${Date.now() - t0} ms`);
      // The walsender only notices its client is gone once the creation stops waiting.
      await blocker.query('ROLLBACK');
      const count = async () => ((await seed.query(`SELECT count(*)::int AS n FROM pg_replication_slots`)).rows[0] as { n: number }).n;
      const deadline = Date.now() + 5000;
      while ((await count()) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await count(), 0);
    } finally {
      p.child.kill('SIGKILL');
      await blocker.close();
      await seed.close();
      await db.drop();
    }
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`none is left on the server after ${signal}`, async () => {
      const db = await createDatabase(pg);
      const seed = await Seeder.connect(db.url);
      await seed.region(REGION_A);
      const slots = async () =>
        (await seed.query(`SELECT count(*)::int AS n FROM pg_replication_slots WHERE database = current_database()`)).rows[0] as {
          n: number;
        };
      const p = spawnServe({
        EDGEPROXY_DATABASE_URL: db.url,
        EDGEPROXY_REGION_ID: REGION_A,
        EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
        EDGEPROXY_SYNC_MODE: 'replication',
      });
      try {
        const started = await p.waitFor((l) => l.msg === 'replication stream started');
        assert.match(String(started.slot), /^edgeproxy_/);
        assert.equal((await slots()).n, 1, 'the proxy holds one slot while it runs');
        p.child.kill(signal);
        const { code, signal: got } = await p.exited;
        if (signal === 'SIGTERM') assert.equal(code, 0);
        else assert.equal(got, 'SIGKILL');
        // A temporary slot goes with its session; the server notices a killed client's socket at once on loopback.
        const deadline = Date.now() + 5000;
        while ((await slots()).n !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        assert.equal((await slots()).n, 0);
      } finally {
        p.child.kill('SIGKILL');
        await seed.close();
        await db.drop();
      }
    });
  }
});
