import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { EdgeProxyError, isFailure } from '../src/errors.js';
import { StorageKey } from '../src/tls/storage-key.js';

function key(bytes = randomBytes(32)): StorageKey {
  const k = StorageKey.parse(bytes.toString('base64'));
  assert.ok(!isFailure(k));
  return k;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof EdgeProxyError, String(err));
    return err.code;
  }
  return undefined;
}

const PEM = Buffer.from(
  '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOdsh1Cu2Cl4pBE0Yy4kN0ZsEh1N0ZsEh1N0ZsEh1N0Z\n-----END PRIVATE KEY-----\n',
);

describe('TLS storage key', () => {
  it('a sealed key opens with the same storage key and context, and does not contain the plaintext', () => {
    const k = key();
    const sealed = k.seal(PEM, 'certificate 7d1c');
    assert.equal(sealed.indexOf(PEM.subarray(0, 16)), -1);
    assert.deepEqual(k.open(sealed, 'certificate 7d1c'), PEM);
  });

  it('sealing twice gives different bytes (a fresh nonce each time)', () => {
    const k = key();
    assert.notDeepEqual(k.seal(PEM, 'c'), k.seal(PEM, 'c'));
  });

  it('another storage key: TLS_KEY_OTHER_STORAGE_KEY naming both key ids, never the key', () => {
    const mine = randomBytes(32);
    const theirs = key();
    const sealed = theirs.seal(PEM, 'c');
    const k = key(mine);
    try {
      k.open(sealed, 'c');
      assert.fail('opened with the wrong key');
    } catch (err) {
      assert.ok(err instanceof EdgeProxyError);
      assert.equal(err.code, 'TLS_KEY_OTHER_STORAGE_KEY');
      assert.ok(err.message.includes(theirs.id) && err.message.includes(k.id), err.message);
      assert.ok(!err.message.includes(mine.toString('base64')));
      assert.match(err.fix ?? '', /EDGEPROXY_TLS_STORAGE_KEY/);
    }
  });

  it('a value moved to another row (other context), altered or truncated: TLS_KEY_UNREADABLE', () => {
    const k = key();
    const sealed = k.seal(PEM, 'certificate a');
    assert.equal(
      codeOf(() => k.open(sealed, 'certificate b')),
      'TLS_KEY_UNREADABLE',
    );
    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 1]! ^= 1;
    assert.equal(
      codeOf(() => k.open(flipped, 'certificate a')),
      'TLS_KEY_UNREADABLE',
    );
    const tag = Buffer.from(sealed);
    tag[30]! ^= 0x80;
    assert.equal(
      codeOf(() => k.open(tag, 'certificate a')),
      'TLS_KEY_UNREADABLE',
    );
    assert.equal(
      codeOf(() => k.open(sealed.subarray(0, 20), 'certificate a')),
      'TLS_KEY_UNREADABLE',
    );
    assert.equal(
      codeOf(() => k.open(Buffer.from('-----BEGIN PRIVATE KEY-----'), 'certificate a')),
      'TLS_KEY_UNREADABLE',
    );
  });

  it('parse: 32 bytes of base64 only; the failure says what is wrong and never echoes the value', () => {
    for (const [raw, says] of [
      ['', /not base64/],
      ['not base64!', /not base64/],
      [randomBytes(16).toString('base64'), /must be 32 bytes in base64, got 16/],
      [randomBytes(33).toString('base64'), /got 33/],
    ] as const) {
      const r = StorageKey.parse(raw);
      assert.ok(isFailure(r), raw);
      assert.equal(r.code, 'CONFIG_INVALID');
      assert.match(r.message, says);
      if (raw.length > 0) assert.ok(!r.message.includes(raw));
    }
    assert.ok(!isFailure(StorageKey.parse(`${randomBytes(32).toString('base64')}\n`)), 'a trailing newline (a key file) is fine');
  });
});
