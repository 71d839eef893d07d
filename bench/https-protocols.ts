// Keep-alive HTTPS speed by protocol: HTTP/1.1 and HTTP/2 over TLS, EdgeProxy and nginx, one run.
//
//   npm exec -- node --import tsx bench/https-protocols.ts [--rounds 2] [--duration 10] [--connections 64] [--streams 10] [--baseline DIR]
//
// Needs nginx and h2load (nghttp2-client). Processes: an nginx backend (1 worker, `return 200`,
// 12-byte body), nginx as a reverse proxy to it (1 worker, a plain port and `listen … ssl http2`, upstream
// keepalive), EdgeProxy's request path with its HTTPS port (bench/targets/edgeproxy.ts, 100,000
// routes, health cache on). Both serve the same self-signed ECDSA P-256 certificate; TLS 1.3.
// Load: h2load, `--connections` keep-alive connections for `--duration` s after a 2 s warm-up:
// `plain h1` (h2load --h1 on each target's plain-HTTP port: the ratio issue 11's keep-alive target is
// relative to), `h1` (h2load --h1 over TLS), `h2` one stream at a time per connection (the same concurrency as h1), and
// `h2 ×m` with `--streams` concurrent streams per connection. Targets and loads alternate per round;
// the report gives the median req/s of the rounds, the ratio to nginx in the same load, and EdgeProxy's
// CPU per request (its process's user + system time over the measured period, from /proc).
// --baseline DIR adds `edgeproxy-base`: DIR's bench/targets/edgeproxy.ts (another checkout with its
// node_modules, e.g. /work/main), so a change is measured before and after in the same run.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { makeCertificate } from '../test/support/certificates.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    streams: { type: 'string', default: '10' },
    baseline: { type: 'string' },
  },
});
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
if (!has('nginx') || !has('h2load')) {
  console.log('# needs nginx and h2load (apt-get install -y nginx nghttp2-client)');
  process.exit(0);
}
const tmp = mkdtempSync(join(tmpdir(), 'edgeproxy-bench-https-'));
const children: ChildProcess[] = [];
const cert = makeCertificate(['bench.example']);
writeFileSync(join(tmp, 'cert.pem'), cert.certPem);
writeFileSync(join(tmp, 'key.pem'), cert.keyPem);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });

async function start(cmd: string, args: string[], port: number, cwd?: string): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], cwd });
  children.push(child);
  const deadline = Date.now() + 60_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null) throw new Error(`${cmd} exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`${cmd} not ready in 60 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return child;
}

async function nginx(name: string, port: number, server: string): Promise<void> {
  const dir = join(tmp, name);
  spawnSync('mkdir', ['-p', join(dir, 'logs')]);
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1;\nuser root;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\nevents { worker_connections 4096; }\n` +
      `http {\n access_log off;\n client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;\n keepalive_requests 1000000;\n${server}\n}\n`,
  );
  await start('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], port);
}

/** A port under load, and the process whose CPU is counted (EdgeProxy's; nginx's work is in its worker). */
interface Target {
  readonly port: number;
  /** The plain-HTTP port (the `plain h1` load). */
  readonly plainPort: number;
  readonly pid: number | undefined;
}

const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** CPU seconds (user + system) a process has used so far (Linux /proc). */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

interface Load {
  readonly name: string;
  readonly args: string[];
  readonly plain?: boolean;
}

/**
 * One h2load run; `cpuUs`: the target's CPU from the end of h2load's 2 s warm-up to its exit, per
 * request of the measured period (rps × seconds), so about the measured period's.
 */
async function h2load(target: Target, load: Load, seconds: number): Promise<{ rps: number; failed: number; cpuUs: number }> {
  const child = spawn(
    'h2load',
    [
      ...load.args,
      '-c',
      values.connections!,
      '-D',
      String(seconds),
      '--warm-up-time',
      '2',
      // SNI and :authority / Host bench.example (a second Host from -H gets an HTTP/1.1 400 from nginx).
      '--connect-to',
      `127.0.0.1:${load.plain === true ? target.plainPort : target.port}`,
      `${load.plain === true ? 'http' : 'https'}://bench.example:${load.plain === true ? target.plainPort : target.port}/`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], timeout: (seconds + 30) * 1000 },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise((resolve) => child.once('close', resolve));
  await new Promise((r) => setTimeout(r, 2000));
  const cpu0 = cpuSeconds(target.pid);
  await exited;
  const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const cpuUs = ((cpuSeconds(target.pid) - cpu0) * 1e6) / (rps * seconds);
  const m = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded/.exec(out);
  const failed = m === null ? NaN : Number(m[1]) - Number(m[2]);
  if (failed !== 0)
    console.log(
      `# ${out
        .split('\n')
        .filter((l) => /^(requests|status codes):/.test(l))
        .join('; ')}`,
    );
  return { rps, failed, cpuUs };
}

