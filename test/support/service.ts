import { DEFAULTS, type Config } from '../../src/config/config.js';
import { startService, type RunningService } from '../../src/cli/serve.js';
import { captureLogs, type LogLine } from './log-capture.js';

export type { LogLine } from './log-capture.js';

export interface TestService extends RunningService {
  readonly logs: LogLine[];
  /** Resolves when a log line matching `pred` has been written (looks at past lines too). */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

export const REGION_A = '0a000000-0000-4000-8000-00000000000a';
export const REGION_B = '0b000000-0000-4000-8000-00000000000b';

/** Starts the real service in this process on an ephemeral port, logs captured as parsed JSON. */
export async function startTestService(overrides: Partial<Config> & { databaseUrl: string }): Promise<TestService> {
  // The option table's defaults, made quick for tests: an ephemeral port, fast polling, debug logs.
  const config: Config = {
    ...DEFAULTS,
    httpAddr: { host: '127.0.0.1', port: 0 },
    regionId: REGION_A,
    updateIntervalMs: 100,
    logLevel: 'debug',
    shutdownTimeoutMs: 5000,
    syncMode: 'poll',
    adminAddr: undefined,
    httpsAddr: undefined,
    // Never a real CA from a test: a test that issues names its test CA's directory.
    acmeDirectoryUrl: undefined,
    // The main thread serves (the code path EDGEPROXY_WORKERS=1 runs); test/workers.test.ts starts workers.
    workers: 1,
    ...overrides,
  };
  const captured = captureLogs(config.logLevel);
  const service = await startService(config, captured.logger);
  return { ...service, logs: captured.logs, waitForLog: captured.waitForLog };
}

/** Polls `cond` until it holds (default 5 s). */
export async function eventually<T>(
  what: string,
  cond: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await cond();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
