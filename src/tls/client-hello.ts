/**
 * Reads the server name (SNI) and the offered application protocols (ALPN) from the first bytes
 * of a TLS connection, before any TLS library sees them. That is what lets the proxy pick (or
 * wait for) a certificate, and answer an unknown name with an `unrecognized_name` alert, which
 * Node's SNICallback cannot send (its error path resets the connection without an alert).
 *
 * Only what is needed is read, every length is checked against what is left, and anything that
 * is not a well-formed ClientHello is refused (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301 §3.1).
 */

/** A TLS record header: type, legacy version (2), length (2). */
const RECORD_HEADER = 5;
const HANDSHAKE_RECORD = 0x16;
const CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;
const HOST_NAME = 0x00;
/** A record's payload is at most 2^14 bytes; a ClientHello larger than this is not worth reading. */
const MAX_RECORD = 16_384;
export const MAX_CLIENT_HELLO = 4 * MAX_RECORD;

export interface ClientHello {
  readonly kind: 'hello';
  /** The host_name sent in SNI, as sent (not normalised); undefined when the client sent none. */
  readonly serverName: string | undefined;
  /** ALPN protocol names offered, in the client's order (empty when none). */
  readonly alpn: readonly string[];
}

export type ClientHelloRead =
  | ClientHello
  /** More bytes are needed. */
  | { readonly kind: 'partial' }
  | { readonly kind: 'invalid'; readonly reason: string };

const PARTIAL = { kind: 'partial' } as const;
const invalid = (reason: string) => ({ kind: 'invalid', reason }) as const;

/** Reads the ClientHello at the start of `bytes` (which may hold more than it). */
export function readClientHello(bytes: Buffer): ClientHelloRead {
  const handshake = handshakeBytes(bytes);
  if (handshake.kind !== 'bytes') return handshake;
  return parseHello(handshake.body);
}

/**
 * The first handshake message, joined from as many handshake records as it spans (a ClientHello
 * with a post-quantum key share can exceed one TCP segment; very large ones span records).
 */
function handshakeBytes(bytes: Buffer): { kind: 'bytes'; body: Buffer } | ClientHelloRead {
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1;
  for (let at = 0; ;) {
    if (bytes.length < at + RECORD_HEADER) return PARTIAL;
    if (bytes[at] !== HANDSHAKE_RECORD) return invalid('not a TLS handshake record');
    if (bytes[at + 1] !== 0x03) return invalid('not a TLS record version');
    const length = bytes.readUInt16BE(at + 3);
    if (length === 0 || length > MAX_RECORD) return invalid('a TLS record of impossible length');
    if (bytes.length < at + RECORD_HEADER + length) return PARTIAL;
    parts.push(bytes.subarray(at + RECORD_HEADER, at + RECORD_HEADER + length));
    have += length;
    at += RECORD_HEADER + length;
    if (need < 0 && have >= 4) {
      const head = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (head[0] !== CLIENT_HELLO) return invalid('the first handshake message is not a ClientHello');
      need = 4 + head.readUIntBE(1, 3);
      if (need > MAX_CLIENT_HELLO) return invalid('a ClientHello larger than 64 KiB');
    }
    if (need >= 0 && have >= need) return { kind: 'bytes', body: Buffer.concat(parts).subarray(4, need) };
  }
}

/** A bounds-checked reader: every read past the end throws, and parseHello turns that into 'invalid'. */
class Reader {
  #at = 0;
  constructor(readonly bytes: Buffer) {}

  get done(): boolean {
    return this.#at === this.bytes.length;
  }

  skip(n: number): void {
    this.take(n);
  }

  u8(): number {
    return this.take(1)[0]!;
  }

  u16(): number {
    return this.take(2).readUInt16BE(0);
  }

  /** A vector with a length prefix of `lengthBytes` (1 or 2), as a reader of its own. */
  vector(lengthBytes: 1 | 2): Reader {
    return new Reader(this.take(lengthBytes === 1 ? this.u8() : this.u16()));
  }

  take(n: number): Buffer {
    if (this.#at + n > this.bytes.length) throw new RangeError('truncated');
    const out = this.bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }
}

function parseHello(body: Buffer): ClientHelloRead {
  try {
    const r = new Reader(body);
    r.skip(2 + 32); // legacy_version, random
    r.vector(1); // legacy_session_id
    if (r.vector(2).bytes.length < 2) return invalid('a ClientHello without cipher suites');
    r.vector(1); // legacy_compression_methods
    let serverName: string | undefined;
    let alpn: string[] = [];
    if (r.done) return { kind: 'hello', serverName, alpn }; // no extensions at all (old clients)
    const extensions = r.vector(2);
    if (!r.done) return invalid('bytes after the extensions');
    const seen = new Set<number>();
    while (!extensions.done) {
      const type = extensions.u16();
      const data = extensions.vector(2);
      if (seen.has(type)) return invalid(`extension ${type} sent twice`);
      seen.add(type);
      if (type === EXT_SERVER_NAME) {
        const name = readServerName(data);
        if (typeof name !== 'string' && name !== undefined) return name;
        serverName = name;
      } else if (type === EXT_ALPN) {
        const protocols = readAlpn(data);
        if (!Array.isArray(protocols)) return protocols as ClientHelloRead;
        alpn = protocols;
      }
    }
    return { kind: 'hello', serverName, alpn };
  } catch {
    return invalid('a ClientHello with a length that runs past its end');
  }
}

function readServerName(data: Reader): string | undefined | ClientHelloRead {
  const list = data.vector(2);
  if (!data.done) return invalid('bytes after the server name list');
  let name: string | undefined;
  while (!list.done) {
    const type = list.u8();
    const value = list.vector(2).bytes;
    if (type !== HOST_NAME) continue; // other name types are unused and may be ignored
    if (name !== undefined) return invalid('two host names in SNI');
    if (value.length === 0) return invalid('an empty host name in SNI');
    // A host_name is ASCII (RFC 6066: "the DNS hostname ... without a trailing dot", A-labels).
    for (const b of value) if (b <= 0x20 || b >= 0x7f) return invalid('a byte in the SNI host name that no host name has');
    name = value.toString('latin1');
  }
  return name;
}

function readAlpn(data: Reader): string[] | ClientHelloRead {
  const list = data.vector(2);
  if (!data.done || list.bytes.length === 0) return invalid('a malformed ALPN extension');
  const out: string[] = [];
  while (!list.done) {
    const name = list.vector(1).bytes;
    if (name.length === 0) return invalid('an empty ALPN protocol name');
    out.push(name.toString('latin1'));
  }
  return out;
}
