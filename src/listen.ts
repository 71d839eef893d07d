import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';

/** How a listener binds its port. */
export interface ListenOptions {
  /**
   * SO_REUSEPORT: another process of the same user may bind the same port while this one listens,
   * and the kernel spreads new connections over them (a restart beside the running process; the
   * worker threads, each with its own listener).
   * Only where `reusePortProblem` finds none: elsewhere Node refuses to listen.
   */
  readonly reusePort?: boolean;
}

/**
 * Starts `server` listening and resolves with the address it got (port 0 picks one); rejects with
 * the listen error (EADDRINUSE, EACCES...). One way for the public, HTTPS and admin listeners.
 */
export async function listenOn(
  server: Server,
  host: string | undefined,
  port: number,
  opts: ListenOptions = {},
): Promise<{ address: string; port: number }> {
  server.listen({ host, port, reusePort: opts.reusePort === true });
  await once(server, 'listening'); // rejects with the 'error' event instead
  const a = server.address() as AddressInfo;
  return { address: a.address, port: a.port };
}

/**
 * Node's platforms where `reusePort` works (its net docs: Linux 3.9+, FreeBSD 12+, Solaris 11.4,
 * AIX 7.2.5+); elsewhere (macOS, Windows) listen fails with it.
 */
const REUSE_PORT_PLATFORMS: ReadonlySet<string> = new Set(['linux', 'freebsd', 'sunos', 'aix']);

/**
 * Why a listener cannot bind with `reusePort` here, as one sentence; undefined when it can. Node
 * has the option since 23.1 (and 22.12); the bin refuses anything older than 24.11 (runtime.ts),
 * so the version is checked for callers that start the service without the bin.
 */
export function reusePortProblem(version: string, platform: string): string | undefined {
  const m = /^v?(\d+)\.(\d+)\./.exec(version);
  const [major, minor] = m === null ? [0, 0] : [Number(m[1]), Number(m[2])];
  const has = major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
  if (!has) return `Node.js ${version} has no reusePort (22.12, 23.1 and later have)`;
  if (!REUSE_PORT_PLATFORMS.has(platform)) return `reusePort is not available on ${platform}`;
  return undefined;
}

/**
 * Whether another socket listens on `host:port` now: an exclusive bind (no reusePort) fails with
 * EADDRINUSE. Port 0 is never held. Other bind errors (EACCES...) are left to the real listen.
 */
export async function portHeld(host: string | undefined, port: number): Promise<boolean> {
  if (port === 0) return false;
  const probe = createServer();
  try {
    await listenOn(probe, host, port);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
  } finally {
    if (probe.listening) await new Promise((resolve) => probe.close(resolve));
  }
}

/**
 * Whether the kernel hands the connections queued on a closing SO_REUSEPORT listener to another
 * listener of the port (Linux 5.14+ `net.ipv4.tcp_migrate_req = 1`) instead of resetting them;
 * undefined where it cannot be read (an older kernel, not Linux). See README, Restart.
 */
export function queuedConnectionsMigrate(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): boolean | undefined {
  try {
    return read('/proc/sys/net/ipv4/tcp_migrate_req').trim() === '1';
  } catch {
    return undefined;
  }
}
