import assert from 'node:assert/strict';
import os from 'node:os';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { request, startBackend, type Backend } from './support/backend.js';
import { startPostgres, type PgServer } from './support/postgres.js';
import { eventually, REGION_A, type TestService } from './support/service.js';
import { streamFixture, type StreamFixture } from './support/stream-fixture.js';

// A database peer that goes silent: its backend SIGSTOPped, as a partition or a hung replica looks
// from the proxy (the TCP connection stays open, nothing arrives, no reset). Every freeze is undone
// in a finally, so the cluster can stop.

const TIMEOUT_MS = 2000;
const INTERVAL_MS = 500;
/** Generous room for a loaded machine on top of what the design promises. */
const SLACK_MS = 4000;

let server: PgServer;
let vm1: Backend;
let vm2: Backend;
before(async () => {
  server = await startPostgres();
  vm1 = await startBackend('vm-1');
  vm2 = await startBackend('vm-2');
});
after(async () => {
  await vm1.close();
  await vm2.close();
  await server.stop();
});

const APP = `edgeproxy ${os.hostname()} ${process.pid}`;

const setup = () =>
  streamFixture(
    server,
    { [REGION_A]: '127.0.0.1' },
    { logLevel: 'info', syncMode: 'auto', updateIntervalMs: INTERVAL_MS, replicationTimeoutMs: TIMEOUT_MS },
  );

