import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { EdgeProxyError, failure, type Failure } from '../errors.js';

/**
 * The key that seals TLS private keys (and ACME account keys) before they are written to
 * Postgres: AES-256-GCM, so a copy of the database or of a replica's backup alone yields no usable
 * key, and a sealed value moved to another row or column fails to open instead of being used.
 *
 * Sealed layout: `EPK1` | key id (8 bytes) | nonce (12) | tag (16) | ciphertext. The key id (the
 * first 8 bytes of the key's SHA-256) is not secret; it lets a proxy with the wrong key say so
 * instead of reporting corruption.
 */
const MAGIC = Buffer.from('EPK1', 'ascii');
const KEY_BYTES = 32;
const ID_BYTES = 8;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = MAGIC.length + ID_BYTES + NONCE_BYTES + TAG_BYTES;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export type StorageKeyInvalid = Failure<'CONFIG_INVALID'>;

export class StorageKey {
  readonly #key: Buffer;
  /** Hex of the key id: safe to log, names which key sealed a value. */
  readonly id: string;

  private constructor(key: Buffer) {
    this.#key = key;
    this.id = keyId(key).toString('hex');
  }

  /**
   * Reads a key given as base64 of 32 random bytes (`openssl rand -base64 32`). The failure's
   * message never contains the value.
   */
  static parse(raw: string): StorageKey | StorageKeyInvalid {
    const text = raw.trim();
    if (!BASE64.test(text)) return failure('CONFIG_INVALID', 'is not base64 (make one with `openssl rand -base64 32`)');
    const key = Buffer.from(text, 'base64');
    if (key.length !== KEY_BYTES) {
      return failure(
        'CONFIG_INVALID',
        `must be ${KEY_BYTES} bytes in base64, got ${key.length} (make one with \`openssl rand -base64 32\`)`,
      );
    }
    return new StorageKey(key);
  }

  /** Seals `plaintext` for one place: `context` (for example the certificate's id) must be given again to open it. */
  seal(plaintext: Buffer, context: string): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce);
    cipher.setAAD(aad(context));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([MAGIC, keyId(this.#key), nonce, cipher.getAuthTag(), body]);
  }

  /** Opens what seal() made for the same `context`; throws a coded error saying which check failed. */
  open(sealed: Buffer, context: string): Buffer {
    if (sealed.length < HEADER_BYTES || !sealed.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw new EdgeProxyError('TLS_KEY_UNREADABLE', `the sealed key of ${context} is not in EdgeProxy's format`);
    }
    let at = MAGIC.length;
    const id = sealed.subarray(at, (at += ID_BYTES));
    if (!id.equals(keyId(this.#key))) {
      throw new EdgeProxyError(
        'TLS_KEY_OTHER_STORAGE_KEY',
        `the key of ${context} was sealed with storage key ${id.toString('hex')}, this proxy has ${this.id}`,
        { fix: 'give every proxy the same EDGEPROXY_TLS_STORAGE_KEY' },
      );
    }
    const nonce = sealed.subarray(at, (at += NONCE_BYTES));
    const tag = sealed.subarray(at, (at += TAG_BYTES));
    const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce);
    decipher.setAAD(aad(context));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(sealed.subarray(at)), decipher.final()]);
    } catch {
      throw new EdgeProxyError('TLS_KEY_UNREADABLE', `the sealed key of ${context} does not open: altered, or sealed for another row`);
    }
  }
}

function keyId(key: Buffer): Buffer {
  return createHash('sha256').update(key).digest().subarray(0, ID_BYTES);
}

function aad(context: string): Buffer {
  return Buffer.from(`edgeproxy sealed key v1\0${context}`, 'utf8');
}
