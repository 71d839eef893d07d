import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { captureLogs } from './support/log-capture.js';
import { reusePortSupported, servingThreads } from '../src/workers/worker-count.js';

describe('servingThreads (EDGEPROXY_WORKERS)', () => {
  it('knows which Node.js versions and platforms have listen({ reusePort })', () => {
    assert.equal(reusePortSupported('24.11.0', 'linux'), true);
    assert.equal(reusePortSupported('v23.1.0', 'linux'), true);
    assert.equal(reusePortSupported('22.12.0', 'freebsd'), true);
    assert.equal(reusePortSupported('23.0.0', 'linux'), false);
    assert.equal(reusePortSupported('20.20.2', 'linux'), false);
    assert.equal(reusePortSupported('24.11.0', 'darwin'), false);
    assert.equal(reusePortSupported('24.11.0', 'win32'), false);
  });

  it('takes the workers asked for where reusePort works; one thread, said once, where it does not', () => {
    const { logger, logs: lines } = captureLogs('info');
    assert.equal(servingThreads(4, logger, '24.11.0', 'linux'), 4);
    assert.equal(servingThreads(1, logger, '20.20.2', 'linux'), 1);
    assert.equal(lines.length, 0);
    assert.equal(servingThreads(4, logger, '20.20.2', 'linux'), 1);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!.msg, /no reusePort/);
  });
});
