import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { normaliseHost, parseHostHeader } from '../src/table/host.js';

describe('normaliseHost', () => {
  it('keeps plain lowercase names as they are', () => {
    for (const name of ['example.com', 'a.b.c.example', 'api-1.example.com', 'under_score.example', 'localhost', 'x']) {
      assert.equal(normaliseHost(name), name);
    }
  });

  it('lowercases ASCII names', () => {
    assert.equal(normaliseHost('Example.COM'), 'example.com');
    assert.equal(normaliseHost('API.Example.Com'), 'api.example.com');
  });

  it('removes one trailing dot (fully qualified form)', () => {
    assert.equal(normaliseHost('example.com.'), 'example.com');
    assert.equal(normaliseHost('Example.Com.'), 'example.com');
    assert.equal(normaliseHost('localhost.'), 'localhost');
  });

  it('rejects names that are only dots or keep an empty label after removing one dot', () => {
    for (const name of ['.', '..', 'example.com..', '.example.com', 'a..b', 'a...b', 'a.b..']) {
      assert.equal(normaliseHost(name), undefined, JSON.stringify(name));
    }
  });

  it('converts Unicode (IDN) names to punycode', () => {
    assert.equal(normaliseHost('Bücher.example'), 'xn--bcher-kva.example');
    assert.equal(normaliseHost('bücher.example'), 'xn--bcher-kva.example');
    assert.equal(normaliseHost('BÜCHER.EXAMPLE.'), 'xn--bcher-kva.example');
    assert.equal(normaliseHost('münchen.de'), 'xn--mnchen-3ya.de');
    assert.equal(normaliseHost('例え.テスト'), 'xn--r8jz45g.xn--zckzah');
  });

  it('leaves an already punycoded name unchanged, so both spellings meet on one host', () => {
    assert.equal(normaliseHost('xn--bcher-kva.example'), 'xn--bcher-kva.example');
    assert.equal(normaliseHost('XN--BCHER-KVA.EXAMPLE'), 'xn--bcher-kva.example');
    assert.equal(normaliseHost('Bücher.example'), normaliseHost('xn--bcher-kva.example.'));
  });

  it('rejects xn-- labels that are not the punycode of a valid label, whatever the runtime IDNA does with them', () => {
    const bad = [
      'xn--zz', // not decodable
      'a.xn--zz.example',
      'xn--',
      'xn--a.example',
      'xn--abc-.example', // decodes to plain ASCII "abc"
      'xn--xn--zca-hia.com', // decodes to another xn-- label
      'xn--a-ecp.example', // decodes to a disallowed code point
      'bücher.xn--zz', // Unicode input with a bad ACE label beside it
    ];
    for (const name of bad) assert.equal(normaliseHost(name), undefined, name);
    assert.equal(normaliseHost('axn--b.example'), 'axn--b.example', 'xn-- inside a label is not an ACE prefix');
    assert.equal(normaliseHost('bücher.xn--mnchen-3ya.de'), 'xn--bcher-kva.xn--mnchen-3ya.de');
  });

  it('applies IDNA mapping (full-width characters, ideographic full stop)', () => {
    assert.equal(normaliseHost('ｅｘａｍｐｌｅ.com'), 'example.com');
    assert.equal(normaliseHost('example。com'), 'example.com');
  });

  it('rejects names with characters a host name cannot contain', () => {
    const bad = [
      'exa mple.com',
      ' example.com',
      'example.com ',
      'example.com/path',
      'a/b',
      'ex%61mple.com', // would percent-decode to example.com in the URL host parser
      '%',
      'user@example.com',
      'a@b',
      'example.com:80',
      'a\tb',
      'a\nb',
      'a\\b',
      'a#b',
      'a?b',
      'a*b',
      '[::1]',
      'a,b',
    ];
    for (const name of bad) assert.equal(normaliseHost(name), undefined, JSON.stringify(name));
  });

  it('rejects Unicode names that are invalid after IDNA mapping', () => {
    assert.equal(normaliseHost('a\u0000b'), undefined);
    assert.equal(normaliseHost('exa／mple.com'), undefined); // full-width solidus maps to '/'
    assert.equal(normaliseHost('exa％61mple.com'), undefined); // full-width percent maps to '%'
    assert.equal(normaliseHost('\u200b.com'), undefined); // zero-width space is removed: empty label
  });

  it('rejects the empty name', () => {
    assert.equal(normaliseHost(''), undefined);
  });

  it('accepts names up to 253 characters and rejects longer ones', () => {
    const label = 'a'.repeat(63);
    const n253 = `${label}.${label}.${label}.${'b'.repeat(61)}`;
    assert.equal(n253.length, 253);
    assert.equal(normaliseHost(n253), n253);
    assert.equal(normaliseHost(`${n253}.`), n253, 'a trailing dot does not count');
    assert.equal(normaliseHost(`${n253.toUpperCase()}`), n253);
    const n254 = `${n253}c`;
    assert.equal(normaliseHost(n254), undefined);
    assert.equal(normaliseHost(`${n254}.`), undefined);
    assert.equal(normaliseHost('a'.repeat(5000)), undefined);
  });

  it('checks the length after punycode conversion', () => {
    const cjk = Array.from({ length: 30 }, (_, i) => String.fromCodePoint(0x4e00 + i * 37)).join('');
    const three = `${cjk}.${cjk}.${cjk}.example`; // 100 characters, 226 in punycode
    const four = `${cjk}.${cjk}.${cjk}.${cjk}.example`; // 131 characters, more than 253 in punycode
    assert.equal(normaliseHost(three)?.length, 226);
    assert.ok(four.length < 253);
    assert.equal(normaliseHost(four), undefined);
  });
});

