import { once } from 'node:events';
import type { AddressInfo, Server } from 'node:net';

/**
 * Starts `server` listening and resolves with the address it got (port 0 picks one); rejects with
 * the listen error (EADDRINUSE, EACCES...). One way for the public, HTTPS and admin listeners.
 */
export async function listenOn(server: Server, host: string | undefined, port: number): Promise<{ address: string; port: number }> {
  server.listen({ host, port });
  await once(server, 'listening'); // rejects with the 'error' event instead
  const a = server.address() as AddressInfo;
  return { address: a.address, port: a.port };
}
