import { isIP } from 'node:net';
import { normaliseHost } from '../table/host.js';

/** What the index needs to know of a stored certificate; the caller's type carries the rest. */
export interface IndexedCertificate {
  readonly id: string;
  /** The names it covers as stored (DNS names, `*.example.com` wildcards), any case. */
  readonly names: readonly string[];
  /** Validity, ms since the epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
}

/**
 * Which certificate answers a TLS handshake's server name: the exact name first, then a wildcard
 * one label deep (`*.example.com` covers `shop.example.com`, not `example.com` nor
 * `a.shop.example.com`, as RFC 6125 says). Among several for a name, the one valid now that
 * expires last. Pure and synchronous: built when the table changes, read on every handshake.
 */
export class CertificateIndex<C extends IndexedCertificate> {
  /** Normalised name (`shop.example.com`, or `*.example.com`) → its certificates, latest not-after first. */
  readonly #byName: ReadonlyMap<string, readonly C[]>;

  private constructor(byName: ReadonlyMap<string, readonly C[]>) {
    this.#byName = byName;
  }

  static empty<C extends IndexedCertificate>(): CertificateIndex<C> {
    return new CertificateIndex<C>(new Map());
  }

  /** Indexes `certs`; a name that is not a valid host name is left out and reported to `skipped`. */
  static build<C extends IndexedCertificate>(certs: Iterable<C>, skipped: (cert: C, name: string) => void = () => {}): CertificateIndex<C> {
    const byName = new Map<string, C[]>();
    for (const cert of certs) {
      for (const name of cert.names) {
        const key = indexName(name);
        if (key === undefined) {
          skipped(cert, name);
          continue;
        }
        const list = byName.get(key);
        if (list === undefined) byName.set(key, [cert]);
        else if (!list.includes(cert)) list.push(cert);
      }
    }
    for (const list of byName.values()) list.sort((a, b) => b.notAfter - a.notAfter || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return new CertificateIndex(byName);
  }

  /** The certificate for `serverName` (as sent in SNI) valid at `now`, or undefined. */
  lookup(serverName: string, now: number): C | undefined {
    const host = normaliseHost(serverName);
    if (host === undefined) return undefined;
    const exact = validAt(this.#byName.get(host), now);
    if (exact !== undefined) return exact;
    const dot = host.indexOf('.');
    // A wildcard must leave at least two labels of its own (`*.com` never matches).
    if (dot < 0 || host.indexOf('.', dot + 1) < 0) return undefined;
    return validAt(this.#byName.get(`*${host.slice(dot)}`), now);
  }

  /** The certificate served for a name as certificates list it (`*.example.com` is the wildcard entry itself), or undefined. */
  servedFor(name: string, now: number): C | undefined {
    const key = indexName(name);
    return key === undefined ? undefined : validAt(this.#byName.get(key), now);
  }

  /** How many names have a certificate (for metrics and the admin API). */
  get size(): number {
    return this.#byName.size;
  }
}

function validAt<C extends IndexedCertificate>(list: readonly C[] | undefined, now: number): C | undefined {
  if (list === undefined) return undefined;
  for (const cert of list) if (cert.notBefore <= now && now < cert.notAfter) return cert;
  return undefined;
}

/**
 * `Shop.Example.COM.` → `shop.example.com`; `*.Example.com` → `*.example.com`; anything else
 * (IP addresses included: SNI carries only host names, RFC 6066) → undefined.
 */
function indexName(name: string): string | undefined {
  const wildcard = name.startsWith('*.');
  const host = normaliseHost(wildcard ? name.slice(2) : name);
  if (host === undefined || isIP(host) !== 0) return undefined;
  if (!wildcard) return host;
  return host.includes('.') ? `*.${host}` : undefined;
}
