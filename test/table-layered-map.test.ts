import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { layered, type LayeredMap } from '../src/table/layered-map.js';

const KEYS = ['a', 'b', 'c', 'd', 'e', 'f'];
const op = fc.record({ key: fc.constantFrom(...KEYS), value: fc.option(fc.nat(9), { nil: undefined }) });

describe('LayeredMap', () => {
  it('reads as a plain map after any writes, and every earlier version stays as it was', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom(...KEYS), fc.nat(9)),
        fc.array(fc.array(op, { maxLength: 5 }), { maxLength: 12 }),
        (start, batches) => {
          const base = new Map(Object.entries(start));
          let version: LayeredMap<number> = layered(base, base.size);
          let model = new Map(base);
          const history: [LayeredMap<number>, Map<string, number>][] = [[version, new Map(model)]];
          for (const batch of batches) {
            const editor = version.edit();
            for (const { key, value } of batch) {
              if (value === undefined) {
                editor.delete(key);
                model.delete(key);
              } else {
                editor.set(key, value);
                model.set(key, value);
              }
              assert.equal(editor.get(key), model.get(key));
            }
            const next = editor.commit();
            if (batch.length === 0) assert.equal(next, version, 'nothing written: the same version');
            version = next;
            model = new Map(model);
            history.push([version, new Map(model)]);
          }
          for (const [v, m] of history) {
            assert.equal(v.size, m.size);
            for (const key of KEYS) assert.equal(v.get(key), m.get(key));
            const seen = new Map<string, number>();
            v.forEachOf(base.keys(), (value, key) => seen.set(key, value));
            assert.deepEqual(new Map([...seen].sort()), new Map([...m].sort()));
          }
          assert.deepEqual(base, new Map(Object.entries(start)), 'the base is never written');
        },
      ),
    );
  });
});