describe('parseHostHeader', () => {
  it('reports a missing or empty header', () => {
    assert.deepEqual(parseHostHeader(undefined), { ok: false, code: 'HOST_MISSING', message: 'missing Host header' });
    assert.deepEqual(parseHostHeader(''), { ok: false, code: 'HOST_MISSING', message: 'missing Host header' });
  });

  it('normalises a plain name', () => {
    assert.deepEqual(parseHostHeader('example.com'), { ok: true, host: 'example.com', ipLiteral: false });
    assert.deepEqual(parseHostHeader('Example.COM.'), { ok: true, host: 'example.com', ipLiteral: false });
    assert.deepEqual(parseHostHeader('Bücher.example'), { ok: true, host: 'xn--bcher-kva.example', ipLiteral: false });
  });

  it('strips a port', () => {
    assert.deepEqual(parseHostHeader('example.com:8080'), { ok: true, host: 'example.com', ipLiteral: false });
    assert.deepEqual(parseHostHeader('Example.com.:443'), { ok: true, host: 'example.com', ipLiteral: false });
    assert.deepEqual(parseHostHeader('Bücher.example:80'), { ok: true, host: 'xn--bcher-kva.example', ipLiteral: false });
    assert.deepEqual(parseHostHeader('example.com:1'), { ok: true, host: 'example.com', ipLiteral: false });
    assert.deepEqual(parseHostHeader('example.com:65535'), { ok: true, host: 'example.com', ipLiteral: false });
  });

  it('rejects bad ports', () => {
    for (const value of [
      'example.com:',
      'example.com:abc',
      'example.com:80a',
      'example.com:-1',
      'example.com:+80',
      'example.com: 80',
      'example.com:80:80',
      'example.com:123456',
      '1.2.3.4:http',
      '[::1]:',
      '[::1]:x',
      '[::1]8080',
      '[::1]:123456',
      '[::1]:80:80',
    ]) {
      const result = parseHostHeader(value);
      assert.equal(result.ok, false, value);
      assert.deepEqual(result, { ok: false, code: 'HOST_INVALID_PORT', message: 'invalid port in Host header' }, value);
    }
  });

  it('accepts bracketed IPv6 literals with and without a port', () => {
    assert.deepEqual(parseHostHeader('[::1]:8080'), { ok: true, host: '::1', ipLiteral: true });
    assert.deepEqual(parseHostHeader('[::1]'), { ok: true, host: '::1', ipLiteral: true });
    assert.deepEqual(parseHostHeader('[2001:DB8::A]:443'), { ok: true, host: '2001:db8::a', ipLiteral: true });
  });

  it('rejects malformed IPv6 literals', () => {
    assert.deepEqual(parseHostHeader('[::1'), {
      ok: false,
      code: 'HOST_INVALID_IPV6',
      message: 'unterminated IPv6 literal in Host header',
    });
    assert.deepEqual(parseHostHeader('[]'), { ok: false, code: 'HOST_INVALID_IPV6', message: 'invalid IPv6 literal in Host header' });
    assert.deepEqual(parseHostHeader('[1.2.3.4]'), {
      ok: false,
      code: 'HOST_INVALID_IPV6',
      message: 'invalid IPv6 literal in Host header',
    });
    assert.deepEqual(parseHostHeader('[example.com]:80'), {
      ok: false,
      code: 'HOST_INVALID_IPV6',
      message: 'invalid IPv6 literal in Host header',
    });
    assert.deepEqual(parseHostHeader('[:::1]'), { ok: false, code: 'HOST_INVALID_IPV6', message: 'invalid IPv6 literal in Host header' });
  });

  it('does not accept an unbracketed IPv6 address', () => {
    assert.equal(parseHostHeader('::1').ok, false);
    assert.equal(parseHostHeader('2001:db8::1').ok, false);
  });

  it('reports IPv4 literals as such, with or without a port', () => {
    assert.deepEqual(parseHostHeader('192.0.2.1'), { ok: true, host: '192.0.2.1', ipLiteral: true });
    assert.deepEqual(parseHostHeader('192.0.2.1:8080'), { ok: true, host: '192.0.2.1', ipLiteral: true });
    assert.deepEqual(parseHostHeader('127.0.0.1:80'), { ok: true, host: '127.0.0.1', ipLiteral: true });
  });

  it('rejects invalid names', () => {
    for (const value of ['exa mple.com', 'a/b', 'a%41.com', 'user@example.com', 'a..b', ':80', '.', 'a..b:80', `${'a'.repeat(254)}:80`]) {
      const result = parseHostHeader(value);
      assert.equal(result.ok, false, value);
      assert.deepEqual(result, { ok: false, code: 'HOST_INVALID_NAME', message: 'invalid host name in Host header' }, value);
    }
  });
});
