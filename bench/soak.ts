// Soak: `edgeproxy serve` (the built bin) streaming from a throwaway PostgreSQL, steady keep-alive
// load for N minutes, and a route change committed every 100 ms. Each minute: the proxy's RSS,
// heap used, open file descriptors, p50/p99 latency and req/s, and the changes committed and
// applied. Then the targets, each PASS or FAIL: RSS growth under 5 % from minute 2 to the last,
// no fd growth, p99 flat (the last minute's within 1.5x of minute 2's), no failed request.
//
//   npm run build && npm exec -- node --import tsx bench/soak.ts [--minutes 10] [--connections 16]
//     [--rate 0] [--change-every-ms 100] [--routes 1000]
//
// The load is autocannon (its own process), one 60 s run per minute: closed loop by default (each
// connection sends its next request when the last is answered), or --rate req/s overall, which
// autocannon sends in bursts at the start of each second (docs/decisions/0013). The proxy is
// sampled every 5 s while a run is under way. With fewer than 3 minutes, minute 1 is the reference. Each change is one transaction that
// inserts a VM, points the loaded host's deployment at it and deletes the previous VM, so the
// row store keeps inserting and deleting rows while the table size stays the same.
import { randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { request, startBackend } from '../test/support/backend.js';
import { percentiles } from '../test/support/latency.js';
import { createDatabase, startPostgres } from '../test/support/postgres.js';
import { procStats } from '../test/support/proc.js';
import { REGION_A } from '../test/support/service.js';
import { autocannon, type LoadFigures } from './support/autocannon.js';
import { serveBuiltBin } from './support/serve-bin.js';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string', default: '0' },
    connections: { type: 'string', default: '16' },
    'change-every-ms': { type: 'string', default: '100' },
    routes: { type: 'string', default: '1000' },
  },
});
const MINUTES = Number(args.minutes);
const RATE = Number(args.rate);
const CONNECTIONS = Number(args.connections);
const CHANGE_EVERY_MS = Number(args['change-every-ms']);
const ROUTES = Number(args.routes);
const HOST = 'soak.example';
const SAMPLE_EVERY_S = 5;
const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
const median = (xs: number[]) => percentiles(xs).p50;

interface Minute {
  readonly minute: number;
  readonly load: LoadFigures;
  readonly rssMiB: number;
  readonly rssMaxMiB: number;
  readonly heapMiB: number;
  /** V8's heap as reserved (total) and memory outside it (Buffers, native): where RSS growth would show. */
  readonly heapTotalMiB: number;
  readonly externalMiB: number;
  readonly fds: number;
  readonly fdsMax: number;
  readonly committed: number;
  readonly applied: number;
  readonly slowChanges: number;
}

/** Seeds ROUTES routes to `otherPort` and the loaded host to `port`; returns the loaded host's deployment and VM. */
async function seed(c: pg.Client, port: number, otherPort: number): Promise<{ deploymentId: string; vmId: string }> {
  await c.query(`INSERT INTO regions (id, name, code, public_ipv4) VALUES ($1, 'local', 'local', '127.0.0.1')`, [REGION_A]);
  await c.query(
    `INSERT INTO vms (id, region_id, status, private_ip, port) SELECT md5('vm' || g)::uuid, $1, 'running', '127.0.0.1', $2 FROM generate_series(1, $3) g`,
    [REGION_A, otherPort, ROUTES],
  );
  await c.query(
    `INSERT INTO deployments (id, status, vm_id) SELECT md5('dep' || g)::uuid, 'ready', md5('vm' || g)::uuid FROM generate_series(1, $1) g`,
    [ROUTES],
  );
  await c.query(
    `INSERT INTO domains (id, name, deployment_id, verified_at) SELECT md5('dom' || g)::uuid, 'site' || g || '.soak.example', md5('dep' || g)::uuid, now() FROM generate_series(1, $1) g`,
    [ROUTES],
  );
  const vmId = randomUUID();
  const deploymentId = randomUUID();
  await c.query(`INSERT INTO vms (id, region_id, status, private_ip, port) VALUES ($1, $2, 'running', '127.0.0.1', $3)`, [
    vmId,
    REGION_A,
    port,
  ]);
  await c.query(`INSERT INTO deployments (id, status, vm_id) VALUES ($1, 'ready', $2)`, [deploymentId, vmId]);
  await c.query(`INSERT INTO domains (id, name, deployment_id, verified_at) VALUES ($1, $2, $3, now())`, [
    randomUUID(),
    HOST,
    deploymentId,
  ]);
  return { deploymentId, vmId };
}

