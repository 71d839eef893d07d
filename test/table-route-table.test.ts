import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { OVERLAY_LIMIT, PAGE_SIZE, RouteTable, type RouteTableDescriptor } from '../src/table/route-table.js';
import type { Route } from '../src/table/route.js';
import { runs } from './support/property.js';

function route(host: string, n: number): Route {
  return { host, vmIp: `10.0.${n % 7}.${n % 3}`, vmPort: 80 + (n % 5), vmRegionId: `r${n % 2}`, regionPublicIp: '203.0.113.1' };
}

function contents(t: RouteTable): [string, Route][] {
  return [...t.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function modelContents(m: Map<string, Route>): [string, Route][] {
  return [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function assertEqual(t: RouteTable, m: Map<string, Route>, hosts: readonly string[], what: string): void {
  assert.equal(t.size, m.size, `${what}: size`);
  assert.deepStrictEqual(contents(t), modelContents(m), `${what}: entries`);
  for (const h of hosts) {
    assert.deepStrictEqual(t.get(h), m.get(h), `${what}: get(${h})`);
    assert.equal(t.has(h), m.has(h), `${what}: has(${h})`);
  }
}

type Op = { set: string; n: number } | { del: string };

describe('RouteTable', () => {
  it('each version keeps what it had while later versions (and forks of older ones) change', () => {
    const hosts = Array.from({ length: 40 }, (_, i) => `h${i}.example`);
    const op = fc.oneof(
      fc.record({ set: fc.constantFrom(...hosts), n: fc.nat(50) }),
      fc.record({ del: fc.constantFrom(...hosts) }),
    ) as fc.Arbitrary<Op>;
    // Each step edits one earlier version (often the newest, sometimes an old one: a fork).
    const step = fc.record({ base: fc.nat(), newest: fc.boolean(), ops: fc.array(op, { maxLength: 12 }) });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 25 }), (steps) => {
        const versions: { table: RouteTable; model: Map<string, Route> }[] = [{ table: RouteTable.empty(), model: new Map() }];
        for (const s of steps) {
          const from = s.newest ? versions[versions.length - 1]! : versions[s.base % versions.length]!;
          const editor = from.table.edit();
          const model = new Map(from.model);
          for (const o of s.ops) {
            // set and delete say whether the host's route changed (the row state counts changed hosts so).
            if ('set' in o) {
              const before = model.get(o.set);
              const changed =
                before === undefined || JSON.stringify({ ...before, host: '' }) !== JSON.stringify({ ...route(o.set, o.n), host: '' });
              assert.equal(editor.set(o.set, route(o.set, o.n)), changed, `set ${o.set} reports a change`);
              model.set(o.set, route(o.set, o.n));
            } else {
              assert.equal(editor.delete(o.del), model.has(o.del), `delete ${o.del} reports a change`);
              model.delete(o.del);
            }
            assert.deepStrictEqual(editor.get('set' in o ? o.set : o.del), model.get('set' in o ? o.set : o.del));
          }
          versions.push({ table: editor.commit(), model });
          for (const [i, v] of versions.entries()) assertEqual(v.table, v.model, hosts, `version ${i}`);
        }
      }),
      runs(300),
    );
  });

  it('an editor that writes nothing commits to the same table; a second commit throws', () => {
    const t = RouteTable.from([['a.example', route('a.example', 1)]]);
    const e = t.edit();
    assert.equal(e.get('a.example')?.vmPort, 81);
    assert.equal(e.commit(), t);
    assert.throws(() => e.commit(), /called twice/);
    const d = t.edit();
    d.delete('nope.example');
    assert.equal(d.commit(), t);
  });

  it('folds a full overlay into the pages without changing the versions before', () => {
    const n = PAGE_SIZE * 4;
    const hosts = Array.from({ length: n }, (_, i) => `f${i}.example`);
    let t = RouteTable.from(hosts.map((h) => [h, route(h, 0)] as const));
    const versions: { table: RouteTable; n: number }[] = [{ table: t, n: 0 }];
    // Rewrite every host 1,500 at a time, round after round: the overlay fills and folds many times.
    for (let round = 1; round <= 12; round++) {
      const e = t.edit();
      for (let i = (round * 1500) % n, k = 0; k < 1500; k++, i = (i + 1) % n) e.set(hosts[i]!, route(hosts[i]!, round));
      t = e.commit();
      versions.push({ table: t, n: round });
    }
    assert.ok(OVERLAY_LIMIT < 12 * 1500, 'the rounds overflow the overlay');
    // Replay the rounds on a model and compare every version on every host.
    const model = new Map(hosts.map((h) => [h, route(h, 0)] as const));
    for (const v of versions) {
      if (v.n > 0) for (let i = (v.n * 1500) % n, k = 0; k < 1500; k++, i = (i + 1) % n) model.set(hosts[i]!, route(hosts[i]!, v.n));
      assert.equal(v.table.size, n);
      for (const h of hosts) assert.deepStrictEqual(v.table.get(h), model.get(h), `version ${v.n}: ${h}`);
    }
  });

  it('grows past its hints: many pages, a rehashed slot array, a grown arena', () => {
    const n = PAGE_SIZE * 3 + 17;
    const model = new Map<string, Route>();
    let t = RouteTable.from([['seed.example', route('seed.example', 0)]]);
    model.set('seed.example', route('seed.example', 0));
    for (let from = 0; from < n; from += 5000) {
      const e = t.edit();
      for (let i = from; i < Math.min(n, from + 5000); i++) {
        const h = `host-${i}.example`;
        e.set(h, route(h, i));
        model.set(h, route(h, i));
      }
      t = e.commit();
    }
    const sample = ['seed.example', 'host-0.example', `host-${n - 1}.example`, `host-${PAGE_SIZE}.example`, 'absent.example'];
    assertEqual(t, model, sample, 'grown');
    const built = RouteTable.from(model);
    assertEqual(built, model, sample, 'built');
    assert.equal(built.hostCount, model.size);
  });

  it('shares one target between hosts and makes a route per lookup with the asked host', () => {
    const t = RouteTable.from([
      ['a.example', route('a.example', 1)],
      ['b.example', route('b.example', 1)],
    ]);
    assert.deepStrictEqual(t.get('b.example'), route('b.example', 1));
    assert.equal(t.get('c.example'), undefined);
    assert.equal(t.routeAt(t.idOf('a.example'))?.host, 'a.example');
  });

  it('compareHostAt orders a stored host against any string as < does', () => {
    const ascii = fc.string({ unit: fc.constantFrom(...'ab.-0z'.split('')), maxLength: 6 });
    fc.assert(
      fc.property(fc.uniqueArray(ascii, { minLength: 1, maxLength: 8 }), fc.string({ maxLength: 7 }), (hosts, key) => {
        const t = RouteTable.from(hosts.map((h) => [h, route(h, 1)] as const));
        for (const h of hosts) {
          const want = h < key ? -1 : h > key ? 1 : 0;
          assert.equal(Math.sign(t.compareHostAt(t.idOf(h), key)), want, `${JSON.stringify(h)} vs ${JSON.stringify(key)}`);
        }
      }),
      runs(500),
    );
  });

  it('refuses a host that is not ASCII (routes hold normalised hosts)', () => {
    assert.throws(() => RouteTable.from([['bücher.example', route('bücher.example', 1)]]), /not ASCII/);
    const e = RouteTable.empty().edit();
    assert.throws(() => e.set('bücher.example', route('bücher.example', 1)), /not ASCII/);
    assert.equal(RouteTable.empty().get('bücher.example'), undefined);
  });
});

