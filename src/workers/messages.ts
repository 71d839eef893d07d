/**
 * What the main thread and its worker threads say to each other (structured clone: the route
 * table's buffers and the health board are SharedArrayBuffers, shared, not copied).
 */
import type { Config } from '../config/config.js';
import type { HealthResult } from '../proxy/health.js';
import type { SnapshotPosition, SnapshotSource } from '../sync/route-store.js';
import type { RouteTableDescriptor } from '../table/route-table.js';
import type { MetricsJson } from '../metrics/summed.js';
import type { WorkerCertificate, WorkerTls } from './worker-tls.js';

/** A worker's `workerData`. */
export interface WorkerInit {
  /** 1 to N; a restarted worker keeps its id. */
  readonly id: number;
  readonly config: Config;
  /** The port to listen on with reusePort: the configured one for the first worker, the port it got for the others. */
  readonly port: number;
  /** The HTTPS port to listen on with reusePort (as `port`), or undefined when EDGEPROXY_HTTPS_ADDR is off. */
  readonly httpsPort: number | undefined;
  /** The session ticket keys (48 bytes), made once by the main thread: a ticket from any thread resumes on any other. */
  readonly ticketKeys: Buffer;
  /** EDGEPROXY_TLS_DEFAULT_CERT and _KEY as the main thread read and checked them. */
  readonly defaultCertificate: WorkerCertificate | undefined;
  /** Whether the main thread issues on demand (a handshake for a routed name without a certificate asks it). */
  readonly onDemand: boolean;
  readonly healthBoard: SharedArrayBuffer;
}

/** One published snapshot, as the main thread sends it. `tls` only when it changed since the last one sent. */
export interface SnapshotMessage {
  readonly type: 'snapshot';
  readonly routes: RouteTableDescriptor;
  readonly regionAddresses: ReadonlySet<string>;
  readonly generation: number;
  readonly source: SnapshotSource;
  readonly publishedAt: number;
  readonly position: SnapshotPosition | undefined;
  readonly tls: WorkerTls | undefined;
}

export type ToWorker =
  | SnapshotMessage
  | { readonly type: 'health'; readonly ask: number; readonly result: HealthResult; readonly slot: number }
  | { readonly type: 'metrics'; readonly ask: number }
  /** The session ticket keys were rotated: the HTTPS listener takes the new set. */
  | { readonly type: 'ticket-keys'; readonly keys: Buffer }
  /** What the worker routes from now (GET /workers): answered from its view, no metrics serialised. */
  | { readonly type: 'status'; readonly ask: number }
  /** The answer to a `certificate-ask`: `ready` when the certificate is in a version sent before this. */
  | { readonly type: 'certificate'; readonly ask: number; readonly ready: boolean }
  | { readonly type: 'drain'; readonly timeoutMs: number };

/** What a worker routes from and has answered: sent when it swaps a version in, and when asked. */
export interface WorkerView {
  readonly generation: number;
  readonly requests: number;
  readonly certificates: number;
}

export type FromWorker =
  | { readonly type: 'listening'; readonly port: number; readonly httpsPort: number | undefined }
  | { readonly type: 'log'; readonly line: string }
  | ({ readonly type: 'applied' } & WorkerView)
  /** A handshake for a routed name this worker has no certificate for: the main thread's on-demand issuance is asked. */
  | { readonly type: 'certificate-ask'; readonly ask: number; readonly name: string }
  | { readonly type: 'health-check'; readonly ask: number; readonly ip: string; readonly port: number }
  | { readonly type: 'health-mark'; readonly ip: string; readonly port: number; readonly reason: string }
  | { readonly type: 'metrics'; readonly ask: number; readonly metrics: MetricsJson; readonly requests: number }
  | ({ readonly type: 'status'; readonly ask: number } & WorkerView)
  | { readonly type: 'closed' }
  | { readonly type: 'drained'; readonly drained: boolean };
