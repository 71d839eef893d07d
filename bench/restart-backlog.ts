// What closing one of two SO_REUSEPORT listeners does to the connections in its accept queue,
// under a stream of new connections: the kernel (net.ipv4.tcp_migrate_req = 0, the default)
// resets them; with tcp_migrate_req = 1 (Linux 5.14+) it hands them to the other listener.
// Two child processes listen on one port with reusePort, each answering every request after
// `--busy-ms` of synchronous work (an event loop as busy as a loaded proxy's, so connections
// wait in the queue); the parent keeps `--concurrency` loops of one-request connections going,
// closes the first child's listener as EdgeProxy's drain does (the connections it has accepted
// are still answered), and counts what failed. `--rounds` times.
//
//   node --import tsx bench/restart-backlog.ts [--rounds 5] [--concurrency 64] [--busy-ms 2]
//   unshare -n sh -c 'ip link set lo up; sysctl -qw net.ipv4.tcp_migrate_req=1; node --import tsx bench/restart-backlog.ts'
//
// (a network namespace of its own, so the sysctl changes nothing outside it).
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'parent' },
    port: { type: 'string', default: '0' },
    rounds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '64' },
    'busy-ms': { type: 'string', default: '2' },
  },
});

/** A child: listens with reusePort, answers after busy work, closes its listener on 'close'. */
async function child(port: number, busyMs: number): Promise<void> {
  const server = http.createServer((_req, res) => {
    const until = performance.now() + busyMs;
    while (performance.now() < until);
    res.setHeader('connection', 'close');
    res.end(String(process.pid));
  });
  server.listen({ host: '127.0.0.1', port, reusePort: true });
  await once(server, 'listening');
  process.send!({ port: (server.address() as { port: number }).port });
  process.on('message', (m) => {
    if (m === 'close') {
      // As ProxyServer's drain: the listening socket goes, accepted connections are still served.
      (Object.getPrototypeOf(http.Server.prototype) as { close: (this: http.Server) => void }).close.call(server);
      process.send!('closed');
    }
  });
}

function start(port: number, busyMs: number): Promise<{ child: ChildProcess; port: number }> {
  const c = fork(new URL(import.meta.url).pathname, ['--role', 'child', '--port', String(port), '--busy-ms', String(busyMs)], {
    execArgv: ['--import', 'tsx'],
  });
  return new Promise((resolve) => c.once('message', (m: { port: number }) => resolve({ child: c, port: m.port })));
}

/** One request on a new connection: '200' or the error. */
function get(port: number, agent: http.Agent): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, agent, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode)));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

async function round(concurrency: number, busyMs: number): Promise<{ ok: number; failed: Record<string, number> }> {
  const a = await start(0, busyMs);
  const b = await start(a.port, busyMs);
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  let ok = 0;
  const failed: Record<string, number> = {};
  let stop = false;
  const loops = Array.from({ length: concurrency }, async () => {
    while (!stop) {
      const r = await get(a.port, agent);
      if (r === '200') ok += 1;
      else failed[r] = (failed[r] ?? 0) + 1;
    }
  });
  await new Promise((r) => setTimeout(r, 1000));
  a.child.send('close');
  await once(a.child, 'message');
  await new Promise((r) => setTimeout(r, 1000));
  stop = true;
  await Promise.all(loops);
  a.child.kill();
  b.child.kill();
  return { ok, failed };
}

async function main(): Promise<void> {
  const rounds = Number(values.rounds);
  const concurrency = Number(values.concurrency);
  const busyMs = Number(values['busy-ms']);
  const migrate = readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim();
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`tcp_migrate_req=${migrate}, ${rounds} rounds, ${concurrency} connection loops, ${busyMs} ms per request; load ${load}`);
  for (let i = 1; i <= rounds; i++) {
    const r = await round(concurrency, busyMs);
    const lost = Object.values(r.failed).reduce((x, y) => x + y, 0);
    console.log(`round ${i}: ${r.ok} answered, ${lost} failed ${JSON.stringify(r.failed)}`);
  }
}

if (values.role === 'child') await child(Number(values.port), Number(values['busy-ms']));
else await main();
