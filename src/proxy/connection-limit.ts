/**
 * How many client connections the public listener accepts at once. At the process's open-files
 * limit, libuv accepts and closes new connections silently (its EMFILE trick), and upstream,
 * health-probe and database connections fail with EMFILE (502s, VMs marked unhealthy). Refusing
 * client connections a reserve below that limit keeps descriptors for the other side, and each
 * refusal can be counted and logged (ProxyServer, `drop`). The HTTP and HTTPS ports share the
 * one limit (SharedConnectionLimit).
 */
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { TLSSocket } from 'node:tls';

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

/**
 * One client connection limit over several listeners (the HTTP and the HTTPS port). Each
 * listener's `maxConnections` is kept at the limit less the connections open on the others, so
 * Node closes a connection past the limit on arrival (its `drop` event), before any socket object
 * or TLS state exists for it, whichever port it comes to. A connection counts from its accept on
 * its own listener until its TCP socket closes; a socket handed from one listener to another (a
 * secured HTTPS socket joining the HTTP server) is not counted twice.
 */
export class SharedConnectionLimit {
  readonly #open = new Map<net.Server, number>();
  #total = 0;

  constructor(readonly limit: number) {}

  add(listener: net.Server): void {
    this.#open.set(listener, 0);
    // One handler per listener, not a closure per connection ('close' comes once per socket).
    const closed = (): void => this.#change(listener, -1);
    listener.on('connection', (socket: net.Socket) => {
      if (socket instanceof TLSSocket) return; // handed over, counted where it was accepted
      this.#change(listener, 1);
      socket.on('close', closed);
    });
    this.#update();
  }

  #change(listener: net.Server, by: number): void {
    this.#open.set(listener, this.#open.get(listener)! + by);
    this.#total += by;
    this.#update();
  }

  #update(): void {
    for (const [listener, open] of this.#open) listener.maxConnections = Math.max(0, this.limit - (this.#total - open));
  }
}
