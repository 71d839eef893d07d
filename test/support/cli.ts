/**
 * The CLI as a real process: `node --import tsx src/cli/bin.ts ...` from the project root, with an
 * environment holding only PATH and HOME plus what each test sets.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// Generous: doctor's tests run nine CLI processes at once, and each takes about 2 s of CPU on its own.
const RUN_TIMEOUT_MS = 60_000;

export interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

function baseEnv(env: Readonly<Record<string, string>>): Record<string, string> {
  // No HTTPS listener unless a test asks: its default port (:8443) would be shared by every test.
  // No ACME directory unless a test names its test CA: the default is Let's Encrypt (doctor would ask it).
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    EDGEPROXY_HTTPS_ADDR: 'off',
    EDGEPROXY_ACME_DIRECTORY_URL: 'off',
    ...env,
  };
}

/** Runs `edgeproxy <args>` to completion (killed after 60 s). */
export function runCli(args: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/bin.ts', ...args], {
      cwd: ROOT,
      env: baseEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: RUN_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export function describeRun(r: Run): string {
  return `exit ${r.code} signal ${r.signal}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

export interface LongRun {
  readonly child: ChildProcess;
  /** stdout lines parsed as JSON (log lines); other lines are kept as { text }. */
  readonly lines: Record<string, unknown>[];
  /** Everything written so far, both streams. */
  output(): string;
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts a long-running command (`serve`, the demo script...) and follows its stdout line by line.
 * `nodeArgs` replace `--import tsx`, e.g. to run the built bin with the flags its shebang gives;
 * `launcher` runs node through another command that execs it (`prlimit --nofile=400 --`).
 */
export function spawnLong(
  command: readonly string[],
  env: Readonly<Record<string, string>> = {},
  opts: { ownProcessGroup?: boolean; nodeArgs?: readonly string[]; launcher?: readonly string[] } = {},
): LongRun {
  // ownProcessGroup: signal the whole group with process.kill(-pid, sig), as Ctrl-C in a terminal does.
  const argv = [...(opts.launcher ?? []), process.execPath, ...(opts.nodeArgs ?? ['--import', 'tsx']), ...command];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    env: baseEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.ownProcessGroup ?? false,
  });
  const lines: Record<string, unknown>[] = [];
  let all = '';
  let buf = '';
  const waiters = new Set<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    all += chunk;
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        line = { text };
      }
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.delete(w);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (all += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    lines,
    output: () => all,
    exited,
    waitFor(pred, timeoutMs = 15_000) {
      const found = lines.find(pred);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`line not seen within ${timeoutMs} ms; output so far:\n${all.slice(-3000)}`));
        }, timeoutMs);
        const waiter = {
          pred,
          resolve: (l: Record<string, unknown>) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        waiters.add(waiter);
      });
    },
  };
}
