import os from 'node:os';
import pg from 'pg';
import { readCapabilities, type ServerCapabilities } from '../db/capabilities.js';
import { endClient } from '../db/end-client.js';
import { serverAddress, streamingCapacity, streamingUnavailable } from '../db/diagnosis.js';
import { ensurePublication } from '../db/publication.js';
import { normaliseLsn } from './lsn.js';
import type { ReplicationSession } from './session.js';
import { REPLICATION_CONNECTION_STEPS, type SetupStep, type SetupSteps } from './setup.js';
import { loadUnderSnapshot, type SnapshotRows } from './snapshot-load.js';
import { StreamError, toStreamError } from './stream-error.js';

export interface StreamSetupOptions {
  readonly databaseUrl: string;
  readonly publication: string;
  readonly regionAddressColumn: string;
  readonly slotName: string;
  /** Bound on each query of the normal connection (a frozen backend never answers). */
  readonly queryTimeoutMs: number;
  readonly session: ReplicationSession;
  /** The snapshot is loaded: from now on changes after `consistentPoint` may arrive. */
  readonly onLoaded: (snapshot: SnapshotRows, consistentPoint: string) => void;
  /** The last step: the server streams and the stream takes over. */
  readonly onStreaming: () => void;
}

/** What the setup produced, once it has run to the end. */
export interface SetupResult {
  readonly snapshot: SnapshotRows;
  /** LSN the stream starts after: everything before it is in the snapshot. */
  readonly consistentPoint: string;
  /** When the slot (and so the snapshot) was created, epoch ms. */
  readonly snapshotAt: number;
  readonly publication: 'exists' | 'created';
}

/** The check_server decision alone: why these capabilities cannot stream now, if they cannot. */
export function serverFailure(c: ServerCapabilities): StreamError | undefined {
  const d = streamingUnavailable(c) ?? streamingCapacity(c);
  return d === undefined ? undefined : StreamError.fromDiagnosis('check_server', d);
}

/**
 * The work of each setup step, on a normal connection (checks, snapshot load) and the session's
 * replication connection (slot, streaming). Each step leaves what the next needs in a field here;
 * runSetup() decides the order from SETUP_TRANSITIONS.
 */
export class StreamSetup {
  readonly #o: StreamSetupOptions;
  /** The normal connection: checks, then the snapshot load (the exporting connection must stay idle). */
  readonly #plain: pg.Client;
  #server: ServerCapabilities | undefined;
  #publication: 'exists' | 'created' | undefined;
  #replication: pg.Client | undefined;
  #slot: { readonly consistentPoint: string; readonly snapshotName: string; readonly createdAt: number } | undefined;
  #snapshot: SnapshotRows | undefined;

  constructor(options: StreamSetupOptions) {
    this.#o = options;
    this.#plain = new pg.Client({
      connectionString: options.databaseUrl,
      application_name: `edgeproxy ${os.hostname()} ${process.pid} bootstrap`.slice(0, 63),
      query_timeout: options.queryTimeoutMs,
      connectionTimeoutMillis: Math.min(options.queryTimeoutMs, 10_000),
    });
    this.#plain.on('error', () => undefined); // surfaced by the failing query instead
  }

  /** The steps' functions, by name. */
  steps(): SetupSteps {
    return {
      check_server: () => this.#checkServer(),
      check_publication: () => this.#checkPublication(),
      connect_replication: () => this.#connectReplication(),
      create_slot: () => this.#createSlot(),
      load_snapshot: () => this.#loadSnapshot(),
      start_streaming: () => this.#startStreaming(),
      streaming: async () => this.#o.onStreaming(),
    };
  }

  /** Any error of `step` (or of the stream after setup) as the StreamError naming it, diagnosed where possible. */
  classify(step: SetupStep, err: unknown): StreamError {
    return toStreamError(step, err, {
      server: this.#server,
      where: serverAddress(this.#o.databaseUrl),
      onReplicationConnection: REPLICATION_CONNECTION_STEPS.has(step),
    });
  }

  result(): SetupResult {
    return {
      snapshot: this.#need(this.#snapshot),
      consistentPoint: this.#need(this.#slot).consistentPoint,
      snapshotAt: this.#need(this.#slot).createdAt,
      publication: this.#need(this.#publication),
    };
  }

  /** Closes the normal connection (bounded: a frozen server never answers): load_snapshot does when done, the owner when the setup failed. Idempotent. */
  async end(): Promise<void> {
    await endClient(this.#plain);
  }

  async #checkServer(): Promise<void> {
    await this.#plain.connect();
    this.#server = await readCapabilities(this.#plain);
    const failure = serverFailure(this.#server);
    if (failure !== undefined) throw failure;
  }

  async #checkPublication(): Promise<void> {
    this.#publication = await ensurePublication(this.#plain, this.#o.publication, this.#need(this.#server), this.#o.regionAddressColumn);
  }

  async #connectReplication(): Promise<void> {
    this.#replication = await this.#o.session.connect(this.#o.slotName);
  }

  async #createSlot(): Promise<void> {
    const created = await this.#need(this.#replication).query<{ consistent_point: string; snapshot_name: string }>(
      `CREATE_REPLICATION_SLOT ${pg.escapeIdentifier(this.#o.slotName)} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')`,
    );
    const row = created.rows[0];
    if (row === undefined) throw new Error('CREATE_REPLICATION_SLOT returned no row');
    this.#slot = { consistentPoint: normaliseLsn(row.consistent_point), snapshotName: row.snapshot_name, createdAt: Date.now() };
  }

  async #loadSnapshot(): Promise<void> {
    const slot = this.#need(this.#slot);
    this.#snapshot = await loadUnderSnapshot(this.#plain, slot.snapshotName, this.#o.regionAddressColumn);
    // Done with the normal connection; closing it now (not after streaming) leaves the owner no
    // moment between the last step and open() returning in which the stream could fail unseen.
    await this.end();
    this.#o.onLoaded(this.#snapshot, slot.consistentPoint);
  }

  async #startStreaming(): Promise<void> {
    await this.#o.session.startStreaming(this.#need(this.#slot).consistentPoint);
  }

  /** What an earlier step made (the runner ran it: missing is a bug). */
  #need<T>(value: T | undefined): T {
    if (value === undefined) throw new Error('internal: a setup step ran before the one it needs');
    return value;
  }
}
