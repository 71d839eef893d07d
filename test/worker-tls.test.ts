import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isFailure } from '../src/errors.js';
import { checkCertificate, type LoadedCertificate } from '../src/tls/certificate.js';
import { EMPTY_TLS, type TlsSnapshot } from '../src/tls/tls-state.js';
import { workerTls, WorkerTlsState } from '../src/workers/worker-tls.js';
import { makeCertificate } from './support/certificates.js';

// What the main thread posts a worker with each TLS change (only the certificates that worker
// has not been sent), and what the worker serves from it: real certificates (openssl), real
// contexts; structured clone as postMessage does it.

function loaded(id: string, names: string[]): LoadedCertificate {
  const c = makeCertificate(names);
  const l = checkCertificate(id, id, c.certPem, c.keyPem);
  if (isFailure(l)) throw new Error(l.message);
  return l;
}

function snapshot(served: LoadedCertificate[]): TlsSnapshot {
  return { ...EMPTY_TLS, served };
}

describe('certificates posted to a worker', () => {
  const a = loaded('a', ['a.example']);
  const b = loaded('b', ['*.b.example']);
  const c = loaded('c', ['c.example']);
  const worker = new WorkerTlsState();

  it('a first version posts every certificate; the worker indexes them as the main thread does', () => {
    const m = structuredClone(workerTls(snapshot([a, b]), undefined));
    assert.deepEqual(
      m.added.map((x) => x.id),
      ['a', 'b'],
    );
    const tls = worker.apply(m);
    assert.equal(tls.certificates.lookup('a.example', Date.now())?.id, 'a');
    assert.equal(tls.certificates.lookup('shop.b.example', Date.now())?.id, 'b');
    assert.equal(tls.certificates.lookup('x.shop.b.example', Date.now()), undefined);
    assert.equal(tls.served.length, 2);
  });

  it('a later version posts only what the worker has not got; kept certificates keep their context', () => {
    const before = worker.apply(structuredClone(workerTls(snapshot([a, b]), undefined)));
    const contextA = before.certificates.lookup('a.example', Date.now())!.context;
    const removed = structuredClone(workerTls(snapshot([a]), snapshot([a, b])));
    assert.equal(removed.added.length, 0);
    const afterRemove = worker.apply(removed);
    assert.equal(afterRemove.certificates.lookup('shop.b.example', Date.now()), undefined);
    assert.equal(afterRemove.certificates.lookup('a.example', Date.now())!.context, contextA);
    const addedC = structuredClone(workerTls(snapshot([a, c]), snapshot([a])));
    assert.deepEqual(
      addedC.added.map((x) => x.id),
      ['c'],
    );
    const afterAdd = worker.apply(addedC);
    assert.equal(afterAdd.certificates.lookup('c.example', Date.now())?.id, 'c');
    assert.equal(afterAdd.certificates.lookup('a.example', Date.now())!.context, contextA);
  });
});
