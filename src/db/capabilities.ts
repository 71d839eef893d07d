import type pg from 'pg';

/** What a server offers for logical replication, read with one query on a normal connection. */
export interface ServerCapabilities {
  /** e.g. "18.4" (without a packager suffix such as "(Debian 15.18-0+deb12u1)") */
  readonly serverVersion: string;
  /** e.g. 180004 */
  readonly serverVersionNum: number;
  /** True on a standby (hot standby / read replica). */
  readonly inRecovery: boolean;
  readonly walLevel: string;
  readonly role: string;
  /** The role has the REPLICATION attribute (or is a superuser). */
  readonly replication: boolean;
  readonly superuser: boolean;
  readonly maxReplicationSlots: number;
  readonly usedReplicationSlots: number;
  readonly maxWalSenders: number;
  readonly usedWalSenders: number;
  /** hot_standby_feedback (only matters on a standby). */
  readonly hotStandbyFeedback: boolean;
}

/** Logical decoding on a standby arrived in PostgreSQL 16. */
export const STANDBY_DECODING_MIN_VERSION = 160000;

const QUERY = `SELECT
  current_setting('server_version') AS server_version,
  current_setting('server_version_num')::int AS server_version_num,
  pg_is_in_recovery() AS in_recovery,
  current_setting('wal_level') AS wal_level,
  current_user AS role,
  r.rolreplication AS replication,
  r.rolsuper AS superuser,
  current_setting('max_replication_slots')::int AS max_replication_slots,
  (SELECT count(*) FROM pg_replication_slots)::int AS used_replication_slots,
  current_setting('max_wal_senders')::int AS max_wal_senders,
  (SELECT count(*) FROM pg_stat_replication)::int AS used_wal_senders,
  current_setting('hot_standby_feedback')::bool AS hot_standby_feedback
FROM pg_roles r WHERE r.rolname = current_user`;

export async function readCapabilities(db: pg.ClientBase | pg.Pool): Promise<ServerCapabilities> {
  const { rows } = await db.query<Record<string, unknown>>(QUERY);
  const r = rows[0];
  if (r === undefined) throw new Error('could not read the current role from pg_roles');
  return {
    serverVersion: String(r.server_version).split(' ')[0] ?? '',
    serverVersionNum: Number(r.server_version_num),
    inRecovery: r.in_recovery === true,
    walLevel: String(r.wal_level),
    role: String(r.role),
    replication: r.replication === true || r.superuser === true,
    superuser: r.superuser === true,
    maxReplicationSlots: Number(r.max_replication_slots),
    usedReplicationSlots: Number(r.used_replication_slots),
    maxWalSenders: Number(r.max_wal_senders),
    usedWalSenders: Number(r.used_wal_senders),
    hotStandbyFeedback: r.hot_standby_feedback === true,
  };
}
