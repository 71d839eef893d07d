import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Pgoutput } from 'pg-logical-replication';
import { DEFAULTS } from '../config/config.js';
import { serverAddress } from '../db/diagnosis.js';
import { describePgError } from '../db/errors.js';
import type { Logger } from '../log/logger.js';
import { ChangeDecoder } from './decode.js';
import { Deferred } from './deferred.js';
import { maxLsn, normaliseLsn, parseLsn } from './lsn.js';
import { ReplicationSession } from './session.js';
import { FIRST_STEP, runSetup, type SetupStep } from './setup.js';
import { StreamSetup } from './setup-steps.js';
import { SilenceWatch } from './silence.js';
import type { SnapshotRows } from './snapshot-load.js';
import { standbyStatusUpdate } from './status-update.js';
import { silentStreamError, StreamError } from './stream-error.js';
import { type Transaction, TransactionCollector } from './transaction.js';

// The setup's steps and the failure type live in their own modules; callers import them from here.
export { SETUP_TRANSITIONS, type SetupStep } from './setup.js';
export { StreamError, type FailureKind } from './stream-error.js';

export interface StreamOptions {
  readonly databaseUrl: string;
  readonly publication: string;
  /** EDGEPROXY_REGION_ADDRESS_COLUMN: read by the snapshot load, checked by the publication check. */
  readonly regionAddressColumn: string;
  readonly logger: Logger;
  /** The whole setup must finish within this (slot creation waits for open transactions). */
  readonly setupTimeoutMs: number;
  /** How often a status update (the applied LSN) goes to the server. */
  readonly statusIntervalMs: number;
  /** Silence (no message, no keepalive) after which the stream is dead; a reply is asked for before. Default: EDGEPROXY_REPLICATION_TIMEOUT's. */
  readonly silenceTimeoutMs?: number;
  /** A keepalive arrived while everything received was applied: the table matched the server at `atMs` (epoch ms). */
  readonly onCaughtUp?: (atMs: number) => void;
  /** Called with every committed transaction, in commit order, synchronously. */
  readonly onTransaction: (tx: Transaction) => void;
  /** Called once when the stream stops for any reason other than close(). */
  readonly onFailure: (err: StreamError) => void;
  /** Aborts a setup in progress (shutdown): open() rejects and the session is closed. */
  readonly signal?: AbortSignal;
}

export interface StreamStart {
  readonly stream: ReplicationStream;
  readonly snapshot: SnapshotRows;
  readonly slotName: string;
  /** LSN the stream starts after: everything before it is in the snapshot. */
  readonly consistentPoint: string;
  /** When the snapshot was taken (the slot created), epoch ms. */
  readonly snapshotAt: number;
  readonly setupMs: number;
  readonly publication: 'exists' | 'created';
}

/** A slot name unique per process: [a-z0-9_], at most 63 characters. */
export function makeSlotName(host = os.hostname(), pid = process.pid): string {
  const h =
    host
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '_')
      .replace(/^_+|_+$/g, '')
      .slice(0, 30) || 'host';
  return `edgeproxy_${h}_${pid}_${randomBytes(4).toString('hex')}`.slice(0, 63);
}

/**
 * One replication session: a temporary slot with an exported snapshot, the tables loaded under
 * it, then the changes after it. Never reused: after a failure the owner opens a new one (the
 * library does not reconnect, and the temporary slot died with the old session). The setup's
 * steps are in setup-steps.ts, their order in setup.ts; this class follows the stream once it runs.
 */
export class ReplicationStream {
  readonly #opts: StreamOptions & { readonly silenceTimeoutMs: number };
  readonly #session: ReplicationSession;
  readonly #setup: StreamSetup;
  readonly #collector = new TransactionCollector();
  /** Rejected by a failure while the setup runs: it ends the setup in whatever step it is. */
  readonly #setupFailed = new Deferred<never>();
  #decoder: ChangeDecoder | undefined;
  #step: SetupStep = FIRST_STEP;
  #closed = false;
  #failed = false;
  #statusTimer: NodeJS.Timeout | undefined;
  #silence: SilenceWatch | undefined;
  /** End LSN of the last transaction received, and of the last one the owner applied. */
  #received: string | undefined;
  #applied: string | undefined;
  /** The server's WAL position from its last keepalive. */
  #walEnd: string | undefined;
  /** Where a failure goes: the setup until its last step, then the owner. */
  #onFailure: ((err: StreamError) => void) | undefined = (err) => this.#setupFailed.reject(err);
  readonly #setupStarted = performance.now();

