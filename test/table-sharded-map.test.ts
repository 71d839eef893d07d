import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { hashKey, ShardedMap, TARGET_SHARD_SIZE } from '../src/table/sharded-map.js';
import { type IdSet, idSetAdd, idSetDelete, idSetHas, idSetOf, idSetValues } from '../src/table/id-set.js';

/** A few tests look at the shards themselves to check freezing and sharing directly. */
function shardsOf<V>(map: ShardedMap<V>): readonly ReadonlyMap<string, V>[] {
  return map.chunkList.flat();
}

function range(n: number, prefix = 'k'): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`);
}

function mapOf(n: number, prefix = 'k'): ShardedMap<number> {
  return ShardedMap.from(range(n, prefix).map((k, i) => [k, i] as const));
}

function sortedEntries<V>(map: ShardedMap<V>): [string, V][] {
  return [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A full GC without starting node with --expose-gc. */
function gc(): void {
  v8.setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

describe('hashKey', () => {
  it('is FNV-1a 32-bit (stable across processes)', () => {
    assert.equal(hashKey(''), 0x811c9dc5);
    assert.equal(hashKey('a'), 0xe40c292c);
    assert.equal(hashKey('foobar'), 0xbf9cf968);
    assert.equal(hashKey('example.com'), hashKey('example.com'));
  });
});

describe('ShardedMap', () => {
  it('empty map', () => {
    const m = ShardedMap.empty<number>();
    assert.equal(m.size, 0);
    assert.equal(m.shardCount, 1);
    assert.equal(m.get('x'), undefined);
    assert.equal(m.has('x'), false);
    assert.deepEqual([...m.entries()], []);
  });

  it('from: builds a map of every entry, later duplicates win', () => {
    const m = ShardedMap.from<number>([
      ['a', 1],
      ['b', 2],
      ['a', 3],
    ]);
    assert.equal(m.size, 2);
    assert.equal(m.get('a'), 3);
    assert.equal(m.get('b'), 2);
    const fromIterable = ShardedMap.from(new Map([['x', 'y']]));
    assert.equal(fromIterable.get('x'), 'y');
    assert.equal(fromIterable.size, 1);
  });

  it('from: picks a power-of-two shard count for the size (and the size hint)', () => {
    for (const n of [0, 1, 256, 257, 1000, 5000, 100_000]) {
      const m = mapOf(n);
      assert.equal(m.size, n);
      assert.equal(Number.isInteger(Math.log2(m.shardCount)), true, `shardCount ${m.shardCount}`);
      assert.ok(m.shardCount * TARGET_SHARD_SIZE >= n, `${m.shardCount} shards for ${n}`);
      if (m.shardCount > 1) assert.ok((m.shardCount / 2) * TARGET_SHARD_SIZE < n, `not more shards than needed for ${n}`);
    }
    assert.ok(ShardedMap.from<number>([], 10_000).shardCount >= 10_000 / TARGET_SHARD_SIZE);
  });

  it('editor: get/set/delete, visible in the editor and in the committed map only', () => {
    const base = mapOf(1000);
    const e = base.edit();
    assert.equal(e.changed, false);
    e.set('new', -1);
    e.set('k1', 100);
    e.delete('k2');
    e.delete('missing'); // no-op
    assert.equal(e.get('new'), -1);
    assert.equal(e.get('k1'), 100);
    assert.equal(e.get('k2'), undefined);
    assert.equal(e.changed, true);
    // nothing visible in the base while editing
    assert.equal(base.get('new'), undefined);
    assert.equal(base.get('k1'), 1);
    assert.equal(base.get('k2'), 2);
    const next = e.commit();
    assert.equal(next.size, 1000);
    assert.equal(next.get('new'), -1);
    assert.equal(next.get('k1'), 100);
    assert.equal(next.has('k2'), false);
    assert.equal(next.get('k3'), 3);
    // base unchanged after commit
    assert.equal(base.size, 1000);
    assert.equal(base.get('new'), undefined);
    assert.equal(base.get('k1'), 1);
    assert.equal(base.get('k2'), 2);
  });

  it('editor: size counts only real insertions and deletions', () => {
    const e = ShardedMap.empty<number>().edit();
    e.set('a', 1);
    e.set('a', 2);
    e.delete('b');
    e.set('b', 1);
    e.delete('b');
    e.delete('b');
    const m = e.commit();
    assert.equal(m.size, 1);
    assert.deepEqual([...m.entries()], [['a', 2]]);
  });

  it('editor: deleting a missing key copies nothing', () => {
    const base = mapOf(1000);
    const e = base.edit();
    e.delete('nope');
    assert.equal(e.changed, false);
    const next = e.commit();
    const a = shardsOf(base);
    const b = shardsOf(next);
    assert.equal(a.length, b.length);
    for (let i = 0; i < a.length; i++) assert.equal(a[i], b[i]);
  });

  it('editor: commit twice or writing after commit throws', () => {
    const e = ShardedMap.empty<number>().edit();
    e.set('a', 1);
    e.commit();
    assert.throws(() => e.commit(), /commit\(\) called twice/);
    assert.throws(() => e.set('b', 2), /used after commit/);
    assert.throws(() => e.delete('a'), /used after commit/);
  });

  it('persistence: every version keeps its contents through a long chain of edits', () => {
    const versions: ShardedMap<number>[] = [ShardedMap.empty()];
    const models: Map<string, number>[] = [new Map()];
    let seed = 7;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let v = 0; v < 300; v++) {
      const e = versions[versions.length - 1]!.edit();
      const model = new Map(models[models.length - 1]);
      for (let i = 0, n = 1 + rnd(20); i < n; i++) {
        const key = `k${rnd(3000)}`;
        if (rnd(3) === 0) {
          e.delete(key);
          model.delete(key);
        } else {
          e.set(key, v);
          model.set(key, v);
        }
      }
      versions.push(e.commit());
      models.push(model);
    }
    for (let v = 0; v < versions.length; v++) {
      const map = versions[v]!;
      const model = models[v]!;
      assert.equal(map.size, model.size, `version ${v}`);
      assert.deepEqual(
        sortedEntries(map),
        [...model].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        `version ${v}`,
      );
    }
  });

  it('100k entries edited once: the old version still answers, sizes are right, untouched shards are shared', () => {
    const base = mapOf(100_000);
    const e = base.edit();
    e.set('k500', -500);
    e.delete('k600');
    e.set('added', 1);
    const next = e.commit();
    assert.equal(base.size, 100_000);
    assert.equal(next.size, 100_000);
    assert.equal(base.get('k500'), 500);
    assert.equal(base.get('k600'), 600);
    assert.equal(base.get('added'), undefined);
    assert.equal(next.get('k500'), -500);
    assert.equal(next.get('k600'), undefined);
    assert.equal(next.get('added'), 1);
    for (const k of ['k0', 'k1', 'k99999', 'k50000']) assert.equal(next.get(k), base.get(k));

    // Directly: at most the three written shards differ, every other shard is the same object.
    const a = shardsOf(base);
    const b = shardsOf(next);
    assert.equal(a.length, b.length);
    let different = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) different++;
    const touched = new Set(['k500', 'k600', 'added'].map((k) => hashKey(k) & (a.length - 1)));
    assert.equal(different, touched.size);
  });

  it('100k entries: 100 retained single-edit versions cost shard copies, not map copies', () => {
    const base = mapOf(100_000);
    gc();
    const before = process.memoryUsage().heapUsed;
    const versions: ShardedMap<number>[] = [base];
    for (let i = 0; i < 100; i++) {
      const e = versions[versions.length - 1]!.edit();
      e.set(`k${i * 997}`, -i);
      versions.push(e.commit());
    }
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    // A full copy of a 100k-entry map is several MB; 100 of them would be hundreds of MB.
    assert.ok(grown < 30 * 1024 * 1024, `heap grew ${(grown / 1048576).toFixed(1)} MB for 100 versions`);
    for (let i = 0; i < 100; i++) {
      assert.equal(versions[i]!.get(`k${i * 997}`), i * 997, `version ${i} before its edit`);
      assert.equal(versions[i + 1]!.get(`k${i * 997}`), -i, `version ${i + 1} after its edit`);
      assert.equal(versions[i + 1]!.size, 100_000);
    }
    assert.equal(versions[0]!.get('k0'), 0);
    assert.equal(versions[100]!.get('k0'), -0);
  });

  it('shards are frozen: mutating them throws, in built, empty and edited maps', () => {
    const built = mapOf(2000);
    const e = built.edit();
    e.set('k1', -1);
    e.set('fresh', 1);
    const edited = e.commit();
    for (const map of [ShardedMap.empty<number>(), built, edited]) {
      for (const shard of shardsOf(map)) {
        const writable = shard as Map<string, number>;
        assert.throws(() => writable.set('zzz', 1), /frozen/);
        assert.throws(() => writable.delete('k1'), /frozen/);
        assert.throws(() => writable.clear(), /frozen/);
      }
    }
    assert.equal(built.size, 2000);
    assert.equal(built.get('k1'), 1);
    assert.equal(edited.get('k1'), -1);
    assert.equal(edited.get('zzz'), undefined);
  });

  it('re-shards when grown well past the target, through one big edit', () => {
    const e = ShardedMap.empty<number>().edit();
    for (let i = 0; i < 10_000; i++) e.set(`k${i}`, i);
    const m = e.commit();
    assert.equal(m.size, 10_000);
    assert.ok(m.shardCount >= 10_000 / TARGET_SHARD_SIZE, `shardCount ${m.shardCount}`);
    for (let i = 0; i < 10_000; i++) assert.equal(m.get(`k${i}`), i);
    for (const shard of shardsOf(m)) assert.throws(() => (shard as Map<string, number>).set('x', 1), /frozen/);
  });

  it('re-shards when grown one entry per version, and stays complete', () => {
    let m = ShardedMap.empty<number>();
    const counts = new Set<number>();
    for (let i = 0; i < 10_000; i++) {
      const e = m.edit();
      e.set(`k${i}`, i);
      m = e.commit();
      counts.add(m.shardCount);
      assert.ok(m.size <= m.shardCount * TARGET_SHARD_SIZE * 4, `size ${m.size} in ${m.shardCount} shards`);
    }
    // A re-shard happens past 4 × the target per shard and sizes for the target:
    // 1 shard up to 512 entries, then 8 (up to 4096), then 64.
    assert.equal(TARGET_SHARD_SIZE, 128, 'the counts below are worked out for 128');
    assert.deepEqual([...counts], [1, 8, 64]);
    assert.equal(m.size, 10_000);
    for (let i = 0; i < 10_000; i++) assert.equal(m.get(`k${i}`), i);
    assert.equal(new Set(m.keys()).size, 10_000);
  });

  it('entries/keys/values iterate every entry exactly once', () => {
    const base = mapOf(20_000);
    const e = base.edit();
    for (let i = 0; i < 20_000; i += 3) e.delete(`k${i}`);
    for (let i = 0; i < 500; i++) e.set(`n${i}`, -i);
    const m = e.commit();
    const expected = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) if (i % 3 !== 0) expected.set(`k${i}`, i);
    for (let i = 0; i < 500; i++) expected.set(`n${i}`, -i);
    assert.equal(m.size, expected.size);
    const entries = [...m.entries()];
    assert.equal(entries.length, expected.size);
    assert.deepEqual(new Map(entries), expected);
    const keys = [...m.keys()];
    assert.equal(new Set(keys).size, expected.size);
    assert.deepEqual(new Set(keys), new Set(expected.keys()));
    assert.deepEqual(
      [...m.values()].sort((a, b) => a - b),
      [...expected.values()].sort((a, b) => a - b),
    );
    // the base is still complete
    assert.equal([...base.entries()].length, 20_000);
  });
});

describe('ShardedMap: builder, forEach and untouched editors', () => {
  it('builder: fillShard fills an empty shard in one go, keeping the first of a repeated key', () => {
    const b = ShardedMap.builder<number>(1_000);
    const keys = range(1_000).filter((k) => b.shardOf(k) === 3);
    assert.ok(keys.length > 2);
    assert.deepStrictEqual(
      b.fillShard(
        3,
        keys.map((k, i) => [k, i] as const),
      ),
      [],
    );
    assert.throws(() => b.fillShard(3, []), /not empty/);
    const other = range(1_000).filter((k) => b.shardOf(k) === 4);
    const [a, c] = [other[0]!, other[1]!];
    // a repeats twice and c once: their first values stay, the repeats are reported by position
    assert.deepStrictEqual(
      b.fillShard(4, [
        [a, 1],
        [c, 2],
        [a, 3],
        [c, 4],
        [a, 5],
      ]),
      [2, 3, 4],
    );
    const m = b.build();
    assert.equal(m.size, keys.length + 2);
    assert.equal(m.get(keys[1]!), 1);
    assert.equal(m.get(a), 1);
    assert.equal(m.get(c), 2);
  });

  it('builder: setAll, setIn and getIn agree with set and get', () => {
    const keys = range(5_000);
    const b = ShardedMap.builder<boolean>(keys.length);
    b.setAll([...keys, 'k7'], true);
    assert.equal(b.size, 5_000);
    for (const k of keys) assert.equal(b.getIn(b.shardOf(k), k), true, k);
    b.setIn(b.shardOf('k1'), 'k1', false);
    const m = b.build();
    assert.equal(m.size, 5_000);
    assert.equal(m.get('k1'), false);
    for (const k of ['k0', 'k4999']) assert.equal(shardsOf(m)[b.shardOf(k)]!.has(k), true, k);
    assert.throws(() => b.setAll(['x'], true), /after build/);
  });

  it('builder: sized for the hint, later sets win, build freezes and counts', () => {
    const b = ShardedMap.builder<number>(10_000);
    for (let i = 0; i < 10_000; i++) b.set(`k${i}`, i);
    b.set('k5', -5);
    b.set('new', 1);
    assert.equal(b.get('k5'), -5);
    assert.equal(b.get('k6'), 6);
    assert.equal(b.size, 10_001);
    assert.equal(b.shardCount, 128);
    const m = b.build();
    // shardOf names the shard the built map keeps the key in
    for (const k of ['k0', 'k5', 'k9999', 'new']) assert.equal(shardsOf(m)[b.shardOf(k)]!.has(k), true, k);
    assert.equal(m.size, 10_001);
    assert.equal(m.shardCount, ShardedMap.from(range(10_000).map((k) => [k, 0] as const)).shardCount);
    assert.equal(m.get('k5'), -5);
    assert.equal(m.get('k6'), 6);
    assert.equal(m.get('new'), 1);
    for (const shard of shardsOf(m)) assert.throws(() => (shard as Map<string, number>).set('x', 1), /frozen/);
    assert.throws(() => b.set('late', 1), /after build/);
    assert.throws(() => b.build(), /called twice/);
  });

  it('forEach visits every entry once, like entries()', () => {
    const m = mapOf(5000);
    const seen = new Map<string, number>();
    m.forEach((v, k) => {
      assert.equal(seen.has(k), false);
      seen.set(k, v);
    });
    assert.deepEqual(seen, new Map(m.entries()));
  });

  it('an editor that writes nothing commits to the same map and copies no shard list', () => {
    const base = mapOf(5000);
    const e = base.edit();
    assert.equal(e.get('k1'), 1);
    e.delete('missing');
    assert.equal(e.commit(), base);
    const used = base.edit();
    used.set('k1', -1);
    const next = used.commit();
    assert.notEqual(next, base);
    const chunksOf = (m: ShardedMap<number>) => m.chunkList;
    assert.notEqual(chunksOf(next)[0], chunksOf(base)[0]);
    // 100k entries: several chunks of 64 shards, and one write copies exactly one chunk
    const big = mapOf(100_000);
    const e2 = big.edit();
    e2.set('k1', -1);
    const big2 = e2.commit();
    const differing = chunksOf(big).filter((chunk, i) => chunk !== chunksOf(big2)[i]).length;
    assert.equal(chunksOf(big).length, big.shardCount / 64);
    assert.ok(chunksOf(big).length > 1);
    assert.equal(differing, 1);
    assert.equal(base.get('k1'), 1);
    assert.equal(next.get('k1'), -1);
  });
});

describe('IdSet', () => {
  const ids = range(200, 'id-');

  it('idSetOf picks the representation by size', () => {
    assert.equal(idSetOf([]), undefined);
    assert.equal(idSetOf(['a']), 'a');
    const small = idSetOf(ids.slice(0, 64));
    assert.ok(Array.isArray(small) && small.length === 64 && Object.isFrozen(small));
    const big = idSetOf(ids.slice(0, 65));
    assert.ok(big instanceof ShardedMap && big.size === 65);
  });

  it('add goes string → array → ShardedMap, and has/values stay right all the way', () => {
    let set: IdSet | undefined;
    const versions: (IdSet | undefined)[] = [set];
    for (let i = 0; i < ids.length; i++) {
      set = idSetAdd(set, ids[i]!);
      versions.push(set);
      if (i === 0) assert.equal(set, ids[0]);
      else if (i < 64) assert.ok(Array.isArray(set) && set.length === i + 1 && Object.isFrozen(set), `array at ${i + 1}`);
      else assert.ok(set instanceof ShardedMap && set.size === i + 1, `sharded at ${i + 1}`);
      for (let j = 0; j < ids.length; j++) assert.equal(idSetHas(set, ids[j]!), j <= i);
      assert.deepEqual(new Set(idSetValues(set)), new Set(ids.slice(0, i + 1)));
      assert.equal([...idSetValues(set)].length, i + 1);
      // adding an id already there returns the same set
      assert.equal(idSetAdd(set, ids[i]!), set);
      assert.equal(idSetAdd(set, ids[0]!), set);
    }
    // older versions are unchanged
    for (let v = 0; v < versions.length; v++) assert.equal([...idSetValues(versions[v])].length, v);
    assert.equal(idSetHas(versions[64], ids[64]!), false);
    assert.equal(idSetHas(versions[65], ids[64]!), true);
  });

  it('delete goes back down: ShardedMap stays correct, array → string → undefined', () => {
    let set: IdSet | undefined = idSetOf(ids);
    assert.ok(set instanceof ShardedMap);
    const before = set;
    const order = [...ids].reverse();
    for (let i = 0; i < order.length; i++) {
      const next = idSetDelete(set, order[i]!);
      assert.equal(idSetDelete(next, order[i]!), next, 'deleting a missing id returns the same set');
      set = next;
      const left = order.slice(i + 1);
      assert.deepEqual(new Set(idSetValues(set)), new Set(left));
      assert.equal(idSetHas(set, order[i]!), false);
      if (left.length > 0) assert.equal(idSetHas(set, left[0]!), true);
    }
    assert.equal([...idSetValues(set)].length, 0);
    assert.equal(before.size, 200, 'the original set is unchanged');

    let small: IdSet | undefined = idSetOf(['a', 'b', 'c']);
    small = idSetDelete(small, 'b');
    assert.deepEqual(small, ['a', 'c']);
    small = idSetDelete(small, 'a');
    assert.equal(small, 'c');
    assert.equal(idSetDelete(small, 'x'), 'c');
    assert.equal(idSetDelete(small, 'c'), undefined);
    assert.equal(idSetDelete(undefined, 'c'), undefined);
  });

  it('has and values on undefined', () => {
    assert.equal(idSetHas(undefined, 'a'), false);
    assert.deepEqual([...idSetValues(undefined)], []);
  });

  it('a ShardedMap set re-grows after shrinking', () => {
    let set: IdSet | undefined = idSetOf(ids);
    for (const id of ids.slice(0, 150)) set = idSetDelete(set, id);
    for (const id of ids.slice(0, 10)) set = idSetAdd(set, id);
    assert.deepEqual(new Set(idSetValues(set)), new Set([...ids.slice(150), ...ids.slice(0, 10)]));
  });
});
