import os from 'node:os';
import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogLevel } from '../config/config.js';

export type { Logger };

/**
 * JSON lines on stdout. Stable fields: `time` (ISO 8601), `level` (label), `service`, `pid`,
 * `hostname`, `msg`, plus
 * event-specific fields documented in docs/logging.md. `err` is serialised with type, message
 * and stack. Anything named like a password or a database URL is redacted as a safety net; the
 * code itself only ever logs redacted URLs.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'edgeproxy', pid: process.pid, hostname: os.hostname() },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ['password', '*.password', 'databaseUrl', '*.databaseUrl', 'connectionString', '*.connectionString'],
        censor: '***',
      },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** Writes a JSON line another thread's logger made to where `logger` writes (worker threads' logs, src/workers). */
export function lineWriter(logger: Logger): (line: string) => void {
  const stream = (logger as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym]!;
  return (line) => stream.write(`${line}\n`);
}
