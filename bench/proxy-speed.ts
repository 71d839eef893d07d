// Request-path speed: the same load against each target, in one invocation, targets alternated.
//
//   node --import tsx bench/proxy-speed.ts [--rounds 2] [--duration 10] [--connections 64] [--only a,b]
//
// Load: wrk (`apt-get install -y wrk`), else autocannon (devDependency): keep-alive, 64
// connections, 10 s per run, GET of a 12-byte response. Targets, each its own process:
//   backend       the backend itself (nginx, 1 worker, `return 200`; a node:http server without nginx)
//   nginx         nginx as a reverse proxy (1 worker, upstream keepalive) → backend   [needs nginx]
//   bare-hp       a bare http-proxy-3 script with a keep-alive agent → backend
//   bare-undici   a bare undici Pool.stream script → backend
//   edge-undici   EdgeProxy (plain requests forwarded with undici), 100,000 routes, health cache
//                 on, log level info. (Its http-proxy-3 engine, `edge-hp` in the recorded figures,
//                 was removed: docs/decisions/0006.)
// Each round runs every target once (after a 2 s warm-up of that target), the order rotating by
// one per round to cancel drift; the
// report gives the median of the rounds, ratios to nginx from the same rounds, and the latency
// EdgeProxy adds over the matching bare script. Then a paced 1,000 req/s run against EdgeProxy
// counts health probes per proxied request. Missing nginx or wrk: that part is skipped with a note.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { nodeArgs } from './support/bundle.js';
import { backendConf, nginxConf, PROXY_LOCATION, startNginx, upstream } from './support/nginx.js';
import { cpuMs, freePort, has, median, start, stopAll } from './support/processes.js';
import { wrk } from './support/wrk.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    routes: { type: 'string', default: '100000' },
    only: { type: 'string' },
  },
});
const ROUNDS = Number(values.rounds);
const DURATION = Number(values.duration);
const CONNECTIONS = Number(values.connections);

const HAVE_NGINX = has('nginx');
const HAVE_WRK = has('wrk');
const tmp = mkdtempSync(join(tmpdir(), 'edgeproxy-bench-'));

interface Result {
  target: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU time the target's processes used per request (µs): robust to other load on the machine. */
  cpuUs: number;
}

async function load(target: string, port: number, pid: number | undefined): Promise<Result> {
  // 2 s right before each measured run: the target was idle while the others ran (its pooled
  // upstream connections closed, V8 may have shrunk its heap).
  if (HAVE_WRK) spawnSync('wrk', ['-t1', `-c${CONNECTIONS}`, '-d2s', '-H', 'Host: bench.example', `http://127.0.0.1:${port}/`]);
  const cpu0 = cpuMs(pid);
  const r = await loadOnly(target, port);
  return { ...r, cpuUs: ((cpuMs(pid) - cpu0) * 1000) / (r.rps * DURATION) };
}

async function loadOnly(target: string, port: number, path = '/'): Promise<Omit<Result, 'cpuUs'>> {
  const url = `http://127.0.0.1:${port}${path}`;
  if (HAVE_WRK) return { target, ...wrk(url, 'bench.example', CONNECTIONS, DURATION) };
  const r = spawnSync('npx', ['autocannon', '-c', String(CONNECTIONS), '-d', String(DURATION), '-j', '-H', 'host=bench.example', url], {
    encoding: 'utf8',
  });
  const j = JSON.parse(r.stdout) as {
    requests: { average: number };
    latency: { p50: number; p99: number };
    non2xx: number;
    errors: number;
  };
  return { target, rps: j.requests.average, p50: j.latency.p50, p99: j.latency.p99, errors: j.non2xx + j.errors };
}

/** The V8 flags EdgeProxy ships with (bin shebang, `npm start`, Dockerfile): docs/decisions/0007. */
const EDGEPROXY_NODE_FLAGS = ['--max-semi-space-size=32'];

