import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { jitterOf, renewAt } from '../src/acme/renew-at.js';

describe('renewal time', () => {
  it('is two thirds of the lifetime without jitter', () => {
    assert.equal(renewAt(0, 90 * 86_400_000, 0), 60 * 86_400_000);
  });

  it('falls between 61.67 % and 66.67 % of the lifetime, whatever the jitter', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2e12 }),
        fc.integer({ min: 1, max: 1e10 }),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        (nb, life, j) => {
          const at = renewAt(nb, nb + life, j);
          return at >= nb + life * (2 / 3 - 0.05) - 1 && at <= nb + (life * 2) / 3 + 1;
        },
      ),
    );
  });

  it('the jitter is fixed per name and seed, in [0, 1), and differs between names', () => {
    assert.equal(jitterOf('shop.example', 7), jitterOf('shop.example', 7));
    const values = ['a.example', 'b.example', 'c.example', 'd.example'].map((n) => jitterOf(n, 7));
    assert.ok(values.every((v) => v >= 0 && v < 1));
    assert.equal(new Set(values).size, values.length);
    assert.notEqual(jitterOf('shop.example', 7), jitterOf('shop.example', 8));
  });
});
