// Keep-alive HTTPS speed by protocol: HTTP/1.1 and HTTP/2 over TLS, EdgeProxy and nginx, one run.
//
//   npm exec -- node --import tsx bench/https-protocols.ts [--rounds 2] [--duration 10] [--connections 64] [--streams 10] [--baseline DIR]
//
// Needs nginx and h2load (nghttp2-client). Processes: an nginx backend (1 worker, `return 200`,
// 12-byte body), nginx as a TLS reverse proxy to it (1 worker, `listen … ssl http2`, upstream
// keepalive), EdgeProxy's request path with its HTTPS port (bench/targets/edgeproxy.ts, 100,000
// routes, health cache on). Both serve the same self-signed ECDSA P-256 certificate; TLS 1.3.
// Load: h2load, `--connections` keep-alive connections for `--duration` s after a 2 s warm-up:
// `h1` (h2load --h1), `h2` one stream at a time per connection (the same concurrency as h1), and
// `h2 ×m` with `--streams` concurrent streams per connection. Targets and loads alternate per round;
// the report gives the median req/s of the rounds and the ratio to nginx in the same load.
// --baseline DIR adds `edgeproxy-base`: DIR's bench/targets/edgeproxy.ts (another checkout with its
// node_modules, e.g. /work/main), so a change is measured before and after in the same run.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

async function start(cmd: string, args: string[], port: number, cwd?: string): Promise<void> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], cwd });
  children.push(child);
  const deadline = Date.now() + 60_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null) throw new Error(`${cmd} exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`${cmd} not ready in 60 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
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

interface Load {
  readonly name: string;
  readonly args: string[];
}

function h2load(port: number, load: Load, seconds: number): { rps: number; failed: number } {
  const r = spawnSync(
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
      `127.0.0.1:${port}`,
      `https://bench.example:${port}/`,
    ],
    { encoding: 'utf8', timeout: (seconds + 30) * 1000 },
  );
  const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(r.stdout)?.[1] ?? NaN);
  const m = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded/.exec(r.stdout);
  const failed = m === null ? NaN : Number(m[1]) - Number(m[2]);
  if (failed !== 0)
    console.log(
      `# ${r.stdout
        .split('\n')
        .filter((l) => /^(requests|status codes):/.test(l))
        .join('; ')}`,
    );
  return { rps, failed };
}

/** EdgeProxy's request path with its HTTPS port (the checkout in `root`, this one by default); its HTTPS port. */
async function edgeproxy(backend: number, root?: string): Promise<number> {
  const [port, https] = [await freePort(), await freePort()];
  const args = ['--port', String(port), '--backend-port', String(backend), '--https-port', String(https)];
  const files = ['--cert', join(tmp, 'cert.pem'), '--key', join(tmp, 'key.pem')];
  await start(
    process.execPath,
    ['--max-semi-space-size=32', '--import', 'tsx', 'bench/targets/edgeproxy.ts', ...args, ...files],
    https,
    root,
  );
  return https;
}

try {
  const backend = await freePort();
  await nginx(
    'backend',
    backend,
    ` server { listen 127.0.0.1:${backend}; location / { default_type text/plain; return 200 "hello world\\n"; } }`,
  );
  const nginxPort = await freePort();
  await nginx(
    'proxy',
    nginxPort,
    ` upstream backend { server 127.0.0.1:${backend}; keepalive 128; }\n` +
      ` server { listen 127.0.0.1:${nginxPort} ssl http2; ssl_certificate ${tmp}/cert.pem; ssl_certificate_key ${tmp}/key.pem; ssl_protocols TLSv1.3;\n` +
      `  location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; } }`,
  );
  const targets: Record<string, number> = { nginx: nginxPort, edgeproxy: await edgeproxy(backend) };
  if (values.baseline !== undefined) targets['edgeproxy-base'] = await edgeproxy(backend, resolve(values.baseline));
  const loads: Load[] = [
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
  for (let round = 0; round < Number(values.rounds); round++) {
    const names = Object.keys(targets);
    if (round % 2 === 1) names.reverse();
    for (const load of loads) {
      for (const name of names) {
        h2load(targets[name]!, load, 2); // warm-up of this pair
        const r = h2load(targets[name]!, load, Number(values.duration));
        if (r.failed !== 0) console.log(`# ${name} ${load.name}: ${r.failed} failed requests`);
        const key = `${load.name}|${name}`;
        results.set(key, [...(results.get(key) ?? []), r.rps]);
      }
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log('| load | target | req/s (median) | rounds | ÷ nginx |\n|---|---|---|---|---|');
  for (const load of loads) {
    const base = median(results.get(`${load.name}|nginx`)!);
    for (const name of Object.keys(targets)) {
      const xs = results.get(`${load.name}|${name}`)!;
      const m = median(xs);
      console.log(
        `| ${load.name} | ${name} | ${Math.round(m).toLocaleString('en')} | ${xs.map((x) => Math.round(x)).join(', ')} | ${(m / base).toFixed(2)}× |`,
      );
    }
  }
} finally {
  for (const c of children) c.kill('SIGTERM');
  rmSync(tmp, { recursive: true, force: true });
}
