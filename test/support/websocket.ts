import http from 'node:http';
import net from 'node:net';

/** WebSocket stand-ins for the tests: a VM that upgrades (or refuses, or stays silent) and a client. */

export interface WsBackend {
  port: number;
  upgrades: http.IncomingHttpHeaders[];
  open: () => number;
  /** What the next upgrade gets: 'echo' (101 then echo bytes), 'refuse' (403), 'silent'. */
  mode: 'echo' | 'refuse' | 'silent';
  /** Plain requests (health probes) get no answer while set. */
  healthHangs: boolean;
  close(): Promise<void>;
}

export async function startWsBackend(): Promise<WsBackend> {
  const sockets = new Set<net.Socket>();
  const server = http.createServer((_req, res) => {
    if (!b.healthHangs) res.end('health ok');
  });
  const b: WsBackend = {
    port: 0,
    upgrades: [],
    open: () => sockets.size,
    mode: 'echo',
    healthHangs: false,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    b.upgrades.push(req.headers);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (b.mode === 'refuse') {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nConnection: close\r\n\r\nno ws!');
      return;
    }
    if (b.mode === 'silent') {
      // Reads (so it sees the proxy hang up) but never answers; upgrade sockets are half-open.
      socket.resume();
      socket.on('end', () => socket.end());
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: test\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as net.AddressInfo).port;
  return b;
}

export const UPGRADE = (host: string, extra = '') =>
  `GET /chat HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

/** Opens an upgraded connection through the proxy; resolves once the 101 head arrived. */
export function openWs(port: number, host: string): Promise<{ socket: net.Socket; head: string; read(): Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf = '';
    let waiter: ((s: string) => void) | undefined;
    let resolved = false;
    socket.on('error', reject);
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      if (!resolved) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        resolved = true;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        resolve({
          socket,
          head,
          read: () =>
            new Promise<string>((r) => {
              if (buf !== '') {
                const out = buf;
                buf = '';
                r(out);
              } else waiter = r;
            }),
        });
      } else if (waiter !== undefined) {
        const w = waiter;
        waiter = undefined;
        const out = buf;
        buf = '';
        w(out);
      }
    });
    socket.on('connect', () => socket.write(UPGRADE(host)));
  });
}
