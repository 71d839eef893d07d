import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerCapabilities } from '../src/db/capabilities.js';
import { streamingCapacity, streamingUnavailable, walLevelProblem } from '../src/db/diagnosis.js';
import { PublicationError } from '../src/db/publication.js';
import { EdgeProxyError } from '../src/errors.js';
import { serverFailure } from '../src/replication/setup-steps.js';
import { StreamError, toStreamError, type FailureContext } from '../src/replication/stream-error.js';

// How the stream's setup names what is wrong with a server (src/db/diagnosis.ts), without a server:
// test/doctor.test.ts shows doctor says the same on real PostgreSQL.

const CAPS: ServerCapabilities = {
  serverVersion: '18.4',
  serverVersionNum: 180004,
  inRecovery: false,
  walLevel: 'logical',
  role: 'edge',
  replication: true,
  superuser: false,
  maxReplicationSlots: 10,
  usedReplicationSlots: 2,
  maxWalSenders: 10,
  usedWalSenders: 2,
  hotStandbyFeedback: false,
};

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });
const onReplication = (server: ServerCapabilities = CAPS): FailureContext => ({
  server,
  where: 'db:5432/zeitwork',
  onReplicationConnection: true,
});

describe('check_server', () => {
  it('a server that can stream passes', () => {
    assert.equal(serverFailure(CAPS), undefined);
  });

  it('wal_level: unavailable, in the words doctor prints (its detail, then its fix)', () => {
    const caps = { ...CAPS, walLevel: 'replica' };
    const err = serverFailure(caps)!;
    const doctor = walLevelProblem(caps)!; // doctor's wal_level check prints exactly this
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.code, 'STREAM_UNAVAILABLE');
    assert.equal(err.diagnosis, 'PG_WAL_LEVEL');
    assert.equal(
      err.message,
      "wal_level is 'replica'; logical replication needs 'logical'. Fix: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
    );
    assert.equal(err.message, `${doctor.problem}. Fix: ${doctor.fix}`);
    assert.equal(err.fixSql, doctor.fix);
    assert.equal(
      serverFailure({ ...caps, inRecovery: true })!.fix,
      'ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (on the primary and on this standby)',
    );
  });

  it('a PostgreSQL 15 standby is named first, whatever else is wrong', () => {
    const err = serverFailure({
      ...CAPS,
      inRecovery: true,
      serverVersion: '15.18',
      serverVersionNum: 150018,
      walLevel: 'replica',
      replication: false,
    })!;
    assert.equal(err.diagnosis, 'PG_STANDBY_VERSION');
    assert.match(err.message, /^this is a PostgreSQL 15\.18 standby, and logical decoding on a standby needs PostgreSQL 16 or later/);
  });

  it('no REPLICATION attribute: unavailable, with the ALTER ROLE (on the primary when this is a standby)', () => {
    const err = serverFailure({ ...CAPS, replication: false, inRecovery: true })!;
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.fix, 'on the primary: ALTER ROLE "edge" WITH REPLICATION;');
  });

  it('no free slot or WAL sender: transient (it frees up), with the setting to raise', () => {
    const slots = serverFailure({ ...CAPS, usedReplicationSlots: 10 })!;
    assert.equal(slots.kind, 'transient');
    assert.equal(slots.code, 'STREAM_TRANSIENT');
    assert.equal(slots.diagnosis, 'PG_SLOTS_FULL');
    assert.match(slots.message, /^all 10 replication slots are in use\. Fix: raise max_replication_slots/);
    assert.equal(serverFailure({ ...CAPS, usedWalSenders: 10 })!.diagnosis, 'PG_WAL_SENDERS_FULL');
    assert.equal(streamingUnavailable({ ...CAPS, usedWalSenders: 10 }), undefined, 'capacity is not a setting');
    assert.equal(streamingCapacity({ ...CAPS, walLevel: 'minimal' }), undefined);
  });
});

