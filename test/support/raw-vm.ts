import net, { type AddressInfo } from 'node:net';
import { HEALTH_USER_AGENT } from '../../src/proxy/health.js';

/** A fixed answer that closes its connection, so every upstream connection carries one request. */
export const RAW_VM_OK = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nvm-ok';

/** One upstream connection as the VM saw it: every byte, in order. */
export interface RawConnection {
  /** Everything received (latin1, so every byte is one character). */
  bytes: string;
  /** The proxy closed its side (or the connection was reset). */
  closed: boolean;
}

export interface RawVm {
  readonly port: number;
  /** Connections other than health probes, in the order they were accepted. */
  connections(): RawConnection[];
  /** Resolves once every connection accepted so far has closed, or rejects after `timeoutMs`. */
  settled(timeoutMs?: number): Promise<void>;
  /** What the next connections are answered (default RAW_VM_OK). */
  answer: string;
  close(): Promise<void>;
}

/**
 * A "VM" on a raw TCP socket: it records every byte each connection brings (no HTTP parser between
 * the proxy and the record) and answers `answer` once the first request on the connection looks
 * complete (`readRequest`, which only knows the framings the proxy itself sends: a
 * Content-Length body, a chunked body without extensions or trailers, or no body). Bytes that arrive after
 * the answer are recorded too: a smuggled second request would show up there.
 */
export async function startRawVm(): Promise<RawVm> {
  const all: RawConnection[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const conn: RawConnection = { bytes: '', closed: false };
    all.push(conn);
    let answered = false;
    socket.on('data', (chunk: Buffer) => {
      conn.bytes += chunk.toString('latin1');
      if (!answered && readRequest(conn.bytes)?.complete === true) {
        answered = true;
        socket.end(vm.answer);
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      conn.closed = true;
      sockets.delete(socket);
    });
  });
  const isProbe = (c: RawConnection) => c.bytes.toLowerCase().includes(`\r\nuser-agent: ${HEALTH_USER_AGENT}\r\n`);
  const vm: RawVm = {
    port: 0,
    answer: RAW_VM_OK,
    connections: () => all.filter((c) => !isProbe(c)),
    async settled(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (all.some((c) => !c.closed)) {
        if (Date.now() > deadline) throw new Error(`raw VM: connections still open: ${JSON.stringify(all.filter((c) => !c.closed))}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (vm as { port: number }).port = (server.address() as AddressInfo).port;
  return vm;
}

/** One request as the VM received it, read strictly (only the framings the proxy may send). */
export interface ReceivedRequest {
  /** The request line and headers, without the blank line. */
  readonly head: string;
  /** Header names (lowercase) and values, in order. */
  readonly headers: readonly (readonly [string, string])[];
  readonly framing: 'content-length' | 'chunked' | 'none';
  /** The body, decoded from its framing (as far as it got). */
  readonly body: string;
  /** The body's framing ended (all Content-Length bytes, or the last chunk and its CRLF). */
  readonly complete: boolean;
  /** Bytes after the end of the request: anything here is a second request the proxy sent. */
  readonly rest: string;
}

/** Reads the first request in `text`, or undefined while its head is not all there. */
export function readRequest(text: string): ReceivedRequest | undefined {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const head = text.slice(0, end);
  const headers = head
    .split('\r\n')
    .slice(1)
    .map((line) => {
      const colon = line.indexOf(':');
      return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()] as const;
    });
  const after = text.slice(end + 4);
  const te = headers.filter(([n]) => n === 'transfer-encoding');
  const cl = headers.filter(([n]) => n === 'content-length');
  if (te.length > 0) return { head, headers, framing: 'chunked', ...dechunk(after) };
  if (cl.length > 0) {
    const n = Number(cl[0]![1]);
    return { head, headers, framing: 'content-length', body: after.slice(0, n), complete: after.length >= n, rest: after.slice(n) };
  }
  return { head, headers, framing: 'none', body: '', complete: true, rest: after };
}

/** A chunked body, strictly: `hex CRLF data CRLF` … `0 CRLF CRLF` (no extensions, no trailers). */
function dechunk(text: string): { body: string; complete: boolean; rest: string } {
  let body = '';
  let at = 0;
  for (;;) {
    const line = text.indexOf('\r\n', at);
    if (line < 0) return { body, complete: false, rest: '' };
    const size = text.slice(at, line);
    if (!/^[0-9a-f]+$/i.test(size)) throw new Error(`raw VM: bad chunk size ${JSON.stringify(size)} in ${JSON.stringify(text)}`);
    const n = parseInt(size, 16);
    const data = line + 2;
    if (n === 0) {
      if (text.startsWith('\r\n', data)) return { body, complete: true, rest: text.slice(data + 2) };
      return { body, complete: false, rest: '' };
    }
    body += text.slice(data, data + n);
    if (text.length < data + n + 2) return { body, complete: false, rest: '' };
    if (!text.startsWith('\r\n', data + n)) throw new Error(`raw VM: chunk without its CRLF in ${JSON.stringify(text)}`);
    at = data + n + 2;
  }
}
