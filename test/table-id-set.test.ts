import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type IdSet, idSetAdd, idSetDelete, idSetDraftAdd, idSetFinish, idSetHas, idSetOf, idSetValues } from '../src/table/id-set.js';
import { ShardedMap } from '../src/table/sharded-map.js';

const ids = Array.from({ length: 200 }, (_, i) => `id-${i}`);

function kind(set: IdSet | undefined): string {
  if (set === undefined) return 'undefined';
  if (typeof set === 'string') return 'string';
  return set instanceof ShardedMap ? 'sharded' : 'array';
}

describe('idSetDelete on a sharded set', () => {
  it('returns undefined when the last id goes, whatever the order', () => {
    for (const order of [ids, [...ids].reverse()]) {
      let set: IdSet | undefined = idSetOf(ids);
      assert.equal(kind(set), 'sharded');
      for (const id of order) set = idSetDelete(set, id);
      assert.equal(set, undefined);
    }
  });

  it('shrinks back to an array at 32 ids and to the plain id at one, keeping the members', () => {
    let set: IdSet | undefined = idSetOf(ids);
    const kinds: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      set = idSetDelete(set, ids[i]!);
      const left = ids.slice(i + 1);
      kinds.push(kind(set));
      assert.deepEqual(new Set(idSetValues(set)), new Set(left), `after deleting ${i + 1}`);
      assert.equal(idSetHas(set, ids[i]!), false);
    }
    // sizes 199..33 sharded, 32..2 array, 1 string, 0 undefined
    assert.equal(kinds.indexOf('array'), ids.length - 32 - 1);
    assert.equal(kinds.lastIndexOf('sharded'), ids.length - 33 - 1);
    assert.equal(kinds[ids.length - 2], 'string');
    assert.equal(kinds[ids.length - 1], 'undefined');
    let big: IdSet | undefined = idSetOf(ids.slice(0, 65));
    for (const id of ids.slice(0, 32)) big = idSetDelete(big, id);
    assert.equal(kind(big), 'sharded', '33 left');
    const shrunk = idSetDelete(big, ids[32]!);
    assert.ok(Array.isArray(shrunk) && shrunk.length === 32 && Object.isFrozen(shrunk), 'a frozen array of 32');
  });

  it('a sharded set of two shrinks straight to the remaining id', () => {
    // Reachable when a set grew past 64 in one editor and then lost members one by one elsewhere.
    const two = ShardedMap.from<true>([
      ['a', true],
      ['b', true],
    ]);
    assert.equal(idSetDelete(two, 'a'), 'b');
    assert.equal(idSetDelete(idSetDelete(two, 'a'), 'b'), undefined);
    assert.equal(idSetDelete(two, 'missing'), two, 'deleting a missing id returns the same set');
    assert.equal(two.size, 2, 'the original set is unchanged');
  });

  it('the array form also ends in undefined (not an empty array)', () => {
    let set: IdSet | undefined = idSetOf(ids.slice(0, 5));
    for (const id of ids.slice(0, 5)) set = idSetDelete(set, id);
    assert.equal(set, undefined);
  });

  it('grows again after shrinking, through every form', () => {
    let set: IdSet | undefined = idSetOf(ids);
    for (const id of ids.slice(0, 199)) set = idSetDelete(set, id);
    assert.equal(set, ids[199]);
    for (const id of ids.slice(0, 100)) set = idSetAdd(set, id);
    assert.equal(kind(set), 'sharded');
    assert.deepEqual(new Set(idSetValues(set)), new Set([...ids.slice(0, 100), ids[199]!]));
  });
});

describe('IdSet drafts (bootstrap)', () => {
  it('grow in place and finish in the same forms as idSetOf', () => {
    for (const n of [1, 2, 3, 64, 65, 200]) {
      let draft = idSetDraftAdd(undefined, ids[0]!);
      for (const id of ids.slice(1, n)) draft = idSetDraftAdd(draft, id);
      const set = idSetFinish(draft);
      assert.equal(kind(set), kind(idSetOf(ids.slice(0, n))), `${n} ids`);
      assert.deepEqual([...idSetValues(set)].sort(), ids.slice(0, n).sort(), `${n} ids`);
      if (Array.isArray(set)) {
        assert.equal(Object.isFrozen(set), true);
        assert.equal(set.length, n);
      }
    }
  });

  it('a finished array is a copy: the draft can no longer change it', () => {
    const draft = idSetDraftAdd(idSetDraftAdd(undefined, 'a'), 'b') as string[];
    const set = idSetFinish(draft);
    draft.push('c');
    assert.deepEqual([...idSetValues(set)], ['a', 'b']);
  });
});
