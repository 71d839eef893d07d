import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPool } from '../src/db/pool.js';
import { createLogger } from '../src/log/logger.js';
import { RouteStore } from '../src/sync/route-store.js';
import { Sync } from '../src/sync/sync.js';
import { closedPort } from './support/backend.js';

/** A Sync against a port nothing listens on: every stream setup fails with ECONNREFUSED. */
async function failingSync(random: () => number) {
  const url = `postgres://edge:secret@127.0.0.1:${await closedPort()}/zeitwork`;
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('info', { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  const pool = createPool({ databaseUrl: url, applicationName: 'test', queryTimeoutMs: 1000, logger });
  const sync = new Sync({
    mode: 'replication',
    databaseUrl: url,
    publication: 'edgeproxy',
    regionAddressColumn: 'public_ipv4',
    pool,
    store: new RouteStore(),
    intervalMs: 1000,
    logger,
    retryMinMs: 20,
    retryMaxMs: 100,
    random,
  });
  return { sync, lines, pool };
}

describe('stream retry backoff', () => {
  for (const [name, random, expected] of [
    ['doubles from the minimum up to the cap (jitter at its top)', () => 0.999999, [20, 40, 80, 100, 100]],
    ['jitter keeps at least half of each step', () => 0, [10, 20, 40, 50, 50]],
  ] as const) {
    it(name, async () => {
      const { sync, lines, pool } = await failingSync(random);
      try {
        await sync.start(); // a refused connection is transient: start resolves, retries follow
        const failures = () => lines.filter((l) => l.msg === 'replication bootstrap failed');
        const deadline = Date.now() + 5000;
        while (failures().length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        assert.deepEqual(
          failures()
            .slice(0, 5)
            .map((l) => l.retryInMs),
          expected,
        );
        const first = failures()[0]!;
        assert.equal((first.err as { step: string }).step, 'check_server');
        assert.equal((first.err as { kind: string }).kind, 'transient');
        assert.match(String((first.err as { message: string }).message), /ECONNREFUSED/);
        assert.equal(sync.status().state, 'stream-retrying');
        assert.equal(sync.status().streamError?.code, 'STREAM_TRANSIENT');
        assert.ok(!JSON.stringify(lines).includes('secret'), 'the password is not logged');
      } finally {
        await sync.stop();
        await pool.end();
      }
    });
  }
});
