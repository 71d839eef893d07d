import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { describe, it } from 'node:test';
import { listenOn, portHeld, queuedConnectionsMigrate, reusePortProblem } from '../src/listen.js';

const close = (s: Server) => new Promise((resolve) => s.close(resolve));

describe('reusePortProblem', () => {
  it('none on Linux with Node 24, 23.1 and 22.12', () => {
    for (const v of ['v24.11.0', 'v23.1.0', 'v22.12.0', 'v25.0.0']) assert.equal(reusePortProblem(v, 'linux'), undefined, v);
  });

  it('an older Node, or a platform without it, says which', () => {
    assert.match(reusePortProblem('v20.18.1', 'linux')!, /^Node\.js v20\.18\.1 has no reusePort/);
    assert.match(reusePortProblem('v22.11.0', 'linux')!, /has no reusePort/);
    assert.match(reusePortProblem('v23.0.0', 'linux')!, /has no reusePort/);
    assert.equal(reusePortProblem('v24.11.0', 'darwin'), 'reusePort is not available on darwin');
    assert.equal(reusePortProblem('v24.11.0', 'win32'), 'reusePort is not available on win32');
  });
});

describe('listenOn with reusePort (Linux)', () => {
  it('two listeners with reusePort share a port; one without it is refused', async () => {
    const a = createServer();
    const b = createServer();
    const c = createServer();
    try {
      const { port } = await listenOn(a, '127.0.0.1', 0, { reusePort: true });
      assert.equal((await listenOn(b, '127.0.0.1', port, { reusePort: true })).port, port);
      await assert.rejects(listenOn(c, '127.0.0.1', port), { code: 'EADDRINUSE' });
    } finally {
      await close(a);
      await close(b);
    }
  });

  it('portHeld: true while another socket listens, false once it is gone and for port 0', async () => {
    const a = createServer();
    const { port } = await listenOn(a, '127.0.0.1', 0, { reusePort: true });
    assert.equal(await portHeld('127.0.0.1', port), true);
    await close(a);
    assert.equal(await portHeld('127.0.0.1', port), false);
    assert.equal(await portHeld('127.0.0.1', 0), false);
  });
});

describe('queuedConnectionsMigrate', () => {
  it('reads net.ipv4.tcp_migrate_req: 1 migrates, 0 resets, unreadable is unknown', () => {
    assert.equal(
      queuedConnectionsMigrate(() => '1\n'),
      true,
    );
    assert.equal(
      queuedConnectionsMigrate(() => '0\n'),
      false,
    );
    assert.equal(
      queuedConnectionsMigrate(() => {
        throw new Error('ENOENT');
      }),
      undefined,
    );
  });
});
