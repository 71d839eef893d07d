/**
 * The standby status update ('r') a replication client sends: "I have written, flushed and
 * applied everything before `lsn`". Built here rather than with the library's acknowledge(),
 * which adds 1 to the LSN (so a walsender shutting down never sees its sent position confirmed
 * exactly, and waits until killed) and stamps a clock 7 days off.
 */
const PG_EPOCH_MS = 946_684_800_000; // 2000-01-01T00:00:00Z

export function standbyStatusUpdate(lsn: bigint, nowMs: number, replyRequested = false): Buffer {
  const b = Buffer.alloc(34);
  b[0] = 0x72; // 'r'
  b.writeBigUInt64BE(lsn, 1); // written
  b.writeBigUInt64BE(lsn, 9); // flushed
  b.writeBigUInt64BE(lsn, 17); // applied
  b.writeBigInt64BE(BigInt(Math.round(nowMs - PG_EPOCH_MS)) * 1000n, 25); // µs since 2000-01-01
  b[33] = replyRequested ? 1 : 0;
  return b;
}
