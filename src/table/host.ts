import { domainToASCII, domainToUnicode } from 'node:url';
import { isIP } from 'node:net';
import { failure, type Failure } from '../errors.js';

// Plain lowercase ASCII host names (the overwhelming majority of requests) skip domainToASCII.
const SIMPLE_HOST = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;
const PORT = /^[0-9]{1,5}$/;
const MAX_PORT = 65535;

/** The port of a Host header: 1–5 digits and at most 65535 (`:99999` is not a port). */
function validPort(digits: string): boolean {
  return PORT.test(digits) && Number(digits) <= MAX_PORT;
}
// ASCII characters that may appear in a host name before IDNA mapping; anything else ASCII
// (`/`, `%`, `@`, spaces, ...) would let the WHATWG URL host parser reinterpret the name.
// eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
const ASCII_NOT_IN_HOST = /[\x00-\x2c\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]/;
const MAX_HOST_LENGTH = 253;

/**
 * Normalises a domain name as stored in the database or sent in a Host header (without port):
 * lowercase, one trailing dot removed, Unicode labels converted to punycode (IDNA).
 * Returns undefined when the name is not a valid host name.
 */
export function normaliseHost(name: string): string | undefined {
  let host = name.endsWith('.') ? name.slice(0, -1) : name;
  if (host.length === 0 || host.length > MAX_HOST_LENGTH * 4) return undefined;
  if (!SIMPLE_HOST.test(host)) {
    if (ASCII_NOT_IN_HOST.test(host)) return undefined;
    // domainToASCII lowercases, applies IDNA mapping and returns '' for invalid names.
    host = domainToASCII(host);
    if (!SIMPLE_HOST.test(host)) return undefined;
  }
  if (host.includes('xn--') && !validAceLabels(host)) return undefined;
  if (host.length > MAX_HOST_LENGTH) return undefined;
  return host;
}

// eslint-disable-next-line no-control-regex -- the range is all of ASCII
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Whether every `xn--` label of a lowercase ASCII name is the punycode of a valid IDNA label. The
 * runtimes disagree on what domainToASCII does with one that is not: Node 20 returns '' for
 * `xn--zz`, Node 24 returns it unchanged (ada accepts ASCII names as they are). So each label is
 * decoded instead (domainToUnicode blanks or keeps what it cannot decode), must turn into
 * something non-ASCII, and the whole name must encode back to itself.
 */
function validAceLabels(host: string): boolean {
  const unicode = domainToUnicode(host);
  if (unicode === '' || domainToASCII(unicode) !== host) return false;
  const decoded = unicode.split('.');
  const labels = host.split('.');
  if (decoded.length !== labels.length) return false;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i]!.startsWith('xn--') && !NON_ASCII.test(decoded[i]!)) return false;
  }
  return true;
}

export type HostHeaderResult =
  | { readonly ok: true; readonly host: string; readonly ipLiteral: boolean }
  | Failure<'HOST_MISSING' | 'HOST_INVALID_PORT' | 'HOST_INVALID_IPV6' | 'HOST_INVALID_NAME'>;

const MISSING = failure('HOST_MISSING', 'missing Host header');
const BAD_PORT = failure('HOST_INVALID_PORT', 'invalid port in Host header');

/**
 * Parses an HTTP Host header value: strips the port, accepts `[v6]:port` and IPv4 literals
 * (reported as ipLiteral so the caller can decide), and normalises the name.
 */
export function parseHostHeader(value: string | undefined): HostHeaderResult {
  if (value === undefined || value.length === 0) return MISSING;
  if (value.charCodeAt(0) === 91 /* [ */) {
    const end = value.indexOf(']');
    if (end < 0) return failure('HOST_INVALID_IPV6', 'unterminated IPv6 literal in Host header');
    const rest = value.slice(end + 1);
    if (rest.length > 0 && !(rest.charCodeAt(0) === 58 && validPort(rest.slice(1)))) {
      return BAD_PORT;
    }
    const ip = value.slice(1, end).toLowerCase();
    if (isIP(ip) !== 6) return failure('HOST_INVALID_IPV6', 'invalid IPv6 literal in Host header');
    return { ok: true, host: ip, ipLiteral: true };
  }
  let name = value;
  const colon = value.indexOf(':');
  if (colon >= 0) {
    if (!validPort(value.slice(colon + 1))) return BAD_PORT;
    name = value.slice(0, colon);
  }
  if (isIP(name) === 4) return { ok: true, host: name, ipLiteral: true };
  const host = normaliseHost(name);
  if (host === undefined) return failure('HOST_INVALID_NAME', 'invalid host name in Host header');
  return { ok: true, host, ipLiteral: false };
}
