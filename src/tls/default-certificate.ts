import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/config.js';
import { isFailure } from '../errors.js';
import { checkCertificate, type LoadedCertificate } from './certificate.js';

const CERT = 'EDGEPROXY_TLS_DEFAULT_CERT';
const KEY = 'EDGEPROXY_TLS_DEFAULT_KEY';

/**
 * The default certificate from its two PEM files, checked like a stored one; undefined when
 * neither is set. Throws ConfigError naming the variable: one without the other, a file that
 * cannot be read, a chain or key that cannot be served (the message never holds the key).
 */
export function readDefaultCertificate(certFile: string | undefined, keyFile: string | undefined): LoadedCertificate | undefined {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) {
    throw new ConfigError(
      'CONFIG_MISSING',
      `${certFile === undefined ? CERT : KEY} is required with ${certFile === undefined ? KEY : CERT}`,
    );
  }
  const cert = read(CERT, certFile).toString('utf8');
  const key = read(KEY, keyFile);
  const loaded = checkCertificate('default', `${CERT} (${certFile})`, cert, key);
  if (isFailure(loaded)) throw new ConfigError('CONFIG_INVALID', loaded.message);
  return loaded;
}

function read(variable: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError('CONFIG_INVALID', `${variable}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
