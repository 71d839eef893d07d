/**
 * On-demand issuance for a worker thread's HTTPS port (EDGEPROXY_WORKERS > 1; the port itself is
 * the main thread's listener, src/tls/https-listener.ts `httpsListenerFor`, with this worker's
 * version and the shared ticket keys), asked of the main thread: a handshake for a routed name
 * with no valid certificate posts the name; the main
 * thread runs its issuance (its locks, backoff and cap, as without workers) and answers once the
 * certificate is in a version it sent, or that none is coming. The handshake waits at most
 * EDGEPROXY_ACME_HANDSHAKE_WAIT, as on the main thread.
 */
import { isIP } from 'node:net';
import type tls from 'node:tls';
import { normaliseHost } from '../table/host.js';
import type { LoadedCertificate } from '../tls/certificate.js';
import type { TlsSnapshot } from '../tls/tls-state.js';

/** What the asks read of the worker's current version. */
export interface WorkerView {
  readonly current: { readonly routes: { get(host: string): unknown }; readonly tls: TlsSnapshot } | undefined;
}

/** One name's wait: every handshake for it in this worker joins the same one. */
interface Wait {
  readonly certificate: Promise<tls.SecureContext | undefined>;
  readonly resolve: (context: tls.SecureContext | undefined) => void;
}

/**
 * On-demand asks from a worker: decided from memory (the route, this version's certificates),
 * one question per name in flight, answered by `answer` (the main thread's reply) or by a
 * version that brings the certificate, whichever comes first; undefined after `waitMs`.
 */
export class CertificateAsks {
  readonly #view: WorkerView;
  readonly #post: (ask: number, name: string) => void;
  readonly #waitMs: number;
  readonly #byName = new Map<string, Wait>();
  readonly #byAsk = new Map<number, string>();
  #asks = 0;

  constructor(view: WorkerView, post: (ask: number, name: string) => void, waitMs: number) {
    this.#view = view;
    this.#post = post;
    this.#waitMs = waitMs;
  }

  /** Questions sent to the main thread since the worker started. */
  get asked(): number {
    return this.#asks;
  }

  /** A promise of the certificate for `serverName`, or undefined when no issuance is asked for it (not a routed host name). */
  certificateFor(serverName: string): Promise<tls.SecureContext | undefined> | undefined {
    const host = normaliseHost(serverName);
    if (host === undefined || isIP(host) !== 0) return undefined;
    const snapshot = this.#view.current;
    if (snapshot === undefined || snapshot.routes.get(host) === undefined) return undefined;
    const now = snapshot.tls.certificates.lookup(host, Date.now());
    if (now !== undefined) return Promise.resolve(now.context);
    const joined = this.#byName.get(host);
    if (joined !== undefined) return joined.certificate;
    const ask = ++this.#asks;
    let resolve!: (context: tls.SecureContext | undefined) => void;
    const certificate = new Promise<tls.SecureContext | undefined>((r) => (resolve = r));
    const timer = setTimeout(() => resolve(undefined), this.#waitMs);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      this.#byName.delete(host);
      this.#byAsk.delete(ask);
    };
    void certificate.then(done);
    this.#byName.set(host, { certificate, resolve });
    this.#byAsk.set(ask, host);
    this.#post(ask, host);
    return certificate;
  }

  /** The main thread's answer: `ready` when the certificate is in a version it sent before this answer. */
  answer(ask: number, ready: boolean): void {
    const host = this.#byAsk.get(ask);
    if (host === undefined) return;
    const found = this.#lookup(host);
    if (found !== undefined || !ready) this.#byName.get(host)?.resolve(found?.context);
    // ready but not in this version: the next one brings it (the wait's bound still holds).
  }

  /** A new version was swapped in: the waits it answers end. */
  applied(): void {
    for (const [host, wait] of this.#byName) {
      const found = this.#lookup(host);
      if (found !== undefined) wait.resolve(found.context);
    }
  }

  #lookup(host: string): LoadedCertificate | undefined {
    return this.#view.current?.tls.certificates.lookup(host, Date.now());
  }
}
