import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { ChangeDecoder, type Decoded, type TableShapes } from '../src/replication/decode.js';
import { READ_COLUMNS, TABLES, type TableName } from '../src/table/rows.js';
import { runs } from './support/property.js';

/**
 * The pgoutput path fed damaged bytes: the library's parser (PgoutputPlugin.parse, as
 * src/replication/session.ts calls it, a throw becoming a parse error that ends the stream) and
 * then ChangeDecoder. Whatever the bytes: nothing throws out of the decoder, and a message either
 * fails to parse, asks for a resync, is skipped, or is a begin/commit (whose order the
 * TransactionCollector checks) or a change with the exact shape of its relation. What no decoder
 * can see is a flipped byte inside a text value: pgoutput has no checksum (TCP and TLS guard the
 * bytes), and such a value goes through the same row validation as any other (bad IP, port, UUID).
 */

const OIDS = { uuid: 2950, text: 25, timestamptz: 1184, inet: 869, int4: 23, status: 16_001 } as const;
const TYPES: { readonly [T in TableName]: Readonly<Record<string, number>> } = {
  domains: { id: OIDS.uuid, name: OIDS.text, deployment_id: OIDS.uuid, verified_at: OIDS.timestamptz },
  deployments: { id: OIDS.uuid, status: OIDS.status, vm_id: OIDS.uuid },
  vms: { id: OIDS.uuid, private_ip: OIDS.inet, port: OIDS.int4, region_id: OIDS.uuid, status: OIDS.status },
  regions: { id: OIDS.uuid, public_ipv4: OIDS.inet },
};
const SHAPES = Object.fromEntries(
  TABLES.map((t) => [t, { schema: 'public', columns: READ_COLUMNS[t], types: TYPES[t] }]),
) as unknown as TableShapes;
/** Relation OIDs 1–4; the vms table also has a column the query does not read. */
const RELATION_OID = Object.fromEntries(TABLES.map((t, i) => [t, i + 1])) as Record<TableName, number>;
const COLUMNS: { readonly [T in TableName]: readonly (readonly [string, number])[] } = {
  domains: READ_COLUMNS.domains.map((c) => [c, TYPES.domains[c]!] as const),
  deployments: READ_COLUMNS.deployments.map((c) => [c, TYPES.deployments[c]!] as const),
  vms: [...READ_COLUMNS.vms.map((c) => [c, TYPES.vms[c]!] as const), ['note', OIDS.text]],
  regions: READ_COLUMNS.regions.map((c) => [c, TYPES.regions[c]!] as const),
};

// ---- a small pgoutput encoder (protocol version 1, text values) -------------------------------

