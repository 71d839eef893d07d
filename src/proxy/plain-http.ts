import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { normaliseHost } from '../table/host.js';
import type { TlsSnapshot } from '../tls/tls-state.js';

/** Where CAs fetch HTTP-01 tokens (RFC 8555 §8.3). */
const CHALLENGE_PATH = '/.well-known/acme-challenge/';
/** A token is base64url (RFC 8555 §8.1); anything else is not one of ours. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

/**
 * The key authorization for an HTTP-01 request for a token of an order running now (from the
 * snapshot: the proxy that ordered may be another one), or undefined to route the request as
 * usual (a VM may run its own ACME client).
 */
export function challengeAnswer(url: string | undefined, tls: TlsSnapshot, now: number): string | undefined {
  if (url === undefined || !url.startsWith(CHALLENGE_PATH) || tls.challenges.size === 0) return undefined;
  const token = url.slice(CHALLENGE_PATH.length);
  if (!TOKEN.test(token)) return undefined;
  const challenge = tls.challenges.get(token);
  return challenge !== undefined && challenge.expiresAt > now ? challenge.keyAuthorization : undefined;
}

/**
 * Where a plain-HTTP request for `host` is sent instead (308, method and body kept), or undefined:
 * only when the name has a certificate valid now, so a site is never sent to an HTTPS port that
 * cannot serve it. `httpsPort` 443 is left out of the URL.
 */
export function httpsLocation(host: string, url: string | undefined, tls: TlsSnapshot, httpsPort: number, now: number): string | undefined {
  if (tls.certificates.size === 0 || tls.certificates.lookup(host, now) === undefined) return undefined;
  const name = normaliseHost(host) ?? host;
  const path = url !== undefined && url.startsWith('/') ? url : '/';
  return `https://${name}${httpsPort === 443 ? '' : `:${httpsPort}`}${path}`;
}

/** Writes the key authorization (text/plain, as RFC 8555 §8.3 asks). */
export function sendChallenge(res: ServerResponse, keyAuthorization: string): void {
  const body = Buffer.from(keyAuthorization, 'ascii');
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(body);
}

/** Writes the redirect; a request body not read yet is left to the server, which closes the connection if it must. */
export function sendRedirect(res: ServerResponse, location: string): void {
  res.writeHead(308, { location, 'content-length': 0, 'cache-control': 'no-store' });
  res.end();
}

/** The connecting peer asked in plain HTTP: a trusted peer (our other regions, configured proxies) says so in X-Forwarded-Proto. */
export function plainForClient(req: { readonly headers: IncomingHttpHeaders }, trustedPeer: boolean): boolean {
  if (!trustedPeer) return true;
  return req.headers['x-forwarded-proto'] === 'http';
}
