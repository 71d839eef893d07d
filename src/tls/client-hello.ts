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
 * with a post-quantum key share can exceed one TCP segment; very large ones span records). A
 * hello within its first record (the usual case) is read where it lies, not copied.
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
    if (need >= 0 && have >= need)
      return { kind: 'bytes', body: (parts.length === 1 ? parts[0]! : Buffer.concat(parts)).subarray(4, need) };
  }
}

/**
 * A bounds-checked reader over `bytes[at, end)`: every read past the end throws, and parseHello
 * turns that into 'invalid'. Offsets only, so reading a hello allocates no buffer.
 */
class Reader {
  #at: number;
  constructor(
    readonly bytes: Buffer,
    at = 0,
    readonly end = bytes.length,
  ) {
    this.#at = at;
  }

  get done(): boolean {
    return this.#at === this.end;
  }

  /** Bytes left. */
  get length(): number {
    return this.end - this.#at;
  }

  skip(n: number): void {
    this.#need(n);
    this.#at += n;
  }

  u8(): number {
    this.#need(1);
    return this.bytes[this.#at++]!;
  }

  u16(): number {
    this.#need(2);
    const value = this.bytes.readUInt16BE(this.#at);
    this.#at += 2;
    return value;
  }

  /** A vector with a length prefix of `lengthBytes` (1 or 2), as a reader of its own; this one moves past it. */
  vector(lengthBytes: 1 | 2): Reader {
    const n = lengthBytes === 1 ? this.u8() : this.u16();
    this.#need(n);
    const inner = new Reader(this.bytes, this.#at, this.#at + n);
    this.#at += n;
    return inner;
  }

  /** Moves past a vector with a length prefix of `lengthBytes`; returns its length. */
  skipVector(lengthBytes: 1 | 2): number {
    const n = lengthBytes === 1 ? this.u8() : this.u16();
    this.skip(n);
    return n;
  }

  /** The bytes left, as latin1 text (what is left is consumed). */
  text(): string {
    const out = this.bytes.toString('latin1', this.#at, this.end);
    this.#at = this.end;
    return out;
  }

  /** Some byte left is a control character, a space or not ASCII. */
  get hasNonPrintable(): boolean {
    for (let i = this.#at; i < this.end; i++) if (this.bytes[i]! <= 0x20 || this.bytes[i]! >= 0x7f) return true;
    return false;
  }

  #need(n: number): void {
    if (this.#at + n > this.end) throw new RangeError('truncated');
  }
}

function parseHello(body: Buffer): ClientHelloRead {
  try {
    const r = new Reader(body);
    r.skip(2 + 32); // legacy_version, random
    r.skipVector(1); // legacy_session_id
    if (r.skipVector(2) < 2) return invalid('a ClientHello without cipher suites');
    r.skipVector(1); // legacy_compression_methods
    let serverName: string | undefined;
    let alpn: string[] = [];
    if (r.done) return { kind: 'hello', serverName, alpn }; // no extensions at all (old clients)
    const extensions = r.vector(2);
    if (!r.done) return invalid('bytes after the extensions');
    const seen = new Set<number>();
    while (!extensions.done) {
      const type = extensions.u16();
      // Only the two extensions read here get a reader; the others are stepped over.
      const data = type === EXT_SERVER_NAME || type === EXT_ALPN ? extensions.vector(2) : undefined;
      if (data === undefined) extensions.skipVector(2);
      if (seen.has(type)) return invalid(`extension ${type} sent twice`);
      seen.add(type);
      if (data === undefined) continue;
      if (type === EXT_SERVER_NAME) {
        const name = readServerName(data);
        if (typeof name !== 'string' && name !== undefined) return name;
        serverName = name;
      } else {
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
    if (type !== HOST_NAME) {
      list.skipVector(2); // other name types are unused and may be ignored
      continue;
    }
    const value = list.vector(2);
    if (name !== undefined) return invalid('two host names in SNI');
    if (value.length === 0) return invalid('an empty host name in SNI');
    // A host_name is ASCII (RFC 6066: "the DNS hostname ... without a trailing dot", A-labels).
    if (value.hasNonPrintable) return invalid('a byte in the SNI host name that no host name has');
    name = value.text();
  }
  return name;
}

function readAlpn(data: Reader): string[] | ClientHelloRead {
  const list = data.vector(2);
  if (!data.done || list.length === 0) return invalid('a malformed ALPN extension');
  const out: string[] = [];
  while (!list.done) {
    const name = list.vector(1);
    if (name.length === 0) return invalid('an empty ALPN protocol name');
    out.push(name.text());
  }
  return out;
}
