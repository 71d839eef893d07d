import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DeltaIndex } from '../src/table/delta-index.js';
import { type IdSet, idSetOf, idSetValues } from '../src/table/id-set.js';

const PARENTS = ['p', 'q', 'r'];
const CHILDREN = Array.from({ length: 80 }, (_, i) => `c${i}`); // past the id set's array limit

type Model = Map<string, Set<string>>;
const members = (set: IdSet | undefined) => [...idSetValues(set)].sort();
const sortedOf = (model: Model, parent: string) => [...(model.get(parent) ?? [])].sort();

describe('DeltaIndex', () => {
  it('lists the base children less those removed, plus those added, in every version', () => {
    const step = fc.record({ parent: fc.constantFrom(...PARENTS), child: fc.constantFrom(...CHILDREN) });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...PARENTS), fc.constantFrom(...CHILDREN)), { maxLength: 120 }),
        fc.array(fc.array(step, { maxLength: 30 }), { maxLength: 10 }),
        (pairs, batches) => {
          const model: Model = new Map();
          for (const [p, c] of pairs) model.set(p, (model.get(p) ?? new Set()).add(c));
          const base = new Map([...model].map(([p, cs]) => [p, idSetOf([...cs])!] as const));
          let version = new DeltaIndex(base);
          const history: [DeltaIndex, Model][] = [[version, structuredClone(model)]];
          for (const batch of batches) {
            const editor = version.edit();
            for (const { parent, child } of batch) {
              // A listed child is taken out, another one listed: the only moves RowState makes.
              const set = model.get(parent) ?? new Set<string>();
              if (set.has(child)) {
                editor.delete(parent, child);
                set.delete(child);
              } else {
                editor.add(parent, child);
                set.add(child);
              }
              if (set.size === 0) model.delete(parent);
              else model.set(parent, set);
              assert.deepEqual(members(editor.get(parent)), sortedOf(model, parent));
            }
            const next = editor.commit();
            if (batch.length === 0) assert.equal(next, version);
            version = next;
            history.push([version, structuredClone(model)]);
          }
          for (const [v, m] of history) {
            for (const p of PARENTS) {
              assert.deepEqual(members(v.get(p)), sortedOf(m, p));
              if (m.has(p)) assert.notEqual(v.get(p), undefined);
              else assert.equal(v.get(p), undefined);
            }
            const seen = new Map<string, string[]>();
            v.forEachOf(base.keys(), (children, parent) => seen.set(parent, members(children)));
            for (const p of PARENTS) if (seen.has(p) || m.has(p)) assert.deepEqual(seen.get(p) ?? [], sortedOf(m, p));
          }
        },
      ),
    );
  });
});
