/**
 * A real ACME CA for tests: Debian's Caddy (`acme_server`, smallstep inside) running in a network
 * namespace this test file makes. No mock of the CA anywhere.
 *
 * Topology (N picked per test process, so test files run in parallel):
 *
 *   root namespace                                   namespace ep-acme-N
 *   veth epaN-h: 10.N.0.1 (proxy A's HTTP :80)  <->  veth epaN-n: 10.N.0.2 (Caddy, :9443)
 *                10.N.0.3 (proxy B's HTTP :80)
 *
 * Caddy runs inside the namespace with `/etc/netns/ep-acme-N/hosts` mapping the test's names to
 * 10.N.0.1 or 10.N.0.3, so HTTP-01 validation of `http://<name>/.well-known/acme-challenge/<t>`
 * reaches the proxy (or a test peer) listening on port 80 of that address. The directory is an IP
 * site with Caddy's internal TLS, `https://10.N.0.2:9443/acme/local/directory`, so the proxy in
 * the root namespace reaches it without DNS; Caddy's root (`rootsFile`) is what the proxy trusts
 * for it (EDGEPROXY_ACME_CA_ROOTS). Traffic goes only to these addresses.
 *
 * Caddy 2.6.2's `acme_server` has no `lifetime` (`caddy run` refuses the JSON field, and the
 * Caddyfile ignores the subdirective), so short-lived certificates are asked for by the client in
 * the order's `notAfter` (RFC 8555 §7.4), which smallstep honours.
 *
 * Everything is removed by stop(), and by an exit hook if the test dies first.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';

export interface TestCaOptions {
  /** Host names the CA resolves, each to `hostAddress` (proxy A) unless mapped to `secondHostAddress`. */
  readonly names: readonly string[];
  /** Names that resolve to the second host-side address instead. */
  readonly namesOnSecond?: readonly string[];
  /** How long Caddy may take to create its CA and answer the directory (default 30 s). */
  readonly readyTimeoutMs?: number;
}

export interface TestCa {
  readonly namespace: string;
  /** Root-namespace address for proxy A's HTTP listener (port 80), where the names resolve. */
  readonly hostAddress: string;
  /** A second root-namespace address, for a second proxy. */
  readonly secondHostAddress: string;
  /** The CA's own address, inside the namespace. */
  readonly caAddress: string;
  readonly directoryUrl: string;
  /** PEM file of Caddy's root: trust it for the directory (EDGEPROXY_ACME_CA_ROOTS) and for issued certificates. */
  readonly rootsFile: string;
  readonly rootPem: string;
  /** Caddy's log lines so far (for failure messages). */
  logTail(): string;
  /** Stops Caddy (the CA is down) and keeps its storage, so start() brings back the same CA. */
  pause(): Promise<void>;
  start(): Promise<void>;
  /** Stops Caddy and removes the namespace, the hosts file and the temp folder. */
  stop(): Promise<void>;
}

const CA_PORT = 9443;
const live = new Set<{ cleanupSync(): void }>();
let hookInstalled = false;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on('exit', () => {
    for (const ca of live) ca.cleanupSync();
  });
}

/**
 * Claims a free N (1-250), starting from the pid: no 10.N.0.0/24 address on this machine, and the
 * namespace ep-acme-N made here (`ip netns add` fails when another test process made it first).
 */
function claimNetwork(): number {
  const addresses = execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' });
  for (let i = 0; i < 250; i++) {
    const n = ((process.pid + i) % 250) + 1;
    if (addresses.includes(` 10.${n}.0.`)) continue;
    try {
      ip('netns', 'add', `ep-acme-${n}`);
      return n;
    } catch {
      // taken: the next one
    }
  }
  throw new Error('test CA: no free 10.N.0.0/24 network for a namespace');
}

function caddyConfig(storage: string, caAddress: string): object {
  return {
    admin: { disabled: true },
    storage: { module: 'file_system', root: storage },
    apps: {
      http: {
        http_port: 18080,
        https_port: CA_PORT,
        servers: {
          ca: {
            listen: [`${caAddress}:${CA_PORT}`],
            automatic_https: { disable_redirects: true },
            routes: [{ match: [{ host: [caAddress] }], handle: [{ handler: 'acme_server' }] }],
          },
        },
      },
      pki: { certificate_authorities: { local: { name: 'EdgeProxy test CA', install_trust: false } } },
      tls: { automation: { policies: [{ subjects: [caAddress], issuers: [{ module: 'internal' }] }] } },
    },
  };
}

