/**
 * When a certificate is renewed: at two thirds of its lifetime, less a jitter of up to 5 % of the
 * lifetime that is fixed per name and per process (so that one proxy's names, and the fleet's
 * proxies, do not all reach the CA in the same minute). Pure.
 */
const RENEW_FRACTION = 2 / 3;
const JITTER_FRACTION = 0.05;

export function renewAt(notBefore: number, notAfter: number, jitter: number): number {
  const lifetime = Math.max(0, notAfter - notBefore);
  return notBefore + lifetime * (RENEW_FRACTION - JITTER_FRACTION * jitter);
}

/** A number in [0, 1) from the name and a per-process seed (FNV-1a): the same name gets the same jitter here. */
export function jitterOf(name: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 2 ** 32;
}
