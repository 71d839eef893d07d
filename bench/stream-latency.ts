// Commit-to-routed latency: how long after COMMIT returns does the proxy's HTTP port route a
// host to its new target? Single-row changes and a 2,000-row transaction, streaming from a
// primary and from a standby, side by side with polling at the default interval.
//
// Run: node --import tsx bench/stream-latency.ts [--samples 200] [--poll-samples 6] [--routes 2000] [--scenarios primary,standby,poll]
// Prints one JSON line per scenario, then a table.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { startService, type RunningService } from '../src/cli/serve.js';
import { type Config, resolveConfig, type SyncMode } from '../src/config/config.js';
import { applyMigrations, createDatabase, startPostgres, type PgServer } from '../test/support/postgres.js';
import { startStandby, waitForReplay } from '../test/support/standby.js';

const { values: args } = parseArgs({
  options: {
    samples: { type: 'string', default: '200' },
    'poll-samples': { type: 'string', default: '6' },
    routes: { type: 'string', default: '2000' },
    scenarios: { type: 'string', default: 'primary,standby,poll' },
  },
});
const SAMPLES = Number(args.samples);
const POLL_SAMPLES = Number(args['poll-samples']);
const ROUTES = Math.max(2000, Number(args.routes));
const REGION = '0a000000-0000-4000-8000-00000000000a';
const SCENARIOS = new Set(args.scenarios.split(','));
const POLL_INTERVAL_MS = 10_000;

async function backend(name: string) {
  const s = http.createServer((_req, res) => res.end(name));
  s.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { port: (s.address() as AddressInfo).port, close: () => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r()))) };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function get(port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', path: '/', headers: { host }, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Polls the HTTP port until `host` answers `want`; ms since `since`. */
async function routedAfter(port: number, host: string, want: string, since: number, timeoutMs: number): Promise<number> {
  for (;;) {
    const got = await get(port, host);
    if (got === want) return performance.now() - since;
    if (performance.now() - since > timeoutMs)
      throw new Error(`${host} not routed to ${want} within ${timeoutMs} ms (last answer: ${JSON.stringify(got.slice(0, 200))})`);
  }
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}
function summary(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const r = (n: number) => Math.round(n * 100) / 100;
  return { n: s.length, p50: r(pct(s, 0.5)), p99: r(pct(s, 0.99)), max: r(s[s.length - 1]!) };
}

interface Fixture {
  readonly writer: pg.Client;
  readonly hosts: string[];
  readonly vmIds: string[];
  /** Which backend each host points at now (all start on A); kept across scenarios. */
  readonly on: Map<string, 'A' | 'B'>;
}

async function seed(url: string, ports: { a: number }): Promise<Fixture> {
  const writer = new pg.Client({ connectionString: url });
  await writer.connect();
  await writer.query(`INSERT INTO regions (id, name, code, public_ipv4) VALUES ($1, 'a', 'a', '127.0.0.1')`, [REGION]);
  const hosts: string[] = [];
  const vmIds: string[] = [];
  const vms: unknown[][] = [];
  const deps: unknown[][] = [];
  const doms: unknown[][] = [];
  for (let i = 0; i < ROUTES; i++) {
    const vm = randomUUID();
    const dep = randomUUID();
    hosts.push(`site${i}.example`);
    vmIds.push(vm);
    vms.push([vm, REGION, 'running', '127.0.0.1', ports.a]);
    deps.push([dep, 'ready', vm]);
    doms.push([randomUUID(), `site${i}.example`, dep]);
  }
  const insert = async (sql: string, rows: unknown[][]) => {
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      const width = chunk[0]!.length;
      const values = chunk.map((_, r) => `(${Array.from({ length: width }, (_, c) => `$${r * width + c + 1}`).join(', ')})`).join(', ');
      await writer.query(`${sql} VALUES ${values}`, chunk.flat());
    }
  };
  await insert('INSERT INTO vms (id, region_id, status, private_ip, port)', vms);
  await insert('INSERT INTO deployments (id, status, vm_id)', deps);
  for (let i = 0; i < doms.length; i += 500) {
    const chunk = doms.slice(i, i + 500);
    const values = chunk.map((_, r) => `($${r * 3 + 1}, $${r * 3 + 2}, $${r * 3 + 3}, now())`).join(', ');
    await writer.query(`INSERT INTO domains (id, name, deployment_id, verified_at) VALUES ${values}`, chunk.flat());
  }
  await writer.query('CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms, regions');
  return { writer, hosts, vmIds, on: new Map() };
}

async function proxy(databaseUrl: string, mode: SyncMode): Promise<RunningService> {
  // Every option at its default (as the option table says), then what this bench varies.
  const defaults = resolveConfig({}, { EDGEPROXY_DATABASE_URL: databaseUrl, EDGEPROXY_REGION_ID: REGION, EDGEPROXY_ADMIN_ADDR: 'off' });
  const config: Config = { ...defaults, httpAddr: { host: '127.0.0.1', port: 0 }, syncMode: mode, shutdownTimeoutMs: 1000 };
  const service = await startService(config, pino({ level: 'silent' }));
  for (let i = 0; !service.store.ready; i++) {
    if (i > 2000) throw new Error('proxy not ready');
    await new Promise((r) => setTimeout(r, 10));
  }
  return service;
}