class Writer {
  readonly #parts: Buffer[] = [];
  u8(n: number): this {
    this.#parts.push(Buffer.from([n & 0xff]));
    return this;
  }
  i16(n: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(n);
    this.#parts.push(b);
    return this;
  }
  i32(n: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n | 0);
    this.#parts.push(b);
    return this;
  }
  u64(n: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(n);
    this.#parts.push(b);
    return this;
  }
  str(s: string): this {
    this.#parts.push(Buffer.from(s, 'utf8'), Buffer.from([0]));
    return this;
  }
  bytes(b: Buffer): this {
    this.#parts.push(b);
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

const tag = (c: string) => c.charCodeAt(0);

function relationMessage(table: TableName): Buffer {
  const w = new Writer().u8(tag('R')).i32(RELATION_OID[table]).str('public').str(table).u8(tag('d')).i16(COLUMNS[table].length);
  for (const [name, type] of COLUMNS[table])
    w.u8(name === 'id' ? 1 : 0)
      .str(name)
      .i32(type)
      .i32(-1);
  return w.done();
}

/** A tuple value: text, NULL, or (updates only) an unchanged TOASTed value. */
type Value = string | null | 'unchanged';

function tuple(w: Writer, values: readonly Value[]): Writer {
  w.i16(values.length);
  for (const v of values) {
    if (v === null) w.u8(tag('n'));
    else if (v === 'unchanged') w.u8(tag('u'));
    else w.u8(tag('t')).i32(Buffer.byteLength(v)).bytes(Buffer.from(v, 'utf8'));
  }
  return w;
}

type Change =
  | { readonly op: 'insert'; readonly table: TableName; readonly values: readonly Value[] }
  | { readonly op: 'update'; readonly table: TableName; readonly values: readonly Value[]; readonly oldId?: string }
  | { readonly op: 'delete'; readonly table: TableName; readonly id: string };

function changeMessage(c: Change): Buffer {
  const oid = RELATION_OID[c.table];
  const keyOnly = (id: string) => COLUMNS[c.table].map(([n]) => (n === 'id' ? id : null));
  switch (c.op) {
    case 'insert':
      return tuple(new Writer().u8(tag('I')).i32(oid).u8(tag('N')), c.values).done();
    case 'update': {
      const w = new Writer().u8(tag('U')).i32(oid);
      if (c.oldId !== undefined) tuple(w.u8(tag('K')), keyOnly(c.oldId));
      return tuple(w.u8(tag('N')), c.values).done();
    }
    case 'delete':
      return tuple(new Writer().u8(tag('D')).i32(oid).u8(tag('K')), keyOnly(c.id)).done();
  }
}

const begin = (xid: number) => new Writer().u8(tag('B')).u64(0x10n).u64(1_000_000n).i32(xid).done();
const commit = () => new Writer().u8(tag('C')).u8(0).u64(0x10n).u64(0x20n).u64(1_000_000n).done();
const truncate = (tables: TableName[]) => {
  const w = new Writer().u8(tag('T')).i32(tables.length).u8(0);
  for (const t of tables) w.i32(RELATION_OID[t]);
  return w.done();
};

// ---- generators ------------------------------------------------------------------------------

const uuid = fc.uuid();
const VALUE: Record<number, fc.Arbitrary<string>> = {
  [OIDS.uuid]: uuid,
  [OIDS.text]: fc.string({ maxLength: 20 }),
  [OIDS.timestamptz]: fc.constant('2024-05-01 12:00:00+00'),
  [OIDS.inet]: fc.ipV4(),
  [OIDS.int4]: fc.integer({ min: 1, max: 65535 }).map(String),
  [OIDS.status]: fc.constantFrom('ready', 'running', 'stopped'),
};
const table = fc.constantFrom(...TABLES);
const values = (t: TableName, update: boolean): fc.Arbitrary<Value[]> =>
  fc.tuple(
    ...COLUMNS[t].map(([name, type]) =>
      name === 'id' ? VALUE[type]! : fc.oneof(VALUE[type]!, fc.constant(null), ...(update ? [fc.constant('unchanged' as const)] : [])),
    ),
  );
const change: fc.Arbitrary<Change> = table.chain((t) =>
  fc.oneof(
    values(t, false).map((v) => ({ op: 'insert' as const, table: t, values: v })),
    fc
      .tuple(values(t, true), fc.option(uuid, { nil: undefined }))
      .map(([v, oldId]) => ({ op: 'update' as const, table: t, values: v, ...(oldId === undefined ? {} : { oldId }) })),
    uuid.map((id) => ({ op: 'delete' as const, table: t, id })),
  ),
);
const validMessage: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: change.map(changeMessage) },
  { weight: 1, arbitrary: table.map(relationMessage) },
  { weight: 1, arbitrary: fc.integer().map(begin) },
  { weight: 1, arbitrary: fc.constant(commit()) },
  { weight: 1, arbitrary: fc.subarray([...TABLES], { minLength: 1 }).map(truncate) },
);

/** Damage done to a message: byte flips, cuts, inserted and removed bytes, in any number. */
type Mutation =
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'cut'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'remove'; at: number; n: number };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('remove' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
);
function mutate(buf: Buffer, ms: readonly Mutation[]): Buffer {
  let b = Buffer.from(buf);
  for (const m of ms) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.kind === 'flip') b[at]! ^= m.xor;
    else if (m.kind === 'cut') b = b.subarray(0, at);
    else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    else b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.n)]);
  }
  return b;
}

// ---- the path under test ---------------------------------------------------------------------

/** A fresh parser that has seen the four relations (as after a bootstrap), and the decoder. */
function pipeline(): (buf: Buffer) => Decoded | 'parse-error' {
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: ['edgeproxy'] });
  const decoder = new ChangeDecoder(SHAPES);
  const feed = (buf: Buffer): Decoded | 'parse-error' => {
    let msg: Pgoutput.Message;
    try {
      msg = plugin.parse(buf);
    } catch {
      return 'parse-error'; // session.ts: onParseError → the stream fails → a fresh bootstrap
    }
    return decoder.decode(msg);
  };
  for (const t of TABLES) assert.deepEqual(feed(relationMessage(t)), { kind: 'skip' });
  return feed;
}

