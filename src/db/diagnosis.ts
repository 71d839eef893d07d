/**
 * What can be wrong with a server EdgeProxy streams from, each problem once: a stable code, one
 * line saying what is wrong, and the fix. `edgeproxy doctor` prints these as its checks' detail and
 * fix, and the replication stream builds its failures from them, so both say the same words.
 */
import pg from 'pg';
import { EdgeProxyError, type ErrorCode } from '../errors.js';
import { STANDBY_DECODING_MIN_VERSION, type ServerCapabilities } from './capabilities.js';
import type { ColumnCheck, MissingColumn } from './columns.js';
import { describePgError } from './errors.js';

export type DiagnosisCode = Extract<
  ErrorCode,
  | 'PG_STANDBY_VERSION'
  | 'PG_WAL_LEVEL'
  | 'PG_REPLICATION_ROLE'
  | 'PG_HOT_STANDBY_FEEDBACK'
  | 'PG_HBA_REJECTED'
  | 'PG_SLOTS_FULL'
  | 'PG_WAL_SENDERS_FULL'
  | 'SCHEMA_COLUMN_MISSING'
>;

export interface Diagnosis {
  readonly code: DiagnosisCode;
  /** What is wrong, one line. */
  readonly problem: string;
  /** What to do about it: SQL to run or a setting to change. */
  readonly fix: string;
  /** It may pass by itself (a slot or WAL sender frees up); otherwise an operator must change something. */
  readonly passes: boolean;
}

/** Where the fix must run: roles, publications and wal_level are the primary's, even when read on a standby. */
type Where = Pick<ServerCapabilities, 'inRecovery'>;
const onPrimary = (s: Where) => (s.inRecovery ? 'on the primary: ' : '');

// One builder per problem: the fix is written here and nowhere else. The problem line comes from
// the capabilities read or from PostgreSQL's own error, whichever found it.

export function standbyTooOld(problem: string): Diagnosis {
  return {
    code: 'PG_STANDBY_VERSION',
    problem,
    fix: 'upgrade the replica to PostgreSQL 16 or later, or point EDGEPROXY_DATABASE_URL at the primary; or accept polling with EDGEPROXY_SYNC_MODE=poll',
    passes: false,
  };
}

export function walLevelNotLogical(problem: string, s: Where): Diagnosis {
  const where = s.inRecovery ? ' (on the primary and on this standby)' : '';
  return { code: 'PG_WAL_LEVEL', problem, fix: `ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL${where}`, passes: false };
}

export function noReplicationRole(problem: string, s: Pick<ServerCapabilities, 'role' | 'inRecovery'>): Diagnosis {
  return {
    code: 'PG_REPLICATION_ROLE',
    problem,
    fix: `${onPrimary(s)}ALTER ROLE ${pg.escapeIdentifier(s.role)} WITH REPLICATION;`,
    passes: false,
  };
}

export function hotStandbyFeedbackOff(problem: string): Diagnosis {
  return {
    code: 'PG_HOT_STANDBY_FEEDBACK',
    problem,
    fix: 'on this standby: ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf();',
    passes: false,
  };
}

/** `where`: the server as serverAddress() names it. */
export function hbaRejected(problem: string, where: string): Diagnosis {
  return {
    code: 'PG_HBA_REJECTED',
    problem,
    // A logical replication connection matches pg_hba.conf lines by database, like a query's.
    fix: `allow this host and user for this database in pg_hba.conf on ${where}, then SELECT pg_reload_conf()`,
    passes: false,
  };
}

export function noFreeSlot(problem: string): Diagnosis {
  return {
    code: 'PG_SLOTS_FULL',
    problem,
    fix: 'raise max_replication_slots (ALTER SYSTEM SET max_replication_slots = <proxies + other consumers + spare>; restart), or drop unused slots with SELECT pg_drop_replication_slot(slot_name)',
    passes: true,
  };
}

export function noFreeWalSender(problem: string): Diagnosis {
  return {
    code: 'PG_WAL_SENDERS_FULL',
    problem,
    fix: 'raise max_wal_senders (ALTER SYSTEM SET max_wal_senders = <proxies + standbys + spare>; restart)',
    passes: true,
  };
}

/** Columns the routing query reads are missing: which, what the table has instead, and the setting (or why there is none). */
export function columnsMissing(missing: readonly MissingColumn[]): Diagnosis {
  const problems = missing.map((m) => {
    const what = m.configurable ? "the region's load balancer address, EDGEPROXY_REGION_ADDRESS_COLUMN" : 'the documented query reads it';
    const seen = m.candidates.map((c) => `${c.name} (${c.type})`).join(', ');
    return `column ${m.table}.${m.column} does not exist (${what}); ${m.table} has ${seen === '' ? 'no column like it' : seen}`;
  });
  const fixes = missing.map((m) => {
    if (!m.configurable) {
      return `${m.table}.${m.column} is read by that name (only the region's address column is a setting): check that EDGEPROXY_DATABASE_URL points at the control plane's database`;
    }
    const best = m.candidates[0]?.name;
    return best === undefined
      ? "set EDGEPROXY_REGION_ADDRESS_COLUMN to the column of regions holding its load balancer's address"
      : `set EDGEPROXY_REGION_ADDRESS_COLUMN=${best} (or --region-address-column ${best})`;
  });
  return { code: 'SCHEMA_COLUMN_MISSING', problem: problems.join('; '), fix: fixes.join('; '), passes: false };
}