/** Backends of this process's proxy whose application_name is `name` (and that match `where`). */
async function backendPids(db: pg.Client, name: string, where = 'true'): Promise<number[]> {
  const r = await db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND ${where} ORDER BY pid`, [
    name.slice(0, 63),
  ]);
  return r.rows.map((x) => x.pid);
}

/**
 * SIGSTOPs `pids`; the returned function SIGCONTs them (call it in a finally) and waits until the
 * backends among them have exited: the proxy closed their sockets, and a walsender's temporary slot
 * would block dropping the database.
 */
function freeze(db: pg.Client, pids: readonly number[]): () => Promise<void> {
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  let thawed = false;
  return async () => {
    if (thawed) return;
    thawed = true;
    for (const pid of pids) process.kill(pid, 'SIGCONT');
    await eventually(
      'the frozen backends gone',
      async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1)', [pids])).rowCount === 0,
      10_000,
    );
  };
}

/** Requests to `host` one after another until stopped; every answer is kept. */
function requestLoop(port: number, host: string): { stop(): Promise<{ status: number; body: string; at: number }[]>; last(): string } {
  const answers: { status: number; body: string; at: number }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      // A failed request is an answer too (status 0), for the assertion to show.
      const r = await request(port, { host, timeoutMs: 10_000 }).catch((err: unknown) => ({ status: 0, body: String(err) }));
      answers.push({ status: r.status, body: r.body.split(' ')[0]!, at: Date.now() });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return answers;
    },
    last: () => answers.at(-1)?.body ?? '',
  };
}

/** Every answer was a 200, and the route moved from vm-1 to vm-2 once, never back. */
function assertAnsweredAndMovedOnce(answers: { status: number; body: string }[]): void {
  assert.ok(answers.length > 10, `only ${answers.length} requests`);
  assert.deepEqual(
    answers.filter((a) => a.status !== 200),
    [],
  );
  const bodies = answers.map((a) => a.body);
  const firstNew = bodies.indexOf('vm-2');
  assert.ok(firstNew > 0, `the change never arrived, or was there at once: ${bodies.join(',')}`);
  assert.deepEqual([...new Set(bodies.slice(0, firstNew))], ['vm-1']);
  assert.deepEqual([...new Set(bodies.slice(firstNew))], ['vm-2']);
}

function metric(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line !== undefined, `no ${series} in the metrics`);
  return Number(line.slice(series.length + 1));
}

async function scrape(p: TestService): Promise<string> {
  return (await request(p.adminPort!, { path: '/metrics' })).body;
}

async function readyz(p: TestService): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await request(p.adminPort!, { path: '/readyz' });
  return { status: r.status, body: JSON.parse(r.body) as Record<string, unknown> };
}

describe('a silent replication stream (walsender SIGSTOPped)', () => {
  it('is noticed within the timeout: the proxy polls, the change lands, every request is answered; after SIGCONT it streams again', async () => {
    const t = await setup();
    let thaw = async (): Promise<void> => undefined;
    let loop: ReturnType<typeof requestLoop> | undefined;
    try {
      const ids = await t.seed.route({ name: 'frozen.example', regionId: REGION_A, vmPort: vm1.port });
      const p = await t.proxy({ adminAddr: { host: '127.0.0.1', port: 0 } });
      await p.waitForLog((l) => l.msg === 'replication stream started');
      // A healthy idle stream answers the keepalive requests: its lag stays about a second.
      await eventually('a keepalive answered', () => (p.status().lagMs ?? Infinity) < 1500);
      const walsenders = await backendPids(t.seed.client, `${APP} stream`);
      assert.equal(walsenders.length, 1);
      const slot = (await t.seed.query('SELECT slot_name FROM pg_replication_slots WHERE active_pid = $1', [walsenders[0]])).rows[0]
        ?.slot_name as string;
      assert.ok(slot);

      loop = requestLoop(p.port, 'frozen.example');
      await eventually('requests flowing', () => loop!.last() === 'vm-1');
      thaw = freeze(t.seed.client, walsenders);
      const frozenAt = Date.now();
      const lagAtFreeze = p.status().lagMs!;
      await t.seed.query('UPDATE vms SET port = $1 WHERE id = $2', [vm2.port, ids.vmId]);

      // While silent and not yet given up on: still "streaming", but the lag grows.
      const stale = await eventually('the lag growing while silent', () => {
        const s = p.status();
        return s.state === 'streaming' && s.lagMs! >= lagAtFreeze + 250 ? s : undefined;
      });
      assert.equal(stale.feeding, 'stream');

      const lost = await p.waitForLog((l) => l.msg === 'replication stream lost; serving the last table', TIMEOUT_MS + SLACK_MS);
      const detectedMs = Date.parse(String(lost.time)) - frozenAt;
      const err = lost.err as { code: string; message: string; fixSql: string };
      assert.equal(err.code, 'STREAM_SILENT');
      const silentMs = Number(/sent nothing for (\d+) ms/.exec(err.message)?.[1]);
      assert.ok(silentMs >= TIMEOUT_MS, `gave up after ${silentMs} ms of silence, before the timeout`);
      assert.match(err.fixSql, /EDGEPROXY_REPLICATION_TIMEOUT/);
      // Silence counts from the last sign of life, which came at most a second (one keepalive request) before the freeze.
      assert.ok(detectedMs <= TIMEOUT_MS + SLACK_MS, `noticed ${detectedMs} ms after the freeze`);

      await eventually('the change routed', () => loop!.last() === 'vm-2', TIMEOUT_MS + INTERVAL_MS + SLACK_MS);
      const routedMs = Date.now() - frozenAt;
      assert.ok(
        p.logs.some((l) => l.msg === 'sync state changed' && l.event === 'lost' && l.to === 'polling-stream-retrying'),
        'the poller took over',
      );

      // Still frozen: the server hangs on to the old walsender, but the proxy has moved on.
      const ready = await readyz(p);
      assert.equal(ready.status, 200, 'polling (or a new stream) keeps the table correct: still ready');
      assert.equal(typeof ready.body.lagMs, 'number');

      const answers = await loop.stop();
      loop = undefined;
      assertAnsweredAndMovedOnce(answers);

      await thaw();
      // The old session is gone on the server: the walsender saw its socket closed, the temporary slot with it.
      await eventually(
        'the old walsender and its slot released',
        async () =>
          (await backendPids(t.seed.client, `${APP} stream`, `pid = ${walsenders[0]}`)).length === 0 &&
          (await t.seed.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [slot])).rowCount === 0,
        10_000,
      );
      await eventually('streaming again', () => p.status().state === 'streaming', 30_000);
      const before = p.status().transactions;
      await t.seed.query('UPDATE vms SET port = $1 WHERE id = $2', [vm1.port, ids.vmId]);
      await eventually(
        'a later change arrives by the stream',
        () => p.status().transactions > before && p.store.current?.source === 'stream',
      );
      assert.equal((await request(p.port, { host: 'frozen.example' })).body.split(' ')[0], 'vm-1');
      console.log(`# silent walsender: detected after ${detectedMs} ms, change routed ${routedMs} ms after the freeze`);
      assert.ok(routedMs <= TIMEOUT_MS + INTERVAL_MS + SLACK_MS);
    } finally {
      await thaw();
      await loop?.stop();
      await t.close();
    }
  });

  it('a whole server frozen: status, metrics and /readyz show the stale stream while it is, the lag growing', async () => {
    const t = await setup();
    let thaw = async (): Promise<void> => undefined;
    try {
      await t.seed.route({ name: 'stale.example', regionId: REGION_A, vmPort: vm1.port });
      // Mode replication: nothing polls. The postmaster frozen too, so no retry can connect meanwhile.
      const p = await t.proxy({ adminAddr: { host: '127.0.0.1', port: 0 }, syncMode: 'replication' });
      await p.waitForLog((l) => l.msg === 'replication stream started');
      thaw = freeze(t.seed.client, [...(await backendPids(t.seed.client, `${APP} stream`)), server.pid!]);
      await p.waitForLog((l) => l.msg === 'replication stream lost; serving the last table', TIMEOUT_MS + SLACK_MS);
      const first = { lag: metric(await scrape(p), 'edgeproxy_replication_lag_seconds') };
      await eventually('time passing', () => p.status().lagMs! >= first.lag * 1000 + 1000, 5000);
      const second = { status: p.status(), lag: metric(await scrape(p), 'edgeproxy_replication_lag_seconds'), ready: await readyz(p) };
      assert.ok(first.lag >= TIMEOUT_MS / 1000, `lag ${first.lag} s when the silence was noticed`);
      assert.ok(second.lag >= first.lag + 1, `metric ${first.lag} → ${second.lag}`);
      assert.equal(second.status.state, 'stream-retrying');
      assert.equal(second.status.streamError?.code, 'STREAM_SILENT');
      const state = await scrape(p);
      assert.equal(metric(state, 'edgeproxy_sync_state{state="stream-retrying"}'), 1);
      assert.deepEqual(
        { ...second.ready, body: { ...second.ready.body, lagMs: typeof second.ready.body.lagMs } },
        { status: 200, body: { ready: true, routes: 1, generation: 1, state: 'stream-retrying', feeding: 'none', lagMs: 'number' } },
      );
      // The last table keeps serving.
      assert.equal((await request(p.port, { host: 'stale.example' })).status, 200);
    } finally {
      await thaw();
      await t.close();
    }
  });

  it('stop() does not hang on a frozen walsender', async () => {
    const t = await setup();
    let thaw = async (): Promise<void> => undefined;
    try {
      const p = await t.proxy({ syncMode: 'replication', replicationTimeoutMs: 60_000 });
      await p.waitForLog((l) => l.msg === 'replication stream started');
      thaw = freeze(t.seed.client, await backendPids(t.seed.client, `${APP} stream`));
      const started = Date.now();
      await p.stop('test');
      assert.ok(Date.now() - started < 5000, `stop took ${Date.now() - started} ms`);
    } finally {
      await thaw();
      await t.close();
    }
  });
});

