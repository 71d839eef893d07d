/**
 * How many threads serve the public HTTP port: EDGEPROXY_WORKERS, unless this runtime cannot
 * open one port several times (SO_REUSEPORT: Node >= 23.1 or 22.12, on Linux and the BSDs), where
 * the main thread serves alone and says so once.
 */
import type { Logger } from '../log/logger.js';

const REUSE_PORT_PLATFORMS: readonly string[] = ['linux', 'freebsd', 'openbsd', 'netbsd', 'sunos', 'aix'];

/** Whether `net.Server.listen({ reusePort })` works on this Node.js version and platform. */
export function reusePortSupported(version: string, platform: string): boolean {
  const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number);
  const versionHasIt = major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
  return versionHasIt && REUSE_PORT_PLATFORMS.includes(platform);
}

export function servingThreads(requested: number, logger: Logger, version = process.versions.node, platform = process.platform): number {
  if (requested <= 1) return 1;
  if (reusePortSupported(version, platform)) return requested;
  logger.warn(
    { requested, node: version, platform },
    'no reusePort on this Node.js or platform: the main thread serves the public port alone (EDGEPROXY_WORKERS ignored)',
  );
  return 1;
}