/** host:port/database of a database URL, for fixes that must say which server (never the password). */
export function serverAddress(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  return `${url.hostname}:${url.port || '5432'}${url.pathname}`;
}

// From the capabilities: each check's problem, undefined when it is fine.

export function standbyVersionProblem(c: ServerCapabilities): Diagnosis | undefined {
  if (!c.inRecovery || c.serverVersionNum >= STANDBY_DECODING_MIN_VERSION) return undefined;
  return standbyTooOld(
    `this is a PostgreSQL ${c.serverVersion} standby, and logical decoding on a standby needs PostgreSQL 16 or later, so EdgeProxy can only poll it`,
  );
}

export function hotStandbyFeedbackProblem(c: ServerCapabilities): Diagnosis | undefined {
  if (!c.inRecovery || c.hotStandbyFeedback) return undefined;
  return hotStandbyFeedbackOff(
    'standby (read replica) that can decode logical replication, but hot_standby_feedback is off: catalog vacuum on the primary would invalidate the slot',
  );
}

export function walLevelProblem(c: ServerCapabilities): Diagnosis | undefined {
  if (c.walLevel === 'logical') return undefined;
  return walLevelNotLogical(`wal_level is '${c.walLevel}'; logical replication needs 'logical'`, c);
}

export function replicationRoleProblem(c: ServerCapabilities): Diagnosis | undefined {
  if (c.replication) return undefined;
  return noReplicationRole(`role ${pg.escapeIdentifier(c.role)} lacks the REPLICATION attribute`, c);
}

export function slotsProblem(c: ServerCapabilities): Diagnosis | undefined {
  if (c.usedReplicationSlots < c.maxReplicationSlots) return undefined;
  return noFreeSlot(`all ${c.maxReplicationSlots} replication slots are in use`);
}

export function walSendersProblem(c: ServerCapabilities): Diagnosis | undefined {
  if (c.usedWalSenders < c.maxWalSenders) return undefined;
  return noFreeWalSender(`all ${c.maxWalSenders} WAL senders are busy`);
}

export function columnsProblem(c: ColumnCheck): Diagnosis | undefined {
  return c.missing.length === 0 ? undefined : columnsMissing(c.missing);
}

/** Why this server can never stream to us as configured (an operator must change a setting or a role). */
export function streamingUnavailable(c: ServerCapabilities): Diagnosis | undefined {
  return standbyVersionProblem(c) ?? walLevelProblem(c) ?? replicationRoleProblem(c);
}

/** Why it cannot stream right now, though it may soon: every slot or WAL sender is taken. */
export function streamingCapacity(c: ServerCapabilities): Diagnosis | undefined {
  return slotsProblem(c) ?? walSendersProblem(c);
}

/** PostgreSQL's error as one line: message, detail, SQLSTATE (Node's codes, ECONNREFUSED..., are in their message already). */
export function pgErrorLine(err: unknown): string {
  const e = describePgError(err);
  const sqlstate = e.code !== undefined && /^[0-9A-Z]{5}$/.test(e.code) ? ` [${e.code}]` : '';
  return `${e.message}${e.detail ? ` (${e.detail})` : ''}${sqlstate}`;
}

/**
 * What an error on a replication connection (from connecting to streaming) means, by SQLSTATE;
 * undefined when it is none of the known problems. `server`: the capabilities read before.
 */
export function diagnoseReplicationError(err: unknown, server: ServerCapabilities, where: string): Diagnosis | undefined {
  const { code, message } = describePgError(err);
  const problem = pgErrorLine(err);
  switch (code) {
    case '42501': // insufficient_privilege: the only privilege a replication connection needs is REPLICATION
      return noReplicationRole(problem, server);
    case '28000': // invalid_authorization_specification: pg_hba.conf
      return hbaRejected(problem, where);
    case '53400': // configuration_limit_exceeded: "all replication slots are in use"
      return noFreeSlot(problem);
    case '53300': // too_many_connections: for a WAL sender process this is max_wal_senders
      return noFreeWalSender(problem);
    // PostgreSQL has no SQLSTATE of its own for these two: 55000 (object_not_in_prerequisite_state)
    // also covers e.g. an invalidated slot, 0A000 (feature_not_supported) any unsupported feature. Its
    // message is the only tell, read here and nowhere else.
    case '55000':
      return /wal_level/i.test(message) ? walLevelNotLogical(problem, server) : undefined;
    case '0A000':
      return /recovery/i.test(message) ? standbyTooOld(problem) : undefined;
    default:
      return undefined;
  }
}

/**
 * A known problem found in the database where the finder can only throw (a load, a publication
 * check): the stream makes its failure from the diagnosis, the poller logs it; both in its words.
 */
export class DiagnosedError extends EdgeProxyError {
  override name = 'DiagnosedError';
  readonly diagnosis: Diagnosis;

  constructor(d: Diagnosis, options: ErrorOptions = {}) {
    super(d.code, `${d.problem}. Fix: ${d.fix}`, { ...options, fix: d.fix });
    this.diagnosis = d;
  }
}
