import assert from 'node:assert/strict';
import { domainToASCII, domainToUnicode } from 'node:url';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decide } from '../src/proxy/decide.js';
import { RouteStore } from '../src/sync/route-store.js';
import { normaliseHost, parseHostHeader } from '../src/table/host.js';
import { RouteTable } from '../src/table/route-table.js';
import { runs } from './support/property.js';

/** Host normalisation (src/table/host.ts) on generated input: it decides which site a request reaches. */

const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ maxLength: 80 }),
);
const port = fc.integer({ min: 0, max: 65535 });
/**
 * Case changes a client may make: each letter's case picked at random, for letters whose case
 * maps one to one (`ß` uppercases to `SS`, a different name under IDNA 2008).
 */
const flip = (c: string) => {
  const up = c.toUpperCase();
  return up.length === 1 && up.toLowerCase() === c ? up : c;
};
const recase = (name: string) =>
  fc
    .array(fc.boolean(), { minLength: name.length, maxLength: name.length })
    .map((up) => [...name].map((c, i) => (up[i] ? flip(c) : c)).join(''));
/** Unicode labels (letters of a few scripts), to exercise IDNA. */
const unicodeLabel = fc
  .array(fc.constantFrom(...'abcxyzäöüßéñçøåłđğışžбгджшщяαβγδλπωאבגדעあいうえおかきアイウエ漢字中文'), { minLength: 1, maxLength: 12 })
  .map((cs) => cs.join(''));
const unicodeName = fc
  .array(
    fc.oneof(
      unicodeLabel,
      fc.domain().map((d) => d.split('.')[0]!),
    ),
    { minLength: 1, maxLength: 4 },
  )
  .map((ls) => `${ls.join('.')}.example`);

describe('host normalisation (property)', () => {
  it('never throws on arbitrary strings, as a Host header or as a database name', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        const parsed = parseHostHeader(s);
        assert.ok(parsed.ok === true || typeof parsed.code === 'string');
        const name = normaliseHost(s);
        assert.ok(name === undefined || typeof name === 'string');
      }),
      runs(3000),
    );
  });

  it('a normalised name is a fixed point, and is what its own Host header parses to', () => {
    fc.assert(
      fc.property(fc.oneof(fc.domain(), unicodeName, anyText), (s) => {
        const name = normaliseHost(s);
        if (name === undefined) return;
        assert.equal(normaliseHost(name), name, 'idempotent');
        assert.match(name, /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/, 'lowercase ASCII labels');
        assert.ok(name.length <= 253);
        const header = parseHostHeader(name);
        // An IPv4-looking name parses as an IP literal, which decide() refuses.
        if (header.ok && !header.ipLiteral) assert.equal(header.host, name, 'parse∘format');
      }),
      runs(3000),
    );
  });

  it('case, one trailing dot and the port do not change the host', () => {
    fc.assert(
      fc.property(
        fc
          .oneof(fc.domain(), unicodeName)
          .chain((d) => fc.tuple(fc.constant(d), recase(d), fc.boolean(), fc.option(port, { nil: undefined }))),
        ([d, cased, dot, p]) => {
          const plain = parseHostHeader(d);
          const header = `${cased}${dot ? '.' : ''}${p === undefined ? '' : `:${p}`}`;
          const varied = parseHostHeader(header);
          if (!plain.ok) {
            // Case can matter only through IDNA mapping, never make an invalid name valid… except
            // for the port, which is checked on its own.
            assert.equal(varied.ok, false, header);
            return;
          }
          assert.deepEqual(varied, plain, header);
        },
      ),
      runs(2000),
    );
  });

  it('IP literals are always refused by the routing decision, even when a route has that name', () => {
    const v6 = fc.ipV6().map((a) => `[${a}]`);
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), v6), fc.option(port, { nil: undefined }), (ip, p) => {
        const store = new RouteStore();
        const name = ip.startsWith('[') ? ip.slice(1, -1).toLowerCase() : ip;
        store.publish(
          RouteTable.from([[name, { host: name, vmIp: '10.0.0.1', vmPort: 80, vmRegionId: 'r', regionPublicIp: '10.0.0.2' }]]),
          'poll',
          {
            regionAddresses: new Set(),
          },
        );
        const d = decide(store.current, p === undefined ? ip : `${ip}:${p}`, 'r', 80);
        assert.equal(d.kind, 'not-found');
        if (d.kind === 'not-found') assert.ok(d.code === 'HOST_IP_LITERAL' || d.code === 'HOST_INVALID_IPV6', d.code);
      }),
      runs(1000),
    );
  });

  it('an xn-- label is accepted only when it is the punycode of a Unicode label that encodes back to it', () => {
    const ace = fc.stringMatching(/^[a-z0-9-]{1,16}$/).map((s) => `xn--${s}`);
    fc.assert(
      fc.property(ace, fc.domain(), (label, rest) => {
        const name = normaliseHost(`${label}.${rest}`);
        const unicode = domainToUnicode(label);
        const valid = unicode !== '' && /[^\u0020-\u007e]/u.test(unicode) && domainToASCII(unicode) === label;
        if (!valid) assert.equal(name, undefined, `${label} is not valid punycode but was accepted`);
        else if (name !== undefined) assert.ok(name.startsWith(`${label}.`));
      }),
      runs(3000),
    );
  });

  it('Unicode names become their punycode, and the punycode is accepted as the same host', () => {
    fc.assert(
      fc.property(unicodeName, (u) => {
        const name = normaliseHost(u);
        if (name === undefined) return;
        assert.equal(normaliseHost(domainToUnicode(name)), name);
      }),
      runs(1000),
    );
  });
});
