/**
 * The route table's interned targets (VM address, port, region, load balancer) packed in
 * SharedArrayBuffers, so that a worker thread reads the same targets as the main thread without
 * a copy (issue 14). Targets are only ever appended: a reader that knows `count` of them never
 * looks at what is written after. The main thread keeps its JS objects too (interning compares
 * them); a reader decodes each target once, on first use, and keeps it.
 */

/** One route's target, without the host (shared by every host routed to it). */
export interface Target {
  readonly vmIp: string;
  readonly vmPort: number;
  readonly vmRegionId: string;
  readonly regionPublicIp: string;
}

/** The packed targets as a thread receives them: the buffers and how many targets they hold. */
export interface PackedTargets {
  /** `vmIp \n vmRegionId \n regionPublicIp` of target i, UTF-8, from `starts[i]` to `starts[i + 1]`. */
  readonly text: Uint8Array;
  readonly starts: Uint32Array;
  readonly ports: Uint32Array;
  readonly count: number;
  /** Which store wrote them: the same store and a larger count means the same first targets. */
  readonly storeId: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function sharedU8(length: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(length));
}

function sharedU32(length: number): Uint32Array {
  return new Uint32Array(new SharedArrayBuffer(length * 4));
}

let nextStoreId = 1;

/** The writer: appends targets to shared buffers (grown by copying: older readers keep theirs). */
export class TargetPack {
  readonly storeId = nextStoreId++;
  #text = sharedU8(256);
  #starts = sharedU32(17);
  #ports = sharedU32(16);
  #count = 0;
  #used = 0;

  append(t: Target): void {
    const bytes = encoder.encode(`${t.vmIp}\n${t.vmRegionId}\n${t.regionPublicIp}`);
    if (this.#used + bytes.length > this.#text.length) this.#text = grownU8(this.#text, this.#used, this.#used + bytes.length);
    if (this.#count + 1 >= this.#ports.length) {
      this.#ports = grownU32(this.#ports, this.#count, this.#ports.length * 2);
      this.#starts = grownU32(this.#starts, this.#count + 1, this.#ports.length + 1);
    }
    this.#text.set(bytes, this.#used);
    this.#used += bytes.length;
    this.#ports[this.#count] = t.vmPort;
    this.#count += 1;
    this.#starts[this.#count] = this.#used;
  }

  /** What a reader needs for the targets appended so far. */
  packed(): PackedTargets {
    return { text: this.#text, starts: this.#starts, ports: this.#ports, count: this.#count, storeId: this.storeId };
  }
}

function grownU8(from: Uint8Array, used: number, atLeast: number): Uint8Array {
  const out = sharedU8(Math.max(from.length * 2, atLeast));
  out.set(from.subarray(0, used));
  return out;
}

function grownU32(from: Uint32Array, used: number, length: number): Uint32Array {
  const out = sharedU32(length);
  out.set(from.subarray(0, used));
  return out;
}

/** The reader: target i decoded on first use, kept for the later versions of the same store. */
export class TargetView {
  readonly #packed: PackedTargets;
  readonly #decoded: Target[];

  /** `previous`: the view of an older version; its decoded targets are reused when it read the same store. */
  constructor(packed: PackedTargets, previous?: TargetView) {
    this.#packed = packed;
    this.#decoded = previous !== undefined && previous.#packed.storeId === packed.storeId ? previous.#decoded : [];
  }

  /** The buffers read (to describe the version again). */
  get packed(): PackedTargets {
    return this.#packed;
  }

  at(i: number): Target {
    return (this.#decoded[i] ??= this.#decode(i));
  }

  #decode(i: number): Target {
    const { text, starts, ports, count } = this.#packed;
    if (i >= count) throw new RangeError(`target ${i} is not in this version (it has ${count})`);
    // TextDecoder does not read shared memory: copy the few bytes out first.
    const [vmIp, vmRegionId, regionPublicIp] = decoder.decode(text.slice(starts[i]!, starts[i + 1]!)).split('\n') as [
      string,
      string,
      string,
    ];
    return Object.freeze({ vmIp, vmPort: ports[i]!, vmRegionId, regionPublicIp });
  }
}
