/**
 * A real pino logger whose JSON lines a test reads back: parsed, in order, and awaitable. One
 * way to capture logs for the in-process service (service.ts) and for modules a test drives alone.
 */
import { Writable } from 'node:stream';
import type { LogLevel } from '../../src/config/config.js';
import { createLogger, type Logger } from '../../src/log/logger.js';

export interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface CapturedLogs {
  readonly logger: Logger;
  /** Every line written so far, parsed. */
  readonly logs: LogLine[];
  /** Resolves when a line matching `pred` has been written (looks at past lines too). */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** The lines as written, one JSON text each (for asserting what never appears, such as a key). */
  text(): string;
}

export function captureLogs(level: LogLevel = 'debug'): CapturedLogs {
  const logs: LogLine[] = [];
  const raw: string[] = [];
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() === '') continue;
        raw.push(line);
        const parsed = JSON.parse(line) as LogLine;
        logs.push(parsed);
        for (const w of [...waiters]) {
          if (!w.pred(parsed)) continue;
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(parsed);
        }
      }
      cb();
    },
  });
  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine> => {
    const found = logs.find(pred);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const last = logs.slice(-5).map((l) => JSON.stringify(l));
        reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${last.join('\n')}`));
      }, timeoutMs);
      waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  };
  return { logger: createLogger(level, sink), logs, waitForLog, text: () => raw.join('\n') };
}
