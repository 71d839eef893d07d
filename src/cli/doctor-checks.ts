/**
 * `edgeproxy doctor`'s checks: everything EdgeProxy needs from a database, one result per check
 * with, on failure, the fix. The server's problems come from src/db/diagnosis.ts and the
 * publication's from src/db/publication.ts, which the stream's setup uses too, so both say the
 * same words.
 */
import pg from 'pg';
import type { SyncMode } from '../config/config.js';
import { readCapabilities, type ServerCapabilities } from '../db/capabilities.js';
import { checkColumns } from '../db/columns.js';
import {
  columnsProblem,
  hbaRejected,
  hotStandbyFeedbackProblem,
  replicationRoleProblem,
  serverAddress,
  slotsProblem,
  standbyVersionProblem,
  walLevelProblem,
  walSendersProblem,
  type Diagnosis,
} from '../db/diagnosis.js';
import { describePgError } from '../db/errors.js';
import type { ErrorCode } from '../errors.js';
import { checkPrimaryKeys, checkPublication, describePublicationProblem } from '../db/publication.js';
import { routesQuery } from '../db/routes-query.js';
import { routesFromQueryRows } from '../table/query-routes.js';
import { TABLES } from '../table/rows.js';
import { ACME_CHECKS, acmeChecks, type AcmeDoctorOptions } from './doctor-acme.js';
import { TLS_CHECKS, tlsChecks, type TlsDoctorOptions } from './doctor-tls.js';

export type CheckStatus = 'pass' | 'fail' | 'warn' | 'skip';

export interface CheckResult {
  readonly check: string;
  readonly status: CheckStatus;
  /** What was found, one line. */
  readonly detail: string;
  /** How to fix it (fail and warn only). */
  readonly fix?: string;
  /** The problem's stable code, when it is one the stream reports too (src/db/diagnosis.ts). */
  readonly code?: ErrorCode;
}

export interface DoctorOptions {
  readonly databaseUrl: string;
  readonly publication: string;
  readonly syncMode: SyncMode;
  /** EDGEPROXY_REGION_ADDRESS_COLUMN: the routing query and the publication check read it. */
  readonly regionAddressColumn: string;
  /** When given, the route count is split into this region and others. */
  readonly regionId?: string;
  readonly connectTimeoutMs?: number;
  /** The certificate checks' settings; without them those checks are skipped. */
  readonly tls?: TlsDoctorOptions;
  /** The issuance checks' settings (directory, CA roots, primary); without them those checks are skipped. */
  readonly acme?: AcmeDoctorOptions;
}

/** The checks only the stream needs (skipped in sync mode `poll`). */
const STREAMING = ['wal_level', 'publication', 'primary keys', 'replication privilege', 'replication slots', 'wal senders'] as const;

/** Check names, in the order they run and print. */
export const CHECKS = [
  'connect',
  'server version',
  'primary or standby',
  ...STREAMING,
  'read access',
  'routing query',
  'route rows',
  'duplicate domain names',
  ...TLS_CHECKS,
  ...ACME_CHECKS,
] as const;

const STREAMING_CHECKS = new Set<string>(STREAMING);

const pass = (check: string, detail: string): CheckResult => ({ check, status: 'pass', detail });
const fail = (check: string, detail: string, fix: string): CheckResult => ({ check, status: 'fail', detail, fix });
const warn = (check: string, detail: string, fix: string): CheckResult => ({ check, status: 'warn', detail, fix });
const skip = (check: string, detail: string): CheckResult => ({ check, status: 'skip', detail });
/** Fails with a known problem, in the words the stream uses. */
const failWith = (check: string, d: Diagnosis): CheckResult => ({ check, status: 'fail', detail: d.problem, fix: d.fix, code: d.code });
/** Fails with the problem found, or passes saying `ok` when there is none. */
const diagnosed = (check: string, d: Diagnosis | undefined, ok: string): CheckResult =>
  d === undefined ? pass(check, ok) : failWith(check, d);

