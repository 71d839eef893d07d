/**
 * Health shared with the worker threads: probes run on the main thread only (its HealthChecker,
 * with its cache and its shared in-flight probe), so probes per VM do not grow with the workers.
 * The main thread writes every result it records into a SharedArrayBuffer, one slot per VM
 * (address and port); a worker reads the slot on the request path without a message. What a
 * worker cannot answer from its slot (no slot yet, or too old) it asks the main thread for,
 * which probes or joins the probe in flight, and answers with the result and the slot.
 */
import { performance } from 'node:perf_hooks';
import type { HealthResult, HealthSnapshot, HealthTarget, HealthView } from '../proxy/health.js';

/** VMs the board has slots for; past it, a VM's checks go to the main thread each time (still one probe per TTL). */
export const BOARD_SLOTS = 65_536;

/**
 * A slot is one 64-bit value, written and read with Atomics (never torn): when the result was
 * recorded (whole ms since the clock's origin) × 2048 + status (0–1023) × 2 + healthy (1) — a
 * number below 2^53; 0 = nothing recorded.
 */
function encode(at: number, result: HealthResult): bigint {
  const status = Math.min(1023, Math.max(0, result.status ?? 0));
  return BigInt(Math.floor(at)) * 2048n + BigInt(status * 2 + (result.healthy ? 1 : 0));
}

/** One clock for every thread: ms since the epoch, from each thread's monotonic clock. */
function clock(): number {
  return performance.timeOrigin + performance.now();
}

function keyOf(target: HealthTarget): string {
  return `${target.ip}|${target.port}`;
}

/** The main thread's side: slots handed out on first ask, every recorded result written. */
export class HealthBoard {
  readonly buffer = new SharedArrayBuffer(BOARD_SLOTS * 8);
  readonly #cells = new BigInt64Array(this.buffer);
  readonly #slots = new Map<string, number>();

  /**
   * The slot of `target`, made on first ask (-1 when the board is full). A new slot gets `known`,
   * the checker's last result (its age kept): results recorded before the slot existed are not lost.
   */
  slotOf(target: HealthTarget, known?: HealthSnapshot): number {
    const key = keyOf(target);
    let slot = this.#slots.get(key);
    if (slot === undefined) {
      if (this.#slots.size >= BOARD_SLOTS) return -1;
      slot = this.#slots.size;
      this.#slots.set(key, slot);
      if (known !== undefined) Atomics.store(this.#cells, slot, encode(clock() - known.ageMs, known.result));
    }
    return slot;
  }

  /** HealthChecker's onRecord: the result into the VM's slot, when a worker asked for one. */
  readonly record = (target: HealthTarget, result: HealthResult): void => {
    const slot = this.#slots.get(keyOf(target));
    if (slot !== undefined) Atomics.store(this.#cells, slot, encode(clock(), result));
  };
}

/** A worker's question to the main thread, and how it is answered. */
export interface HealthAsk {
  check(target: HealthTarget): Promise<{ result: HealthResult; slot: number }>;
  mark(target: HealthTarget, reason: string): void;
}

/**
 * A worker thread's health: the same contract as HealthChecker.peek / check / markUnhealthy
 * (a fresh result from the slot; a healthy one just past its TTL while one refresh is asked for;
 * never an unhealthy one past its TTL), from the board the main thread writes.
 */
export class SharedHealth implements HealthView {
  readonly #cells: BigInt64Array;
  readonly #ask: HealthAsk;
  readonly #ttlMs: number;
  readonly #timeoutMs: number;
  readonly #slots = new Map<string, number>();
  /** Checks this worker has asked the main thread for and not had answered yet. */
  readonly #asking = new Map<string, Promise<HealthResult>>();

  constructor(buffer: SharedArrayBuffer, ask: HealthAsk, ttlMs: number, timeoutMs: number) {
    this.#cells = new BigInt64Array(buffer);
    this.#ask = ask;
    this.#ttlMs = ttlMs;
    this.#timeoutMs = timeoutMs;
  }

  peek(target: HealthTarget): HealthResult | undefined {
    if (this.#ttlMs <= 0) return undefined;
    const key = keyOf(target);
    const slot = this.#slots.get(key);
    if (slot === undefined || slot < 0) return undefined;
    const cell = Number(Atomics.load(this.#cells, slot));
    if (cell === 0) return undefined;
    const age = clock() - Math.floor(cell / 2048);
    const healthy = cell % 2 === 1;
    if (age >= this.#ttlMs && (!healthy || age >= this.#ttlMs + this.#timeoutMs)) return undefined;
    if (age >= this.#ttlMs && !this.#asking.has(key)) void this.check(target); // refresh in the background
    const status = Math.floor(cell / 2) % 1024;
    return healthy ? { healthy, status } : { healthy, status, reason: status === 0 ? 'unhealthy' : `status ${status}` };
  }

  check(target: HealthTarget): Promise<HealthResult> {
    const key = keyOf(target);
    const asking = this.#asking.get(key);
    if (asking !== undefined && this.#ttlMs > 0) return asking;
    const promise = this.#ask.check(target).then(({ result, slot }) => {
      this.#slots.set(key, slot);
      if (this.#asking.get(key) === promise) this.#asking.delete(key);
      return result;
    });
    if (this.#ttlMs > 0) this.#asking.set(key, promise);
    return promise;
  }

  markUnhealthy(target: HealthTarget, reason: string): void {
    this.#ask.mark(target, reason);
  }
}
