import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { OrderLocks } from '../src/acme/order-lock.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';

let server: PgServer;
let db: TestDatabase;
let pool: pg.Pool;

before(async () => {
  server = await startPostgres();
  db = await createDatabase(server);
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
  // An idle client's connection ended by the server (the database dropped at the end) must not crash the file.
  pool.on('error', () => undefined);
});
after(async () => {
  await pool.end();
  await db.drop();
  await server.stop();
});

const locks = (owner: string, over: Partial<{ lockTtlMs: number; baseBackoffMs: number; maxBackoffMs: number }> = {}) =>
  new OrderLocks({ pool, owner, lockTtlMs: 60_000, baseBackoffMs: 60_000, maxBackoffMs: 240_000, ...over });

async function row(name: string) {
  const { rows } = await pool.query<{
    locked_by: string | null;
    failures: number;
    last_outcome: string | null;
    last_error: string | null;
    wait_ms: number | null;
  }>(
    `SELECT locked_by, failures, last_outcome, last_error, extract(epoch FROM retry_after - now()) * 1000 AS wait_ms
       FROM edgeproxy_acme_orders WHERE name = $1`,
    [name],
  );
  return rows[0];
}

describe('ACME order lock (real PostgreSQL)', () => {
  it('one proxy takes a name; the other is told who has it until when', async () => {
    const a = locks('proxy-a');
    const b = locks('proxy-b');
    assert.deepEqual(await a.take('one.example'), { kind: 'taken' });
    const busy = await b.take('one.example');
    assert.equal(busy.kind, 'busy');
    assert.ok(busy.kind === 'busy' && busy.lockedBy === 'proxy-a' && busy.lockedUntil > Date.now() + 50_000);
    assert.equal((await a.take('one.example')).kind, 'busy', 'the holder itself does not take it twice');
  });

  it('concurrent takes of one name: exactly one wins', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => locks(`p${i}`).take('race.example')));
    assert.equal(results.filter((r) => r.kind === 'taken').length, 1);
  });

  it('an expired lock (a proxy that died) is taken over; the old holder can no longer renew it', async () => {
    const dead = locks('dead', { lockTtlMs: 1 });
    assert.equal((await dead.take('expired.example')).kind, 'taken');
    await new Promise((r) => setTimeout(r, 20));
    const alive = locks('alive');
    assert.equal((await alive.take('expired.example')).kind, 'taken');
    assert.equal(await dead.renew('expired.example'), false);
    assert.equal(await alive.renew('expired.example'), true);
    assert.equal((await row('expired.example'))?.locked_by, 'alive');
  });

  it('a failure frees the name and backs it off, doubling up to the cap; a success clears it', async () => {
    const a = locks('a');
    const name = 'broken.example';
    const waits: number[] = [];
    for (let i = 1; i <= 4; i++) {
      assert.equal((await a.take(name)).kind, 'taken');
      const released = await a.failed(name, `validation failed ${i}`);
      assert.equal(released.failures, i);
      waits.push((await row(name))!.wait_ms!);
      // Past the wait by the database's clock, as a later attempt would be.
      await pool.query(`UPDATE edgeproxy_acme_orders SET retry_after = now() - interval '1 second' WHERE name = $1`, [name]);
    }
    const expected = [60_000, 120_000, 240_000, 240_000];
    waits.forEach((w, i) => assert.ok(Math.abs(w - expected[i]!) < 5_000, `wait ${i + 1}: ${w} ms, expected about ${expected[i]}`));
    const r = await row(name);
    assert.equal(r?.last_outcome, 'failed');
    assert.equal(r?.last_error, 'validation failed 4');
    assert.equal(r?.locked_by, null);
    assert.equal((await a.take(name)).kind, 'taken');
    await a.succeeded(name);
    assert.deepEqual(await row(name), { locked_by: null, failures: 0, last_outcome: 'issued', last_error: null, wait_ms: null });
  });

  it('the backoff is remembered across restarts: a new process is refused until retry_after', async () => {
    const name = 'backing-off.example';
    const first = locks('before-restart');
    assert.equal((await first.take(name)).kind, 'taken');
    const released = await first.failed(name, 'CA said no');
    const restarted = locks('after-restart');
    const r = await restarted.take(name);
    assert.equal(r.kind, 'backing-off');
    assert.ok(r.kind === 'backing-off' && r.failures === 1 && r.retryAfter === released.retryAfter);
    // An operator's forced renewal does not wait for it; the lock itself still holds.
    assert.equal((await restarted.take(name, { ignoreBackoff: true })).kind, 'taken');
    assert.equal((await first.take(name, { ignoreBackoff: true })).kind, 'busy');
  });

  it('release frees the name and leaves the outcome and the backoff as they were', async () => {
    const a = locks('a');
    assert.equal((await a.take('released.example')).kind, 'taken');
    await a.release('released.example');
    const r = await row('released.example');
    assert.equal(r?.locked_by, null);
    assert.equal(r?.last_outcome, null);
    assert.equal((await locks('b').take('released.example')).kind, 'taken');
  });
});
