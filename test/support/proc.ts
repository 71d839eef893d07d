/**
 * What a process holds, read from Linux's /proc: resident memory, open file descriptors, and the
 * open-files limit (RLIMIT_NOFILE), which a test that opens thousands of sockets raises for itself
 * (its child processes inherit it).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStats {
  readonly rssBytes: number;
  readonly fds: number;
}

export function procStats(pid: number): ProcStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  return { rssBytes: rssKb * 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

/** The soft and hard open-files limits of `pid`. */
export function openFilesLimit(pid: number | 'self' = 'self'): { soft: number; hard: number } {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const [soft, hard] = (line ?? '')
    .split(/\s+/)
    .slice(3, 5)
    .map((v) => (v === 'unlimited' ? Infinity : Number(v)));
  return { soft: soft ?? NaN, hard: hard ?? NaN };
}

/**
 * Raises this process's open-files limit to at least `want` with prlimit(1) (above the hard limit
 * only as root); returns the limit in force afterwards, which the caller checks is enough.
 */
export function raiseOpenFilesLimit(want: number): { soft: number; hard: number; raisedBy: string } {
  const before = openFilesLimit();
  if (before.soft >= want) return { ...before, raisedBy: 'already high enough' };
  const hard = Math.max(before.hard, want);
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}:${hard}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return { ...openFilesLimit(), raisedBy: `prlimit (was ${before.soft}:${before.hard})` };
  } catch (err) {
    return { ...openFilesLimit(), raisedBy: `prlimit failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}` };
  }
}