/** A change the apply step may receive: a routing table, every column of its relation present, text values only. */
function assertWellFormed(d: Decoded | 'parse-error', bytes: Buffer): void {
  if (d === 'parse-error' || d.kind !== 'change') return;
  const c = d.change;
  const where = `${c.op} on ${c.table} from ${bytes.toString('hex')}`;
  assert.ok((TABLES as readonly string[]).includes(c.table), where);
  if (c.op === 'delete') {
    assert.equal(typeof c.id, 'string', where);
    return;
  }
  assert.deepEqual(Object.keys(c.row).sort(), COLUMNS[c.table].map(([n]) => n).sort(), `${where}: the relation's columns`);
  for (const [name, value] of Object.entries(c.row)) {
    assert.ok(!(value instanceof Uint8Array), `${where}: ${name} binary`);
    if (c.op === 'insert') assert.notEqual(value, undefined, `${where}: ${name} unchanged in an insert`);
  }
  if (c.op === 'update' && c.oldId !== undefined) assert.equal(typeof c.oldId, 'string', where);
}

describe('pgoutput decoding of damaged messages (property)', () => {
  it('valid messages decode to exactly the change that was encoded', () => {
    fc.assert(
      fc.property(change, (c) => {
        const d = pipeline()(changeMessage(c));
        assert.ok(d !== 'parse-error' && d.kind === 'change', JSON.stringify(d));
        assert.equal(d.change.op, c.op);
        assert.equal(d.change.table, c.table);
        if (c.op === 'delete') assert.equal((d.change as { id: string }).id, c.id);
        else {
          const row = (d.change as { row: Record<string, unknown> }).row;
          COLUMNS[c.table].forEach(([name, type], i) => {
            const v = c.values[i]!;
            const want =
              v === 'unchanged'
                ? undefined
                : v === null
                  ? null
                  : type === OIDS.int4
                    ? Number(v)
                    : type === OIDS.timestamptz
                      ? new Date(v).getTime()
                      : v;
            const got = row[name] instanceof Date ? (row[name] as Date).getTime() : row[name];
            assert.equal(got, want, name);
          });
        }
      }),
      runs(1000),
    );
  });

  it('arbitrary bytes never throw out of the decoder, and never make a malformed change', () => {
    const tagged = fc
      .tuple(
        fc.constantFrom(...'BCRIUDTMOYKNX'),
        fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
        fc.uint8Array({ maxLength: 120 }),
      )
      .map(([t, oid, rest]) => {
        const w = new Writer().u8(tag(t));
        if (oid !== undefined) w.i32(oid);
        return w.bytes(Buffer.from(rest)).done();
      });
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.uint8Array({ maxLength: 120 }).map((a) => Buffer.from(a)),
            tagged,
          ),
          { minLength: 1, maxLength: 10 },
        ),
        (bufs) => {
          const feed = pipeline();
          for (const b of bufs) assertWellFormed(feed(b), b);
        },
      ),
      runs(2000),
    );
  });

  it('damaged valid messages end in a parse error or a resync, or decode to a change of the same shape', () => {
    fc.assert(
      fc.property(validMessage, fc.array(mutation, { minLength: 1, maxLength: 4 }), (msg, ms) => {
        const damaged = mutate(msg, ms);
        const feed = pipeline();
        const d = feed(damaged);
        assertWellFormed(d, damaged);
      }),
      // Each run parses a fresh plugin's four relations too; a damaged count can also make the
      // library allocate a large array (a 2^24 TRUNCATE relation count: ~0.4 s), which bounds this.
      runs(1500),
    );
  });

  it('a tuple cut short, or with a binary value, is a resync: it would otherwise merge into the stored row as if current', () => {
    fc.assert(
      fc.property(table, fc.boolean(), fc.nat(), (t, binary, n) => {
        const feed = pipeline();
        const cols = COLUMNS[t];
        const w = new Writer().u8(tag('U')).i32(RELATION_OID[t]).u8(tag('N'));
        if (binary) {
          w.i16(cols.length);
          const at = n % cols.length;
          cols.forEach((_c, i) => (i === at ? w.u8(tag('b')).i32(1).u8(0x41) : w.u8(tag('n'))));
        } else {
          const kept = 1 + (n % (cols.length - 1));
          tuple(
            w,
            cols.slice(0, kept).map(() => null),
          );
        }
        const d = feed(w.done());
        assert.ok(d !== 'parse-error' && d.kind === 'resync', JSON.stringify(d));
        assert.match(d.reason, /^malformed change on /);
      }),
      runs(500),
    );
  });
});
