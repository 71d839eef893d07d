/**
 * `npm run demo`: EdgeProxy end to end on one machine, nothing to install beyond `npm install`.
 *
 * Starts a throwaway PostgreSQL with logical WAL (the tests' helper, test/support/postgres.ts),
 * applies migrations/ (`edgeproxy migrate`'s code), creates the publication, seeds two regions
 * with a few domains and VMs, starts small demo VM servers and a stand-in for the other region's
 * load balancer, runs the proxy in this process, and prints curl commands to try. A small
 * "control plane" endpoint runs SQL against the demo database, so a route can be changed and seen
 * taking effect without psql. Ctrl-C stops everything; the database folder is removed.
 *
 * Addresses (defaults): proxy EDGEPROXY_HTTP_ADDR=127.0.0.1:8080, admin EDGEPROXY_ADMIN_ADDR=
 * 127.0.0.1:9090, control EDGEPROXY_DEMO_CONTROL_ADDR=127.0.0.1:8081 (port 0 picks a free one).
 * Other EDGEPROXY_* variables apply as for `edgeproxy serve` (e.g. EDGEPROXY_SYNC_MODE=poll).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { startService, type RunningService } from '../src/cli/serve.js';
import { ConfigError, parseListenAddress, resolveConfig } from '../src/config/config.js';
import { isFailure } from '../src/errors.js';
import { migrate } from '../src/db/migrate.js';
import { createPublicationSql } from '../src/db/publication.js';
import { createLogger } from '../src/log/logger.js';
import { startPostgres, type PgServer } from '../test/support/postgres.js';

const LOCAL_REGION = '11111111-1111-4111-8111-111111111111';
const REMOTE_REGION = '22222222-2222-4222-8222-222222222222';

interface DemoVm {
  readonly name: string;
  readonly id: string;
  readonly region: string;
  readonly ip: string;
  port: number;
  /** Health probes get 500 (a VM that is up but failing). */
  readonly sick?: boolean;
}

const VMS: DemoVm[] = [
  { name: 'vm-1', id: 'a0000000-0000-4000-8000-000000000001', region: LOCAL_REGION, ip: '127.0.0.1', port: 0 },
  { name: 'vm-2', id: 'a0000000-0000-4000-8000-000000000002', region: LOCAL_REGION, ip: '127.0.0.1', port: 0 },
  { name: 'vm-sick', id: 'a0000000-0000-4000-8000-000000000003', region: LOCAL_REGION, ip: '127.0.0.1', port: 0, sick: true },
  // In the other region: never contacted directly, the remote load balancer is.
  { name: 'vm-remote', id: 'a0000000-0000-4000-8000-000000000004', region: REMOTE_REGION, ip: '10.20.0.5', port: 8080 },
];

/** domain → VM */
const DOMAINS: [string, string][] = [
  ['shop.demo.test', 'vm-1'],
  ['blog.demo.test', 'vm-2'],
  ['status.demo.test', 'vm-sick'],
  ['api.demo.test', 'vm-remote'],
];

function say(text = ''): void {
  process.stdout.write(`${text}\n`);
}

type Address = { host: string; port: number };

function listenAddress(env: string, fallback: string): Address {
  const raw = process.env[env] || fallback;
  const a = parseListenAddress(raw);
  if (isFailure(a)) throw new ConfigError('CONFIG_INVALID', `${env}: ${JSON.stringify(raw)} ${a.message}`);
  return { host: a.host ?? '127.0.0.1', port: a.port };
}

function listen(server: http.Server, addr: Address, what: string, env: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `${what}: ${addr.host}:${addr.port} is taken; set ${env} to another address (e.g. 127.0.0.1:0)`
            : `${what}: ${err.message}`,
        ),
      ),
    );
    server.listen(addr.port, addr.host, () => resolve((server.address() as AddressInfo).port));
  });
}

/** A demo VM: says who it is; `/` answers health probes (500 when sick). */
function vmServer(vm: DemoVm): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    const probe = String(req.headers['user-agent'] ?? '').startsWith('edgeproxy-health');
    if (probe) {
      res.writeHead(vm.sick ? 500 : 200, { 'content-type': 'text/plain' });
      res.end(vm.sick ? 'unhealthy' : 'ok');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(
      `Hello from ${vm.name} (region local) — Host ${req.headers.host}, path ${req.url}, X-Forwarded-For ${req.headers['x-forwarded-for'] ?? '-'}\n`,
    );
  });
}

/** Stands in for the other region's load balancer (its own EdgeProxy). */
function remoteLbServer(): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`Hello from the remote region's load balancer — it would route Host ${req.headers.host} to its VM (path ${req.url})\n`);
  });
}

