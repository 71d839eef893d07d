/**
 * PostgreSQL log sequence numbers. The library hands them out zero-padded in begin/commit
 * (`00000000/01E334D8`) and unpadded elsewhere (`0/1E33460`), so they are compared as numbers,
 * never as strings.
 */
const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): bigint {
  const m = LSN.exec(text);
  if (m === null) throw new RangeError(`not an LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** The form PostgreSQL prints (`0/1E33460`). */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Normalises any accepted spelling to PostgreSQL's. */
export function normaliseLsn(text: string): string {
  return formatLsn(parseLsn(text));
}

export function maxLsn(a: string, b: string): string {
  return parseLsn(a) >= parseLsn(b) ? a : b;
}
