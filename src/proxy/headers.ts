import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

/**
 * Our CDN-Loop token (RFC 8586). Every request forwarded to another region carries it; a request
 * that arrives with it and would be forwarded to another region again is a loop (508).
 */
export const CDN_LOOP_ID = 'edgeproxy';

/**
 * Request headers not copied upstream: hop-by-hop ones (RFC 9110 §7.6.1), `expect` (Node already
 * answered `100 Continue` to the client), and those we set ourselves.
 */
const NOT_COPIED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authorization',
  'expect',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-request-id',
  'cdn-loop',
]);

/** A request id we pass through as is: printable, no spaces or commas, at most 128 characters. */
const REQUEST_ID = /^[A-Za-z0-9._:+/=@-]{1,128}$/;

/** The client address without port; IPv4-mapped IPv6 shown as plain IPv4. */
export function clientAddress(req: Pick<IncomingMessage, 'socket'>): string {
  const addr = req.socket.remoteAddress ?? '';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** A well-formed incoming X-Request-Id, or a new UUID. */
export function requestIdOf(value: string | string[] | undefined): string {
  return typeof value === 'string' && REQUEST_ID.test(value) ? value : randomUUID();
}

/** True when a CDN-Loop header lists our token (`edgeproxy`, `edgeproxy; p=1`, any case). */
export function hasLoopMark(value: string | string[] | undefined): boolean {
  if (value === undefined) return false;
  const text = (Array.isArray(value) ? value.join(',') : value).toLowerCase();
  if (!text.includes(CDN_LOOP_ID)) return false;
  for (const member of text.split(',')) {
    const semi = member.indexOf(';');
    if ((semi < 0 ? member : member.slice(0, semi)).trim() === CDN_LOOP_ID) return true;
  }
  return false;
}

/**
 * The upstream request's headers, as a new object (deleting from `req.headers` would turn it into
 * a slow dictionary-mode object that every later copy and iteration pays for): hop-by-hop headers
 * (and those named in Connection) left out; X-Forwarded-For appended to when it came from a
 * trusted hop and replaced otherwise (a client cannot forge its address); X-Forwarded-Proto and
 * -Host; X-Request-Id; CDN-Loop extended with our token when crossing regions.
 */
export function upstreamHeaders(
  h: IncomingHttpHeaders,
  client: string,
  trusted: boolean,
  crossRegion: boolean,
  upgrade: boolean,
  requestId: string,
  /** The client's connection to us: `https` on the HTTPS listener. */
  proto: 'http' | 'https',
): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  const listed = h.connection;
  const extra = typeof listed === 'string' && listed !== 'keep-alive' && listed !== 'close' ? connectionListed(listed) : undefined;
  for (const name in h) {
    if (NOT_COPIED.has(name) || (extra !== undefined && extra.has(name))) continue;
    out[name] = h[name];
  }
  if (upgrade && h.upgrade !== undefined) {
    out.connection = 'upgrade';
    out.upgrade = h.upgrade;
  }
  const prior = h['x-forwarded-for'];
  if (trusted && prior !== undefined && prior !== '') {
    out['x-forwarded-for'] = `${Array.isArray(prior) ? prior.join(', ') : prior}, ${client}`;
    // A trusted hop's X-Forwarded-Proto describes the original client's connection: keep it.
    out['x-forwarded-proto'] = h['x-forwarded-proto'] ?? proto;
  } else {
    out['x-forwarded-for'] = client;
    out['x-forwarded-proto'] = proto;
  }
  if (h.host !== undefined) out['x-forwarded-host'] = h.host;
  out['x-request-id'] = requestId;
  const loop = h['cdn-loop'];
  if (crossRegion) {
    out['cdn-loop'] = loop === undefined || loop === '' ? CDN_LOOP_ID : `${Array.isArray(loop) ? loop.join(', ') : loop}, ${CDN_LOOP_ID}`;
  } else if (loop !== undefined) {
    out['cdn-loop'] = loop;
  }
  return out;
}

/**
 * The header names a Connection header lists, lowercase: hop-by-hop for that one connection
 * (RFC 9110 §7.6.1), so neither a request nor a response passes them on. Shared by both directions.
 */
export function connectionTokens(value: string): Set<string> {
  const names = new Set<string>();
  for (const name of value.split(',')) {
    const n = name.trim().toLowerCase();
    if (n !== '') names.add(n);
  }
  return names;
}

/** connectionTokens for a request: `host` is never dropped, and `upgrade` is handled on its own. */
function connectionListed(value: string): Set<string> {
  const names = connectionTokens(value);
  names.delete('host');
  names.delete('upgrade');
  return names;
}
