import { randomBytes } from 'node:crypto';
import os from 'node:os';
import pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { readCapabilities, type ServerCapabilities } from '../db/capabilities.js';
import { serverAddress, streamingCapacity, streamingUnavailable } from '../db/diagnosis.js';
import { ensurePublication } from '../db/publication.js';
import { describePgError } from '../db/errors.js';
import type { Logger } from '../log/logger.js';
import { ChangeDecoder } from './decode.js';
import { maxLsn, normaliseLsn, parseLsn } from './lsn.js';
import { standbyStatusUpdate } from './status-update.js';
import { loadUnderSnapshot, type SnapshotRows } from './snapshot-load.js';
import { StreamError, toStreamError } from './stream-error.js';
import { type Transaction, TransactionCollector } from './transaction.js';

export { StreamError, type FailureKind } from './stream-error.js';

/**
 * The replication connection's setup, as named steps (after Electric's connection_setup): each
 * step runs only after the one before it succeeded, and an error names the step it happened in.
 */
export type SetupStep =
  'check_server' | 'check_publication' | 'connect_replication' | 'create_slot' | 'load_snapshot' | 'start_streaming' | 'streaming';

export const SETUP_TRANSITIONS: { readonly [S in SetupStep]: SetupStep | undefined } = {
  check_server: 'check_publication',
  check_publication: 'connect_replication',
  connect_replication: 'create_slot',
  create_slot: 'load_snapshot',
  load_snapshot: 'start_streaming',
  start_streaming: 'streaming',
  streaming: undefined,
};

/** Steps that talk over the replication connection (the others use a normal one). */
export const REPLICATION_CONNECTION_STEPS: ReadonlySet<SetupStep> = new Set<SetupStep>([
  'connect_replication',
  'create_slot',
  'start_streaming',
  'streaming',
]);

export interface StreamOptions {
  readonly databaseUrl: string;
  readonly publication: string;
  readonly logger: Logger;
  /** The whole setup must finish within this (slot creation waits for open transactions). */
  readonly setupTimeoutMs: number;
  /** How often a status update (the applied LSN) goes to the server. */
  readonly statusIntervalMs: number;
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

/** pgoutput, with the slot created and the tables loaded on the library's own replication connection. */
class BootstrappingPgoutput extends PgoutputPlugin {
  readonly #beforeStart: (client: pg.Client, slot: string) => Promise<string>;
  readonly #onParseError: (err: unknown) => void;

  constructor(
    options: Pgoutput.Options,
    beforeStart: (client: pg.Client, slot: string) => Promise<string>,
    onParseError: (err: unknown) => void,
  ) {
    super(options);
    this.#beforeStart = beforeStart;
    this.#onParseError = onParseError;
  }

  override async start(client: pg.Client, slot: string): Promise<unknown> {
    const lsn = await this.#beforeStart(client, slot);
    return super.start(client, slot, lsn);
  }

  // The library parses inside the socket's data handler: a throw there would crash the process.
  override parse(buffer: Buffer): Pgoutput.Message {
    try {
      return super.parse(buffer);
    } catch (err) {
      this.#onParseError(err);
      return { tag: 'message', flags: 0, transactional: false, messageLsn: null, prefix: '', content: new Uint8Array() };
    }
  }
}

/** The check_server decision alone: why these capabilities cannot stream now, if they cannot. */
export function serverFailure(c: ServerCapabilities): StreamError | undefined {
  const d = streamingUnavailable(c) ?? streamingCapacity(c);
  return d === undefined ? undefined : StreamError.fromDiagnosis('check_server', d);
}

/**
 * One replication session: a temporary slot with an exported snapshot, the tables loaded under
 * it, then the changes after it. Never reused: after a failure the owner opens a new one (the
 * library does not reconnect, and the temporary slot died with the old session).
 */
export class ReplicationStream {
  readonly #opts: StreamOptions;
  readonly #service: LogicalReplicationService;
  readonly #collector = new TransactionCollector();
  #decoder: ChangeDecoder | undefined;
  #step: SetupStep = 'check_server';
  /** What check_server read (for diagnosing later errors). */
  #server: ServerCapabilities | undefined;
  #closed = false;
  #failed = false;
  #statusTimer: NodeJS.Timeout | undefined;
  /** End LSN of the last transaction received, and of the last one the owner applied. */
  #received: string | undefined;
  #applied: string | undefined;
  /** The server's WAL position from its last keepalive. */
  #walEnd: string | undefined;
  #onFailure: ((err: StreamError) => void) | undefined;
  readonly #setupStarted = performance.now();
  /** The replication connection (pg's internal Connection: the library gives no other way to write to it). */
  #connection: { sendCopyFromChunk(chunk: Buffer): void } | undefined;

