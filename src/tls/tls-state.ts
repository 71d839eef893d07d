import { failure, isFailure, type Failure } from '../errors.js';
import type { Columns } from '../table/rows.js';
import { CertificateIndex } from './certificate-index.js';
import { loadCertificate, type CertificateProblem, type LoadedCertificate } from './certificate.js';
import type { StorageKey } from './storage-key.js';
import type { TlsChange, TlsRows } from './tls-tables.js';

/** An HTTP-01 token of an order running now: answered on the HTTP port by whichever proxy the CA reaches. */
export interface Challenge {
  readonly keyAuthorization: string;
  /** ms since the epoch; an expired token is not answered. */
  readonly expiresAt: number;
}

/** A stored certificate as operators see it (the admin API, `edgeproxy certs`, metrics); never the key. */
export type CertificateRecord =
  | {
      readonly id: string;
      readonly names: readonly string[];
      readonly issuer: string;
      readonly notBefore: number;
      readonly notAfter: number;
      readonly fingerprint: string;
      readonly problem: undefined;
    }
  | { readonly id: string; readonly problem: CertificateRowProblem['problem']['code'] };

/** What the handshake and the HTTP port read: one immutable value per published snapshot. */
export interface TlsSnapshot {
  readonly certificates: CertificateIndex<LoadedCertificate>;
  /** The certificates the index holds, as a list (what the main thread sends its worker threads). */
  readonly served: readonly LoadedCertificate[];
  readonly challenges: ReadonlyMap<string, Challenge>;
  /** Every stored certificate row, served or not. */
  readonly stored: readonly CertificateRecord[];
}

/** A stored certificate the proxy cannot serve, with its row's id (logged by the caller; never the key). */
export interface CertificateRowProblem {
  readonly id: string;
  readonly problem: CertificateProblem | Failure<'TLS_KEY_NO_STORAGE_KEY'>;
}

interface StoredRow {
  readonly chainPem: string;
  readonly sealedKey: Buffer;
  /** undefined when the row cannot be served (see problem). */
  readonly loaded: LoadedCertificate | undefined;
  readonly problem?: CertificateRowProblem['problem']['code'];
}

export interface TlsApplied {
  readonly state: TlsState;
  /** Certificate rows that were added or changed and cannot be served. */
  readonly problems: readonly CertificateRowProblem[];
}

export const EMPTY_TLS: TlsSnapshot = Object.freeze({
  certificates: CertificateIndex.empty<LoadedCertificate>(),
  served: [],
  challenges: new Map(),
  stored: [],
});

/**
 * The certificate and challenge rows, and the snapshot built from them. Immutable: apply returns
 * a new state. A certificate's key is opened and its TLS context built once, when its row first
 * arrives (or changes), never on a handshake; a row that did not change is reused as it is, so a
 * poll of the whole table costs a comparison per row.
 */
export class TlsState {
  readonly #certs: ReadonlyMap<string, StoredRow>;
  readonly #challenges: ReadonlyMap<string, Challenge>;
  readonly #storageKey: StorageKey | undefined;
  readonly snapshot: TlsSnapshot;

  private constructor(certs: ReadonlyMap<string, StoredRow>, challenges: ReadonlyMap<string, Challenge>, key: StorageKey | undefined) {
    this.#certs = certs;
    this.#challenges = challenges;
    this.#storageKey = key;
    const served = [...certs.values()].flatMap((r) => (r.loaded === undefined ? [] : [r.loaded]));
    const stored = [...certs].map(([id, r]) => record(id, r));
    this.snapshot = Object.freeze({ certificates: CertificateIndex.build(served), served, challenges, stored });
  }

  static empty(storageKey: StorageKey | undefined): TlsState {
    return new TlsState(new Map(), new Map(), storageKey);
  }

  /** Rows stored, served or not. */
  get certificateRows(): number {
    return this.#certs.size;
  }

