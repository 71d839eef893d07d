import { hashKey } from './sharded-map.js';

/**
 * Strings appended one after another as bytes in one buffer (one byte per character), string `i`
 * from `starts[i]` to `starts[i + 1]`: a million ids or host names without a million heap
 * strings for the garbage collector to visit. The rare string with a character past U+00FF is
 * kept as it is, beside (its byte range is empty). Append-only: what was pushed never changes.
 */
export class TextArena {
  #bytes: Uint8Array;
  /** `#bytes` as a Buffer: its latin1 decoding is native, three times as fast as fromCharCode over a subarray. */
  #text: Buffer;
  #starts: Uint32Array;
  #count = 0;
  #used = 0;
  readonly #wide = new Map<number, string>();

  constructor(countHint = 0, byteHint = 0) {
    this.#bytes = new Uint8Array(Math.max(64, byteHint));
    this.#text = bufferOf(this.#bytes);
    this.#starts = new Uint32Array(Math.max(16, countHint) + 1);
  }

  get count(): number {
    return this.#count;
  }

  /** Appends `s`; returns its index. */
  push(s: string): number {
    const i = this.#count;
    this.#ensure(s.length);
    if (isNarrow(s)) {
      const bytes = this.#bytes;
      let at = this.#used;
      for (let k = 0; k < s.length; k++) bytes[at++] = s.charCodeAt(k);
      this.#used = at;
    } else this.#wide.set(i, s);
    this.#count = i + 1;
    this.#starts[i + 1] = this.#used;
    return i;
  }

  at(i: number): string {
    const from = this.#starts[i]!;
    const to = this.#starts[i + 1]!;
    if (from === to && this.#wide.size > 0) return this.#wide.get(i) ?? '';
    return this.#text.toString('latin1', from, to);
  }

  /** Whether string `i` is `s`, without making string `i`. */
  equals(i: number, s: string): boolean {
    const from = this.#starts[i]!;
    const length = this.#starts[i + 1]! - from;
    if (length === 0 && this.#wide.size > 0 && this.#wide.has(i)) return this.#wide.get(i) === s;
    if (length !== s.length) return false;
    const bytes = this.#bytes;
    for (let k = 0; k < length; k++) if (bytes[from + k] !== s.charCodeAt(k)) return false;
    return true;
  }

  /** `hashKey` of string `i`, from its bytes. */
  hashAt(i: number): number {
    const from = this.#starts[i]!;
    const to = this.#starts[i + 1]!;
    if (from === to && this.#wide.size > 0) return hashKey(this.#wide.get(i) ?? '');
    let h = 0x811c9dc5;
    for (let k = from; k < to; k++) {
      h ^= this.#bytes[k]!;
      h = Math.imul(h, 0x01000193);
    }
    return h >>> 0;
  }

  /**
   * Drops the spare room the hints left (after a bootstrap, once the count is final), when it is
   * more than a quarter: copying 36 MB of ids that fill their buffer cost 0.3 s at a million rows.
   */
  trim(): void {
    if (this.#used < (this.#bytes.length * 3) / 4) this.#setBytes(this.#bytes.slice(0, this.#used));
    if (this.#count + 1 < (this.#starts.length * 3) / 4) this.#starts = this.#starts.slice(0, this.#count + 1);
  }

  #setBytes(bytes: Uint8Array): void {
    this.#bytes = bytes;
    this.#text = bufferOf(bytes);
  }

  #ensure(length: number): void {
    if (this.#used + length > this.#bytes.length) {
      const bytes = new Uint8Array(Math.max(this.#bytes.length * 2, this.#used + length));
      bytes.set(this.#bytes.subarray(0, this.#used));
      this.#setBytes(bytes);
    }
    if (this.#count + 2 > this.#starts.length) {
      const starts = new Uint32Array(this.#starts.length * 2);
      starts.set(this.#starts.subarray(0, this.#count + 1));
      this.#starts = starts;
    }
  }
}

/** A Buffer over the same memory as `bytes` (no copy). */
export function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function isNarrow(s: string): boolean {
  for (let k = 0; k < s.length; k++) if (s.charCodeAt(k) > 0xff) return false;
  return true;
}

/**
 * An open-addressing hash table of the strings of a `TextArena` (index + 1 per slot, 0 empty, at
 * most half full, linear probing): string → index without a Map entry per string.
 */
export class TextSlots {
  #slots: Int32Array;
  readonly #arena: TextArena;

  constructor(arena: TextArena, countHint: number) {
    this.#arena = arena;
    this.#slots = new Int32Array(slotCountFor(countHint));
    for (let i = 0; i < arena.count; i++) this.#list(i, arena.hashAt(i));
  }

  /** The index of `s` in the arena, or -1. */
  find(s: string): number {
    const slots = this.#slots;
    const mask = slots.length - 1;
    for (let i = hashKey(s) & mask; ; i = (i + 1) & mask) {
      const slot = slots[i]!;
      if (slot === 0) return -1;
      if (this.#arena.equals(slot - 1, s)) return slot - 1;
    }
  }

  /** Lists arena string `index` (pushed after the slots were made, and not listed before). */
  add(index: number): void {
    if ((index + 1) * 2 > this.#slots.length) {
      this.#slots = new Int32Array(this.#slots.length * 2);
      for (let i = 0; i < index; i++) this.#list(i, this.#arena.hashAt(i));
    }
    this.#list(index, this.#arena.hashAt(index));
  }

  #list(index: number, hash: number): void {
    const slots = this.#slots;
    const mask = slots.length - 1;
    let i = hash & mask;
    while (slots[i] !== 0) i = (i + 1) & mask;
    slots[i] = index + 1;
  }
}

function slotCountFor(count: number): number {
  let n = 16;
  while (n < count * 2) n <<= 1;
  return n;
}