describe('failure classification', () => {
  it('each kind has its code', () => {
    const codes = (['unavailable', 'publication', 'resync', 'transient'] as const).map((k) => new StreamError('streaming', k, 'x').code);
    assert.deepEqual(codes, ['STREAM_UNAVAILABLE', 'STREAM_PUBLICATION', 'STREAM_RESYNC', 'STREAM_TRANSIENT']);
  });

  it('stream and publication errors are in the family, with the SQL as their fix', () => {
    const e = new StreamError('check_publication', 'publication', 'publication "edgeproxy" does not exist', 'CREATE PUBLICATION …;');
    assert.ok(e instanceof EdgeProxyError);
    assert.equal(e.fix, 'CREATE PUBLICATION …;');
    assert.equal(e.fixSql, e.fix);
    const p = new PublicationError('publication "edgeproxy" does not exist', 'CREATE PUBLICATION …;');
    assert.ok(p instanceof EdgeProxyError);
    assert.equal(p.code, 'STREAM_PUBLICATION');
    assert.equal(p.fix, 'CREATE PUBLICATION …;');
  });

  it('a publication that may not be fixed: kind publication, the SQL as the fix', () => {
    const sql = 'CREATE PUBLICATION "edgeproxy" FOR TABLE "domains", "deployments", "vms", "regions";';
    const err = toStreamError(
      'check_publication',
      new PublicationError(`publication "edgeproxy" does not exist; run on the primary: ${sql}`, sql),
      onReplication(),
    );
    assert.equal(err.kind, 'publication');
    assert.equal(err.code, 'STREAM_PUBLICATION');
    assert.equal(err.step, 'check_publication');
    assert.equal(err.fixSql, sql);
  });

  it('a StreamError stays as it is', () => {
    const e = new StreamError('streaming', 'resync', 'TRUNCATE of domains');
    assert.equal(toStreamError('create_slot', e, onReplication()), e);
  });

  for (const [code, message, kind, diagnosis, fix] of [
    ['42501', 'permission denied to start WAL sender', 'unavailable', 'PG_REPLICATION_ROLE', 'ALTER ROLE "edge" WITH REPLICATION;'],
    [
      '28000',
      'no pg_hba.conf entry for host "10.0.0.9", user "edge", database "zeitwork", no encryption',
      'unavailable',
      'PG_HBA_REJECTED',
      'allow this host and user for this database in pg_hba.conf on db:5432/zeitwork, then SELECT pg_reload_conf()',
    ],
    ['53400', 'all replication slots are in use', 'transient', 'PG_SLOTS_FULL', undefined],
    [
      '53300',
      'number of requested standby connections exceeds "max_wal_senders" (currently 10)',
      'transient',
      'PG_WAL_SENDERS_FULL',
      undefined,
    ],
    [
      '55000',
      'logical decoding on standby requires "wal_level" >= "logical" on the primary',
      'unavailable',
      'PG_WAL_LEVEL',
      'ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL',
    ],
    ['0A000', 'logical decoding cannot be used while in recovery', 'unavailable', 'PG_STANDBY_VERSION', undefined],
  ] as const) {
    it(`SQLSTATE ${code} on the replication connection: ${kind}, ${diagnosis}`, () => {
      const err = toStreamError('create_slot', pgError(code, message), onReplication());
      assert.equal(err.step, 'create_slot');
      assert.equal(err.kind, kind);
      assert.equal(err.diagnosis, diagnosis);
      assert.ok(err.message.startsWith(`${message} [${code}]. Fix: `), err.message);
      if (fix !== undefined) assert.equal(err.fix, fix);
      assert.equal(err.message, `${message} [${code}]. Fix: ${err.fix}`);
    });
  }

  it('a 55000 that is not about wal_level (an invalidated slot) is transient, undiagnosed', () => {
    const err = toStreamError('start_streaming', pgError('55000', 'can no longer get changes from replication slot "s"'), onReplication());
    assert.equal(err.kind, 'transient');
    assert.equal(err.diagnosis, undefined);
    assert.equal(err.fix, undefined);
    assert.equal(err.message, 'can no longer get changes from replication slot "s" [55000]');
  });

  it('on the normal connection a 42501 is a table permission, not REPLICATION: transient, no fix guessed', () => {
    const err = toStreamError('load_snapshot', pgError('42501', 'permission denied for table vms'), {
      ...onReplication(),
      onReplicationConnection: false,
    });
    assert.equal(err.kind, 'transient');
    assert.equal(err.fix, undefined);
    assert.equal(err.message, 'permission denied for table vms [42501]');
  });

  it("Node's errors keep their message as it is", () => {
    const err = toStreamError('check_server', pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'), {
      ...onReplication(),
      server: undefined,
    });
    assert.equal(err.message, 'connect ECONNREFUSED 127.0.0.1:5432');
    assert.equal(err.kind, 'transient');
  });
});
