import { once } from 'node:events';
import type { AddressInfo, Server } from 'node:net';

export interface ListenOptions {
  /** SO_REUSEPORT (Node >= 23.1, Linux and BSDs): several listeners on one port, the kernel spreads the connections (worker threads). */
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
  server.listen({ host, port, ...(opts.reusePort === true ? { reusePort: true } : {}) });
  await once(server, 'listening'); // rejects with the 'error' event instead
  const a = server.address() as AddressInfo;
  return { address: a.address, port: a.port };
}