async function main(): Promise<void> {
  console.log(
    `# proxy-speed: ${cpus().length} CPUs (${cpus()[0]?.model}), Node ${process.version}, load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    `# load generator: ${HAVE_WRK ? 'wrk -t1' : 'autocannon (wrk not installed)'} -c${CONNECTIONS} ${DURATION}s keep-alive; rounds: ${ROUNDS}`,
  );
  const backendPort = await freePort();
  const targets: { name: string; port: number; pid?: number; child?: ChildProcess; lines?: string[] }[] = [];
  if (HAVE_NGINX) {
    const dir = backendConf(tmp, backendPort);
    targets.push({ name: 'backend', port: backendPort, pid: (await startNginx(dir, backendPort)).pid });
  } else {
    console.log('# nginx not installed (apt-get install -y nginx): backend is node:http, the nginx target is skipped');
    targets.push({
      name: 'backend',
      port: backendPort,
      pid: (await start(process.execPath, [...(await nodeArgs('bench/targets/node-backend.ts')), String(backendPort)], true, backendPort))
        .pid,
    });
  }
  if (HAVE_NGINX) {
    const port = await freePort();
    const dir = nginxConf(tmp, 'proxy', `${upstream(backendPort)} server { listen 127.0.0.1:${port}; ${PROXY_LOCATION} }`);
    targets.push({ name: 'nginx', port, pid: (await startNginx(dir, port)).pid });
  }
  for (const [name, script] of [
    ['bare-hp', 'bench/targets/bare-http-proxy.ts'],
    ['bare-undici', 'bench/targets/bare-undici.ts'],
  ] as const) {
    const port = await freePort();
    targets.push({
      name,
      port,
      pid: (await start(process.execPath, [...(await nodeArgs(script)), String(port), String(backendPort)], true, port)).pid,
    });
  }
  {
    const name = 'edge-undici';
    const port = await freePort();
    const s = await start(
      process.execPath,
      [
        ...EDGEPROXY_NODE_FLAGS,
        ...(await nodeArgs('bench/targets/edgeproxy.ts')),
        '--port',
        String(port),
        '--backend-port',
        String(backendPort),
        '--routes',
        values.routes!,
      ],
      true,
      port,
    );
    const ready = JSON.parse(s.lines.find((l) => l.includes('"ready"'))!) as { routes: number; loadMs: number };
    console.log(`# ${name}: ${ready.routes} routes loaded in ${ready.loadMs} ms`);
    targets.push({ name, port, pid: s.pid, child: s.child, lines: s.lines });
  }
  const only = values.only?.split(',');
  const active = targets.filter((t) => only === undefined || only.includes(t.name) || t.name === 'nginx');

  const results = new Map<string, Result[]>();
  for (let round = 0; round < ROUNDS; round++) {
    const order = active.map((_, i) => active[(i + round) % active.length]!);
    for (const t of order) {
      const r = await load(t.name, t.port, t.pid);
      (results.get(t.name) ?? results.set(t.name, []).get(t.name)!).push(r);
      console.log(
        `  round ${round + 1} ${t.name.padEnd(12)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  CPU ${r.cpuUs.toFixed(1)} µs/req  errors ${r.errors}`,
      );
    }
  }

  const summary = active.map((t) => {
    const rs = results.get(t.name)!;
    return {
      target: t.name,
      rps: median(rs.map((r) => r.rps)),
      p50: median(rs.map((r) => r.p50)),
      p99: median(rs.map((r) => r.p99)),
      cpuUs: median(rs.map((r) => r.cpuUs)),
      errors: rs.reduce((a, r) => a + r.errors, 0),
    };
  });
  const nginx = summary.find((s) => s.target === 'nginx');
  const by = (n: string) => summary.find((s) => s.target === n);
  console.log('\n| target | req/s | p50 ms | p99 ms | CPU µs/req | req/s ÷ nginx | p50 ÷ nginx | p99 ÷ nginx | errors |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const s of summary) {
    const r = (x: number, y: number | undefined) => (y === undefined ? 'n/a' : `${(x / y).toFixed(2)}×`);
    console.log(
      `| ${s.target} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${s.cpuUs.toFixed(1)} | ${r(s.rps, nginx?.rps)} | ${r(s.p50, nginx?.p50)} | ${r(s.p99, nginx?.p99)} | ${s.errors} |`,
    );
  }
  const pairs: [string, string][] = [
    ['edge-undici', 'bare-undici'],
    ['edge-undici', 'bare-hp'],
  ];
  console.log('\n| comparison | req/s ratio | CPU/req ratio | p50 added ms | p99 added ms |');
  console.log('|---|---|---|---|---|');
  for (const [a, b] of pairs) {
    const x = by(a);
    const y = by(b);
    if (x && y)
      console.log(
        `| ${a} vs ${b} | ${(x.rps / y.rps).toFixed(3)}× | ${(x.cpuUs / y.cpuUs).toFixed(3)}× | ${(x.p50 - y.p50).toFixed(2)} | ${(x.p99 - y.p99).toFixed(2)} |`,
      );
  }

  // Health probes per proxied request at a steady 1,000 req/s to one VM (autocannon paces).
  const edge = targets.find((t) => t.name === 'edge-undici')!;
  const probesBefore = await probes(edge);
  const paced = spawnSync(
    'npx',
    ['autocannon', '-c', '10', '-d', '10', '-R', '1000', '-j', '-H', 'host=bench.example', `http://127.0.0.1:${edge.port}/`],
    { encoding: 'utf8' },
  );
  const pj = JSON.parse(paced.stdout) as { requests: { total: number }; non2xx: number };
  const probesAfter = await probes(edge);
  console.log(
    `\nhealth probes at 1,000 req/s for 10 s (cache TTL 1 s): ${probesAfter - probesBefore} probes / ${pj.requests.total} requests = ${((probesAfter - probesBefore) / pj.requests.total).toFixed(5)} per request (non-2xx ${pj.non2xx})`,
  );
  console.log(
    `# load after: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  console.log(JSON.stringify({ summary }));
}

/** The EdgeProxy target's health probe count so far (it answers SIGUSR2 with a JSON line). */
async function probes(t: { child?: ChildProcess; lines?: string[] }): Promise<number> {
  const before = t.lines!.length;
  t.child!.kill('SIGUSR2');
  const deadline = Date.now() + 2000;
  while (t.lines!.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const line = t.lines!.slice(before).find((l) => l.includes('"probes"'));
  return line === undefined ? NaN : (JSON.parse(line) as { probes: number }).probes;
}

try {
  await main();
} finally {
  await stopAll();
  rmSync(tmp, { recursive: true, force: true });
}
