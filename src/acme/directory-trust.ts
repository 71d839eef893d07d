import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import tls from 'node:tls';
import acme from 'acme-client';
import { ConfigError } from '../config/config.js';

const ENV = 'EDGEPROXY_ACME_CA_ROOTS';
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** How long one request to the CA may take; acme-client's own default is none. */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * The extra roots of EDGEPROXY_ACME_CA_ROOTS, checked: a file that cannot be read, or holds no
 * certificate that parses, is a ConfigError naming the variable. undefined when unset.
 */
export function readCaRoots(file: string | undefined): string[] | undefined {
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('CONFIG_INVALID', `${ENV}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const blocks = text.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) throw new ConfigError('CONFIG_INVALID', `${ENV}: ${file} holds no PEM certificate`);
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new ConfigError('CONFIG_INVALID', `${ENV}: certificate ${i + 1} of ${file} does not parse (${(err as Error).message})`);
    }
  }
  return blocks;
}

/**
 * Sets up how acme-client talks to the CA. Its axios instance is its own (nothing else in the
 * process uses it), so the extra roots go on that instance's https.Agent: the directory is
 * trusted with the system roots plus these, and no other connection of the process trusts them
 * (unlike NODE_EXTRA_CA_CERTS). acme-client's own retries (5, up to 25 s apart, on a refused
 * connection too) are skipped: a failed order backs off per name in Postgres instead, so a CA
 * that is down costs one quick failure, not a minute of retries behind a waiting handshake.
 */
export function configureAcmeHttp(extraRoots: readonly string[] | undefined): void {
  const defaults = acme.axios.defaults;
  defaults.httpsAgent = new https.Agent({
    keepAlive: true,
    ca: extraRoots === undefined ? undefined : [...tls.rootCertificates, ...extraRoots],
  });
  defaults.timeout = REQUEST_TIMEOUT_MS;
  defaults.adapter = withoutRetries(httpAdapter()) as typeof defaults.adapter;
}

type Adapter = (config: unknown) => Promise<unknown>;

/** axios's Node adapter, from the axios copy acme-client itself loads (not a dependency of ours). */
function httpAdapter(): Adapter {
  const load = createRequire(createRequire(import.meta.url).resolve('acme-client'));
  return (load('axios') as { getAdapter(name: string): Adapter }).getAdapter('http');
}

/**
 * A transport failure (refused, reset, timeout, TLS not trusted) leaves without its request
 * config: acme-client's retry interceptor passes such an error through untouched, instead of
 * retrying it and then failing on the missing response with a TypeError that hides the cause.
 * It also keeps the signed request out of every error that is logged.
 */
function withoutRetries(adapter: Adapter): Adapter {
  return async (config) => {
    try {
      return await adapter(config);
    } catch (err) {
      const e = err as { config?: unknown; request?: unknown; response?: unknown };
      if (e.response === undefined) {
        e.config = undefined;
        e.request = undefined;
      }
      throw err;
    }
  };
}
