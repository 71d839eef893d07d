/**
 * Notices a replication connection that went silent: a partition or a frozen walsender keeps the
 * TCP connection open and sends nothing, not even a reset. Anything the server sends counts as
 * life. After `probeAfterMs` of silence the owner asks the server for a reply (a status update
 * with its reply-requested byte set), and again every `probeAfterMs` while it stays silent; a
 * healthy walsender answers with a keepalive at once. After `timeoutMs` of silence it is dead.
 */
export interface SilenceOptions {
  readonly timeoutMs: number;
  /** Silence after which (and then this often) the server is asked for a reply; below timeoutMs. */
  readonly probeAfterMs: number;
  readonly onProbe: () => void;
  /** Called once, with how long the connection was silent. */
  readonly onSilent: (silentMs: number) => void;
  /** A monotonic clock in ms (tests pass a fake one). */
  readonly now?: () => number;
}

export class SilenceWatch {
  readonly #o: SilenceOptions;
  readonly #now: () => number;
  #lastHeard: number;
  #lastProbe: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: SilenceOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
    this.#lastHeard = this.#now();
    this.#schedule();
  }

  /** The server sent something. Called per message: only a clock read, no timer work. */
  heard(): void {
    this.#lastHeard = this.#now();
  }

  /** How long the server has been silent, in ms. */
  get silentMs(): number {
    return this.#now() - this.#lastHeard;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** One timer, set to the next moment something is due (a probe or the deadline), not reset per message. */
  #schedule(): void {
    if (this.#stopped) return;
    const due = Math.min(this.#probeBase() + this.#o.probeAfterMs, this.#lastHeard + this.#o.timeoutMs);
    this.#timer = setTimeout(() => this.#check(), Math.max(0, due - this.#now()));
    this.#timer.unref();
  }

  #check(): void {
    if (this.#stopped) return;
    if (this.silentMs < this.#o.timeoutMs) {
      this.#probeIfDue();
      this.#schedule();
      return;
    }
    // Timers run before pending socket reads in an event-loop turn: after a long stall, data may be
    // waiting unread. setImmediate runs after those reads, so only real silence ends the stream.
    setImmediate(() => {
      if (this.#stopped) return;
      if (this.silentMs < this.#o.timeoutMs) return this.#schedule();
      this.stop();
      this.#o.onSilent(this.silentMs);
    });
  }

  /** The next probe is due probeAfterMs after the last probe of this silence, or after its start. */
  #probeBase(): number {
    return this.#lastProbe !== undefined && this.#lastProbe >= this.#lastHeard ? this.#lastProbe : this.#lastHeard;
  }

  #probeIfDue(): void {
    const now = this.#now();
    if (now - this.#probeBase() < this.#o.probeAfterMs) return;
    this.#lastProbe = now;
    this.#o.onProbe();
  }
}