/** EdgeProxy's request path with its HTTPS port (the checkout in `root`, this one by default); its HTTPS port. */
async function edgeproxy(backend: number, root?: string): Promise<Target> {
  const [port, https] = [await freePort(), await freePort()];
  const args = ['--port', String(port), '--backend-port', String(backend), '--https-port', String(https)];
  const files = ['--cert', join(tmp, 'cert.pem'), '--key', join(tmp, 'key.pem')];
  const node = ['--max-semi-space-size=32', '--import', 'tsx', 'bench/targets/edgeproxy.ts'];
  const child = await start(process.execPath, [...node, ...args, ...files], https, root);
  return { port: https, plainPort: port, pid: child.pid };
}

try {
  const backend = await freePort();
  await nginx(
    'backend',
    backend,
    ` server { listen 127.0.0.1:${backend}; location / { default_type text/plain; return 200 "hello world\\n"; } }`,
  );
  const [nginxPort, nginxPlain] = [await freePort(), await freePort()];
  await nginx(
    'proxy',
    nginxPort,
    ` upstream backend { server 127.0.0.1:${backend}; keepalive 128; }\n` +
      ` server { listen 127.0.0.1:${nginxPlain}; listen 127.0.0.1:${nginxPort} ssl http2; ssl_certificate ${tmp}/cert.pem; ssl_certificate_key ${tmp}/key.pem; ssl_protocols TLSv1.3;\n` +
      `  location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; } }`,
  );
  const targets: Record<string, Target> = {
    nginx: { port: nginxPort, plainPort: nginxPlain, pid: undefined },
    edgeproxy: await edgeproxy(backend),
  };
  if (values.baseline !== undefined) targets['edgeproxy-base'] = await edgeproxy(backend, resolve(values.baseline));
  const loads: Load[] = [
    { name: 'plain h1', args: ['--h1'], plain: true },
    { name: 'h1', args: ['--h1'] },
    { name: 'h2', args: ['-m', '1'] },
    { name: `h2 ×${values.streams}`, args: ['-m', values.streams!] },
  ];
  console.log(
    `# https-protocols: ${cpus().length} CPUs (${cpus()[0]?.model}), Node ${process.version}, load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}; h2load -c${values.connections} -D${values.duration}; rounds ${values.rounds}`,
  );
  const results = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  for (let round = 0; round < Number(values.rounds); round++) {
    const names = Object.keys(targets);
    if (round % 2 === 1) names.reverse();
    for (const load of loads) {
      for (const name of names) {
        await h2load(targets[name]!, load, 2); // warm-up of this pair
        const r = await h2load(targets[name]!, load, Number(values.duration));
        if (r.failed !== 0) console.log(`# ${name} ${load.name}: ${r.failed} failed requests`);
        const key = `${load.name}|${name}`;
        results.set(key, [...(results.get(key) ?? []), r.rps]);
        cpu.set(key, [...(cpu.get(key) ?? []), r.cpuUs]);
      }
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log('| load | target | req/s (median) | rounds | ÷ nginx | CPU µs/req (median) |\n|---|---|---|---|---|---|');
  for (const load of loads) {
    const base = median(results.get(`${load.name}|nginx`)!);
    for (const name of Object.keys(targets)) {
      const xs = results.get(`${load.name}|${name}`)!;
      const m = median(xs);
      console.log(
        `| ${load.name} | ${name} | ${Math.round(m).toLocaleString('en')} | ${xs.map((x) => Math.round(x)).join(', ')} | ${(m / base).toFixed(2)}× | ${name === 'nginx' ? '—' : Math.round(median(cpu.get(`${load.name}|${name}`)!))} |`,
      );
    }
  }
} finally {
  for (const c of children) c.kill('SIGTERM');
  rmSync(tmp, { recursive: true, force: true });
}
