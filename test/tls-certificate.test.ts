import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { isFailure } from '../src/errors.js';
import { loadCertificate, type StoredCertificate } from '../src/tls/certificate.js';
import { StorageKey } from '../src/tls/storage-key.js';
import { makeCertificate } from './support/certificates.js';

function storageKey(): StorageKey {
  const k = StorageKey.parse(randomBytes(32).toString('base64'));
  assert.ok(!isFailure(k));
  return k;
}

const key = storageKey();
const shop = makeCertificate(['shop.example.test', '*.shop.example.test'], { days: 10 });
const other = makeCertificate(['other.example.test']);

function stored(certPem: string, keyPem: string, id = 'c1', k = key): StoredCertificate {
  return { id, chainPem: certPem, sealedKey: k.seal(Buffer.from(keyPem), `certificate ${id}`) };
}

describe('a stored certificate, checked and ready to serve', () => {
  it('names come from subjectAltName and validity from the certificate; the context serves it', async () => {
    const before = Date.now();
    const c = loadCertificate(stored(shop.certPem, shop.keyPem), key);
    assert.ok(!isFailure(c), JSON.stringify(c));
    assert.deepEqual(c.names, ['shop.example.test', '*.shop.example.test']);
    assert.ok(c.notBefore <= before && c.notAfter > before + 9 * 86_400_000 && c.notAfter <= before + 11 * 86_400_000);
    assert.match(c.issuer, /CN=shop\.example\.test/);
    assert.match(c.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);

    // The context really serves: a client that trusts the certificate completes a handshake.
    const server = tls.createServer({ SNICallback: (_n, cb) => cb(null, c.context) }, (s) => s.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const got = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', servername: 'a.shop.example.test', ca: shop.certPem }, () => {});
      s.on('data', (d: Buffer) => resolve(d.toString()));
      s.on('error', reject);
    });
    server.close();
    assert.equal(got, 'ok');
  });

  it('a chain with more than one certificate keeps them all', () => {
    const c = loadCertificate(stored(`${shop.certPem}\n${other.certPem}`, shop.keyPem), key);
    assert.ok(!isFailure(c));
    assert.deepEqual(c.names, ['shop.example.test', '*.shop.example.test']);
  });

  const problems: [string, StoredCertificate, string, RegExp][] = [
    [
      'no PEM in the chain',
      { ...stored(shop.certPem, shop.keyPem), chainPem: 'not a certificate' },
      'TLS_CERT_INVALID',
      /holds no PEM certificate/,
    ],
    [
      'a PEM block that is not a certificate',
      { ...stored(shop.certPem, shop.keyPem), chainPem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----' },
      'TLS_CERT_INVALID',
      /does not parse/,
    ],
    ['the key of another certificate', stored(shop.certPem, other.keyPem), 'TLS_CERT_INVALID', /does not belong to the certificate/],
    [
      'a key that is not PEM',
      { ...stored(shop.certPem, shop.keyPem), sealedKey: key.seal(Buffer.from('nope'), 'certificate c1') },
      'TLS_CERT_INVALID',
      /not a PEM private key/,
    ],
    [
      'sealed with another storage key',
      stored(shop.certPem, shop.keyPem, 'c1', storageKey()),
      'TLS_KEY_OTHER_STORAGE_KEY',
      /sealed with storage key/,
    ],
    ['sealed for another row', { ...stored(shop.certPem, shop.keyPem, 'c2'), id: 'c1' }, 'TLS_KEY_UNREADABLE', /does not open/],
  ];
  for (const [what, row, code, says] of problems) {
    it(`${what}: ${code}, naming the certificate, never the key`, () => {
      const r = loadCertificate(row, key);
      assert.ok(isFailure(r), 'refused');
      assert.equal(r.code, code);
      assert.match(r.message, says);
      assert.match(r.message, /certificate c1/);
      assert.ok(!r.message.includes('PRIVATE KEY'), r.message);
    });
  }

  it('a certificate without subjectAltName is refused for that reason', () => {
    const nosan = makeCertificate(['nosan.test'], { san: false });
    const r = loadCertificate(stored(nosan.certPem, nosan.keyPem), key);
    assert.ok(isFailure(r));
    assert.match(r.message, /names no DNS name in subjectAltName/);
  });
});
