/**
 * The TLS state a worker thread serves from (EDGEPROXY_WORKERS > 1): the main thread opens every
 * stored key with the storage key (which never leaves it) and sends, with each TLS change, the
 * served certificates that worker does not have yet (chain and opened key, a KeyObject: cloned,
 * never serialised as text), the served list, and the HTTP-01 tokens. The worker builds each
 * certificate's context once, when a version first brings it, and indexes them as the main
 * thread does (exact name, then a one-label wildcard): a handshake reads memory only, in every
 * thread.
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

/**
 * The TLS part of a snapshot as posted to one worker: only the certificates it was not sent yet
 * (a change of one row, or an ACME token coming and going, posts one certificate or none, not
 * all of them), and the served list by key.
 */
export interface WorkerTls {
  /** Certificates new since the version last sent to this worker (all of them to a new worker). */
  readonly added: readonly WorkerCertificate[];
  /** Every served certificate's `certificateKey`, the ones sent before and the added ones. */
  readonly served: readonly string[];
  readonly challenges: ReadonlyMap<string, Challenge>;
}

/** A served certificate's identity across versions: its row and its leaf. */
export function certificateKey(c: { readonly id: string; readonly fingerprint: string }): string {
  return `${c.id} ${c.fingerprint}`;
}

/**
 * The main thread's side: `tls` for a worker last sent `previous` (undefined: nothing yet). A row
 * that did not change keeps its LoadedCertificate object from one TlsState to the next, so what
 * is new is what `previous` does not hold.
 */
export function workerTls(tls: TlsSnapshot, previous: TlsSnapshot | undefined): WorkerTls {
  const sent = new Set(previous?.served);
  return {
    added: tls.served.filter((c) => !sent.has(c)).map(workerCertificate),
    served: tls.served.map(certificateKey),
    challenges: tls.challenges,
  };
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
 * listener read. A certificate kept from the last version keeps its context: a new version costs
 * a context only for the certificates it adds or changes.
 */
export class WorkerTlsState {
  #loaded = new Map<string, LoadedCertificate>();

  apply(m: WorkerTls): TlsSnapshot {
    const added = new Map(m.added.map((c) => [certificateKey(c), c]));
    const next = new Map<string, LoadedCertificate>();
    for (const key of m.served) {
      const posted = added.get(key);
      const loaded = posted === undefined ? this.#loaded.get(key) : loadWorkerCertificate(posted);
      // Always there: the main thread posts each worker every certificate it did not send it before.
      if (loaded === undefined) continue;
      next.set(key, loaded);
    }
    this.#loaded = next;
    const served = [...next.values()];
    return Object.freeze({ certificates: CertificateIndex.build(served), served, challenges: m.challenges, stored: [] });
  }
}
