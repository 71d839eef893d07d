// Worker threads (issue 14): `edgeproxy serve` (the built bin, its shipped flags, streaming from a
// throwaway PostgreSQL, N routes) with EDGEPROXY_WORKERS=1 and =2, against nginx as a reverse
// proxy with 1 and 2 worker processes, to the same nginx backend; the bare undici and http-proxy
// scripts beside them. Targets alternated per round; req/s, latency and CPU per request (µs, from
// the process's own CPU time, all its threads and children).
//
//   npm run build && npm exec -- node --import tsx bench/workers-speed.ts [--rounds 1] [--duration 10]
//     [--connections 64] [--routes 100000] [--pin-load CPU]
//
// --pin-load runs wrk on that CPU only (taskset -c): on 2 cores the load generator competes with
// the target either way; pinned, it at least stays on one. Needs nginx and wrk.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { request } from '../test/support/backend.js';
import { createDatabase, startPostgres } from '../test/support/postgres.js';
import { REGION_A } from '../test/support/service.js';
import type { LongRun } from '../test/support/cli.js';
import { nodeArgs } from './support/bundle.js';
import { backendConf, nginxConf, PROXY_LOCATION, startNginx, upstream } from './support/nginx.js';
import { cpuMs, freePort, has, median, start, stopAll } from './support/processes.js';
import { serveBuiltBin } from './support/serve-bin.js';
import { wrk, type WrkFigures } from './support/wrk.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    routes: { type: 'string', default: '100000' },
    'pin-load': { type: 'string' },
  },
});
const ROUNDS = Number(values.rounds);
const DURATION = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const ROUTES = Number(values.routes);
const PIN = values['pin-load'] === undefined ? undefined : Number(values['pin-load']);
const HOST = 'bench.example';

interface Target {
  readonly name: string;
  readonly port: number;
  readonly pid: number;
}

/** One region, one VM (the backend), one deployment, and ROUTES domains on it, `bench.example` among them. */
async function seed(url: string, backendPort: number): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query("INSERT INTO regions (id, name, code, public_ipv4) VALUES ($1, 'a', 'a', '127.0.0.1')", [REGION_A]);
    await c.query(
      "INSERT INTO vms (id, region_id, status, private_ip, port) VALUES ('00000000-0000-4000-8000-000000000001', $1, 'running', '127.0.0.1', $2)",
      [REGION_A, backendPort],
    );
    await c.query(
      "INSERT INTO deployments (id, status, vm_id) VALUES ('00000000-0000-4000-8000-000000000002', 'ready', '00000000-0000-4000-8000-000000000001')",
    );
    await c.query(
      `INSERT INTO domains (id, name, deployment_id, verified_at)
       SELECT gen_random_uuid(), CASE WHEN i = 0 THEN $1 ELSE 'd' || i || '.example' END, '00000000-0000-4000-8000-000000000002', now()
       FROM generate_series(0, $2::int - 1) AS i`,
      [HOST, ROUTES],
    );
  } finally {
    await c.end();
  }
}

async function startEdgeproxy(url: string, workers: number): Promise<{ target: Target; run: LongRun; adminPort: number }> {
  const run = serveBuiltBin({
    EDGEPROXY_DATABASE_URL: url,
    EDGEPROXY_REGION_ID: REGION_A,
    EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
    EDGEPROXY_HTTPS_ADDR: 'off',
    EDGEPROXY_ADMIN_ADDR: '127.0.0.1:0',
    EDGEPROXY_WORKERS: String(workers),
    EDGEPROXY_LOG_LEVEL: 'info',
  });
  const port = (await run.waitFor((l) => l.msg === 'listening', 60_000)).port as number;
  const adminPort = (await run.waitFor((l) => l.msg === 'admin API listening', 60_000)).port as number;
  await run.waitFor((l) => l.msg === 'replication stream started', 120_000);
  return { target: { name: `edgeproxy-${workers}w`, port, pid: run.child.pid! }, run, adminPort };
}

async function startNginxProxy(tmp: string, backendPort: number, workers: number): Promise<Target> {
  const port = await freePort();
  const dir = nginxConf(
    tmp,
    `proxy-${workers}`,
    `${upstream(backendPort)} server { listen 127.0.0.1:${port}; ${PROXY_LOCATION} }`,
    workers,
  );
  return { name: `nginx-${workers}w`, port, pid: (await startNginx(dir, port)).pid! };
}

