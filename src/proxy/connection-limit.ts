/**
 * How many client connections the public listener accepts at once. At the process's open-files
 * limit, libuv accepts and closes new connections silently (its EMFILE trick), and upstream,
 * health-probe and database connections fail with EMFILE (502s, VMs marked unhealthy). Refusing
 * client connections a reserve below that limit keeps descriptors for the other side, and each
 * refusal can be counted and logged (ProxyServer, `drop`).
 */
import { readFileSync } from 'node:fs';

/** Descriptors kept for upstream, probe, database and admin connections: a quarter of the limit, at least 256. */
export function clientConnectionLimit(openFilesLimit: number | undefined): number | undefined {
  if (openFilesLimit === undefined || !Number.isFinite(openFilesLimit)) return undefined;
  return Math.max(1, openFilesLimit - Math.max(256, Math.floor(openFilesLimit / 4)));
}

/** This process's soft RLIMIT_NOFILE (Linux, /proc/self/limits); undefined where it cannot be read. */
export function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = Number(line?.split(/\s+/)[3]);
    return Number.isInteger(soft) && soft > 0 ? soft : undefined;
  } catch {
    return undefined;
  }
}
