import type { Socket } from 'node:net';
import type pg from 'pg';

/** How long a graceful end may wait for the server before the socket is destroyed. */
export const END_GRACE_MS = 1_000;

/**
 * The socket under a pg client. pg keeps it in an internal field and offers nothing public that
 * closes a connection without waiting for the server (the library's clients are pg clients too).
 */
export function socketOf(client: pg.Client): Socket | undefined {
  return (client as unknown as { connection?: { stream?: Socket } }).connection?.stream;
}

/**
 * Waits for a graceful end (`ending`: pg's Terminate, then waiting for the server to close its
 * side) at most `graceMs`, then destroys the socket, which settles it. Measured: against a
 * SIGSTOPped backend pg's client.end() on an idle connection never returns; a frozen server or a
 * partition never closes its side.
 */
export async function endWithin(ending: Promise<unknown>, socket: Socket | undefined, graceMs = END_GRACE_MS): Promise<void> {
  const settled = ending.then(
    () => undefined,
    () => undefined,
  );
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), graceMs);
  });
  try {
    if ((await Promise.race([settled, late])) === 'late') {
      socket?.destroy();
      await settled;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Ends a client (see endWithin): gracefully when the server answers, by destroying its socket when it does not. */
export function endClient(client: pg.Client, graceMs = END_GRACE_MS): Promise<void> {
  return endWithin(client.end(), socketOf(client), graceMs);
}