  private constructor(options: StreamOptions, slotName: string) {
    const opts = { silenceTimeoutMs: DEFAULTS.replicationTimeoutMs, ...options };
    this.#opts = opts;
    this.#session = new ReplicationSession(
      {
        databaseUrl: opts.databaseUrl,
        publication: opts.publication,
        applicationName: `edgeproxy ${os.hostname()} ${process.pid} stream`.slice(0, 63),
      },
      {
        onMessage: (msg) => this.#handle(msg),
        onKeepalive: (walEnd, shouldRespond) => this.#keepalive(walEnd, shouldRespond),
        onParseError: (err) => this.#fail(this.#broken('could not parse a pgoutput message', 'transient', err)),
        onError: (err) => this.#fail(this.#setup.classify(this.#step, err)),
        onClosed: () => this.#fail(new StreamError(this.#step, 'transient', 'the replication connection closed')),
      },
    );
    this.#setup = new StreamSetup({
      databaseUrl: opts.databaseUrl,
      publication: opts.publication,
      regionAddressColumn: opts.regionAddressColumn,
      slotName,
      queryTimeoutMs: opts.silenceTimeoutMs,
      session: this.#session,
      onLoaded: (snapshot, consistentPoint) => this.#loaded(snapshot, consistentPoint),
      onStreaming: () => this.#streaming(),
    });
  }

  static async open(opts: StreamOptions, slotName = makeSlotName()): Promise<StreamStart> {
    const stream = new ReplicationStream(opts, slotName);
    try {
      await runSetup(stream.#setup.steps(), {
        timeoutMs: opts.setupTimeoutMs,
        signal: opts.signal,
        interrupted: stream.#setupFailed.promise,
        onStep: (step) => stream.#enter(step),
        classify: (step, err) => stream.#setup.classify(step, err),
      });
      return { ...stream.#setup.result(), stream, slotName, setupMs: performance.now() - stream.#setupStarted };
    } catch (err) {
      await stream.close();
      await stream.#setup.end();
      throw stream.#setup.classify(stream.#step, err);
    }
  }

  #enter(step: SetupStep): void {
    this.#step = step;
    this.#opts.logger.debug({ step, elapsedMs: Math.round(performance.now() - this.#setupStarted) }, 'replication setup step');
  }

  /** load_snapshot is done: changes after the consistent point may arrive as soon as streaming starts. */
  #loaded(snapshot: SnapshotRows, consistentPoint: string): void {
    this.#decoder = new ChangeDecoder(snapshot.shapes, snapshot.tlsPlaces);
    this.#applied = consistentPoint;
    this.#received = consistentPoint;
  }

  /** The last step: failures now go to the owner, and status updates and the silence watch start. */
  #streaming(): void {
    this.#onFailure = this.#opts.onFailure;
    this.#statusTimer = setInterval(() => this.#sendStatus(), this.#opts.statusIntervalMs);
    this.#statusTimer.unref();
    const timeoutMs = this.#opts.silenceTimeoutMs;
    this.#silence = new SilenceWatch({
      timeoutMs,
      // An idle healthy stream is silent (the server only sends keepalives when it has not heard
      // from us, and we send status updates every second): asking once a second keeps the lag honest.
      probeAfterMs: Math.min(this.#opts.statusIntervalMs, timeoutMs / 2),
      onProbe: () => this.#sendStatus(true),
      onSilent: (silentMs) => this.#fail(silentStreamError(silentMs, timeoutMs, serverAddress(this.#opts.databaseUrl))),
    });
  }

  /** The owner applied (and published) everything up to `lsn`. */
  applied(lsn: string): void {
    this.#applied = lsn;
  }

  /** Position to report: what we applied; when idle, also the server's keepalive position. */
  get confirmedLsn(): string | undefined {
    if (this.#applied === undefined) return undefined;
    return this.#caughtUp() && this.#walEnd !== undefined ? maxLsn(this.#applied, normaliseLsn(this.#walEnd)) : this.#applied;
  }

  /** Nothing received is waiting to be applied, and no transaction is half received. */
  #caughtUp(): boolean {
    return !this.#collector.inTransaction && this.#received === this.#applied;
  }

  #keepalive(walEnd: string, shouldRespond: boolean): void {
    this.#silence?.heard();
    this.#walEnd = walEnd;
    if (this.#step === 'streaming' && !this.#closed && !this.#failed && this.#caughtUp()) this.#opts.onCaughtUp?.(Date.now());
    if (shouldRespond) this.#sendStatus();
  }

  #sendStatus(replyRequested = false): void {
    const lsn = this.#step === 'streaming' && !this.#closed && !this.#failed ? this.confirmedLsn : undefined;
    if (lsn !== undefined) this.#session.send(standbyStatusUpdate(parseLsn(lsn), Date.now(), replyRequested));
  }

  #handle(msg: Pgoutput.Message): void {
    this.#silence?.heard();
    if (this.#closed || this.#failed || this.#decoder === undefined) return;
    try {
      const d = this.#decoder.decode(msg);
      switch (d.kind) {
        case 'begin':
          this.#collector.begin(d.xid);
          return;
        case 'change':
          this.#collector.add(d.change);
          return;
        case 'tls':
          this.#collector.addTls(d.change);
          return;
        case 'commit':
          this.#commit(normaliseLsn(d.endLsn), d.commitTimeMs);
          return;
        case 'resync':
          this.#fail(new StreamError('streaming', 'resync', d.reason));
          return;
        case 'skip':
          return;
      }
    } catch (err) {
      this.#fail(this.#broken('could not apply a change', 'resync', err));
    }
  }

  #commit(endLsn: string, commitTimeMs: number): void {
    const tx = this.#collector.commit(endLsn, commitTimeMs);
    // Below the consistent point: already in the snapshot (cannot happen with an exported snapshot; cheap to guard).
    if (this.#received !== undefined && parseLsn(tx.endLsn) <= parseLsn(this.#received)) return;
    this.#received = tx.endLsn;
    this.#opts.onTransaction(tx);
  }

  /** A message that could not be followed: never thrown (it arrives in a socket handler), always a failure. */
  #broken(what: string, kind: 'transient' | 'resync', err: unknown): StreamError {
    return new StreamError('streaming', kind, `${what}: ${describePgError(err).message}`, undefined, { cause: err });
  }

  #fail(err: StreamError): void {
    if (this.#closed || this.#failed) return;
    this.#failed = true;
    clearInterval(this.#statusTimer);
    this.#silence?.stop();
    const notify = this.#onFailure;
    this.#onFailure = undefined;
    void this.#session.destroy();
    notify?.(err);
  }

  /** Ends the session (the temporary slot goes with it). Safe to call more than once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#statusTimer);
    this.#silence?.stop();
    this.#onFailure = undefined;
    await this.#session.destroy();
  }
}
