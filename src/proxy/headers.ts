import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

/**
 * Our CDN-Loop token (RFC 8586). Every request forwarded to another region carries it; a request
 * that arrives with it and would be forwarded to another region again is a loop (508).
 */
export const CDN_LOOP_ID = 'edgeproxy';

/**
 * Hop-by-hop request headers (RFC 9110 §7.6.1), plus `expect` (Node already answered
 * `100 Continue` to the client; forwarding it would make the upstream do it again).
 */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'expect'];

/** A request id we pass through as is: printable, no spaces or commas, at most 128 characters. */
const REQUEST_ID = /^[A-Za-z0-9._:+/=@-]{1,128}$/;

/** The client address without port; IPv4-mapped IPv6 shown as plain IPv4. */
export function clientAddress(req: IncomingMessage): string {
  const addr = req.socket.remoteAddress ?? '';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** Keeps a well-formed incoming X-Request-Id, otherwise sets a new UUID; returns it. */
export function ensureRequestId(h: IncomingHttpHeaders): string {
  const id = h['x-request-id'];
  if (typeof id === 'string' && REQUEST_ID.test(id)) return id;
  const fresh = randomUUID();
  h['x-request-id'] = fresh;
  return fresh;
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

export interface UpstreamHeaderOptions {
  /** The connecting address (see clientAddress). */
  readonly client: string;
  /** The connecting address is one of our region load balancers or a configured trusted proxy. */
  readonly trusted: boolean;
  /** Forwarded to another region: add our CDN-Loop token. */
  readonly crossRegion: boolean;
  /** A WebSocket upgrade: keep `Connection: upgrade` and `Upgrade`. */
  readonly upgrade: boolean;
}

/**
 * Turns the client's headers into the upstream request's, in place: hop-by-hop headers (and those
 * named in Connection) removed; X-Forwarded-For appended to when it came from a trusted hop and
 * replaced otherwise (a client cannot forge its address); X-Forwarded-Proto and -Host set.
 */
export function prepareUpstreamHeaders(h: IncomingHttpHeaders, o: UpstreamHeaderOptions): void {
  const listed = h.connection;
  if (typeof listed === 'string' && listed !== 'keep-alive' && listed !== 'close') {
    for (const name of listed.split(',')) {
      const n = name.trim().toLowerCase();
      if (n !== '' && n !== 'host' && n !== 'upgrade') delete h[n];
    }
  }
  const upgrade = o.upgrade ? h.upgrade : undefined;
  for (const name of HOP_BY_HOP) if (h[name] !== undefined) delete h[name];
  if (upgrade !== undefined) {
    h.connection = 'upgrade';
    h.upgrade = upgrade;
  }
  const prior = h['x-forwarded-for'];
  if (o.trusted && prior !== undefined && prior !== '') {
    h['x-forwarded-for'] = `${Array.isArray(prior) ? prior.join(', ') : prior}, ${o.client}`;
  } else {
    h['x-forwarded-for'] = o.client;
    h['x-forwarded-proto'] = 'http';
  }
  // A trusted hop's X-Forwarded-Proto describes the original client's connection: keep it.
  if (h['x-forwarded-proto'] === undefined) h['x-forwarded-proto'] = 'http';
  if (h.host !== undefined) h['x-forwarded-host'] = h.host;
  if (o.crossRegion) {
    const loop = h['cdn-loop'];
    h['cdn-loop'] = loop === undefined || loop === '' ? CDN_LOOP_ID : `${Array.isArray(loop) ? loop.join(', ') : loop}, ${CDN_LOOP_ID}`;
  }
}
