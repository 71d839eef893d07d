/**
 * The TLS state a worker thread serves from (EDGEPROXY_WORKERS > 1): the main thread opens every
 * stored key with the storage key (which never leaves it) and sends, with each TLS change, the
 * served certificates (chain and opened key, a KeyObject: cloned, never serialised as text) and
 * the HTTP-01 tokens. The worker builds each certificate's context once, when a version first
 * brings it, and indexes them as the main thread does (exact name, then a one-label wildcard):
 * a handshake reads memory only, in every thread.
 */
import type { KeyObject } from 'node:crypto';
import { CertificateIndex } from '../tls/certificate-index.js';
import { secureContext, type LoadedCertificate } from '../tls/certificate.js';
import type { Challenge, TlsSnapshot } from '../tls/tls-state.js';

/** One served certificate as posted to a worker: what it needs to build the context, and what the index and logs read. */
export interface WorkerCertificate {
  readonly id: string;
  readonly names: readonly string[];
  readonly notBefore: number;
  readonly notAfter: number;
  readonly issuer: string;
  readonly fingerprint: string;
  readonly chainPem: string;
  readonly key: KeyObject;
}

/** The TLS part of a snapshot as posted to the workers. */
export interface WorkerTls {
  readonly certificates: readonly WorkerCertificate[];
  readonly challenges: ReadonlyMap<string, Challenge>;
}

/** The main thread's side: the served certificates and the tokens of `tls`. */
export function workerTls(tls: TlsSnapshot): WorkerTls {
  return { certificates: tls.served.map(workerCertificate), challenges: tls.challenges };
}

export function workerCertificate(c: LoadedCertificate): WorkerCertificate {
  const { id, names, notBefore, notAfter, issuer, fingerprint, chainPem, key } = c;
  return { id, names, notBefore, notAfter, issuer, fingerprint, chainPem, key };
}

/** A posted certificate with its context built here. */
export function loadWorkerCertificate(c: WorkerCertificate): LoadedCertificate {
  return { ...c, context: secureContext(c.chainPem, c.key) };
}

/**
 * The worker's side: each posted version as the snapshot type the request flow and the HTTPS
 * listener read. A certificate already loaded (same id, same leaf) keeps its context: a new
 * version costs a context only for the certificates it adds or changes.
 */
export class WorkerTlsState {
  #loaded = new Map<string, LoadedCertificate>();
  /** Contexts built since the worker started (the first version's and each change's). */
  built = 0;

  apply(m: WorkerTls): TlsSnapshot {
    const next = new Map<string, LoadedCertificate>();
    for (const c of m.certificates) {
      const key = `${c.id} ${c.fingerprint}`;
      let loaded = this.#loaded.get(key);
      if (loaded === undefined) {
        loaded = loadWorkerCertificate(c);
        this.built += 1;
      }
      next.set(key, loaded);
    }
    this.#loaded = next;
    const served = [...next.values()];
    return Object.freeze({ certificates: CertificateIndex.build(served), served, challenges: m.challenges, stored: [] });
  }
}
