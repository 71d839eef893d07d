import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CertificateIndex, type IndexedCertificate } from '../src/tls/certificate-index.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 3);

function cert(id: string, names: string[], from = NOW - DAY, to = NOW + 30 * DAY): IndexedCertificate {
  return { id, names, notBefore: from, notAfter: to };
}

const idOf = (index: CertificateIndex<IndexedCertificate>, name: string, now = NOW) => index.lookup(name, now)?.id;

describe('certificate index (SNI)', () => {
  const index = CertificateIndex.build([
    cert('shop', ['Shop.Example.com.']),
    cert('wild', ['*.example.com']),
    cert('apex', ['example.com', 'www.example.com']),
    cert('idn', ['bücher.example']),
  ]);

  it('the exact name first, whatever the case or a trailing dot of either side', () => {
    assert.equal(idOf(index, 'shop.example.com'), 'shop');
    assert.equal(idOf(index, 'SHOP.EXAMPLE.COM.'), 'shop');
    assert.equal(idOf(index, 'www.example.com'), 'apex');
    assert.equal(idOf(index, 'example.com'), 'apex');
  });

  it('then a wildcard one label deep: not the apex, not two labels deep', () => {
    assert.equal(idOf(index, 'blog.example.com'), 'wild');
    assert.equal(idOf(index, 'a.blog.example.com'), undefined);
    assert.equal(CertificateIndex.build([cert('w', ['*.example.com'])]).lookup('example.com', NOW), undefined);
  });

  it('Unicode and punycode names meet', () => {
    assert.equal(idOf(index, 'xn--bcher-kva.example'), 'idn');
  });

  it('unknown names, IP literals and garbage SNI find nothing', () => {
    for (const name of ['other.test', '127.0.0.1', '', 'a..b', 'xn--zz.example.com', '*.example.com', 'shop.example.com/x']) {
      assert.equal(idOf(index, name), undefined, JSON.stringify(name));
    }
  });

  it('among several for a name, the one valid now that expires last; expired and not-yet-valid ones are never served', () => {
    const renewed = CertificateIndex.build([
      cert('old', ['a.test'], NOW - 80 * DAY, NOW + 5 * DAY),
      cert('new', ['a.test'], NOW - DAY, NOW + 85 * DAY),
      cert('future', ['a.test'], NOW + DAY, NOW + 200 * DAY),
      cert('expired', ['b.test'], NOW - 100 * DAY, NOW - DAY),
    ]);
    assert.equal(idOf(renewed, 'a.test'), 'new');
    assert.equal(idOf(renewed, 'a.test', NOW + 86 * DAY), 'future');
    assert.equal(idOf(renewed, 'b.test'), undefined);
    assert.equal(idOf(renewed, 'a.test', NOW + 300 * DAY), undefined);
  });

  it('an expired exact certificate falls back to a valid wildcard', () => {
    const i = CertificateIndex.build([cert('exact', ['a.example.com'], NOW - 9 * DAY, NOW - DAY), cert('wild', ['*.example.com'])]);
    assert.equal(idOf(i, 'a.example.com'), 'wild');
  });

  it('names that are not host names are left out and reported; the rest of the certificate is indexed', () => {
    const skipped: string[] = [];
    const i = CertificateIndex.build([cert('c', ['ok.test', '*.com', 'bad name', '**.x.test', '10.0.0.1'])], (_c, name) =>
      skipped.push(name),
    );
    assert.deepEqual(skipped, ['*.com', 'bad name', '**.x.test', '10.0.0.1']);
    assert.equal(idOf(i, 'ok.test'), 'c');
    assert.equal(i.size, 1);
  });
});
