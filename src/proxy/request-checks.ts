import type { IncomingMessage } from 'node:http';
import { failure, type Failure } from '../errors.js';
import { parseHostHeader } from '../table/host.js';

/** Why a request is refused before routing (400). */
export type RefusalCode = 'HOST_MISSING' | 'REQUEST_TARGET_NOT_PATH' | 'REQUEST_TARGET_OTHER_HOST' | 'UPGRADE_NOT_WEBSOCKET';

const HOST_MISSING = failure('HOST_MISSING', 'missing Host header');
const NOT_PATH = failure('REQUEST_TARGET_NOT_PATH', 'request target is not a path');
const OTHER_HOST = failure('REQUEST_TARGET_OTHER_HOST', 'absolute-form request target names another host');
const NOT_WEBSOCKET = failure('UPGRADE_NOT_WEBSOCKET', 'only WebSocket GET upgrades are proxied');

/**
 * The checks every request passes before routing, plain or upgrade: a Host header, an
 * origin-form target (`/path`), and for upgrades a WebSocket GET. An absolute-form target
 * (`GET http://a.example/x`) is accepted only when it names the Host's own site, and is then
 * rewritten to origin-form in `req.url`; one naming another host would let a client reach one
 * site while the upstream sees another's Host.
 */
export function checkRequest(req: IncomingMessage, upgrade: boolean): Failure<RefusalCode> | undefined {
  const host = req.headers.host;
  if (host === undefined || host === '') return HOST_MISSING;
  const target = checkTarget(req, host);
  if (target !== undefined) return target;
  if (upgrade && !isWebSocketGet(req)) return NOT_WEBSOCKET;
  return undefined;
}

function checkTarget(req: IncomingMessage, host: string): Failure<RefusalCode> | undefined {
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

function isWebSocketGet(req: IncomingMessage): boolean {
  return req.method === 'GET' && String(req.headers.upgrade).toLowerCase() === 'websocket';
}
