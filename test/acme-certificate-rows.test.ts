import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { deleteSupersededExpired } from '../src/acme/certificate-rows.js';
import { makeCertificate, makeStorageKeyText, storeCertificate } from './support/certificates.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';
import { Seeder } from './support/seed.js';

// The primary's certificate rows as renewal reads and prunes them, on real PostgreSQL. Validity is
// set in the columns (what the queries read): the certificates themselves are throwaway.

const KEY = makeStorageKeyText();
const HOUR = 3600_000;

let server: PgServer;
let db: TestDatabase;
let seed: Seeder;
let pool: pg.Pool;

before(async () => {
  server = await startPostgres();
  db = await createDatabase(server);
  seed = await Seeder.connect(db.url);
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
});
after(async () => {
  await pool?.end();
  await seed?.client.end();
  await db?.drop();
  await server?.stop();
});
beforeEach(async () => {
  await seed.client.query('DELETE FROM edgeproxy_certificates');
});

/** A stored row for `names`, valid from `fromMs` to `toMs` relative to now. */
async function row(names: string[], fromMs: number, toMs: number): Promise<string> {
  const id = await storeCertificate(seed.client, KEY, makeCertificate(names));
  await seed.client.query(
    `UPDATE edgeproxy_certificates SET not_before = now() + $2 * interval '1 millisecond', not_after = now() + $3 * interval '1 millisecond'
      WHERE id = $1`,
    [id, fromMs, toMs],
  );
  return id;
}

async function ids(): Promise<Set<string>> {
  const { rows } = await seed.client.query<{ id: string }>('SELECT id FROM edgeproxy_certificates');
  return new Set(rows.map((r) => r.id));
}

describe('deleteSupersededExpired (real PostgreSQL)', () => {
  it('deletes an expired row once a newer valid one covers its name, and keeps the valid one', async () => {
    const expired = await row(['a.rows.test'], -90 * 24 * HOUR, -HOUR);
    const older = await row(['a.rows.test'], -100 * 24 * HOUR, -10 * 24 * HOUR);
    const valid = await row(['a.rows.test'], -HOUR, 60 * 24 * HOUR);
    const deleted = await deleteSupersededExpired(pool);
    assert.deepEqual(deleted.map((d) => d.id).sort(), [expired, older].sort());
    assert.deepEqual(deleted[0]!.names, ['a.rows.test']);
    assert.ok(deleted.every((d) => d.notAfter < Date.now()));
    assert.deepEqual(await ids(), new Set([valid]));
    assert.deepEqual(await deleteSupersededExpired(pool), [], 'nothing left to delete');
  });

  it('never the only certificate of a name, even expired, nor one a not-yet-valid row would replace', async () => {
    const only = await row(['b.rows.test'], -90 * 24 * HOUR, -HOUR);
    const twoExpired = [await row(['c.rows.test'], -90 * 24 * HOUR, -2 * HOUR), await row(['c.rows.test'], -80 * 24 * HOUR, -HOUR)];
    const beforeFuture = await row(['d.rows.test'], -90 * 24 * HOUR, -HOUR);
    const future = await row(['d.rows.test'], HOUR, 90 * 24 * HOUR);
    assert.deepEqual(await deleteSupersededExpired(pool), []);
    assert.deepEqual(await ids(), new Set([only, ...twoExpired, beforeFuture, future]));
  });

  it('a row with several names goes only when every one of them has a newer valid certificate', async () => {
    const both = await row(['e.rows.test', 'f.rows.test'], -90 * 24 * HOUR, -HOUR);
    const wildcard = await row(['*.g.rows.test'], -90 * 24 * HOUR, -HOUR);
    await row(['e.rows.test'], -HOUR, 60 * 24 * HOUR);
    // A name under the wildcard is not the wildcard: its expired row stays.
    await row(['x.g.rows.test'], -HOUR, 60 * 24 * HOUR);
    assert.deepEqual(await deleteSupersededExpired(pool), []);
    await row(['f.rows.test', 'other.rows.test'], -HOUR, 60 * 24 * HOUR);
    assert.deepEqual(
      (await deleteSupersededExpired(pool)).map((d) => d.id),
      [both],
    );
    assert.ok((await ids()).has(wildcard));
  });

  it('passes of several proxies at once delete each row once and never the last valid one', async () => {
    const expired: string[] = [];
    for (const i of [1, 2, 3, 4]) expired.push(await row(['h.rows.test'], -90 * 24 * HOUR, -i * HOUR));
    const valid = await row(['h.rows.test'], -HOUR, 60 * 24 * HOUR);
    const passes = await Promise.all([1, 2, 3, 4].map(() => deleteSupersededExpired(pool)));
    const deleted = passes.flat().map((d) => d.id);
    assert.deepEqual([...deleted].sort(), [...expired].sort(), 'each expired row deleted by exactly one pass');
    assert.deepEqual(await ids(), new Set([valid]));
  });
});
