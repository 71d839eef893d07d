import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { createProxyServer, type ProxyServer as HttpProxy } from 'http-proxy-3';
import type { Logger } from '../log/logger.js';
import type { Upstream } from './decide.js';
import { sendError } from './responses.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and are not forwarded. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authorization'];

export interface ForwardErrorInfo {
  readonly code: string;
  readonly message: string;
  /** true when the upstream could not be reached or dropped the connection (passive health signal) */
  readonly connectionFailed: boolean;
}

export interface ForwarderOptions {
  readonly logger: Logger;
}

/**
 * Streams a request to an upstream and the response back, with http-proxy-3 on a keep-alive agent.
 * Bodies are piped both ways, never buffered. Upstream failures become 502 "Bad Gateway".
 */
export class Forwarder {
  readonly agent: http.Agent;
  readonly #proxy: HttpProxy;
  readonly #logger: Logger;

  constructor(opts: ForwarderOptions) {
    this.#logger = opts.logger;
    // http-proxy's default (agent: false) sends `Connection: close` upstream: a new TCP connection
    // per request. LIFO keeps the warmest sockets in use.
    this.agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 1000, maxFreeSockets: 256, scheduling: 'lifo' });
    this.#proxy = createProxyServer({ agent: this.agent, xfwd: false, changeOrigin: false, ws: false });
    this.#proxy.on('proxyRes', (proxyRes, req, res) => this.#onProxyRes(proxyRes, req, res as ServerResponse));
    // Errors are handled per request by the callback; this listener only keeps a stray one from crashing us.
    this.#proxy.on('error', (err) => this.#logger.error({ err }, 'unexpected proxy error'));
  }

  /**
   * Forwards `req` to `upstream`. `onError` runs at most once, when the upstream could not be
   * reached or failed mid-response; the response has then been answered (502) or cut.
   */
  forward(req: IncomingMessage, res: ServerResponse, upstream: Upstream, onError: (info: ForwardErrorInfo) => void): void {
    setForwardedHeaders(req);
    this.#proxy.web(req, res, { target: { protocol: 'http:', host: upstream.ip, hostname: upstream.ip, port: upstream.port } }, (err) => {
      const e = err as NodeJS.ErrnoException;
      const code = e.code ?? 'EPROXY';
      const info: ForwardErrorInfo = {
        code,
        message: e.message,
        connectionFailed: code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT' || code === 'EPIPE',
      };
      sendError(res, 'bad-gateway');
      onError(info);
    });
  }

  close(): void {
    this.#proxy.close();
    this.agent.destroy();
  }

  /**
   * Runs before http-proxy-3 copies the upstream response: an upstream status that Node refuses
   * to write (e.g. 099) would otherwise throw outside any handler and crash the process
   * (http-proxy #1530, still present in http-proxy-3 1.23). Such a response becomes a 502.
   */
  #onProxyRes(proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse): void {
    const problem = invalidResponse(proxyRes);
    if (problem !== undefined) {
      this.#logger.error({ host: req.headers.host, url: req.url, problem }, 'upstream sent an invalid response; answering 502');
      proxyRes.destroy();
      sendError(res, 'bad-gateway');
    }
  }
}

function invalidResponse(proxyRes: IncomingMessage): string | undefined {
  const status = proxyRes.statusCode ?? 0;
  if (status < 100 || status > 999) return `invalid status code ${status}`;
  const raw = proxyRes.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    try {
      http.validateHeaderName(raw[i]!);
      http.validateHeaderValue(raw[i]!, raw[i + 1]!);
    } catch {
      return `invalid header ${JSON.stringify(raw[i]).slice(0, 80)}`;
    }
  }
  return undefined;
}

/** The client address without port; IPv4-mapped IPv6 shown as plain IPv4. */
export function clientAddress(req: IncomingMessage): string {
  const addr = req.socket.remoteAddress ?? '';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

function setForwardedHeaders(req: IncomingMessage): void {
  const h = req.headers;
  const listed = h.connection;
  if (typeof listed === 'string') {
    for (const name of listed.split(',')) {
      const n = name.trim().toLowerCase();
      if (n !== '' && n !== 'host') delete h[n];
    }
  }
  for (const name of HOP_BY_HOP) delete h[name];
  const client = clientAddress(req);
  const prior = h['x-forwarded-for'];
  h['x-forwarded-for'] = prior === undefined || prior === '' ? client : `${Array.isArray(prior) ? prior.join(', ') : prior}, ${client}`;
  h['x-forwarded-proto'] = 'http';
  if (h.host !== undefined) h['x-forwarded-host'] = h.host;
}
