import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import tls from 'node:tls';
import { EdgeProxyError, failure, type Failure } from '../errors.js';
import type { IndexedCertificate } from './certificate-index.js';
import type { StorageKey } from './storage-key.js';

/** A certificate as stored: its chain (leaf first) and its private key, sealed with the storage key. */
export interface StoredCertificate {
  readonly id: string;
  readonly chainPem: string;
  readonly sealedKey: Buffer;
}

/** A certificate ready to serve: what the index needs, and the TLS context built once, not per handshake. */
export interface LoadedCertificate extends IndexedCertificate {
  readonly context: tls.SecureContext;
  /** The chain as served (leaf first), and the opened key: what a worker thread builds its own context from (src/workers/worker-tls.ts). */
  readonly chainPem: string;
  /** A KeyObject: posted to a worker thread as it is, never printed (it serialises as `{}`), never in a message or a log line. */
  readonly key: KeyObject;
  readonly issuer: string;
  /** SHA-256 fingerprint of the leaf, for logs and the admin API. */
  readonly fingerprint: string;
}

export type CertificateProblem = Failure<'TLS_CERT_INVALID' | 'TLS_KEY_UNREADABLE' | 'TLS_KEY_OTHER_STORAGE_KEY'>;

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
/** A DNS name entry of subjectAltName as Node prints it (`DNS:shop.example.com`); others are not names we serve. */
const DNS_ENTRY = /^DNS:([^\s,"]+)$/;

/**
 * Checks a stored certificate and builds its context. Everything comes from the certificate
 * itself (names from subjectAltName, validity), so a row whose other columns disagree cannot
 * make the proxy serve a certificate for a name it does not cover. The key never leaves this
 * module except inside the context, and no message contains it.
 */
export function loadCertificate(row: StoredCertificate, storageKey: StorageKey): LoadedCertificate | CertificateProblem {
  const where = `certificate ${row.id}`;
  let keyPem: Buffer;
  try {
    keyPem = storageKey.open(row.sealedKey, where);
  } catch (err) {
    if (err instanceof EdgeProxyError && (err.code === 'TLS_KEY_UNREADABLE' || err.code === 'TLS_KEY_OTHER_STORAGE_KEY')) {
      return failure(err.code, err.message);
    }
    throw err;
  }
  return checkCertificate(row.id, where, row.chainPem, keyPem);
}

/** The same checks for a chain and a key in PEM, wherever they come from (`where` names them in messages). */
export function checkCertificate(
  id: string,
  where: string,
  chainPem: string,
  keyPem: Buffer | string,
): LoadedCertificate | CertificateProblem {
  const blocks = chainPem.match(PEM_BLOCK);
  if (blocks === null) return failure('TLS_CERT_INVALID', `${where}: the chain holds no PEM certificate`);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0]);
  } catch (err) {
    return failure('TLS_CERT_INVALID', `${where}: the first certificate of the chain does not parse (${(err as Error).message})`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    return failure('TLS_CERT_INVALID', `${where}: the private key is not a PEM private key`);
  }
  if (!leaf.checkPrivateKey(key)) return failure('TLS_CERT_INVALID', `${where}: the private key does not belong to the certificate`);
  const names = dnsNames(leaf);
  if (names.length === 0) return failure('TLS_CERT_INVALID', `${where}: the certificate names no DNS name in subjectAltName`);
  const chain = blocks.join('\n');
  let context: tls.SecureContext;
  try {
    context = secureContext(chain, key);
  } catch (err) {
    return failure('TLS_CERT_INVALID', `${where}: TLS refuses the chain (${(err as Error).message})`);
  }
  return {
    id,
    names,
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
    context,
    chainPem: chain,
    key,
    issuer: leaf.issuer.replace(/\n/g, ', '),
    fingerprint: leaf.fingerprint256,
  };
}

/** The TLS context of a chain and its key (checked together already): here at load, in a worker thread when a version arrives. */
export function secureContext(chainPem: string, key: KeyObject): tls.SecureContext {
  return tls.createSecureContext({ cert: chainPem, key: key.export({ type: 'pkcs8', format: 'pem' }) });
}

function dnsNames(cert: X509Certificate): string[] {
  const out: string[] = [];
  for (const entry of (cert.subjectAltName ?? '').split(', ')) {
    const m = DNS_ENTRY.exec(entry);
    if (m !== null) out.push(m[1]!);
  }
  return out;
}