export async function runDoctor(opts: DoctorOptions): Promise<CheckResult[]> {
  const where = serverAddress(opts.databaseUrl);
  const client = new pg.Client({
    connectionString: opts.databaseUrl,
    application_name: 'edgeproxy doctor',
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
  });
  client.on('error', () => undefined);
  const started = performance.now();
  try {
    await client.connect();
  } catch (err) {
    return [connectFailure(err, where), ...CHECKS.slice(1).map((c) => skip(c, 'not checked: no connection'))];
  }
  try {
    // A check must not hang on a lock or a huge table forever.
    await client.query(`SET statement_timeout = '60s'`);
    const results: CheckResult[] = [];
    const caps = await readCapabilities(client);
    results.push(pass('connect', `connected to ${where} as ${caps.role} in ${Math.round(performance.now() - started)} ms`));
    results.push(...serverChecks(caps));
    const streaming = opts.syncMode === 'poll' ? [] : await streamingChecks(client, caps, opts.publication, opts.regionAddressColumn);
    for (const name of STREAMING_CHECKS) {
      results.push(streaming.find((r) => r.check === name) ?? skip(name, 'not needed with EDGEPROXY_SYNC_MODE=poll'));
    }
    results.push(...(await queryChecks(client, caps, opts.regionAddressColumn, opts.regionId)));
    results.push(
      ...(opts.tls === undefined ? TLS_CHECKS.map((c) => skip(c, 'not checked')) : await tlsChecks(client, caps.role, opts.tls)),
    );
    results.push(...(opts.acme === undefined ? ACME_CHECKS.map((c) => skip(c, 'not checked')) : await acmeChecks(opts.acme)));
    return results;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function connectFailure(err: unknown, where: string): CheckResult {
  const e = describePgError(err);
  const detail = `cannot connect to ${where}: ${e.message}${e.code ? ` (${e.code})` : ''}`;
  // pg_hba.conf is the one the stream's replication connection meets too.
  if (e.code === '28000') return failWith('connect', hbaRejected(detail, where));
  return fail('connect', detail, connectFix(e.code, where));
}

function connectFix(code: string | undefined, where: string): string {
  switch (code) {
    case '28P01':
      return 'check the user name and password in EDGEPROXY_DATABASE_URL';
    case '3D000':
      return 'the database in EDGEPROXY_DATABASE_URL does not exist: fix its name (the part after the last /)';
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
      return `is PostgreSQL running and reachable at ${where}? Check the host and port in EDGEPROXY_DATABASE_URL, listen_addresses and firewalls`;
    default:
      return 'check EDGEPROXY_DATABASE_URL (postgres://user:password@host:5432/database) and that the server accepts this connection';
  }
}

function serverChecks(c: ServerCapabilities): CheckResult[] {
  const out: CheckResult[] = [];
  const major = Math.floor(c.serverVersionNum / 10_000);
  out.push(
    major >= 10
      ? pass('server version', `PostgreSQL ${c.serverVersion}`)
      : fail(
          'server version',
          `PostgreSQL ${c.serverVersion} has no logical replication (pgoutput)`,
          'upgrade to PostgreSQL 16 or later (10 at the very least)',
        ),
  );
  out.push(
    diagnosed(
      'primary or standby',
      standbyVersionProblem(c) ?? hotStandbyFeedbackProblem(c),
      c.inRecovery
        ? `standby (read replica) with hot_standby_feedback on; PostgreSQL ${c.serverVersion} can decode logical replication on a standby`
        : 'primary (not in recovery)',
    ),
  );
  return out;
}

async function streamingChecks(
  client: pg.Client,
  c: ServerCapabilities,
  publication: string,
  regionAddressColumn: string,
): Promise<CheckResult[]> {
  return [
    diagnosed('wal_level', walLevelProblem(c), 'logical'),
    await publicationCheck(client, c, publication, regionAddressColumn),
    await primaryKeysCheck(client),
    ...senderChecks(c),
  ];
}

async function publicationCheck(
  client: pg.Client,
  c: ServerCapabilities,
  publication: string,
  regionAddressColumn: string,
): Promise<CheckResult> {
  const pub = await checkPublication(client, publication, c.serverVersionNum, regionAddressColumn);
  const problem = describePublicationProblem(pub);
  const onPrimary = c.inRecovery ? 'on the primary (this server is a standby): ' : '';
  return problem === undefined
    ? pass('publication', `"${publication}" publishes insert, update, delete and truncate of ${TABLES.join(', ')}`)
    : fail('publication', problem, `${onPrimary}${pub.fixSql ?? ''}`);
}

async function primaryKeysCheck(client: pg.Client): Promise<CheckResult> {
  const bad = (await checkPrimaryKeys(client)).filter((k) => !k.ok);
  return bad.length === 0
    ? pass('primary keys', `${TABLES.join(', ')} have a primary key (id): deletes and key changes can be applied`)
    : fail(
        'primary keys',
        bad.map((k) => k.problem).join('; '),
        bad.map((k) => k.fixSql ?? `create table ${k.table} (run \`edgeproxy migrate\` on a development database)`).join(' '),
      );
}

/** What a walsender for this proxy needs of the server: the privilege, a free slot, a free sender. */
function senderChecks(c: ServerCapabilities): CheckResult[] {
  const freeSlots = c.maxReplicationSlots - c.usedReplicationSlots;
  const freeSenders = c.maxWalSenders - c.usedWalSenders;
  return [
    diagnosed(
      'replication privilege',
      replicationRoleProblem(c),
      `role ${c.role} ${c.superuser ? 'is a superuser' : 'has the REPLICATION attribute'}`,
    ),
    diagnosed(
      'replication slots',
      slotsProblem(c),
      `${c.usedReplicationSlots} of ${c.maxReplicationSlots} in use, ${freeSlots} free (each proxy streaming from this server takes one temporary slot)`,
    ),
    diagnosed(
      'wal senders',
      walSendersProblem(c),
      `${c.usedWalSenders} of ${c.maxWalSenders} in use, ${freeSenders} free (each streaming proxy takes one)`,
    ),
  ];
}

async function queryChecks(
  client: pg.Client,
  c: ServerCapabilities,
  regionAddressColumn: string,
  regionId: string | undefined,
): Promise<CheckResult[]> {
  const access = await readAccessCheck(client, c);
  const notRun = (query: CheckResult, why: string) => [
    access,
    query,
    skip('route rows', `not checked: ${why}`),
    skip('duplicate domain names', `not checked: ${why}`),
  ];
  // A missing column is named with what the table has instead, in the words the stream and the poller use.
  const missing = columnsProblem(await checkColumns(client, regionAddressColumn));
  if (missing !== undefined) return notRun(failWith('routing query', missing), 'the query cannot run');
  const started = performance.now();
  let rows: Record<string, unknown>[];
  try {
    rows = (await client.query<Record<string, unknown>>(routesQuery(regionAddressColumn))).rows;
  } catch (err) {
    return notRun(queryFailed(err), 'the query failed');
  }
  const ms = Math.round(performance.now() - started);
  const loaded = routesFromQueryRows(rows);
  return [access, routeCount(rows.length, loaded, ms, regionId), skippedRows(loaded.problems), duplicateNames(loaded.duplicates)];
}

async function readAccessCheck(client: pg.Client, c: ServerCapabilities): Promise<CheckResult> {
  const priv = await client.query<{ name: string; exists: boolean; can: boolean | null }>(
    `SELECT t.name, to_regclass(t.name) IS NOT NULL AS exists,
            CASE WHEN to_regclass(t.name) IS NULL THEN NULL ELSE has_table_privilege(to_regclass(t.name), 'SELECT') END AS can
       FROM unnest($1::text[]) AS t(name)`,
    [TABLES],
  );
  const missing = priv.rows.filter((r) => !r.exists).map((r) => r.name);
  const denied = priv.rows.filter((r) => r.exists && r.can !== true).map((r) => r.name);
  if (missing.length > 0) {
    return fail(
      'read access',
      `table${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not found (search_path: public)`,
      "point EDGEPROXY_DATABASE_URL at the control plane's database, or run `edgeproxy migrate` on a development database",
    );
  }
  if (denied.length > 0) {
    return fail(
      'read access',
      `role ${c.role} may not SELECT from ${denied.join(', ')}`,
      `${c.inRecovery ? 'on the primary: ' : ''}GRANT SELECT ON ${TABLES.join(', ')} TO ${pg.escapeIdentifier(c.role)};`,
    );
  }
  return pass('read access', `role ${c.role} may SELECT from ${TABLES.join(', ')}`);
}

function queryFailed(err: unknown): CheckResult {
  const e = describePgError(err);
  return fail(
    'routing query',
    `the documented query failed: ${e.message}${e.code ? ` (${e.code})` : ''}`,
    'the four tables need the columns the documented query reads (README, "The route table")',
  );
}

type Loaded = ReturnType<typeof routesFromQueryRows>;

function routeCount(rowCount: number, loaded: Loaded, ms: number, regionId: string | undefined): CheckResult {
  const routes = loaded.routes.size;
  let split = '';
  if (regionId !== undefined) {
    let here = 0;
    for (const r of loaded.routes.values()) if (r.vmRegionId === regionId) here += 1;
    split = ` (${here} in region ${regionId}, ${routes - here} in other regions)`;
  }
  if (routes > 0) {
    return pass(
      'routing query',
      `${rowCount} row${rowCount === 1 ? '' : 's'} → ${routes} route${routes === 1 ? '' : 's'}${split} in ${ms} ms`,
    );
  }
  return warn(
    'routing query',
    `runs, but returns no routable row (${rowCount} rows): every request would get 404`,
    'a domain routes when verified_at is set, its deployment is ready and its VM is running, with an IP, a port and a region',
  );
}

function skippedRows(problems: Loaded['problems']): CheckResult {
  if (problems.length === 0) return pass('route rows', 'every row of the query can be routed');
  const examples = problems
    .slice(0, 3)
    .map((p) => `${p.domain}: ${p.field} ${JSON.stringify(p.value)} is ${p.reason}`)
    .join('; ');
  return warn(
    'route rows',
    `${problems.length} row${problems.length === 1 ? '' : 's'} skipped, e.g. ${examples}`,
    'fix those values in the control plane (the proxy logs each as "skipped a route row")',
  );
}

function duplicateNames(dups: Loaded['duplicates']): CheckResult {
  if (dups.length === 0) return pass('duplicate domain names', 'every routed host comes from one row');
  const examples = dups
    .slice(0, 3)
    .map((d) => `${d.host} (${d.others.length + 1} rows)`)
    .join(', ');
  return warn(
    'duplicate domain names',
    `${dups.length} host${dups.length === 1 ? ' is' : 's are'} routed by several rows, e.g. ${examples}; the row with the smallest (vm_region_id, vm_private_ip, vm_port, region_public_ip) wins`,
    'keep domain names unique among verified domains (docs/decisions/0002-duplicate-domains.md)',
  );
}
