/**
 * COPY's text format read back (src/replication/copy-rows.ts), against a real PostgreSQL: every
 * value, escapes and NULLs included, is what `pg` itself returns for the same SELECT as text.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { copyRows, type CopyRow, parseCopyLine } from '../src/replication/copy-rows.js';
import { createDatabase, startPostgres, type PgServer, type TestDatabase } from './support/postgres.js';

let server: PgServer;
let db: TestDatabase;
let client: pg.Client;

before(async () => {
  server = await startPostgres();
  db = await createDatabase(server, { migrate: false });
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});

after(async () => {
  await client.end();
  await db.drop();
  await server.stop();
});

const NAMES = ['plain.example', 'tab\there', 'new\nline', 'cr\rlf', 'back\\slash', '\\N', 'ütf-8 ☃ 𝄞', '', 'ctl\b\f\v\x01', 'end\\'];

describe('copyRows', () => {
  it('gives each row as its columns text, NULL as null, exactly as pg reads the same rows', async () => {
    await client.query('CREATE TABLE t (k int, name text, ref uuid, flag boolean)');
    for (const [k, name] of NAMES.entries()) {
      await client.query('INSERT INTO t VALUES ($1, $2, $3, $4)', [
        k,
        name,
        k % 2 === 0 ? null : '6f1c3e9a-0000-4000-8000-000000000001',
        k % 3 === 0 ? null : true,
      ]);
    }
    const select = 'SELECT k::text, name, ref::text, flag::text FROM t ORDER BY k';
    const rows: CopyRow[] = [];
    const count = await copyRows(client, select, (row) => rows.push(row));
    const expected = (await client.query<unknown[]>({ text: select, rowMode: 'array' })).rows;
    assert.equal(count, NAMES.length);
    assert.deepEqual(rows, expected);
    assert.deepEqual(
      rows.map((r) => r[1]),
      NAMES,
    );
  });

  it('rejects with the server error, and the client goes on serving queries', async () => {
    await assert.rejects(
      copyRows(client, 'SELECT 1 / 0', () => {}),
      (err: Error & { code?: string }) => err.code === '22012',
    );
    const rows: CopyRow[] = [];
    assert.equal(await copyRows(client, 'SELECT 1, NULL', (r) => rows.push(r)), 1);
    assert.deepEqual(rows, [['1', null]]);
    assert.equal((await client.query('SELECT 2 AS n')).rows[0].n, 2);
  });
});

describe('copyRows on a long COPY', () => {
  it('gives the event loop turns while it parses (the socket paused every few milliseconds), and loses no row', async () => {
    // 150,000 rows of ~60 bytes, each costing ~10 µs to take: ~1.5 s of work. Unsliced, a turn
    // parsed whatever the socket had buffered (megabytes: most of the COPY) before a timer ran.
    const rows = 150_000;
    const select = `SELECT i::text, 'host-' || i || '.a-rather-long-domain-name.example' FROM generate_series(1, ${rows}) AS i`;
    let ticks = 0;
    let last = performance.now();
    let longest = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
      ticks += 1;
    }, 1);
    let sum = 0;
    const started = performance.now();
    try {
      const count = await copyRows(client, select, (row) => {
        sum += Number(row[0]);
        const until = performance.now() + 0.01;
        while (performance.now() < until);
      });
      assert.equal(count, rows);
    } finally {
      clearInterval(timer);
    }
    const took = performance.now() - started;
    assert.equal(sum, (rows * (rows + 1)) / 2);
    assert.ok(took > 1000, `the rows took ${took} ms to take (the test needs a long COPY)`);
    assert.ok(
      longest < 250,
      `the event loop waited ${longest.toFixed(1)} ms between turns (COPY took ${took.toFixed(0)} ms, ${ticks} ticks)`,
    );
  });
});

describe('copyRows under a query_timeout', () => {
  it('is bounded by it: a COPY still running when it passes is failed', async () => {
    const timed = new pg.Client({ connectionString: db.url, query_timeout: 300 });
    await timed.connect();
    try {
      await assert.rejects(
        copyRows(timed, 'SELECT pg_sleep(3)', () => {}),
        /Query read timeout/,
      );
    } finally {
      await timed.end().catch(() => {});
    }
  });
});

describe('parseCopyLine', () => {
  it('splits on tabs and decodes the escapes the server writes', () => {
    assert.deepEqual(parseCopyLine('a\\tb\t\\N\t\\\\N\tx\\ny\\\\'), ['a\tb', null, '\\N', 'x\ny\\']);
    assert.deepEqual(parseCopyLine(''), ['']);
  });
});