/** A worker thread that opens the versions it is sent and answers `get` from them (test/support/route-table-reader.ts). */
class Reader {
  readonly worker = new Worker(new URL('./support/route-table-reader.ts', import.meta.url));

  async ask<T>(message: unknown): Promise<T> {
    this.worker.postMessage(message);
    const [reply] = (await once(this.worker, 'message')) as [T];
    return reply;
  }

  async open(table: RouteTable): Promise<number> {
    return (await this.ask<{ opened: number }>({ open: table.describe() })).opened;
  }

  get(version: number, hosts: readonly string[]): Promise<{ size: number; routes: (Route | null)[] }> {
    return this.ask({ version, hosts });
  }
}

function sharedBuffers(d: RouteTableDescriptor): boolean {
  const views = [
    d.bytes,
    d.starts,
    d.slots,
    ...d.pages,
    ...d.overlay.filter((b) => b.length > 0),
    d.targets.text,
    d.targets.starts,
    d.targets.ports,
  ];
  return views.every((v) => v.buffer instanceof SharedArrayBuffer);
}

describe('RouteTable across threads', () => {
  it('a version opened in a worker answers as the original; later versions never change what it answers', async () => {
    const reader = new Reader();
    try {
      const hosts = Array.from({ length: 3 * PAGE_SIZE }, (_, i) => `h${i}.example`);
      const versions: RouteTable[] = [RouteTable.from(hosts.map((h, i) => [h, route(h, i)] as const))];
      const edits: ((e: ReturnType<RouteTable['edit']>) => void)[] = [
        (e) => hosts.slice(0, 50).forEach((h, i) => e.set(h, route(h, i + 1))), // in the overlay
        (e) => hosts.slice(0, OVERLAY_LIMIT + 100).forEach((h, i) => (i % 3 === 0 ? e.delete(h) : e.set(h, route(h, i + 2)))), // folded
        (e) => Array.from({ length: 5000 }, (_, i) => `new${i}.example`).forEach((h, i) => e.set(h, route(h, 1000 + i))), // grown, new targets
      ];
      const opened = [await reader.open(versions[0]!)];
      for (const edit of edits) {
        const e = versions[versions.length - 1]!.edit();
        edit(e);
        versions.push(e.commit());
        assert.ok(sharedBuffers(versions[versions.length - 1]!.describe()), 'every buffer of the descriptor is shared, not copied');
        opened.push(await reader.open(versions[versions.length - 1]!));
      }
      const asked = [...hosts.filter((_, i) => i % 7 === 0), 'new1.example', 'new4999.example', 'absent.example'];
      for (const [i, table] of versions.entries()) {
        const answer = await reader.get(opened[i]!, asked);
        assert.equal(answer.size, table.size, `version ${i}: size`);
        assert.deepStrictEqual(
          answer.routes,
          asked.map((h) => table.get(h) ?? null),
          `version ${i}: get`,
        );
      }
    } finally {
      await reader.worker.terminate();
    }
  });

  it('an opened version reads like its original and cannot be edited', () => {
    const t = RouteTable.from([['a.example', route('a.example', 3)]]);
    const opened = RouteTable.open(t.describe());
    assert.deepStrictEqual([...opened.entries()], [...t.entries()]);
    assert.throws(() => opened.edit(), /read-only/);
    assert.deepStrictEqual(RouteTable.open(opened.describe()).get('a.example'), t.get('a.example'));
  });
});