async function startBare(name: string, script: string, backendPort: number): Promise<Target> {
  const port = await freePort();
  const s = await start(process.execPath, [...(await nodeArgs(script)), String(port), String(backendPort)], true, port);
  return { name, port, pid: s.pid! };
}

function measure(t: Target): WrkFigures & { cpuUs: number } {
  const url = `http://127.0.0.1:${t.port}/`;
  spawnSync('wrk', ['-t1', `-c${CONNECTIONS}`, '-d2s', '-H', `Host: ${HOST}`, url]); // warm-up, not measured
  const cpu0 = cpuMs(t.pid);
  const r = wrk(url, HOST, CONNECTIONS, DURATION, PIN);
  return { ...r, cpuUs: ((cpuMs(t.pid) - cpu0) * 1000) / (r.rps * DURATION) };
}

function report(targets: readonly Target[], results: Map<string, (WrkFigures & { cpuUs: number })[]>): void {
  const nginx1 = median(results.get('nginx-1w')!.map((r) => r.rps));
  const nginxCpu = median(results.get('nginx-1w')!.map((r) => r.cpuUs));
  console.log('\n| target | req/s | p50 ms | p99 ms | CPU µs/req | req/s ÷ nginx-1w | CPU/req ÷ nginx-1w | errors |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const t of targets) {
    const rs = results.get(t.name)!;
    const rps = median(rs.map((r) => r.rps));
    const cpu = median(rs.map((r) => r.cpuUs));
    const errors = rs.reduce((a, r) => a + r.errors, 0);
    console.log(
      `| ${t.name} | ${rps.toFixed(0)} | ${median(rs.map((r) => r.p50)).toFixed(2)} | ${median(rs.map((r) => r.p99)).toFixed(2)} | ${cpu.toFixed(1)} | ${(rps / nginx1).toFixed(2)}× | ${(cpu / nginxCpu).toFixed(2)}× | ${errors} |`,
    );
  }
}

async function main(): Promise<void> {
  if (!has('nginx') || !has('wrk')) throw new Error('needs nginx and wrk (apt-get install -y nginx wrk)');
  const load = () =>
    loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
  console.log(`# workers-speed: ${cpus().length} CPUs, Node ${process.version}, load ${load()}; ${ROUTES} routes; rounds ${ROUNDS}`);
  console.log(
    `# wrk -t1 -c${CONNECTIONS} ${DURATION}s keep-alive${PIN === undefined ? ' (not pinned)' : `, pinned to CPU ${PIN} (taskset)`}`,
  );
  const tmp = mkdtempSync(join(tmpdir(), 'edgeproxy-workers-bench-'));
  const server = await startPostgres();
  const db = await createDatabase(server);
  const runs: LongRun[] = [];
  try {
    const backendPort = await freePort();
    await startNginx(backendConf(tmp, backendPort), backendPort);
    await seed(db.url, backendPort);
    const targets: Target[] = [await startNginxProxy(tmp, backendPort, 1), await startNginxProxy(tmp, backendPort, 2)];
    targets.push(await startBare('bare-undici', 'bench/targets/bare-undici.ts', backendPort));
    targets.push(await startBare('bare-hp', 'bench/targets/bare-http-proxy.ts', backendPort));
    let workersAdmin = 0;
    for (const w of [1, 2]) {
      const { target, run, adminPort } = await startEdgeproxy(db.url, w);
      runs.push(run);
      targets.push(target);
      workersAdmin = adminPort;
    }
    const results = new Map<string, (WrkFigures & { cpuUs: number })[]>(targets.map((t) => [t.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets.map((_, i) => targets[(i + round) % targets.length]!)) {
        const r = measure(t);
        results.get(t.name)!.push(r);
        console.log(
          `  round ${round + 1} ${t.name.padEnd(14)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  CPU ${r.cpuUs.toFixed(1)} µs/req  errors ${r.errors}  (load ${load()})`,
        );
      }
    }
    report(targets, results);
    // How the 2 workers shared the load, and how often they had to ask the main thread about health.
    const workers = (await request(workersAdmin, { path: '/workers' })).body;
    console.log(`\n# edgeproxy-2w GET /workers: ${workers}`);
  } finally {
    for (const r of runs) r.child.kill('SIGTERM');
    await Promise.all(runs.map((r) => r.exited));
    await stopAll();
    await db.drop();
    await server.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
