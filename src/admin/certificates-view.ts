/**
 * The stored certificates as the admin API shows them (GET /certificates) and `edgeproxy certs`
 * prints them: names, issuer, validity and state, never a key. Pure: reads one snapshot.
 */
import type { RouteSnapshot } from '../sync/route-store.js';
import type { CertificateRecord } from '../tls/tls-state.js';

export const CERTIFICATE_STATES = ['serving', 'standby', 'not-yet-valid', 'expired', 'unusable'] as const;
/**
 * `serving`: the certificate handshakes get for at least one of its names; `standby`: valid, but
 * another one (expiring later) is served for each of its names; `unusable`: the row cannot be
 * served at all (`problem` says why).
 */
export type CertificateState = (typeof CERTIFICATE_STATES)[number];

export interface CertificateView {
  readonly id: string;
  readonly names: readonly string[];
  readonly issuer: string | null;
  readonly notBefore: string | null;
  readonly notAfter: string | null;
  readonly state: CertificateState;
  /** The error code of an unusable row (docs/errors.md). */
  readonly problem: string | null;
}

export interface CertificatesView {
  readonly ready: boolean;
  readonly count: number;
  readonly certificates: readonly CertificateView[];
}

/** The state of one stored certificate at `now`. */
export function certificateState(r: CertificateRecord, snapshot: RouteSnapshot, now: number): CertificateState {
  if (r.problem !== undefined) return 'unusable';
  if (now < r.notBefore) return 'not-yet-valid';
  if (now >= r.notAfter) return 'expired';
  return r.names.some((n) => snapshot.tls.certificates.servedFor(n, now)?.id === r.id) ? 'serving' : 'standby';
}

/** Every stored certificate (or those naming `name`, wildcards included), soonest to expire first. */
export function viewCertificates(snapshot: RouteSnapshot | undefined, now: number, name?: string): CertificatesView {
  if (snapshot === undefined) return { ready: false, count: 0, certificates: [] };
  const wanted = name?.toLowerCase();
  const certificates = snapshot.tls.stored
    .filter((r) => wanted === undefined || (r.problem === undefined && r.names.some((n) => n.toLowerCase() === wanted)))
    .map((r) => view(r, snapshot, now))
    .sort(byExpiry);
  return { ready: true, count: certificates.length, certificates };
}

function view(r: CertificateRecord, snapshot: RouteSnapshot, now: number): CertificateView {
  const state = certificateState(r, snapshot, now);
  if (r.problem !== undefined) return { id: r.id, names: [], issuer: null, notBefore: null, notAfter: null, state, problem: r.problem };
  const iso = (ms: number) => new Date(ms).toISOString();
  return { id: r.id, names: r.names, issuer: r.issuer, notBefore: iso(r.notBefore), notAfter: iso(r.notAfter), state, problem: null };
}

/** Soonest not-after first, unusable rows (no not-after) last, then by id: a stable order for people and scripts. */
function byExpiry(a: CertificateView, b: CertificateView): number {
  if (a.notAfter !== b.notAfter) return a.notAfter === null ? 1 : b.notAfter === null ? -1 : a.notAfter < b.notAfter ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
