import type { ServerCapabilities } from '../db/capabilities.js';
import { DiagnosedError, diagnoseReplicationError, pgErrorLine, type Diagnosis, type DiagnosisCode } from '../db/diagnosis.js';
import { PublicationError } from '../db/publication.js';
import { EdgeProxyError, type ErrorCode } from '../errors.js';
import type { SetupStep } from './setup.js';

/** Why a bootstrap failed, and whether trying again can help. */
export type FailureKind =
  /** The server cannot stream as configured (wal_level, REPLICATION, PostgreSQL 15 standby...). */
  | 'unavailable'
  /** The publication is missing or incomplete and we may not fix it. */
  | 'publication'
  /** The stream works but the apply step cannot follow (TRUNCATE, schema change...): bootstrap again now. */
  | 'resync'
  /** Anything else: a lost connection, a timeout, a full slot table. Retry with backoff. */
  | 'transient';

const KIND_CODES = {
  unavailable: 'STREAM_UNAVAILABLE',
  publication: 'STREAM_PUBLICATION',
  resync: 'STREAM_RESYNC',
  transient: 'STREAM_TRANSIENT',
} as const satisfies Record<FailureKind, ErrorCode>;

export interface StreamErrorOptions extends ErrorOptions {
  /** The server problem behind it, when it is a known one (src/db/diagnosis.ts). */
  readonly diagnosis?: DiagnosisCode;
  /** A failure of its kind with a code of its own (the kind's code otherwise). */
  readonly code?: 'STREAM_SILENT';
}

/** A stream setup or a running stream failed: in which step, of what kind; `fix` says what to do when known. */
export class StreamError extends EdgeProxyError {
  override name = 'StreamError';
  readonly step: SetupStep;
  readonly kind: FailureKind;
  readonly diagnosis: DiagnosisCode | undefined;

  constructor(step: SetupStep, kind: FailureKind, message: string, fixSql?: string, options: StreamErrorOptions = {}) {
    super(options.code ?? KIND_CODES[kind], message, { ...options, fix: fixSql });
    this.step = step;
    this.kind = kind;
    this.diagnosis = options.diagnosis;
  }

  /** The fix under its older name (callers log it as `fixSql`). */
  get fixSql(): string | undefined {
    return this.fix;
  }

  /** A known server problem: unavailable until an operator fixes it, transient when it passes by itself. */
  static fromDiagnosis(step: SetupStep, d: Diagnosis, cause?: unknown): StreamError {
    return new StreamError(step, d.passes ? 'transient' : 'unavailable', `${d.problem}. Fix: ${d.fix}`, d.fix, {
      diagnosis: d.code,
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

/** The running stream heard nothing, not even a keepalive it asked for: transient (it is retried, polling meanwhile). */
export function silentStreamError(silentMs: number, timeoutMs: number, where: string): StreamError {
  const fix = `check the network path to ${where} and that server (a hung or overloaded replica); EDGEPROXY_REPLICATION_TIMEOUT (now ${timeoutMs} ms) sets this bound`;
  return new StreamError(
    'streaming',
    'transient',
    `the server sent nothing for ${Math.round(silentMs)} ms, not even the keepalives asked for. Fix: ${fix}`,
    fix,
    { code: 'STREAM_SILENT' },
  );
}

/** What a setup step or the running stream knows when it classifies an error. */
export interface FailureContext {
  /** The capabilities check_server read (undefined before it did). */
  readonly server: ServerCapabilities | undefined;
  /** The server as diagnosis.serverAddress() names it. */
  readonly where: string;
  /** Whether the step works on the replication connection (only its errors are diagnosed by SQLSTATE). */
  readonly onReplicationConnection: boolean;
}

/** Any error thrown in `step` as the StreamError that names it. */
export function toStreamError(step: SetupStep, err: unknown, context: FailureContext): StreamError {
  if (err instanceof StreamError) return err;
  if (err instanceof DiagnosedError) return StreamError.fromDiagnosis(step, err.diagnosis, err);
  if (err instanceof PublicationError) return new StreamError(step, 'publication', err.message, err.fix, { cause: err });
  const { server } = context;
  const d = context.onReplicationConnection && server !== undefined ? diagnoseReplicationError(err, server, context.where) : undefined;
  if (d !== undefined) return StreamError.fromDiagnosis(step, d, err);
  return new StreamError(step, 'transient', pgErrorLine(err), undefined, { cause: err });
}
