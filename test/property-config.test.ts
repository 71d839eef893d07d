import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ConfigError, OPTIONS, parseCidrList, parseListenAddress, resolveConfig } from '../src/config/config.js';
import { formatDuration, parseDuration } from '../src/config/duration.js';
import { runs } from './support/property.js';

/** Durations, listen addresses and CIDR lists (src/config) on generated input: operators type these. */

const anyText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.stringMatching(/^[0-9.:/[\]a-fA-F, hmsuµn-]{0,30}$/),
);
const UNITS = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 1e-3, µs: 1e-3, ns: 1e-6 } as const;
const REQUIRED = {
  EDGEPROXY_DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/db',
  EDGEPROXY_REGION_ID: '0a000000-0000-4000-8000-00000000000a',
};

describe('durations (property)', () => {
  it('never throw, and give undefined or a finite, non-negative number of ms', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        const ms = parseDuration(s);
        assert.ok(ms === undefined || (Number.isFinite(ms) && ms >= 0), `${JSON.stringify(s)} → ${ms}`);
      }),
      runs(5000),
    );
  });

  it('formatDuration then parseDuration gives back the same milliseconds', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 0, max: 10 * 86_400_000 }),
          fc.integer({ min: 0, max: 999_999 }).map((us) => us / 1000),
        ),
        (ms) => {
          assert.equal(parseDuration(formatDuration(ms)), ms, formatDuration(ms));
        },
      ),
      runs(5000),
    );
  });

  it('a sequence of Go duration parts is the sum of its parts', () => {
    const part = fc.tuple(fc.integer({ min: 0, max: 100_000 }), fc.constantFrom(...(Object.keys(UNITS) as (keyof typeof UNITS)[])));
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 5 }), fc.boolean(), (parts, spaced) => {
        const text = parts.map(([n, u]) => `${n}${u}`).join('');
        const want = parts.reduce((sum, [n, u]) => sum + n * UNITS[u], 0);
        const got = parseDuration(spaced ? `  ${text} ` : text);
        assert.ok(got !== undefined && Math.abs(got - want) <= 1e-6 * Math.max(1, want), `${text}: ${got} ≠ ${want}`);
      }),
      runs(3000),
    );
  });

  it('a sign, a missing unit or a bare number other than 0 is refused', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1e9 }),
        fc.constantFrom('', 'x', 'sec', 'd'),
        fc.constantFrom('', '-', '+'),
        (n, unit, sign) => {
          assert.equal(parseDuration(`${sign}${n}${unit}`), undefined);
        },
      ),
      runs(1000),
    );
  });
});

describe('listen addresses (property)', () => {
  const host = fc.oneof(
    fc.constant(''),
    fc.ipV4(),
    fc.ipV6().map((a) => `[${a}]`),
    fc.domain(),
  );
  it('host and port round-trip; ports above 65535 are refused; nothing throws', () => {
    fc.assert(
      fc.property(host, fc.integer({ min: 0, max: 99_999 }), (h, port) => {
        const parsed = parseListenAddress(`${h}:${port}`);
        if (port > 65535) {
          assert.deepEqual(parsed, { ok: false, code: 'CONFIG_INVALID', message: 'has a port above 65535' });
          return;
        }
        const want = h === '' ? undefined : h.startsWith('[') ? h.slice(1, -1) : h;
        assert.deepEqual(parsed, { host: want, port });
      }),
      runs(3000),
    );
    fc.assert(
      fc.property(anyText, (s) => {
        const r = parseListenAddress(s);
        assert.ok('port' in r || r.code === 'CONFIG_INVALID');
      }),
      runs(3000),
    );
  });
});

describe('CIDR lists (property)', () => {
  const cidr = fc.oneof(
    fc.tuple(fc.ipV4(), fc.option(fc.integer({ min: 0, max: 32 }), { nil: undefined })),
    fc.tuple(fc.ipV6(), fc.option(fc.integer({ min: 0, max: 128 }), { nil: undefined })),
  );
  it('every item is normalised to address/bits, and parsing the result again changes nothing', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(cidr, fc.constantFrom('', ' ', '  ')), { maxLength: 6 }), (items) => {
        const text = items.map(([[a, b], sp]) => `${sp}${a}${b === undefined ? '' : `/${b}`}${sp}`).join(',');
        const parsed = parseCidrList(text);
        assert.ok(Array.isArray(parsed), `${text}: ${JSON.stringify(parsed)}`);
        assert.deepEqual(
          parsed,
          items.map(([[a, b]]) => `${a.toLowerCase()}/${b ?? (a.includes(':') ? 128 : 32)}`),
        );
        assert.deepEqual(parseCidrList(parsed.join(', ')), parsed, 'idempotent');
      }),
      runs(2000),
    );
  });
  it('never throws; a refusal quotes the bad item', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        const r = parseCidrList(s);
        if (Array.isArray(r)) return;
        assert.equal(r.code, 'CONFIG_INVALID');
        assert.match(r.message, /^has ".*", (which is not an IP address or CIDR|whose prefix length is not 0-(32|128))/s);
      }),
      runs(3000),
    );
  });
});

describe('resolveConfig (property)', () => {
  const textOptions = OPTIONS.filter((o) => o.env !== 'EDGEPROXY_DATABASE_URL' && o.env !== 'EDGEPROXY_REGION_ID');
  it('any value of any option: a config, or a ConfigError whose message starts with the variable (the flag when given as a flag)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...textOptions), anyText, fc.boolean(), (o, value, asFlag) => {
        const env = asFlag ? { ...REQUIRED } : { ...REQUIRED, [o.env]: value };
        const flags = asFlag ? { [o.flag]: value } : {};
        try {
          resolveConfig(flags, env);
        } catch (err) {
          assert.ok(err instanceof ConfigError, String(err));
          assert.equal(err.code, 'CONFIG_INVALID');
          assert.ok(err.message.startsWith(`${asFlag ? `--${o.flag}` : o.env}: `), err.message);
        }
      }),
      runs(3000),
    );
  });
});
