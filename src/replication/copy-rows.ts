import type pg from 'pg';

/** One row as COPY's text format sends it: each column's text, NULL as `null`. */
export type CopyRow = (string | null)[];

/**
 * Runs `COPY (<select>) TO STDOUT` (text format) and hands each row to `onRow` as it arrives;
 * resolves to the number of rows. Receiving a million rows this way took about half the CPU of
 * `pg`'s own row parsing (bench/snapshot-load.ts): each row comes as one CopyData message, split
 * here on tabs, instead of a message per row with a type parser per field. The values are the
 * columns' text: callers read them as text (ids, names) or test them (`NULL` or not).
 */
export function copyRows(client: pg.ClientBase, select: string, onRow: (row: CopyRow) => void): Promise<number> {
  const copy = new CopyOut(`COPY (${select}) TO STDOUT`, onRow);
  client.query(copy as unknown as pg.QueryConfig);
  return copy.done;
}

/**
 * Parsing longer than this in one go pauses the socket for a turn of the event loop. `pg` parses
 * every message of a socket read at once and the socket reads again while data waits: at a
 * million rows a re-bootstrap's COPY held the loop for whole seconds in a handful of turns. Short,
 * because a request served on this thread waits for a slice at each of its turns (decision 0024).
 */
export const COPY_SLICE_MS = 2;

/** What of `pg`'s connection the submittable touches: the query it sends, and its socket (paused to yield). */
interface CopyConnection {
  query(text: string): void;
  readonly stream?: { pause(): void; resume(): void };
}

/** A `pg` submittable for COPY … TO STDOUT (the client calls these as the server answers). */
class CopyOut {
  readonly done: Promise<number>;
  /** Set by `pg` when its client has a `query_timeout` (its timer is cleared when this is called). */
  callback: ((err?: Error) => void) | undefined;
  #rows = 0;
  #stream: CopyConnection['stream'];
  /** When the current slice of parsing began; undefined while paused or before the first row. */
  #sliceStart: number | undefined;
  #resolve!: (rows: number) => void;
  #reject!: (err: Error) => void;

  constructor(
    readonly text: string,
    readonly onRow: (row: CopyRow) => void,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  submit(connection: CopyConnection): void {
    this.#stream = connection.stream;
    connection.query(this.text);
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    this.#rows += 1;
    this.onRow(parseCopyLine(msg.chunk.toString('utf8', 0, msg.chunk.length - 1)));
    // The clock every 256 rows: a row costs a few microseconds.
    if ((this.#rows & 255) === 0) this.#yieldIfLong();
  }

  /**
   * After COPY_SLICE_MS of parsing, the socket is paused until the next turn: the messages
   * already read are still parsed (one read, 64 KB at most), but no more is read before timers
   * and other sockets have had their turn.
   */
  #yieldIfLong(): void {
    const stream = this.#stream;
    if (stream === undefined) return;
    const now = performance.now();
    this.#sliceStart ??= now;
    if (now - this.#sliceStart < COPY_SLICE_MS) return;
    stream.pause();
    this.#sliceStart = undefined;
    setImmediate(() => stream.resume());
  }

  handleCommandComplete(): void {}

  handleError(err: Error): void {
    this.callback?.(err);
    this.#reject(err);
  }

  handleReadyForQuery(): void {
    this.callback?.();
    this.#resolve(this.#rows);
  }
}

/** One line of COPY's text format (without its newline) into its fields: `\N` is NULL, backslash escapes decoded. */
export function parseCopyLine(line: string): CopyRow {
  const fields: CopyRow = line.split('\t');
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    if (f === '\\N') fields[i] = null;
    else if (f.includes('\\')) fields[i] = f.replace(/\\(.)/gs, unescape);
  }
  return fields;
}

const ESCAPES: Readonly<Record<string, string>> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/** What the server writes escaped: backslash, tab, newline, carriage return and the other controls above; anything else stands for itself. */
function unescape(_: string, c: string): string {
  return ESCAPES[c] ?? c;
}