/** The demo's "control plane": POST /sql runs the body against the demo database (loopback only). */
function controlServer(db: pg.Pool): http.Server {
  return http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/sql') {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('POST /sql with an SQL statement as the body\n');
        return;
      }
      const sql = Buffer.concat(chunks).toString('utf8');
      db.query(sql).then(
        (r) => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(`${r.command} ${r.rowCount ?? 0}\n`);
        },
        (err: Error) => {
          res.writeHead(400, { 'content-type': 'text/plain' });
          res.end(`error: ${err.message}\n`);
        },
      );
    });
  });
}

async function seed(db: pg.Pool, lbIp: string): Promise<void> {
  await db.query(`INSERT INTO regions (id, name, code, public_ipv4) VALUES ($1, 'local', 'loc', '192.0.2.1'), ($2, 'remote', 'rem', $3)`, [
    LOCAL_REGION,
    REMOTE_REGION,
    lbIp,
  ]);
  for (const vm of VMS) {
    await db.query(`INSERT INTO vms (id, region_id, status, private_ip, port, metadata) VALUES ($1, $2, 'running', $3, $4, $5)`, [
      vm.id,
      vm.region,
      vm.ip,
      vm.port,
      { name: vm.name },
    ]);
  }
  let n = 0;
  for (const [domain, vmName] of DOMAINS) {
    n += 1;
    const vm = VMS.find((v) => v.name === vmName)!;
    const dep = `d0000000-0000-4000-8000-00000000000${n}`;
    await db.query(`INSERT INTO deployments (id, status, vm_id) VALUES ($1, 'ready', $2)`, [dep, vm.id]);
    await db.query(`INSERT INTO domains (id, name, deployment_id, verified_at) VALUES ($1, $2, $3, now())`, [
      `e0000000-0000-4000-8000-00000000000${n}`,
      domain,
      dep,
    ]);
  }
}

/** What the demo has started, in the order it stops them. */
interface Running {
  servers: http.Server[];
  postgres?: PgServer;
  pool?: pg.Pool;
  service?: RunningService;
}

function stopper(running: Running): (why: string) => Promise<void> {
  let stopping = false;
  return async (why) => {
    if (stopping) return;
    stopping = true;
    say(`\n${why}: stopping the proxy, the demo servers and PostgreSQL...`);
    await running.service?.stop(why).catch(() => undefined);
    for (const s of running.servers) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    await running.pool?.end().catch(() => undefined);
    await running.postgres?.stop();
    say('stopped; nothing left running.');
  };
}

/** PostgreSQL with both migration sets and the publication; returns the migrations applied. */
async function startDatabase(running: Running): Promise<{ databaseUrl: string; applied: string[] }> {
  say('Starting a throwaway PostgreSQL with wal_level=logical...');
  running.postgres = await startPostgres();
  const databaseUrl = running.postgres.url('postgres');
  const applied = [
    ...(await migrate({ databaseUrl, set: 'control-plane' })).applied,
    ...(await migrate({ databaseUrl, set: 'edgeproxy' })).applied,
  ];
  running.pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  // Ctrl-C in a terminal reaches PostgreSQL too (same process group): it closes our idle connections.
  running.pool.on('error', () => undefined);
  await running.pool.query(createPublicationSql('edgeproxy'));
  return { databaseUrl, applied };
}

/** The local VMs, the remote region's load balancer and the control endpoint; the rows seeded to match. */
async function startBackends(running: Running, pool: pg.Pool, controlAddr: Address): Promise<{ lbPort: number; controlPort: number }> {
  for (const vm of VMS.filter((v) => v.region === LOCAL_REGION)) {
    const s = vmServer(vm);
    running.servers.push(s);
    vm.port = await listen(s, { host: vm.ip, port: 0 }, vm.name, '');
  }
  const lb = remoteLbServer();
  running.servers.push(lb);
  const lbPort = await listen(lb, { host: '127.0.0.1', port: 0 }, 'remote load balancer', '');
  await seed(pool, '127.0.0.1');
  const control = controlServer(pool);
  running.servers.push(control);
  const controlPort = await listen(control, controlAddr, 'demo control endpoint', 'EDGEPROXY_DEMO_CONTROL_ADDR');
  return { lbPort, controlPort };
}

