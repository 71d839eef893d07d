import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Pgoutput } from 'pg-logical-replication';
import { ChangeDecoder, type TableShapes } from '../src/replication/decode.js';
import { formatLsn, maxLsn, normaliseLsn, parseLsn } from '../src/replication/lsn.js';
import { standbyStatusUpdate } from '../src/replication/status-update.js';
import { makeSlotName, SETUP_TRANSITIONS } from '../src/replication/stream.js';
import { ProtocolError, TransactionCollector } from '../src/replication/transaction.js';

describe('LSNs', () => {
  it('compare as numbers whatever the padding', () => {
    assert.equal(parseLsn('0/1E33460'), 0x1e33460n);
    assert.equal(parseLsn('00000000/01E334D8'), 0x1e334d8n);
    assert.equal(parseLsn('1/0'), 1n << 32n);
    assert.equal(maxLsn('0/FFFFFFFF', '1/0'), '1/0');
    assert.equal(maxLsn('00000000/0000000A', '0/9'), '00000000/0000000A', 'a string comparison would pick 0/9');
    assert.equal(normaliseLsn('00000001/000000AB'), '1/AB');
    assert.equal(formatLsn(0x1_0000_00abn), '1/AB');
  });
  it('reject what is not an LSN', () => {
    for (const bad of ['', '0', '0/', '/1', 'G/1', '0/123456789', '0/1 ', '-1/0']) assert.throws(() => parseLsn(bad), RangeError, bad);
  });
});

const rel = (name: string, columns: [string, number][], opts: Partial<Pgoutput.MessageRelation> = {}): Pgoutput.MessageRelation => ({
  tag: 'relation',
  relationOid: 1,
  schema: 'public',
  name,
  replicaIdentity: 'default',
  columns: columns.map(([n, typeOid]) => ({
    name: n,
    flags: n === 'id' ? 1 : 0,
    typeOid,
    typeMod: -1,
    typeSchema: null,
    typeName: null,
    parser: (x: unknown) => x,
  })),
  keyColumns: ['id'],
  ...opts,
});
const UUID = 2950;
const TEXT = 25;
const TS = 1184;
const INET = 869;
const INT4 = 23;
const shape = (types: Record<string, number>) => ({ schema: 'public', columns: Object.keys(types), types });
const SHAPES: TableShapes = {
  domains: shape({ id: UUID, name: TEXT, deployment_id: UUID, verified_at: TS }),
  deployments: shape({ id: UUID, status: 16000, vm_id: UUID }),
  vms: shape({ id: UUID, private_ip: INET, port: INT4, region_id: UUID, status: 16001 }),
  regions: shape({ id: UUID, public_ipv4: INET }),
};
const VMS = rel('vms', [
  ['id', UUID],
  ['private_ip', INET],
  ['port', INT4],
  ['region_id', UUID],
  ['status', 16001],
  ['note', TEXT],
]);

/** A whole vms tuple, as pgoutput sends it (every column of the relation). */
const vm = (columns: Record<string, unknown>) => ({
  id: 'a',
  private_ip: '10.0.0.1',
  port: 1,
  region_id: 'r',
  status: 'running',
  note: null,
  ...columns,
});

