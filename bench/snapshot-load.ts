// How fast can the bootstrap receive the domain rows? (issue 13: `pg` parsing ~3M rows was seconds
// of the start at 1M routes.) One PostgreSQL, N domains as bench/route-scale.ts seeds them; each
// way reads `SELECT id, name, deployment_id, CASE WHEN verified_at …` in full, alternated, and
// reports wall time and the CPU time of this process (the server's share is in the wall time).
//
//   npm exec -- node --import tsx bench/snapshot-load.ts [--rows 1000000] [--rounds 3]
//
// Ways: `pg` rows as objects (its default), `pg` rows as arrays (`rowMode: 'array'`, what the
// bootstrap did), arrays handed over as parsed into the domain columns (the columns' build
// included), `COPY (SELECT …) TO STDOUT` (text format, src/replication/copy-rows.ts)
// into a list of rows, and COPY into the domain columns (what the snapshot load does).
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg from 'pg';
import { copyRows, type CopyRow } from '../src/replication/copy-rows.js';
import { DomainRowsReader } from '../src/table/domain-base.js';
import { createDatabase, startPostgres } from '../test/support/postgres.js';

const { values: args } = parseArgs({ options: { rows: { type: 'string', default: '1000000' }, rounds: { type: 'string', default: '3' } } });
const N = Number(args.rows);
const ROUNDS = Number(args.rounds);
v8.setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const SQL = `SELECT id, name, deployment_id, CASE WHEN verified_at IS NULL THEN NULL ELSE true END AS verified_at FROM domains`;
const uuid = (kind: number, expr: string) =>
  `('${kind.toString(16).padStart(8, '0')}-0000-4000-8000-' || lpad(to_hex(${expr}), 12, '0'))::uuid`;

const WAYS = {
  objects: async (c: pg.Client) => (await c.query(SQL)).rows,
  arrays: async (c: pg.Client) => (await c.query({ text: SQL, rowMode: 'array' })).rows,
  // Rows handed over as parsed, into the domain columns (their RowState build included).
  'arrays as they come, into columns': async (c: pg.Client) => {
    const reader = new DomainRowsReader();
    const config: pg.QueryArrayConfig = { text: SQL, rowMode: 'array' };
    const q = c.query(new pg.Query(config));
    q.on('row', (row: unknown[]) => reader.read(row));
    await new Promise<void>((resolve, reject) => (q.on('end', () => resolve()), q.on('error', reject)));
    return { length: reader.count, base: reader.build() };
  },
  copy: async (c: pg.Client) => {
    const rows: CopyRow[] = [];
    await copyRows(c, SQL, (row) => rows.push(row));
    return rows;
  },
  // What the snapshot load does now.
  'COPY as it comes, into columns': async (c: pg.Client) => {
    const reader = new DomainRowsReader();
    await copyRows(c, SQL, (row) => reader.read(row));
    return { length: reader.count, base: reader.build() };
  },
} as const;

const server = await startPostgres({ settings: { shared_buffers: '512MB' } });
try {
  const db = await createDatabase(server);
  const c = new pg.Client({ connectionString: db.url });
  c.on('error', () => {}); // the server stopping after a failure: the failure is what is reported
  await c.connect();
  await c.query(
    `INSERT INTO regions (id, name, code, public_ipv4) VALUES ('0a000000-0000-4000-8000-00000000000a', 'here', 'here', '127.0.0.1')`,
  );
  await c.query(
    `INSERT INTO vms (id, region_id, status, private_ip, port)
     SELECT ${uuid(2, 'i')}, '0a000000-0000-4000-8000-00000000000a', 'running', '127.1.0.1'::inet, 80 FROM generate_series(0, 999) AS i`,
  );
  await c.query(
    `INSERT INTO deployments (id, status, vm_id) SELECT ${uuid(3, 'i')}, 'ready', ${uuid(2, 'i')} FROM generate_series(0, 999) AS i`,
  );
  await c.query(
    `INSERT INTO domains (id, name, deployment_id, verified_at)
     SELECT ${uuid(4, 'i')}, 'd' || i || '.scale.test', ${uuid(3, 'i % 1000')}, now() FROM generate_series(0, ${N - 1}) AS i`,
  );
  await c.query('VACUUM ANALYZE domains');
  console.log(
    `# ${N} domain rows; load average before ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log('| way | round | wall | CPU (this process) |');
  console.log('|---|---|---|---|');
  for (let round = 0; round < ROUNDS; round++) {
    const ways = Object.entries(WAYS);
    for (const [name, read] of round % 2 === 0 ? ways : ways.reverse()) {
      gc();
      const cpu = process.cpuUsage();
      const t = performance.now();
      let rows: { length: number } | undefined = await read(c);
      const wall = performance.now() - t;
      const used = process.cpuUsage(cpu);
      if (rows.length !== N) throw new Error(`${name}: ${rows.length} rows`);
      rows = undefined;
      console.log(`| ${name} | ${round + 1} | ${Math.round(wall)} ms | ${Math.round((used.user + used.system) / 1000)} ms |`);
    }
  }
  console.log(
    `# load average after ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  await c.end();
  await db.drop();
} finally {
  await server.stop();
}
