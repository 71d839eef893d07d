import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ADDED, DomainBase, DomainBaseBuilder, DomainRowsReader } from '../src/table/domain-base.js';
import { idSetValues } from '../src/table/id-set.js';
import { RowState } from '../src/table/row-state.js';
import type { DomainRow, RowValues } from '../src/table/rows.js';

const row = (id: string, name: unknown, deploymentId: string | null, verified = true): DomainRow => ({ id, name, deploymentId, verified });

describe('DomainBase', () => {
  it('keeps each row as given, its host and deployment indexes, and reports repeated ids', () => {
    const b = new DomainBaseBuilder(1); // grows past its hint
    const rows = [
      row('d1', 'a.example', 'p1'),
      row('d2', 'A.Example.', 'p1', false), // host a.example, a name of its own
      row('d3', 'b.example', null),
      row('d4', 'not a host', 'p2'),
      row('d5', 42, 'p2'),
      row('d6', 'a.example', 'p3'),
      ...Array.from({ length: 40 }, (_, i) => row(`m${i}`, `m${i}.example`, 'p2')),
    ];
    const hosts: (string | undefined)[] = ['a.example', 'a.example', 'b.example', undefined, undefined, 'a.example'];
    const added = rows.map((r, i) => b.add(r, i < hosts.length ? hosts[i] : String(r.name)));
    assert.deepEqual(added.slice(0, 6), [ADDED.firstOfHost, ADDED.more, ADDED.firstOfHost, ADDED.more, ADDED.more, ADDED.more]);
    assert.equal(b.add(row('d1', 'other.example', 'p9'), 'other.example'), ADDED.duplicate);
    const base = b.build();
    assert.equal(base.size, rows.length);
    for (const r of rows) assert.deepEqual(base.get(r.id), r);
    assert.equal(base.get('d7'), undefined);
    assert.deepEqual([...idSetValues(base.hostRows('a.example'))], ['d1', 'd2', 'd6']);
    assert.equal(base.hostRows('b.example'), 'd3');
    assert.equal(base.hostRows('other.example'), undefined, 'the repeated row was not indexed');
    assert.deepEqual([...idSetValues(base.deploymentRows('p1'))], ['d1', 'd2']);
    assert.deepEqual([...idSetValues(base.deploymentRows('p2'))], ['d4', 'd5', ...Array.from({ length: 40 }, (_, i) => `m${i}`)]);
    assert.equal(base.deploymentRows('p3'), 'd6');
    assert.equal(base.deploymentRows('p9'), undefined);
    assert.deepEqual(base.multiHosts, ['a.example']);
    assert.equal(Object.isFrozen(base.get('d1')), true);
  });

  it('is empty when built from nothing', () => {
    const base = DomainBase.empty();
    assert.equal(base.size, 0);
    assert.equal(base.get('x'), undefined);
    assert.equal(base.hostRows('x'), undefined);
    assert.equal(base.deploymentRows('x'), undefined);
  });
});

describe('DomainRowsReader', () => {
  const REGION = '6f1c3e9a-0000-4000-8000-000000000001';
  const parents = {
    regions: [[REGION, '203.0.113.1']],
    vms: [['v1', '10.0.0.1', 80, REGION, true]],
    deployments: [['p1', true, 'v1']],
  };
  const domains: RowValues[] = [
    ['d1', 'a.example', 'p1', true],
    [null, 'no-id.example', 'p1', true], // no id: reported, skipped
    ['d2', 'B.example', 'p1', true],
    ['d1', 'again.example', 'p1', true], // repeated id: reported, the first kept
    ['d3', 'bad name', 'p1', true], // routable, not a host: reported by the route pass
    ['d4', 'c.example', 'p1', null],
  ];

  it('reads rows as they come, reporting what it skips, and loads as the same rows in a list do', () => {
    const reader = new DomainRowsReader();
    for (const values of domains) reader.read(values);
    assert.equal(reader.count, domains.length);
    assert.deepEqual(
      reader.problems.map((p) => [p.field, p.value]),
      [
        ['domains.id', 'null'],
        ['domains.id', 'd1'],
      ],
    );
    const received = RowState.load({ ...parents, domains: reader });
    const listed = RowState.load({ ...parents, domains });
    assert.deepEqual([...received.state.routes.entries()], [...listed.state.routes.entries()]);
    assert.deepEqual([...received.state.routes.keys()].sort(), ['a.example', 'b.example']);
    assert.deepEqual(received.problems, listed.problems);
    assert.deepEqual(received.state.counts, { domains: 4, deployments: 1, vms: 1, regions: 1 });
    assert.deepEqual(
      received.problems.map((p) => p.field),
      ['domains.id', 'domains.id', 'domain_name'],
    );
  });

  it('sized by the counts the snapshot load takes, too small or too large, reads the same rows', () => {
    const ids = domains.reduce((n, v) => n + (typeof v[0] === 'string' ? v[0].length : 0), 0);
    const names = domains.reduce((n, v) => n + String(v[1]).length, 0);
    const routes = (reader: DomainRowsReader) => {
      for (const values of domains) reader.read(values);
      return [...RowState.load({ ...parents, domains: reader }).state.routes.entries()];
    };
    const expected = routes(new DomainRowsReader());
    assert.deepEqual(routes(new DomainRowsReader(domains.length, { ids, names })), expected);
    assert.deepEqual(routes(new DomainRowsReader(1, { ids: 1, names: 1 })), expected);
    assert.deepEqual(routes(new DomainRowsReader(1000, { ids: 100_000, names: 100_000 })), expected);
  });
});