describe('ChangeDecoder', () => {
  const d = new ChangeDecoder(SHAPES);
  it('turns begin/commit into transaction bounds with commit times in ms', () => {
    assert.deepEqual(d.decode({ tag: 'begin', commitLsn: '00000000/00000010', commitTime: 1_700_000_000_123_456n, xid: 7 }), {
      kind: 'begin',
      xid: 7,
      commitTimeMs: 1_700_000_000_123.456,
    });
    assert.deepEqual(d.decode({ tag: 'commit', flags: 0, commitLsn: '0/10', commitEndLsn: '00000000/00000040', commitTime: 1n }), {
      kind: 'commit',
      endLsn: '00000000/00000040',
      commitTimeMs: 0.001,
    });
  });
  it('maps inserts, updates and deletes of the routing tables to row changes', () => {
    assert.deepEqual(d.decode({ tag: 'insert', relation: VMS, new: vm({ id: 'a', port: 1 }) }), {
      kind: 'change',
      change: { op: 'insert', table: 'vms', row: vm({ id: 'a', port: 1 }) },
    });
    assert.deepEqual(d.decode({ tag: 'update', relation: VMS, key: null, old: null, new: vm({ id: 'a', port: 2 }) }), {
      kind: 'change',
      change: { op: 'update', table: 'vms', row: vm({ id: 'a', port: 2 }) },
    });
    // primary key changed: the old key comes along
    assert.deepEqual(d.decode({ tag: 'update', relation: VMS, key: { id: 'a' }, old: null, new: vm({ id: 'b' }) }), {
      kind: 'change',
      change: { op: 'update', table: 'vms', row: vm({ id: 'b' }), oldId: 'a' },
    });
    // REPLICA IDENTITY FULL sends the old row even when the key did not change
    assert.deepEqual(d.decode({ tag: 'update', relation: VMS, key: null, old: vm({ id: 'b', port: 1 }), new: vm({ id: 'b', port: 3 }) }), {
      kind: 'change',
      change: { op: 'update', table: 'vms', row: vm({ id: 'b', port: 3 }) },
    });
    assert.deepEqual(d.decode({ tag: 'delete', relation: VMS, key: { id: 'b' }, old: null }), {
      kind: 'change',
      change: { op: 'delete', table: 'vms', id: 'b' },
    });
  });
  it('skips tables it does not route from, and tables of the same name in another schema', () => {
    assert.equal(d.decode({ tag: 'insert', relation: rel('audit', [['id', UUID]]), new: { id: 'x' } }).kind, 'skip');
    assert.equal(d.decode({ tag: 'insert', relation: { ...VMS, schema: 'archive' }, new: { id: 'x' } }).kind, 'skip');
    assert.equal(
      d.decode({ tag: 'truncate', cascade: false, restartIdentity: false, relations: [rel('audit', [['id', UUID]])] }).kind,
      'skip',
    );
  });
  it('asks for a resync on TRUNCATE of a routing table', () => {
    const r = d.decode({ tag: 'truncate', cascade: true, restartIdentity: false, relations: [rel('audit', [['id', UUID]]), VMS] });
    assert.deepEqual(r, { kind: 'resync', reason: 'TRUNCATE of vms' });
  });
  it('accepts a relation with new columns, and asks for a resync when a read column goes or changes type', () => {
    assert.equal(d.decode(VMS).kind, 'skip');
    const dropped = d.decode(
      rel('vms', [
        ['id', UUID],
        ['private_ip', INET],
        ['region_id', UUID],
        ['status', 16001],
      ]),
    );
    assert.deepEqual(dropped, { kind: 'resync', reason: 'vms.port is no longer published (schema change)' });
    const retyped = d.decode(
      rel('vms', [
        ['id', UUID],
        ['private_ip', INET],
        ['port', 20],
        ['region_id', UUID],
        ['status', 16001],
      ]),
    );
    assert.deepEqual(retyped, { kind: 'resync', reason: 'vms.port changed type (schema change)' });
  });
  it('asks for a resync when deletes would not carry the id', () => {
    const r = d.decode(
      rel(
        'regions',
        [
          ['id', UUID],
          ['public_ipv4', INET],
        ],
        { replicaIdentity: 'index', keyColumns: ['public_ipv4'] },
      ),
    );
    assert.equal(r.kind, 'resync');
    assert.equal(
      d.decode(
        rel(
          'regions',
          [
            ['id', UUID],
            ['public_ipv4', INET],
          ],
          { replicaIdentity: 'full', keyColumns: [] },
        ),
      ).kind,
      'skip',
    );
    assert.equal(d.decode({ tag: 'delete', relation: VMS, key: null, old: null }).kind, 'resync');
  });
});

describe('TransactionCollector', () => {
  it('collects whole transactions', () => {
    const c = new TransactionCollector();
    c.begin(5);
    assert.equal(c.inTransaction, true);
    c.add({ op: 'delete', table: 'vms', id: 'a' });
    c.add({ op: 'insert', table: 'vms', row: { id: 'b' } });
    c.addTls({ op: 'delete', table: 'edgeproxy_acme_challenges', key: 't1' });
    const tx = c.commit('0/20', 1000);
    assert.deepEqual(tx, {
      xid: 5,
      changes: [
        { op: 'delete', table: 'vms', id: 'a' },
        { op: 'insert', table: 'vms', row: { id: 'b' } },
      ],
      tlsChanges: [{ op: 'delete', table: 'edgeproxy_acme_challenges', key: 't1' }],
      endLsn: '0/20',
      commitTimeMs: 1000,
    });
    assert.equal(c.inTransaction, false);
  });
  it('rejects changes and commits outside a transaction, and nested begins', () => {
    const c = new TransactionCollector();
    assert.throws(() => c.add({ op: 'delete', table: 'vms', id: 'a' }), ProtocolError);
    assert.throws(() => c.commit('0/1', 0), ProtocolError);
    c.begin(1);
    assert.throws(() => c.begin(2), ProtocolError);
  });
});

describe('standby status update', () => {
  it('reports the LSN itself as written, flushed and applied, with the clock since 2000-01-01 in µs', () => {
    const b = standbyStatusUpdate(0x1_0000_0040n, Date.UTC(2000, 0, 1, 0, 0, 1), true);
    assert.equal(b.length, 34);
    assert.equal(b[0], 0x72);
    for (const at of [1, 9, 17]) assert.equal(b.readBigUInt64BE(at), 0x1_0000_0040n);
    assert.equal(b.readBigInt64BE(25), 1_000_000n);
    assert.equal(b[33], 1);
  });
});

describe('setup', () => {
  it('steps form one chain from check_server to streaming', () => {
    const seen: string[] = [];
    for (let s: keyof typeof SETUP_TRANSITIONS | undefined = 'check_server'; s !== undefined; s = SETUP_TRANSITIONS[s]) seen.push(s);
    assert.deepEqual(seen, [
      'check_server',
      'check_publication',
      'connect_replication',
      'create_slot',
      'load_snapshot',
      'start_streaming',
      'streaming',
    ]);
  });
  it('slot names are valid, unique and name the host and pid', () => {
    const a = makeSlotName('Edge-01.fra.example.com', 4242);
    assert.match(a, /^edgeproxy_edge_01_fra_example_com_4242_[0-9a-f]{8}$/);
    assert.notEqual(makeSlotName('h', 1), makeSlotName('h', 1));
    assert.ok(makeSlotName('x'.repeat(200), 99999).length <= 63);
    assert.match(makeSlotName('---', 1), /^edgeproxy_host_1_/);
  });
});
