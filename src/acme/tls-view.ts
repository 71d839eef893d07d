import type tls from 'node:tls';
import type { TlsSnapshot } from '../tls/tls-state.js';

/**
 * What issuance reads of the route snapshot: whether a name has a route, its certificates, and
 * a way to hear of the next snapshot. The RouteStore is one (its snapshots carry `tls`, streamed
 * from edgeproxy_certificates and edgeproxy_acme_challenges); nothing here queries anything.
 */
export interface IssuanceSnapshot {
  readonly routes: { get(host: string): unknown };
  readonly tls: TlsSnapshot;
}

export interface TlsView {
  readonly current: IssuanceSnapshot | undefined;
  /** Calls `listener` with each newly published snapshot; returns the unsubscribe. */
  onPublish(listener: (snapshot: IssuanceSnapshot) => void): () => void;
}

/**
 * Resolves with the context of a valid certificate for `name` once a snapshot holds one (at once
 * if the current one does), or undefined when `give up` resolves first. One listener per call.
 */
export function certificateArrives(view: TlsView, name: string, giveUp: Promise<unknown>): Promise<tls.SecureContext | undefined> {
  const now = view.current?.tls.certificates.lookup(name, Date.now());
  if (now !== undefined) return Promise.resolve(now.context);
  return new Promise((resolve) => {
    const off = view.onPublish((snapshot) => {
      const found = snapshot.tls.certificates.lookup(name, Date.now());
      if (found === undefined) return;
      off();
      resolve(found.context);
    });
    void giveUp.then(() => {
      off();
      resolve(undefined);
    });
  });
}

/** Resolves once a snapshot holds the HTTP-01 `token` (this proxy can answer it, so can its peers), or when `giveUp` resolves. */
export function challengeArrives(view: TlsView, token: string, giveUp: Promise<unknown>): Promise<void> {
  if (view.current?.tls.challenges.has(token) === true) return Promise.resolve();
  return new Promise((resolve) => {
    const off = view.onPublish((snapshot) => {
      if (!snapshot.tls.challenges.has(token)) return;
      off();
      resolve();
    });
    void giveUp.then(() => {
      off();
      resolve();
    });
  });
}
