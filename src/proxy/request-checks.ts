import { failure, type Failure } from '../errors.js';
import { parseHostHeader } from '../table/host.js';
import type { ClientRequest } from './exchange.js';
import { H2Request } from './h2-exchange.js';

/** Why a request is refused before routing (400). */
export type RefusalCode =
  | 'HOST_MISSING'
  | 'HOST_DUPLICATE'
  | 'HOST_AUTHORITY_CONFLICT'
  | 'REQUEST_AFTER_CLOSE'
  | 'REQUEST_TARGET_NOT_PATH'
  | 'REQUEST_TARGET_OTHER_HOST'
  | 'TRANSFER_ENCODING_INVALID'
  | 'UPGRADE_NOT_WEBSOCKET'
  | 'UPGRADE_WITH_BODY';

const HOST_MISSING = failure('HOST_MISSING', 'missing Host header');
const HOST_DUPLICATE = failure('HOST_DUPLICATE', 'more than one Host header');
const AUTHORITY_CONFLICT = failure('HOST_AUTHORITY_CONFLICT', 'an HTTP/2 :authority and a Host header naming another host');
const AFTER_CLOSE = failure('REQUEST_AFTER_CLOSE', 'request pipelined after one that closes the connection');
const NOT_PATH = failure('REQUEST_TARGET_NOT_PATH', 'request target is not a path');
const OTHER_HOST = failure('REQUEST_TARGET_OTHER_HOST', 'absolute-form request target names another host');
const BAD_TE = failure('TRANSFER_ENCODING_INVALID', 'Transfer-Encoding other than a single chunked');
const NOT_WEBSOCKET = failure('UPGRADE_NOT_WEBSOCKET', 'only WebSocket GET upgrades are proxied');
const UPGRADE_BODY = failure('UPGRADE_WITH_BODY', 'WebSocket upgrade request with a body');

/**
 * The checks every request passes before routing, plain or upgrade: one Host header, an
 * origin-form target (`/path`), a framing the upstream cannot read differently, and for upgrades
 * a WebSocket GET without a body. An absolute-form target (`GET http://a.example/x`) is accepted
 * only when it names the Host's own site, and is then rewritten to origin-form in `req.url`; one
 * naming another host would let a client reach one site while the upstream sees another's Host.
 * Node's parser (llhttp, strict) has already refused the grossly ambiguous framings (Content-Length
 * with Transfer-Encoding, two Content-Lengths, a Transfer-Encoding not ending in chunked, bare LF,
 * obs-fold), and nghttp2 those of HTTP/2 (h2-exchange.ts); docs/request-smuggling.md lists every
 * case and what the VM receives.
 */
export function checkRequest(req: ClientRequest, upgrade: boolean): Failure<RefusalCode> | undefined {
  const socket = req.socket;
  if (closing.has(socket)) return AFTER_CLOSE;
  const refusal = checks(req, upgrade);
  if (refusal !== undefined) closing.add(socket);
  return refusal;
}

/**
 * Connections a refusal is closing (every refusal closes). Node still parses and hands over the
 * requests pipelined behind it; forwarding them would serve the bytes that followed an ambiguous
 * request (`identity, chunked` and what its body hid). llhttp itself refuses data after a request
 * that asks to close (`Connection: close`, HTTP/1.0), so those need nothing here.
 */
const closing = new WeakSet<object>();

function checks(req: ClientRequest, upgrade: boolean): Failure<RefusalCode> | undefined {
  const host = req.headers.host;
  if (host === undefined || host === '') return HOST_MISSING;
  // Node keeps the first of several Host headers; which one an upstream would use is anyone's guess.
  if (hostCount(req.rawHeaders) > 1) return HOST_DUPLICATE;
  // Host is :authority on HTTP/2 (h2-exchange.ts); a host field that says otherwise is malformed (RFC 9113 §8.3.1).
  if (req instanceof H2Request && req.hostConflict) return AUTHORITY_CONFLICT;
  const target = checkTarget(req, host);
  if (target !== undefined) return target;
  const framing = checkFraming(req, upgrade);
  if (framing !== undefined) return framing;
  if (upgrade && !isWebSocketGet(req)) return NOT_WEBSOCKET;
  return undefined;
}

function hostCount(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') n++;
  }
  return n;
}

function checkTarget(req: ClientRequest, host: string): Failure<RefusalCode> | undefined {
  const url = req.url ?? '';
  if (url.charCodeAt(0) === 47 /* / */) return undefined;
  const m = /^http:\/\/([^/?#]*)(.*)$/i.exec(url);
  if (m === null) return NOT_PATH;
  const authority = parseHostHeader(m[1]);
  const hostName = parseHostHeader(host);
  if (m[1]!.includes('@') || !authority.ok || !hostName.ok || authority.host !== hostName.host) return OTHER_HOST;
  const rest = m[2]!;
  req.url = rest === '' ? '/' : rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest;
  return undefined;
}

/**
 * The body's framing. Transfer-Encoding must be exactly `chunked` (any case): the forwarders drop
 * it and re-frame the body, so another coding (`gzip, chunked`) would reach the VM undeclared, and
 * lists (`identity, chunked`, or two headers, which Node joins) are the classic disguises. A
 * WebSocket upgrade has no body: Node hands whatever follows its head to the tunnel raw, where the
 * VM would read a body as frames. A Content-Length with leading zeros (`005`) is sent as `5`.
 */
function checkFraming(req: ClientRequest, upgrade: boolean): Failure<RefusalCode> | undefined {
  const h = req.headers;
  const te = h['transfer-encoding'];
  if (te !== undefined && (te.length !== 7 || te.toLowerCase() !== 'chunked')) return BAD_TE;
  const length = h['content-length'];
  if (upgrade && (te !== undefined || (length !== undefined && length !== '0'))) return UPGRADE_BODY;
  if (length !== undefined && length.length > 1 && length.charCodeAt(0) === 48 /* 0 */)
    h['content-length'] = length.replace(/^0+(?=\d)/, '');
  return undefined;
}

function isWebSocketGet(req: ClientRequest): boolean {
  return req.method === 'GET' && String(req.headers.upgrade).toLowerCase() === 'websocket';
}