  private constructor(opts: StreamOptions, applicationName: string) {
    this.#opts = opts;
    this.#service = new LogicalReplicationService(
      { connectionString: opts.databaseUrl, application_name: applicationName, keepAlive: true, connectionTimeoutMillis: 10_000 },
      // Manual acknowledgement only: the library's timer would acknowledge what we have not applied.
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
  }

  static async open(opts: StreamOptions, slotName = makeSlotName()): Promise<StreamStart> {
    const applicationName = `edgeproxy ${os.hostname()} ${process.pid} stream`.slice(0, 63);
    const stream = new ReplicationStream(opts, applicationName);
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StreamError(
              stream.#step,
              'transient',
              `setup did not finish within ${opts.setupTimeoutMs} ms (slot creation waits for transactions open on the primary)`,
            ),
          ),
        opts.setupTimeoutMs,
      );
    });
    const aborted = new Promise<never>((_, reject) => {
      const onAbort = () => reject(new StreamError(stream.#step, 'transient', 'setup aborted (shutting down)'));
      if (opts.signal?.aborted) onAbort();
      else opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => undefined);
    try {
      const result = await Promise.race([stream.#setup(slotName), timeout, aborted]);
      return { ...result, stream, slotName, setupMs: performance.now() - started };
    } catch (err) {
      await stream.close();
      throw stream.#classify(stream.#step, err);
    } finally {
      clearTimeout(timer);
    }
  }

  async #setup(slotName: string): Promise<Omit<StreamStart, 'stream' | 'slotName' | 'setupMs'>> {
    const { databaseUrl, publication } = this.#opts;
    const plain = new pg.Client({
      connectionString: databaseUrl,
      application_name: `edgeproxy ${os.hostname()} ${process.pid} bootstrap`.slice(0, 63),
    });
    plain.on('error', () => undefined); // surfaced by the failing query instead
    let pub: 'exists' | 'created';
    let snapshot: SnapshotRows | undefined;
    let consistentPoint: string | undefined;
    try {
      await plain.connect();
      this.#step = 'check_server';
      const caps = await readCapabilities(plain);
      this.#server = caps;
      const failure = serverFailure(caps);
      if (failure !== undefined) throw failure;
      this.#advance('check_publication');
      pub = await ensurePublication(plain, publication, caps);
      this.#advance('connect_replication');

      const streaming = new Promise<void>((resolve, reject) => {
        this.#service.on('start', () => resolve());
        this.#onFailure = (err) => reject(err);
      });
      this.#service.on('error', (err: Error) => this.#fail(this.#classify(this.#step, err)));
      this.#service.on('data', (_lsn: string, msg: Pgoutput.Message) => this.#handle(msg));
      this.#service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
        this.#walEnd = lsn;
        if (shouldRespond) this.#sendStatus();
      });
      const plugin = new BootstrappingPgoutput(
        { protoVersion: 1, publicationNames: [publication] },
        async (client, slot) => {
          this.#connection = (client as unknown as { connection: { sendCopyFromChunk(chunk: Buffer): void } }).connection;
          this.#advance('create_slot');
          const created = await client.query<{ consistent_point: string; snapshot_name: string }>(
            `CREATE_REPLICATION_SLOT ${pg.escapeIdentifier(slot)} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')`,
          );
          const row = created.rows[0];
          if (row === undefined) throw new Error('CREATE_REPLICATION_SLOT returned no row');
          this.#advance('load_snapshot');
          snapshot = await loadUnderSnapshot(plain, row.snapshot_name);
          this.#decoder = new ChangeDecoder(snapshot.shapes);
          consistentPoint = normaliseLsn(row.consistent_point);
          this.#applied = consistentPoint;
          this.#received = consistentPoint;
          this.#advance('start_streaming');
          return consistentPoint;
        },
        (err) =>
          this.#fail(new StreamError('streaming', 'transient', `could not parse a pgoutput message: ${describePgError(err).message}`)),
      );
      const subscribed = this.#service.subscribe(plugin, slotName);
      // subscribe() settles when the session ends: after setup, that is a failure.
      subscribed.then(
        () => this.#fail(new StreamError(this.#step, 'transient', 'the replication connection closed')),
        (err: unknown) => this.#fail(this.#classify(this.#step, err)),
      );
      await streaming;
    } finally {
      await plain.end().catch(() => undefined);
    }
    this.#advance('streaming');
    this.#onFailure = this.#opts.onFailure;
    this.#statusTimer = setInterval(() => this.#sendStatus(), this.#opts.statusIntervalMs);
    this.#statusTimer.unref();
    return { snapshot: snapshot!, consistentPoint: consistentPoint!, publication: pub };
  }

  /** Any error of `step` as the StreamError naming it; errors on the replication connection are diagnosed by SQLSTATE. */
  #classify(step: SetupStep, err: unknown): StreamError {
    return toStreamError(step, err, {
      server: this.#server,
      where: serverAddress(this.#opts.databaseUrl),
      onReplicationConnection: REPLICATION_CONNECTION_STEPS.has(step),
    });
  }

  #advance(to: SetupStep): void {
    if (SETUP_TRANSITIONS[this.#step] !== to && this.#step !== to) {
      throw new StreamError(this.#step, 'transient', `internal: setup cannot go from ${this.#step} to ${to}`);
    }
    this.#step = to;
    this.#opts.logger.debug({ step: to, elapsedMs: Math.round(performance.now() - this.#setupStarted) }, 'replication setup step');
  }

  /** The owner applied (and published) everything up to `lsn`. */
  applied(lsn: string): void {
    this.#applied = lsn;
  }

  /** Position to report: what we applied; when idle, also the server's keepalive position. */
  get confirmedLsn(): string | undefined {
    const idle = !this.#collector.inTransaction && this.#received === this.#applied;
    if (this.#applied === undefined) return undefined;
    return idle && this.#walEnd !== undefined ? maxLsn(this.#applied, normaliseLsn(this.#walEnd)) : this.#applied;
  }

  #sendStatus(): void {
    const lsn = this.#step === 'streaming' && !this.#closed && !this.#failed ? this.confirmedLsn : undefined;
    if (lsn === undefined || this.#connection === undefined) return;
    try {
      this.#connection.sendCopyFromChunk(standbyStatusUpdate(parseLsn(lsn), Date.now()));
    } catch {
      // The connection is going away; its error arrives through the 'error' event.
    }
  }

  #handle(msg: Pgoutput.Message): void {
    if (this.#closed || this.#failed) return;
    try {
      const d = this.#decoder!.decode(msg);
      switch (d.kind) {
        case 'begin':
          this.#collector.begin(d.xid);
          return;
        case 'change':
          this.#collector.add(d.change);
          return;
        case 'commit': {
          const tx = this.#collector.commit(normaliseLsn(d.endLsn), d.commitTimeMs);
          // Below the consistent point: already in the snapshot (cannot happen with an exported snapshot; cheap to guard).
          if (parseLsn(tx.endLsn) <= parseLsn(this.#received!)) return;
          this.#received = tx.endLsn;
          this.#opts.onTransaction(tx);
          return;
        }
        case 'resync':
          this.#fail(new StreamError('streaming', 'resync', d.reason));
          return;
        case 'skip':
          return;
      }
    } catch (err) {
      this.#fail(
        new StreamError('streaming', 'resync', `could not apply a change: ${describePgError(err).message}`, undefined, { cause: err }),
      );
    }
  }

  #fail(err: StreamError): void {
    if (this.#closed || this.#failed) return;
    this.#failed = true;
    clearInterval(this.#statusTimer);
    const notify = this.#onFailure;
    this.#onFailure = undefined;
    void this.#service.destroy().catch(() => undefined);
    notify?.(err);
  }

  /** Ends the session (the temporary slot goes with it). Safe to call more than once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#statusTimer);
    this.#onFailure = undefined;
    await this.#service.destroy().catch(() => undefined);
  }
}
