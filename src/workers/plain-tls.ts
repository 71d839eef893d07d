/**
 * What a worker's plain HTTP port knows of the TLS state (HTTPS stays on the main thread for
 * now): the HTTP-01 tokens it answers, and which names have a certificate valid when (the HTTPS
 * redirect). Certificates themselves (keys, contexts) never leave the main thread.
 */
import { CertificateIndex, type IndexedCertificate } from '../tls/certificate-index.js';
import type { TlsSnapshot } from '../tls/tls-state.js';
import type { PlainTls } from './messages.js';

/** The main thread's side: the served certificates' names and validity, and the tokens. */
export function plainTls(tls: TlsSnapshot): PlainTls {
  const certificates: IndexedCertificate[] = [];
  for (const r of tls.stored) {
    if (r.problem === undefined) certificates.push({ id: r.id, names: r.names, notBefore: r.notBefore, notAfter: r.notAfter });
  }
  return { certificates, challenges: tls.challenges };
}

/**
 * The worker's side, as the snapshot type the request flow reads. The plain port only asks the
 * index whether a name has a certificate valid now (plain-http.ts), never for the certificate:
 * an index of names and validity answers that the same.
 */
export function tlsForPlainPort(p: PlainTls): TlsSnapshot {
  const certificates = CertificateIndex.build(p.certificates) as unknown as TlsSnapshot['certificates'];
  return Object.freeze({ certificates, challenges: p.challenges, stored: [] });
}
