/**
 * What the main thread and its worker threads say to each other (structured clone: the route
 * table's buffers and the health board are SharedArrayBuffers, shared, not copied).
 */
import type { Config } from '../config/config.js';
import type { HealthResult } from '../proxy/health.js';
import type { SnapshotPosition, SnapshotSource } from '../sync/route-store.js';
import type { RouteTableDescriptor } from '../table/route-table.js';
import type { Challenge } from '../tls/tls-state.js';
import type { IndexedCertificate } from '../tls/certificate-index.js';
import type { MetricsJson } from '../metrics/summed.js';

/** A worker's `workerData`. */
export interface WorkerInit {
  /** 1 to N; a restarted worker keeps its id. */
  readonly id: number;
  readonly config: Config;
  /** The port to listen on with reusePort: the configured one for the first worker, the port it got for the others. */
  readonly port: number;
  /** Where plain-HTTP requests for a name with a certificate are redirected, or undefined (no redirect). */
  readonly redirectPort: number | undefined;
  readonly healthBoard: SharedArrayBuffer;
}

/** What the plain HTTP port needs of the TLS state: the challenge tokens, and which names have a certificate when. */
export interface PlainTls {
  readonly certificates: readonly IndexedCertificate[];
  readonly challenges: ReadonlyMap<string, Challenge>;
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
  readonly tls: PlainTls | undefined;
}

export type ToWorker =
  | SnapshotMessage
  | { readonly type: 'health'; readonly ask: number; readonly result: HealthResult; readonly slot: number }
  | { readonly type: 'metrics'; readonly ask: number }
  | { readonly type: 'drain'; readonly timeoutMs: number };

export type FromWorker =
  | { readonly type: 'listening'; readonly port: number }
  | { readonly type: 'log'; readonly line: string }
  | { readonly type: 'applied'; readonly generation: number; readonly requests: number }
  | { readonly type: 'health-check'; readonly ask: number; readonly ip: string; readonly port: number }
  | { readonly type: 'health-mark'; readonly ip: string; readonly port: number; readonly reason: string }
  | { readonly type: 'metrics'; readonly ask: number; readonly metrics: MetricsJson; readonly requests: number }
  | { readonly type: 'closed' }
  | { readonly type: 'drained'; readonly drained: boolean };