/** The proxy: `edgeproxy serve`'s own wiring, configured like any deployment (env vars apply). */
async function startProxy(databaseUrl: string, httpAddr: Address, adminAddr: Address, lbPort: number): Promise<RunningService> {
  const config = resolveConfig(
    {
      'database-url': databaseUrl,
      'region-id': LOCAL_REGION,
      'http-addr': `${httpAddr.host}:${httpAddr.port}`,
      'admin-addr': `${adminAddr.host}:${adminAddr.port}`,
      'cross-region-port': String(lbPort),
    },
    // No HTTPS listener: the demo has no certificates to serve (set EDGEPROXY_HTTPS_ADDR to try one).
    { EDGEPROXY_UPDATE_INTERVAL: '2s', EDGEPROXY_HTTPS_ADDR: 'off', ...process.env },
  );
  try {
    return await startService(config, createLogger(config.logLevel));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(
      e.code === 'EADDRINUSE'
        ? `${e.message}: set EDGEPROXY_HTTP_ADDR / EDGEPROXY_ADMIN_ADDR to free addresses (port 0 picks one)`
        : e.message,
      { cause: err },
    );
  }
}

function instructions(o: {
  postgres: PgServer;
  databaseUrl: string;
  applied: string[];
  proxy: string;
  admin: string;
  ctl: string;
  adminAddr: string;
}): string {
  const { proxy, ctl } = o;
  const cli = 'npx tsx src/cli/bin.ts';
  const move = `UPDATE deployments SET vm_id = (SELECT id FROM vms WHERE metadata->>'name' = 'vm-2') WHERE id = (SELECT deployment_id FROM domains WHERE name = 'shop.demo.test')`;
  const addDomain = `INSERT INTO domains (id, name, deployment_id, verified_at) SELECT gen_random_uuid(), 'new.demo.test', deployment_id, now() FROM domains WHERE name = 'blog.demo.test'`;
  return `
EdgeProxy demo is running.
  PostgreSQL ${o.postgres.majorVersion} at ${o.databaseUrl} (migrations applied: ${o.applied.join(', ') || 'none'}; data in ${o.postgres.dataDir ?? 'an external server'})
  proxy ${proxy}   admin API ${o.admin}   demo control ${ctl}
  regions: local ${LOCAL_REGION} (this proxy), remote ${REMOTE_REGION}

Try, in another terminal:
  curl -H 'Host: shop.demo.test' ${proxy}/          # same region: vm-1, after a health check
  curl -H 'Host: blog.demo.test' ${proxy}/          # same region: vm-2
  curl -H 'Host: api.demo.test' ${proxy}/           # other region: through its load balancer
  curl -H 'Host: status.demo.test' ${proxy}/        # its VM fails health checks: 503
  curl -H 'Host: nope.demo.test' ${proxy}/          # no route: 404

Change a route in the database and watch it take effect (shop.demo.test moves to vm-2):
  curl -X POST ${ctl}/sql --data "${move}"
  curl -H 'Host: shop.demo.test' ${proxy}/
Add a domain:
  curl -X POST ${ctl}/sql --data "${addDomain}"
  curl -H 'Host: new.demo.test' ${proxy}/

Operator commands (\`npx edgeproxy\` once built with \`npm run build\`; from source:)
  ${cli} routes --admin-addr ${o.adminAddr}
  ${cli} routes shop.demo.test --admin-addr ${o.adminAddr}
  ${cli} resync -v --admin-addr ${o.adminAddr}
  ${cli} doctor --database-url ${o.databaseUrl}
  curl ${o.admin}/metrics

Ctrl-C stops everything. The proxy's JSON logs follow.
`;
}

async function main(): Promise<void> {
  const running: Running = { servers: [] };
  const stopAll = stopper(running);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      void stopAll(signal).then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
  try {
    const httpAddr = listenAddress('EDGEPROXY_HTTP_ADDR', '127.0.0.1:8080');
    const adminAddr = listenAddress('EDGEPROXY_ADMIN_ADDR', '127.0.0.1:9090');
    const controlAddr = listenAddress('EDGEPROXY_DEMO_CONTROL_ADDR', '127.0.0.1:8081');
    const { databaseUrl, applied } = await startDatabase(running);
    const { lbPort, controlPort } = await startBackends(running, running.pool!, controlAddr);
    const service = (running.service = await startProxy(databaseUrl, httpAddr, adminAddr, lbPort));
    say(
      instructions({
        postgres: running.postgres!,
        databaseUrl,
        applied,
        proxy: `http://${httpAddr.host}:${service.port}`,
        admin: `http://${adminAddr.host}:${service.adminPort}`,
        ctl: `http://${controlAddr.host}:${controlPort}`,
        adminAddr: `${adminAddr.host}:${service.adminPort}`,
      }),
    );
  } catch (err) {
    process.stderr.write(`demo: ${err instanceof Error ? err.message : String(err)}\n`);
    await stopAll('startup failed');
    process.exit(1);
  }
}

await main();