export async function startTestCa(opts: TestCaOptions): Promise<TestCa> {
  installExitHook();
  const n = claimNetwork();
  const namespace = `ep-acme-${n}`;
  const hostAddress = `10.${n}.0.1`;
  const secondHostAddress = `10.${n}.0.3`;
  const caAddress = `10.${n}.0.2`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeproxy-acme-ca-'));
  const hostsDir = `/etc/netns/${namespace}`;
  const hostLink = `epa${n}h`;
  let caddy: ChildProcess | undefined;
  let log = '';

  const handle = {
    cleanupSync() {
      if (caddy?.pid !== undefined && caddy.exitCode === null) {
        try {
          process.kill(caddy.pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      for (const args of [
        ['link', 'del', hostLink],
        ['netns', 'del', namespace],
      ]) {
        try {
          ip(...args);
        } catch {
          // not there (any more)
        }
      }
      fs.rmSync(hostsDir, { recursive: true, force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(handle);

  try {
    ip('-n', namespace, 'link', 'set', 'lo', 'up');
    ip('link', 'add', hostLink, 'type', 'veth', 'peer', 'name', `epa${n}n`, 'netns', namespace);
    ip('addr', 'add', `${hostAddress}/24`, 'dev', hostLink);
    ip('addr', 'add', `${secondHostAddress}/24`, 'dev', hostLink);
    ip('link', 'set', hostLink, 'up');
    ip('-n', namespace, 'addr', 'add', `${caAddress}/24`, 'dev', `epa${n}n`);
    ip('-n', namespace, 'link', 'set', `epa${n}n`, 'up');
    fs.mkdirSync(hostsDir, { recursive: true });
    const lines = ['127.0.0.1 localhost', ...opts.names.map((name) => `${hostAddress} ${name}`)];
    for (const name of opts.namesOnSecond ?? []) lines.push(`${secondHostAddress} ${name}`);
    fs.writeFileSync(path.join(hostsDir, 'hosts'), `${lines.join('\n')}\n`);
  } catch (err) {
    handle.cleanupSync();
    live.delete(handle);
    throw new Error(
      `test CA: cannot make network namespace ${namespace} (needs root): ${String((err as { stderr?: Buffer }).stderr ?? err)}`,
      { cause: err },
    );
  }

  const configFile = path.join(dir, 'caddy.json');
  fs.writeFileSync(configFile, JSON.stringify(caddyConfig(path.join(dir, 'storage'), caAddress)));
  const rootsFile = path.join(dir, 'storage', 'pki', 'authorities', 'local', 'root.crt');
  const directoryUrl = `https://${caAddress}:${CA_PORT}/acme/local/directory`;

  const start = async (): Promise<void> => {
    const child = spawn('ip', ['netns', 'exec', namespace, 'caddy', 'run', '--config', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
    });
    caddy = child;
    const append = (c: Buffer) => {
      log = (log + c.toString()).slice(-16_384);
    };
    child.stdout.on('data', append);
    child.stderr.on('data', append);
    await waitForDirectory(directoryUrl, rootsFile, child, opts.readyTimeoutMs ?? 30_000, () => log);
  };

  const pause = async (): Promise<void> => {
    const child = caddy;
    caddy = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  try {
    await start();
  } catch (err) {
    await pause();
    handle.cleanupSync();
    live.delete(handle);
    throw err;
  }
  const rootPem = fs.readFileSync(rootsFile, 'utf8');
  return {
    namespace,
    hostAddress,
    secondHostAddress,
    caAddress,
    directoryUrl,
    rootsFile,
    rootPem,
    logTail: () => log,
    pause,
    start,
    async stop() {
      await pause();
      handle.cleanupSync();
      live.delete(handle);
    },
  };
}

/** Polls the directory (trusting the root once Caddy has written it) until it answers 200. */
async function waitForDirectory(url: string, rootsFile: string, child: ChildProcess, timeoutMs: number, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`test CA: caddy exited early:\n${log()}`);
    if (fs.existsSync(rootsFile)) {
      const status = await getStatus(url, fs.readFileSync(rootsFile, 'utf8'));
      if (status === 200) return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`test CA: the directory did not answer within ${timeoutMs} ms:\n${log()}`);
}

function getStatus(url: string, ca: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = https.get(url, { ca, agent: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}