async function scenario(
  label: string,
  opts: {
    primary: PgServer;
    readUrl: string;
    writeUrl: string;
    mode: SyncMode;
    samples: number;
    fixture: Fixture;
    ports: { a: number; b: number };
    nudge?: pg.Client;
  },
) {
  const { fixture, ports } = opts;
  const nudge = opts.nudge
    ? setInterval(() => void opts.nudge!.query('SELECT pg_log_standby_snapshot()').catch(() => undefined), 100)
    : undefined;
  const service = await proxy(opts.readUrl, opts.mode);
  if (nudge) clearInterval(nudge);
  const port = service.port;
  const on = fixture.on;
  const single: number[] = [];
  const timeout = opts.mode === 'poll' ? 25_000 : 15_000;
  for (let i = 0; i < opts.samples; i++) {
    const k = i % fixture.hosts.length;
    const host = fixture.hosts[k]!;
    await routedAfter(port, host, on.get(host) ?? 'A', performance.now(), timeout); // warm: route and health known
    const next = (on.get(host) ?? 'A') === 'A' ? 'B' : 'A';
    // Polling: commit at a random point of the interval (the warm-up ends just after a poll).
    if (opts.mode === 'poll') await new Promise((r) => setTimeout(r, Math.random() * POLL_INTERVAL_MS));
    await fixture.writer.query('UPDATE vms SET port = $2 WHERE id = $1', [fixture.vmIds[k], next === 'A' ? ports.a : ports.b]);
    const t0 = performance.now();
    single.push(await routedAfter(port, host, next, t0, timeout));
    on.set(host, next);
  }
  // 2,000 rows in one transaction: until the last row's host routes to its new target.
  const bulk: number[] = [];
  const bulkRuns = opts.mode === 'poll' ? Math.min(2, opts.samples) : 5;
  for (let run = 0; run < bulkRuns; run++) {
    const ids = fixture.vmIds.slice(0, 2000);
    const last = fixture.hosts[1999]!;
    const target = run % 2 === 0 ? 'B' : 'A';
    await routedAfter(port, last, on.get(last) ?? 'A', performance.now(), timeout);
    if (opts.mode === 'poll') await new Promise((r) => setTimeout(r, Math.random() * POLL_INTERVAL_MS));
    await fixture.writer.query('UPDATE vms SET port = $2 WHERE id = ANY($1::uuid[])', [ids, target === 'A' ? ports.a : ports.b]);
    const t0 = performance.now();
    bulk.push(await routedAfter(port, last, target, t0, timeout));
    for (const h of fixture.hosts.slice(0, 2000)) on.set(h, target);
  }
  const status = service.status();
  await service.stop('bench done');
  const out = {
    scenario: label,
    mode: opts.mode,
    singleRowMs: summary(single),
    tx2000RowsMs: summary(bulk),
    state: status.state,
    reconnects: status.reconnects,
  };
  console.log(JSON.stringify(out));
  return out;
}

async function main() {
  const a = await backend('A');
  const b = await backend('B');
  const ports = { a: a.port, b: b.port };
  const primary = await startPostgres();
  const db = await createDatabase(primary, { migrate: false });
  await applyMigrations(db.url);
  const fixture = await seed(db.url, ports);
  const results = [];
  if (SCENARIOS.has('primary'))
    results.push(
      await scenario('primary, streaming', {
        primary,
        readUrl: db.url,
        writeUrl: db.url,
        mode: 'replication',
        samples: SAMPLES,
        fixture,
        ports,
      }),
    );
  let standby: PgServer | undefined;
  if (SCENARIOS.has('standby') && primary.majorVersion >= 16) {
    standby = await startStandby(primary);
    const onStandby = new pg.Client({ connectionString: standby.url(db.name) });
    await onStandby.connect();
    await waitForReplay(fixture.writer, onStandby);
    await onStandby.end();
    results.push(
      await scenario('standby, streaming', {
        primary,
        readUrl: standby.url(db.name),
        writeUrl: db.url,
        mode: 'replication',
        samples: SAMPLES,
        fixture,
        ports,
        nudge: fixture.writer,
      }),
    );
  }
  if (SCENARIOS.has('poll')) {
    results.push(
      await scenario('primary, polling every 10s', {
        primary,
        readUrl: db.url,
        writeUrl: db.url,
        mode: 'poll',
        samples: POLL_SAMPLES,
        fixture,
        ports,
      }),
    );
  }
  console.log('\nscenario                     | single-row p50 / p99 / max (ms) | 2,000-row tx p50 / p99 / max (ms)');
  for (const r of results) {
    const f = (s: { p50: number; p99: number; max: number; n: number }) => `${s.p50} / ${s.p99} / ${s.max} (n=${s.n})`;
    console.log(`${r.scenario.padEnd(28)} | ${f(r.singleRowMs).padEnd(31)} | ${f(r.tx2000RowsMs)}`);
  }
  await fixture.writer.end();
  await standby?.stop();
  await primary.stop();
  await a.close();
  await b.close();
  agent.destroy();
}

await main();
