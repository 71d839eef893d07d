import type { Socket } from 'node:net';
import type pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { endWithin, socketOf } from '../db/end-client.js';
import { Deferred } from './deferred.js';

/** What the session reports; each may be called at any time after connect() (the library's events). */
export interface SessionEvents {
  readonly onMessage: (msg: Pgoutput.Message) => void;
  /** A keepalive: the server's WAL position, and whether it asks for a status update now. */
  readonly onKeepalive: (walEnd: string, shouldRespond: boolean) => void;
  /** A message pgoutput could not parse (never thrown: it would be thrown in the socket's handler). */
  readonly onParseError: (err: unknown) => void;
  /** The connection failed or broke. */
  readonly onError: (err: unknown) => void;
  /** The connection ended without an error. */
  readonly onClosed: () => void;
}

export interface SessionOptions {
  readonly databaseUrl: string;
  readonly publication: string;
  readonly applicationName: string;
}

/** pg's internal Connection of a client: the library gives no other way to write to the replication stream. */
type CopyConnection = { sendCopyFromChunk(chunk: Buffer): void };

/**
 * One replication connection of pg-logical-replication, with its one hook turned into two calls.
 * The library opens the connection itself and then calls the plugin's start(client, slot), which
 * must start streaming. A temporary slot lives only on that connection, so the slot must be created
 * there, in between: connect() resolves with the client when start() is called, and start() waits
 * until startStreaming() hands it the position to stream from.
 */
export class ReplicationSession {
  readonly #service: LogicalReplicationService;
  readonly #options: SessionOptions;
  readonly #events: SessionEvents;
  readonly #client = new Deferred<pg.Client>();
  readonly #from = new Deferred<string>();
  readonly #streaming = new Deferred<void>();
  #connection: CopyConnection | undefined;
  #socket: Socket | undefined;

  constructor(options: SessionOptions, events: SessionEvents) {
    this.#options = options;
    this.#events = events;
    this.#service = new LogicalReplicationService(
      {
        connectionString: options.databaseUrl,
        application_name: options.applicationName,
        keepAlive: true,
        connectionTimeoutMillis: 10_000,
      },
      // Manual acknowledgement only: the library's timer would acknowledge what we have not applied.
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
  }

  /** Opens the replication connection; resolves with the library's client once it is up. */
  connect(slotName: string): Promise<pg.Client> {
    this.#listen();
    const plugin = new HandOffPgoutput({ protoVersion: 1, publicationNames: [this.#options.publication] }, this.#events.onParseError, (c) =>
      this.#connected(c),
    );
    // subscribe() settles when the session ends, which after connecting is always a failure.
    this.#service.subscribe(plugin, slotName).then(
      () => this.#ended(undefined),
      (err: unknown) => this.#ended(err),
    );
    return this.#client.promise;
  }

  /** Hands the plugin the position to stream after; resolves when the server has switched to streaming. */
  startStreaming(lsn: string): Promise<void> {
    this.#from.resolve(lsn);
    return this.#streaming.promise;
  }

  /** Writes a message on the replication connection (a standby status update); dropped when it is not up. */
  send(chunk: Buffer): void {
    try {
      this.#connection?.sendCopyFromChunk(chunk);
    } catch {
      // The connection is going away; its error arrives through onError.
    }
  }

  /**
   * Ends the connection; a plugin still waiting to start gives up. Safe to call more than once.
   * Bounded: a server that does not close its side in time (frozen, partitioned) has the socket
   * destroyed under it, and the temporary slot goes when the server notices.
   */
  async destroy(): Promise<void> {
    this.#from.reject(new Error('the replication session was closed'));
    await endWithin(this.#service.destroy(), this.#socket);
  }

  #listen(): void {
    this.#service.on('start', () => this.#streaming.resolve());
    this.#service.on('error', (err: Error) => this.#ended(err));
    this.#service.on('data', (_lsn: string, msg: Pgoutput.Message) => this.#events.onMessage(msg));
    this.#service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => this.#events.onKeepalive(lsn, shouldRespond));
  }

  #connected(client: pg.Client): Promise<string> {
    this.#connection = (client as unknown as { connection: CopyConnection }).connection;
    this.#socket = socketOf(client);
    this.#client.resolve(client);
    return this.#from.promise;
  }

  /** The connection failed (`err`) or closed: whoever waits on it learns so, then the owner. */
  #ended(err: unknown): void {
    const reason = err ?? new Error('the replication connection closed');
    this.#client.reject(reason);
    this.#streaming.reject(reason);
    if (err === undefined) this.#events.onClosed();
    else this.#events.onError(err);
  }
}

/** pgoutput whose start() asks first where to stream from (the slot is created in between). */
class HandOffPgoutput extends PgoutputPlugin {
  readonly #onParseError: (err: unknown) => void;
  readonly #connected: (client: pg.Client) => Promise<string>;

  constructor(options: Pgoutput.Options, onParseError: (err: unknown) => void, connected: (client: pg.Client) => Promise<string>) {
    super(options);
    this.#onParseError = onParseError;
    this.#connected = connected;
  }

  override async start(client: pg.Client, slot: string): Promise<unknown> {
    const lsn = await this.#connected(client);
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
