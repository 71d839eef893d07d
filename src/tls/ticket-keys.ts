/**
 * The session ticket keys every thread serving HTTPS shares (a ticket issued by one resumes on
 * any other), replaced every EDGEPROXY_TLS_TICKET_KEY_LIFETIME: a ticket key that lived forever
 * would let whoever later reads it decrypt every resumed session recorded since the start
 * (resumption without forward secrecy). Node holds one key set per context, so a ticket issued
 * before a rotation is not resumed after it: that client makes one full handshake.
 */
import { randomBytes } from 'node:crypto';

/** 16 bytes of name, 16 of HMAC secret, 16 of AES key (`tls.Server.setTicketKeys`). */
const TICKET_KEYS_BYTES = 48;

export class TicketKeys {
  #current = randomBytes(TICKET_KEYS_BYTES);
  readonly #listeners: ((keys: Buffer) => void)[] = [];
  readonly #timer: NodeJS.Timeout | undefined;

  /** `lifetimeMs` undefined: the keys made at start serve until the process ends. */
  constructor(lifetimeMs: number | undefined) {
    if (lifetimeMs !== undefined) this.#timer = setInterval(() => this.rotate(), lifetimeMs).unref();
  }

  get current(): Buffer {
    return this.#current;
  }

  /** `listener` gets every new key set (a listener's contexts, the workers). */
  onRotate(listener: (keys: Buffer) => void): void {
    this.#listeners.push(listener);
  }

  rotate(): void {
    this.#current = randomBytes(TICKET_KEYS_BYTES);
    for (const listener of this.#listeners) listener(this.#current);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