/** Every CHANGE_EVERY_MS: the loaded host moves to a new VM row (on the other backend). A change still running when the next is due is skipped and counted. */
function routeChanger(c: pg.Client, deploymentId: string, firstVm: string, ports: [number, number]) {
  let vmId = firstVm;
  let n = 0;
  let running = false;
  const counts = { committed: 0, slow: 0 };
  const change = async () => {
    const next = randomUUID();
    n += 1;
    await c.query('BEGIN');
    await c.query(`INSERT INTO vms (id, region_id, status, private_ip, port) VALUES ($1, $2, 'running', '127.0.0.1', $3)`, [
      next,
      REGION_A,
      ports[n % 2],
    ]);
    await c.query('UPDATE deployments SET vm_id = $1 WHERE id = $2', [next, deploymentId]);
    await c.query('DELETE FROM vms WHERE id = $1', [vmId]);
    await c.query('COMMIT');
    vmId = next;
    counts.committed += 1;
  };
  const timer = setInterval(() => {
    if (running) {
      counts.slow += 1;
      return;
    }
    running = true;
    change().then(
      () => (running = false),
      (err: unknown) => {
        console.error(`# route change failed: ${String(err)}`);
        process.exit(1);
      },
    );
  }, CHANGE_EVERY_MS);
  return {
    counts,
    /** The port the loaded host should reach now. */
    expectedPort: () => ports[n % 2],
    stop: async () => {
      clearInterval(timer);
      while (running) await new Promise((r) => setTimeout(r, 10));
    },
  };
}

type Changer = ReturnType<typeof routeChanger>;

/** One minute of load, the proxy sampled every SAMPLE_EVERY_S while it runs. */
async function soakMinute(minute: number, proxy: { port: number; adminPort: number; pid: number }, changer: Changer): Promise<Minute> {
  const { port, adminPort, pid } = proxy;
  const committed0 = changer.counts.committed;
  const slow0 = changer.counts.slow;
  const applied0 = await metric(adminPort, 'edgeproxy_stream_transactions_total');
  const run = autocannon({ url: `http://127.0.0.1:${port}/`, host: HOST, connections: CONNECTIONS, seconds: 60, rate: RATE });
  const samples = { rss: [] as number[], heap: [] as number[], heapTotal: [] as number[], external: [] as number[], fds: [] as number[] };
  let sampling = true;
  void run.finally(() => (sampling = false)).catch(() => undefined);
  for (let s = SAMPLE_EVERY_S; s < 60 && sampling; s += SAMPLE_EVERY_S) {
    await new Promise((r) => setTimeout(r, SAMPLE_EVERY_S * 1000));
    if (!sampling) break;
    const p = procStats(pid);
    samples.rss.push(p.rssBytes);
    samples.fds.push(p.fds);
    samples.heap.push(await metric(adminPort, 'edgeproxy_nodejs_heap_size_used_bytes'));
    samples.heapTotal.push(await metric(adminPort, 'edgeproxy_nodejs_heap_size_total_bytes'));
    samples.external.push(await metric(adminPort, 'edgeproxy_nodejs_external_memory_bytes'));
  }
  const load = await run;
  return {
    minute,
    load,
    rssMiB: mib(median(samples.rss)),
    rssMaxMiB: mib(Math.max(...samples.rss)),
    heapMiB: mib(median(samples.heap)),
    heapTotalMiB: mib(median(samples.heapTotal)),
    externalMiB: mib(median(samples.external)),
    fds: median(samples.fds),
    fdsMax: Math.max(...samples.fds),
    committed: changer.counts.committed - committed0,
    applied: (await metric(adminPort, 'edgeproxy_stream_transactions_total')) - applied0,
    slowChanges: changer.counts.slow - slow0,
  };
}

async function metric(adminPort: number, name: string): Promise<number> {
  const body = (await request(adminPort, { path: '/metrics' })).body;
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1]);
}

