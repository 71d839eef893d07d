/**
 * A test peer standing in for the proxy's certificate stream and HTTP-01 answer until they are on
 * main: it polls edgeproxy_certificates and edgeproxy_acme_challenges (every 50 ms) into
 * snapshots shaped as the RouteStore's will be (`routes`, `tls.certificates`, `tls.challenges`),
 * with `onPublish`, and answers `/.well-known/acme-challenge/<token>` on a real HTTP listener
 * from its snapshot, as the proxy's HTTP port will.
 */
import http from 'node:http';
import pg from 'pg';
import { isFailure } from '../../src/errors.js';
import type { TlsSnapshot, TlsView } from '../../src/acme/tls-view.js';
import { CertificateIndex } from '../../src/tls/certificate-index.js';
import { loadCertificate, type LoadedCertificate } from '../../src/tls/certificate.js';
import type { StorageKey } from '../../src/tls/storage-key.js';

export interface StandIn extends TlsView {
  /** Names with a route (what the proxy's table would hold); change it to add or remove routes. */
  readonly routes: Set<string>;
  /** Publishes a snapshot from the database now. */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

export async function startStandIn(databaseUrl: string, storageKey: StorageKey, routes: Iterable<string>): Promise<StandIn> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const listeners = new Set<(s: TlsSnapshot) => void>();
  const names = new Set(routes);
  let current: TlsSnapshot | undefined;
  let closed = false;
  let polling: Promise<void> = Promise.resolve();

  const load = async (): Promise<void> => {
    const certs = await client.query<{ id: string; chain_pem: string; key_sealed: Buffer }>(
      'SELECT id, chain_pem, key_sealed FROM edgeproxy_certificates',
    );
    const challenges = await client.query<{ token: string; key_authorization: string }>(
      'SELECT token, key_authorization FROM edgeproxy_acme_challenges',
    );
    const loaded: LoadedCertificate[] = [];
    for (const row of certs.rows) {
      const cert = loadCertificate({ id: row.id, chainPem: row.chain_pem, sealedKey: row.key_sealed }, storageKey);
      if (!isFailure(cert)) loaded.push(cert);
    }
    const snapshot: TlsSnapshot = {
      routes: { get: (host: string) => (names.has(host) ? { host } : undefined) },
      tls: {
        certificates: CertificateIndex.build(loaded),
        challenges: new Map(challenges.rows.map((r) => [r.token, r.key_authorization])),
      },
    };
    current = snapshot;
    for (const l of [...listeners]) l(snapshot);
  };
  await load();
  const timer = setInterval(() => {
    polling = polling.then(() => (closed ? undefined : load().catch(() => undefined)));
  }, 50);

  return {
    routes: names,
    get current() {
      return current;
    },
    onPublish(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    refresh: () => (polling = polling.then(load)),
    async close() {
      closed = true;
      clearInterval(timer);
      await polling;
      await client.end();
    },
  };
}

/** Answers HTTP-01 on `host`:80 from the view's snapshot (the CA's validation connects here). */
export async function startChallengeAnswer(view: TlsView, host: string): Promise<{ hits: () => number; close(): Promise<void> }> {
  let hits = 0;
  const prefix = '/.well-known/acme-challenge/';
  const server = http.createServer((req, res) => {
    const token = req.url?.startsWith(prefix) === true ? req.url.slice(prefix.length) : undefined;
    const answer = token === undefined ? undefined : view.current?.tls.challenges.get(token);
    hits += 1;
    res.writeHead(answer === undefined ? 404 : 200, { 'content-type': 'text/plain' });
    res.end(answer ?? 'no such token');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(80, host, () => resolve());
  });
  return {
    hits: () => hits,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
