/**
 * The processes a speed bench starts (servers under load, each its own process): free ports,
 * starting one and waiting until it is ready, the CPU time it used (from /proc), and stopping them all.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

const children: ChildProcess[] = [];

export const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export interface Started {
  readonly child: ChildProcess;
  readonly lines: string[];
  readonly pid: number | undefined;
}

/** Starts a process and waits for its `{"ready":true}` line (or for the port to accept, for nginx). */
export async function start(cmd: string, args: string[], readyLine: boolean, port: number): Promise<Started> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const lines: string[] = [];
  let buf = '';
  child.stdout!.on('data', (c: Buffer) => {
    buf += c.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (readyLine && lines.some((l) => l.includes('"ready":true'))) break;
    if (!readyLine && (await accepts(port))) break;
    if (child.exitCode !== null) throw new Error(`${cmd} ${args.join(' ')} exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`${cmd} not ready in 60 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, lines, pid: child.pid };
}

/** SIGTERM to every process started here, SIGKILL to those still running 300 ms later. */
export async function stopAll(): Promise<void> {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
}

/** utime + stime (ms) of a process and its child processes (nginx: master + worker). */
export function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const tick = 10; // USER_HZ = 100 on Linux
  const one = (p: number | string): number => {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return (Number(rest[11]) + Number(rest[12])) * tick;
    } catch {
      return 0;
    }
  };
  let total = one(pid);
  try {
    for (const c of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)) if (c !== '') total += one(c);
  } catch {
    // no children file: the process alone
  }
  return total;
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