function report(minutes: Minute[]): boolean {
  console.log(
    '\n| minute | RSS MiB (max) | heap used / total MiB | external MiB | fds (max) | req/s | p50 ms | p99 ms | errors | changes committed / applied |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const m of minutes) {
    console.log(
      `| ${m.minute} | ${m.rssMiB} (${m.rssMaxMiB}) | ${m.heapMiB} / ${m.heapTotalMiB} | ${m.externalMiB} | ${m.fds} (${m.fdsMax}) | ${Math.round(m.load.rps)} | ${m.load.p50} | ${m.load.p99} | ` +
        `${m.load.errors + m.load.non2xx} | ${m.committed} / ${m.applied}${m.slowChanges > 0 ? ` (${m.slowChanges} skipped)` : ''} |`,
    );
  }
  const ref = minutes[minutes.length >= 3 ? 1 : 0]!;
  const last = minutes.at(-1)!;
  const growth = (last.rssMiB - ref.rssMiB) / ref.rssMiB;
  const targets: [string, boolean][] = [
    [`RSS growth minute ${ref.minute} -> ${last.minute}: ${(growth * 100).toFixed(1)} % (target < 5 %)`, growth < 0.05],
    [
      `fds minute ${ref.minute} -> ${last.minute}: ${ref.fds} -> ${last.fds} median (target: no growth, at most +5)`,
      last.fds <= ref.fds + 5,
    ],
    [
      `p99 minute ${ref.minute} -> ${last.minute}: ${ref.load.p99} -> ${last.load.p99} ms (target: within 1.5x)`,
      last.load.p99 <= 1.5 * ref.load.p99,
    ],
    [
      `failed requests: ${minutes.reduce((a, m) => a + m.load.errors + m.load.non2xx, 0)} (target 0)`,
      minutes.every((m) => m.load.errors + m.load.non2xx === 0),
    ],
    [
      `changes applied by the stream: ${minutes.reduce((a, m) => a + m.applied, 0)} of ${minutes.reduce((a, m) => a + m.committed, 0)} committed (target: all)`,
      minutes.reduce((a, m) => a + m.applied, 0) >= minutes.reduce((a, m) => a + m.committed, 0),
    ],
  ];
  console.log('');
  for (const [what, ok] of targets) console.log(`${ok ? 'PASS' : 'FAIL'}  ${what}`);
  return targets.every(([, ok]) => ok);
}

async function main(): Promise<boolean> {
  console.log(
    `# soak: ${MINUTES} min, ${RATE > 0 ? `${RATE} req/s` : 'closed loop'} over ${CONNECTIONS} keep-alive connections (autocannon), a route change every ${CHANGE_EVERY_MS} ms, ` +
      `${ROUTES + 1} routes; ${cpus().length} CPUs, Node ${process.version}, load ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
  );
  const server = await startPostgres();
  const db = await createDatabase(server);
  const vms = [await startBackend('vm-a'), await startBackend('vm-b')];
  const writer = new pg.Client({ connectionString: db.url });
  await writer.connect();
  const routed = await seed(writer, vms[0]!.port, vms[1]!.port);
  const proxy = serveBuiltBin({
    EDGEPROXY_DATABASE_URL: db.url,
    EDGEPROXY_REGION_ID: REGION_A,
    EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
    EDGEPROXY_ADMIN_ADDR: '127.0.0.1:0',
  });
  try {
    const port = (await proxy.waitFor((l) => l.msg === 'listening')).port as number;
    const adminPort = (await proxy.waitFor((l) => l.msg === 'admin API listening')).port as number;
    await proxy.waitFor((l) => l.msg === 'replication stream started', 30_000);
    const pid = proxy.child.pid!;
    const changer = routeChanger(writer, routed.deploymentId, routed.vmId, [vms[0]!.port, vms[1]!.port]);
    const minutes: Minute[] = [];
    for (let minute = 1; minute <= MINUTES; minute++) {
      const m = await soakMinute(minute, { port, adminPort, pid }, changer);
      minutes.push(m);
      console.log(JSON.stringify(m));
    }
    await changer.stop();
    const want = `vm-${changer.expectedPort() === vms[0]!.port ? 'a' : 'b'}`;
    const last = await request(port, { host: HOST });
    console.log(`# after the last change the host answers from ${last.body.split(' ')[0]} (expected ${want})`);
    const pass = report(minutes) && last.body.startsWith(want);
    console.log(
      `# load after: ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    return pass;
  } finally {
    proxy.child.kill('SIGTERM');
    await proxy.exited;
    await writer.end();
    for (const vm of vms) await vm.close();
    await db.drop();
    await server.stop();
  }
}

process.exitCode = (await main()) ? 0 : 1;