  /** The whole tables (a bootstrap or a poll); rows unchanged since `this` are reused. */
  replaceAll(rows: TlsRows): TlsApplied {
    const certs = new Map<string, StoredRow>();
    const problems: CertificateRowProblem[] = [];
    for (const columns of rows.edgeproxy_certificates) {
      const id = String(columns.id);
      certs.set(id, this.#certificate(id, columns, undefined, problems));
    }
    const challenges = new Map<string, Challenge>();
    for (const columns of rows.edgeproxy_acme_challenges) {
      const challenge = toChallenge(columns, undefined);
      if (challenge !== undefined) challenges.set(String(columns.token), challenge);
    }
    return { state: new TlsState(certs, challenges, this.#storageKey), problems };
  }

  /** One transaction's changes to the TLS tables. */
  apply(changes: readonly TlsChange[]): TlsApplied {
    if (changes.length === 0) return { state: this, problems: [] };
    let certs: Map<string, StoredRow> | undefined;
    let challenges: Map<string, Challenge> | undefined;
    const problems: CertificateRowProblem[] = [];
    for (const change of changes) {
      if (change.table === 'edgeproxy_certificates') {
        certs ??= new Map(this.#certs);
        this.#applyCertificate(certs, change, problems);
      } else {
        challenges ??= new Map(this.#challenges);
        applyChallenge(challenges, change);
      }
    }
    return { state: new TlsState(certs ?? this.#certs, challenges ?? this.#challenges, this.#storageKey), problems };
  }

  #applyCertificate(certs: Map<string, StoredRow>, change: TlsChange, problems: CertificateRowProblem[]): void {
    if (change.op === 'delete') {
      certs.delete(change.key);
      return;
    }
    const previous = certs.get(change.oldKey ?? change.key);
    if (change.oldKey !== undefined) certs.delete(change.oldKey);
    certs.set(change.key, this.#certificate(change.key, change.row, previous, problems));
  }

  /** The row as stored, reusing the one already loaded when chain and key are the same (and the id: the key is sealed for it). */
  #certificate(id: string, columns: Columns, previous: StoredRow | undefined, problems: CertificateRowProblem[]): StoredRow {
    const chainPem = columns.chain_pem === undefined ? previous?.chainPem : String(columns.chain_pem);
    const sealedKey = columns.key_sealed === undefined ? previous?.sealedKey : toBuffer(columns.key_sealed);
    const known = this.#certs.get(id);
    if (known !== undefined && known.chainPem === chainPem && sealedKey !== undefined && known.sealedKey.equals(sealedKey)) return known;
    if (chainPem === undefined || sealedKey === undefined) {
      problems.push({ id, problem: failure('TLS_CERT_INVALID', `certificate ${id}: an update without its chain or key`) });
      return { chainPem: chainPem ?? '', sealedKey: sealedKey ?? Buffer.alloc(0), loaded: undefined, problem: 'TLS_CERT_INVALID' };
    }
    if (this.#storageKey === undefined) {
      problems.push({
        id,
        problem: failure('TLS_KEY_NO_STORAGE_KEY', `certificate ${id}: its key is sealed and this proxy has no EDGEPROXY_TLS_STORAGE_KEY`),
      });
      return { chainPem, sealedKey, loaded: undefined, problem: 'TLS_KEY_NO_STORAGE_KEY' };
    }
    const loaded = loadCertificate({ id, chainPem, sealedKey }, this.#storageKey);
    if (isFailure(loaded)) {
      problems.push({ id, problem: loaded });
      return { chainPem, sealedKey, loaded: undefined, problem: loaded.code };
    }
    return { chainPem, sealedKey, loaded };
  }
}

function record(id: string, r: StoredRow): CertificateRecord {
  const c = r.loaded;
  if (c === undefined) return { id, problem: r.problem ?? 'TLS_CERT_INVALID' };
  return {
    id,
    names: c.names,
    issuer: c.issuer,
    notBefore: c.notBefore,
    notAfter: c.notAfter,
    fingerprint: c.fingerprint,
    problem: undefined,
  };
}

function applyChallenge(challenges: Map<string, Challenge>, change: TlsChange): void {
  if (change.op === 'delete') {
    challenges.delete(change.key);
    return;
  }
  const previous = challenges.get(change.oldKey ?? change.key);
  if (change.oldKey !== undefined) challenges.delete(change.oldKey);
  const challenge = toChallenge(change.row, previous);
  if (challenge === undefined) challenges.delete(change.key);
  else challenges.set(change.key, challenge);
}

/** A token row as the HTTP port answers it; undefined when it cannot be (no key authorization). */
function toChallenge(columns: Columns, previous: Challenge | undefined): Challenge | undefined {
  const keyAuthorization = columns.key_authorization === undefined ? previous?.keyAuthorization : columns.key_authorization;
  if (typeof keyAuthorization !== 'string' || keyAuthorization === '') return undefined;
  const raw = columns.expires_at === undefined ? previous?.expiresAt : columns.expires_at;
  const expiresAt = raw instanceof Date ? raw.getTime() : typeof raw === 'number' ? raw : Date.parse(String(raw));
  return { keyAuthorization, expiresAt: Number.isFinite(expiresAt) ? expiresAt : 0 };
}

/** bytea as the driver parses it (a Buffer), or its text form (`\x…`). */
function toBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  const text = String(value);
  return text.startsWith('\\x') ? Buffer.from(text.slice(2), 'hex') : Buffer.from(text, 'utf8');
}
