import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/config.js';
import { isFailure } from '../errors.js';
import { StorageKey } from './storage-key.js';

const VALUE = 'EDGEPROXY_TLS_STORAGE_KEY';
const FILE = 'EDGEPROXY_TLS_STORAGE_KEY_FILE';

/**
 * The storage key from EDGEPROXY_TLS_STORAGE_KEY or the file EDGEPROXY_TLS_STORAGE_KEY_FILE
 * names; undefined when neither is set. Throws ConfigError naming the variable (both set, a file
 * that cannot be read, not 32 bytes of base64); no message contains the key.
 */
export function readStorageKey(value: string | undefined, file: string | undefined): StorageKey | undefined {
  if (value !== undefined && file !== undefined) throw new ConfigError('CONFIG_INVALID', `${VALUE} and ${FILE} are both set: give one`);
  if (value === undefined && file === undefined) return undefined;
  const [source, raw] = value !== undefined ? [VALUE, value] : [`${FILE} (${file})`, readKeyFile(file!)];
  const key = StorageKey.parse(raw);
  if (isFailure(key)) throw new ConfigError('CONFIG_INVALID', `${source}: ${key.message}`);
  return key;
}

function readKeyFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('CONFIG_INVALID', `${FILE}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
