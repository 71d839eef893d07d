import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { hashKey } from '../src/table/sharded-map.js';
import { TextArena, TextSlots } from '../src/table/text-arena.js';

describe('TextArena', () => {
  it('gives back every string pushed, narrow or wide, through growth and trim', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'binary', maxLength: 40 }), { maxLength: 200 }), (strings) => {
        const arena = new TextArena(1, 1); // tiny hints: the buffers grow many times
        strings.forEach((s, i) => assert.equal(arena.push(s), i));
        const check = () => {
          assert.equal(arena.count, strings.length);
          strings.forEach((s, i) => {
            assert.equal(arena.at(i), s);
            assert.equal(arena.equals(i, s), true);
            assert.equal(arena.equals(i, `${s}x`), false);
            assert.equal(arena.hashAt(i), hashKey(s));
          });
        };
        check();
        arena.trim();
        check();
      }),
    );
  });

  it('tells apart an empty string, a wide one and a narrow one of the same length', () => {
    const arena = new TextArena();
    const empty = arena.push('');
    const wide = arena.push('日本');
    const narrow = arena.push('ab');
    assert.equal(arena.equals(empty, ''), true);
    assert.equal(arena.equals(empty, '日本'), false);
    assert.equal(arena.equals(wide, '日本'), true);
    assert.equal(arena.equals(wide, ''), false);
    assert.equal(arena.equals(narrow, '日本'), false);
    assert.deepEqual([arena.at(empty), arena.at(wide), arena.at(narrow)], ['', '日本', 'ab']);
  });
});

describe('TextSlots', () => {
  it('finds each distinct string at its index and nothing else, as slots grow', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ maxLength: 12 }), { maxLength: 300 }),
        fc.array(fc.string({ maxLength: 12 })),
        (strings, others) => {
          const arena = new TextArena();
          const slots = new TextSlots(arena, 0);
          for (const s of strings) slots.add(arena.push(s));
          strings.forEach((s, i) => assert.equal(slots.find(s), i));
          for (const s of others) if (!strings.includes(s)) assert.equal(slots.find(s), -1);
          // Slots made over a filled arena list what it holds.
          const again = new TextSlots(arena, strings.length);
          strings.forEach((s, i) => assert.equal(again.find(s), i));
        },
      ),
    );
  });
});
