import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ADDED, DomainBase, DomainBaseBuilder } from '../src/table/domain-base.js';
import { idSetValues } from '../src/table/id-set.js';
import type { DomainRow } from '../src/table/rows.js';

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