describe('a frozen regular backend', () => {
  it('a poll against it times out; the next poll uses a new connection and the change lands', async () => {
    const t = await setup();
    let thaw = async (): Promise<void> => undefined;
    let loop: ReturnType<typeof requestLoop> | undefined;
    try {
      const ids = await t.seed.route({ name: 'poll.example', regionId: REGION_A, vmPort: vm1.port });
      const p = await t.proxy({ syncMode: 'poll' });
      await eventually('loaded', () => p.store.current !== undefined);
      const pool = await backendPids(t.seed.client, APP);
      assert.ok(pool.length >= 1);
      loop = requestLoop(p.port, 'poll.example');
      await eventually('requests flowing', () => loop!.last() === 'vm-1');
      thaw = freeze(t.seed.client, pool);
      const frozenAt = Date.now();
      await t.seed.query('UPDATE vms SET port = $1 WHERE id = $2', [vm2.port, ids.vmId]);
      const failed = await p.waitForLog(
        (l) => l.msg === 'route table reload failed; serving the last good table',
        INTERVAL_MS + TIMEOUT_MS + SLACK_MS,
      );
      assert.match((failed.err as { message: string }).message, /timeout/i);
      await eventually('the change routed', () => loop!.last() === 'vm-2', TIMEOUT_MS + INTERVAL_MS * 2 + SLACK_MS);
      const routedMs = Date.now() - frozenAt;
      const now = await backendPids(t.seed.client, APP);
      assert.ok(
        now.some((pid) => !pool.includes(pid)),
        `a new connection: ${now.join(',')} vs frozen ${pool.join(',')}`,
      );
      const answers = await loop.stop();
      loop = undefined;
      assertAnsweredAndMovedOnce(answers);
      console.log(`# frozen poll backend: change routed ${routedMs} ms after the freeze`);
      // The timed-out client was destroyed, not pooled again: the poller keeps working.
      await t.seed.query('UPDATE vms SET port = $1 WHERE id = $2', [vm1.port, ids.vmId]);
      await eventually('polling on', async () => (await request(p.port, { host: 'poll.example' })).body.startsWith('vm-1'), 10_000);
    } finally {
      await thaw();
      await loop?.stop();
      await t.close();
    }
  });

  it('stop() does not hang on an idle pool connection to a frozen backend', async () => {
    const t = await setup();
    let thaw = async (): Promise<void> => undefined;
    try {
      await t.seed.route({ name: 'idle.example', regionId: REGION_A, vmPort: vm1.port });
      // Mode auto: the first poll leaves its connection idle in the pool while the stream feeds the table.
      const p = await t.proxy();
      await eventually('streaming', () => p.status().state === 'streaming');
      const pool = await eventually('an idle pool connection', async () => {
        const pids = await backendPids(t.seed.client, APP, `state = 'idle'`);
        return pids.length > 0 ? pids : undefined;
      });
      thaw = freeze(t.seed.client, pool);
      const started = Date.now();
      await p.stop('test');
      assert.ok(Date.now() - started < 5000, `stop took ${Date.now() - started} ms`);
    } finally {
      await thaw();
      await t.close();
    }
  });

  it('a snapshot load against it fails within the timeout, the setup closes at once, and the bootstrap is retried on new connections', async () => {
    const t: StreamFixture = await setup();
    let thaw = async (): Promise<void> => undefined;
    const holder = new pg.Client({ connectionString: t.db.url });
    await holder.connect();
    try {
      await t.seed.route({ name: 'boot.example', regionId: REGION_A, vmPort: vm1.port });
      // An open transaction with an xid makes slot creation wait: the bootstrap connection sits idle meanwhile.
      await holder.query('BEGIN');
      await holder.query('SELECT txid_current()');
      const starting = t.proxy();
      await eventually(
        'the slot creation waiting',
        async () => (await backendPids(t.seed.client, `${APP} stream`, `query LIKE 'CREATE_REPLICATION_SLOT%'`)).length === 1,
        10_000,
      );
      const bootstrap = await backendPids(t.seed.client, `${APP} bootstrap`);
      const walsender = await backendPids(t.seed.client, `${APP} stream`);
      assert.equal(bootstrap.length, 1);
      const thawBootstrap = freeze(t.seed.client, bootstrap);
      thaw = thawBootstrap;
      await holder.query('COMMIT');
      // The slot is created; its connection now idles until streaming starts. Frozen too, it can
      // never answer a graceful close (Terminate): closing the failed setup must not wait for it.
      await eventually(
        'the slot created',
        // 'idle in transaction': the exported snapshot keeps one open.
        async () =>
          (await backendPids(t.seed.client, `${APP} stream`, `state LIKE 'idle%' AND query LIKE 'CREATE_REPLICATION_SLOT%'`)).length === 1,
      );
      const thawWalsender = freeze(t.seed.client, walsender);
      thaw = async () => {
        await thawBootstrap();
        await thawWalsender();
      };
      const p = await starting;
      const failed = await p.waitForLog((l) => l.msg === 'replication bootstrap failed', TIMEOUT_MS + SLACK_MS);
      assert.equal((failed.err as { step: string }).step, 'load_snapshot');
      assert.match((failed.err as { message: string }).message, /timeout/i);
      await p.waitForLog((l) => l.msg === 'replication stream started', 30_000);
      assert.equal((await request(p.port, { host: 'boot.example' })).body.split(' ')[0], 'vm-1');
    } finally {
      await thaw();
      await holder.end().catch(() => undefined);
      await t.close();
    }
  });
});
