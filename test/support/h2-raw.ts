import tls from 'node:tls';

/**
 * A raw HTTP/2 client over TLS, for requests Node's `http2` client refuses to send (connection
 * headers, `transfer-encoding`, no `:authority`, a `content-length` the DATA contradicts). It
 * writes the frames it is given after the preface and an empty SETTINGS, acknowledges the
 * server's SETTINGS, and collects what comes back. Header blocks are HPACK literals without
 * indexing or Huffman (RFC 7541 §6.2.2), so any field, valid or not, goes out as written; the
 * server's header blocks are not decoded (tests look at RST_STREAM, GOAWAY and DATA).
 */

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
/** RFC 9113 §7 error codes. */
export const H2_ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, CANCEL: 8 } as const;

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

/** HPACK integer with a 7-bit prefix (RFC 7541 §5.1), the string-length form without Huffman. */
function length7(n: number): number[] {
  if (n < 127) return [n];
  const out = [127];
  let rest = n - 127;
  while (rest >= 128) {
    out.push((rest & 127) | 128);
    rest >>= 7;
  }
  out.push(rest);
  return out;
}

/** A header block: each field a literal without indexing, new name (0x00), no Huffman. */
export function headerBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name);
    const v = Buffer.from(value);
    parts.push(Buffer.from([0x00, ...length7(n.length)]), n, Buffer.from(length7(v.length)), v);
  }
  return Buffer.concat(parts);
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

/** A HEADERS frame with the whole block (END_HEADERS), ending the stream unless a body follows. */
export function headers(stream: number, fields: readonly (readonly [string, string])[], endStream = true): Buffer {
  return frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), stream, headerBlock(fields));
}

export function data(stream: number, body: string, endStream = true): Buffer {
  return frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, stream, Buffer.from(body));
}

/** What the server sent on one connection. */
export class RawH2Answer {
  readonly frames: Frame[] = [];
  closed = false;

  /** The error code of the server's RST_STREAM on `stream`, if it sent one. */
  reset(stream: number): number | undefined {
    const f = this.frames.find((x) => x.type === FRAME.RST_STREAM && x.stream === stream);
    return f?.payload.readUInt32BE(0);
  }

  /** The error code of the server's GOAWAY, if it sent one. */
  goaway(): number | undefined {
    const f = this.frames.find((x) => x.type === FRAME.GOAWAY);
    return f?.payload.readUInt32BE(4);
  }

  responded(stream: number): boolean {
    return this.frames.some((x) => x.type === FRAME.HEADERS && x.stream === stream);
  }

  /** The DATA on `stream`, once the server ended it; undefined before. */
  body(stream: number): string | undefined {
    const frames = this.frames.filter((x) => x.type === FRAME.DATA && x.stream === stream);
    if (!frames.some((x) => (x.flags & FLAG.END_STREAM) !== 0)) return undefined;
    return Buffer.concat(frames.map((x) => x.payload)).toString('utf8');
  }
}

/** Frames to write, or a wait between them (e.g. until the VM has seen the first part). */
export type Step = Buffer | (() => Promise<unknown>);

/**
 * Opens a TLS connection offering only `h2`, sends `steps` (frames, and waits between them), and
 * resolves once `done` holds (checked on each arrival and after the last step) or the server
 * closed the connection; rejects after `timeoutMs`.
 */
export function rawH2(
  port: number,
  opts: { servername: string; ca: string },
  steps: readonly Step[],
  done: (answer: RawH2Answer) => boolean,
  timeoutMs = 10_000,
): Promise<RawH2Answer> {
  return new Promise((resolve, reject) => {
    const answer = new RawH2Answer();
    const socket = tls.connect({ host: '127.0.0.1', port, servername: opts.servername, ca: opts.ca, ALPNProtocols: ['h2'] });
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err === undefined) resolve(answer);
      else reject(err);
    };
    const timer = setTimeout(
      () => finish(new Error(`raw h2: no answer within ${timeoutMs} ms; frames ${JSON.stringify(answer.frames)}`)),
      timeoutMs,
    );
    socket.on('secureConnect', () => {
      if (socket.alpnProtocol !== 'h2') return finish(new Error(`ALPN chose ${String(socket.alpnProtocol)}, not h2`));
      socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(FRAME.SETTINGS, 0, 0)]));
      void (async () => {
        for (const step of steps) {
          if (socket.destroyed) return;
          if (Buffer.isBuffer(step)) socket.write(step);
          else await step();
        }
        if (done(answer)) finish();
      })().catch((err: unknown) => finish(err as Error));
    });
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (buffered.length < 9) break;
        const length = buffered.readUIntBE(0, 3);
        if (buffered.length < 9 + length) break;
        const f = {
          type: buffered[3]!,
          flags: buffered[4]!,
          stream: buffered.readUInt32BE(5) & 0x7fffffff,
          payload: buffered.subarray(9, 9 + length),
        };
        buffered = buffered.subarray(9 + length);
        answer.frames.push(f);
        if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      }
      if (done(answer)) finish();
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => {
      answer.closed = true;
      finish();
    });
  });
}
