import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseHostHeader } from '../src/table/host.js';
import { rawExchange, request, startBackend, startProxy, type Backend, type TestProxy } from './support/backend.js';

/**
 * Hostile or malformed client input: none of it may reach an upstream, none of it may crash the
 * process, and each gets a clear status. The backend counts what reaches it.
 */
let vm: Backend;
let p: TestProxy;

before(async () => {
  vm = await startBackend('vm');
  p = await startProxy({ server: { timeouts: { headerTimeoutMs: 2000, requestTimeoutMs: 5000, idleTimeoutMs: 5000 } } });
  p.routes({ 'app.example': { vmPort: vm.port }, 'other.example': { vmPort: vm.port }, '10.1.2.3': { vmPort: vm.port } });
});
after(async () => {
  await p.close();
  await vm.close();
});

/** Sends raw bytes and asserts on the status line; checks that the backend saw nothing and the proxy still serves. */
async function expectStatus(raw: string | Buffer, status: number, what: string): Promise<string> {
  const before = vm.proxied().length;
  const r = await rawExchange(p.port, [raw], { timeoutMs: 3000, untilResponse: true });
  assert.match(r.text, new RegExp(`^HTTP/1\\.[01] ${status} `), `${what}: got ${JSON.stringify(r.text.slice(0, 80))}`);
  assert.equal(vm.proxied().length, before, `${what}: nothing reached the upstream`);
  const ok = await request(p.port, { host: 'app.example' });
  assert.equal(ok.status, 200, `${what}: still serving`);
  return r.text;
}

describe('hostile requests never reach an upstream', () => {
  it('absolute-form target naming another host → 400', async () => {
    await expectStatus('GET http://other.example/secret HTTP/1.1\r\nHost: app.example\r\n\r\n', 400, 'absolute-form, other host');
    await expectStatus('GET http://user@app.example/ HTTP/1.1\r\nHost: app.example\r\n\r\n', 400, 'absolute-form with userinfo');
    await expectStatus('GET https://app.example/ HTTP/1.1\r\nHost: app.example\r\n\r\n', 400, 'absolute-form https');
  });

  it('absolute-form target naming the Host itself is forwarded in origin-form', async () => {
    const r = await rawExchange(p.port, ['GET http://APP.example:8080/x?y=1 HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n']);
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.ok(r.text.includes('\r\nvm GET /x?y=1\r\n'), r.text);
    assert.equal(vm.proxied().at(-1)!.url, '/x?y=1');
  });

  it('asterisk-form and authority-form targets → 400', async () => {
    await expectStatus('OPTIONS * HTTP/1.1\r\nHost: app.example\r\n\r\n', 400, 'OPTIONS *');
  });

  it('CONNECT → 405, no tunnel', async () => {
    const text = await expectStatus('CONNECT app.example:443 HTTP/1.1\r\nHost: app.example:443\r\n\r\n', 405, 'CONNECT');
    assert.match(text, /\r\nAllow: GET/);
  });

  it('invalid bytes in a header name or value → 400', async () => {
    await expectStatus('GET / HTTP/1.1\r\nHost: app.example\r\nX-Bad\x01: 1\r\n\r\n', 400, 'control byte in name');
    await expectStatus('GET / HTTP/1.1\r\nHost: app.example\r\nX-Bad: a\x00b\r\n\r\n', 400, 'NUL in value');
    await expectStatus('GET / HTTP/1.1\r\nHost: app.example\r\nX Bad: 1\r\n\r\n', 400, 'space in name');
    await expectStatus('GET /\x7f HTTP/1.1\r\nHost: app.example\r\n\r\n', 400, 'DEL in target');
  });

  it('both Content-Length and Transfer-Encoding (request smuggling) → 400', async () => {
    await expectStatus(
      'POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
      'CL + TE',
    );
    await expectStatus(
      'POST / HTTP/1.1\r\nHost: app.example\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd',
      400,
      'two Content-Lengths',
    );
  });

  it('oversized headers → 431', async () => {
    await expectStatus(`GET / HTTP/1.1\r\nHost: app.example\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'one 20 KB header');
    let many = '';
    for (let i = 0; i < 400; i++) many += `X-H${i}: ${'b'.repeat(50)}\r\n`;
    await expectStatus(`GET / HTTP/1.1\r\nHost: app.example\r\n${many}\r\n`, 431, '400 headers');
  });

  it('missing Host → 400, for HTTP/1.1 and HTTP/1.0', async () => {
    await expectStatus('GET / HTTP/1.1\r\n\r\n', 400, 'HTTP/1.1 without Host');
    await expectStatus('GET / HTTP/1.0\r\n\r\n', 400, 'HTTP/1.0 without Host');
  });

  it('Host with an IP literal → 404, even when a row names that address', async () => {
    await expectStatus('GET / HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n', 404, 'IPv4 literal');
    await expectStatus('GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n', 404, 'IPv6 literal');
    const warn = p.logs.find(
      (l) => l.msg === 'no route for host' && l.code === 'HOST_IP_LITERAL' && l.reason === 'IP address in Host header',
    );
    assert.ok(warn, 'logged with the reason');
  });

  it('Host with a port above 65535 or invalid punycode → 404', async () => {
    await expectStatus('GET / HTTP/1.1\r\nHost: app.example:65536\r\n\r\n', 404, 'port 65536');
    await expectStatus('GET / HTTP/1.1\r\nHost: app.example:99999\r\n\r\n', 404, 'port 99999');
    await expectStatus('GET / HTTP/1.1\r\nHost: xn--zz.app.example\r\n\r\n', 404, 'xn--zz');
    assert.equal((await request(p.port, { host: 'app.example:65535' })).status, 200);
  });

  it('a non-WebSocket upgrade (h2c) → 400', async () => {
    await expectStatus(
      'GET / HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n',
      400,
      'h2c',
    );
  });

  it('garbage instead of HTTP → 400', async () => {
    await expectStatus('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n', 400, 'TLS on the HTTP port');
    await expectStatus('SSH-2.0-OpenSSH_9.0\r\n\r\n', 400, 'SSH banner');
  });

  it("each refusal before routing is logged as 'request rejected' with its code beside the reason", () => {
    const rejected = p.logs.filter((l) => l.msg === 'request rejected');
    const codeOf = (url: string, host: unknown) => rejected.find((l) => l.url === url && l.host === host);
    const cases: [string, unknown, string, string, string][] = [
      ['http://other.example/secret', 'app.example', 'GET', 'REQUEST_TARGET_OTHER_HOST', 'absolute-form request target names another host'],
      ['*', 'app.example', 'OPTIONS', 'REQUEST_TARGET_NOT_PATH', 'request target is not a path'],
      ['/', null, 'GET', 'HOST_MISSING', 'missing Host header'],
    ];
    for (const [url, host, method, code, reason] of cases) {
      const line = codeOf(url, host);
      assert.ok(line, `${url}: logged`);
      assert.deepEqual([line.level, line.method, line.code, line.reason, line.status], ['warn', method, code, reason, 400], url);
    }
    const h2c = rejected.find((l) => l.code === 'UPGRADE_NOT_WEBSOCKET');
    assert.equal(h2c?.reason, 'only WebSocket GET upgrades are proxied');
  });

  it('the rejections are counted for metrics as "rejected"', () => {
    const statuses = new Set(p.observed.requests.filter((r) => r.kind === 'rejected').map((r) => r.status));
    for (const s of [400, 405, 431]) assert.ok(statuses.has(s), `status ${s} observed: ${[...statuses].join(',')}`);
  });
});

describe('parseHostHeader: ports and punycode', () => {
  it('rejects ports 65536–99999 and accepts 65535', () => {
    for (const v of ['a.example:65536', 'a.example:99999', '[::1]:65536', '1.2.3.4:70000']) {
      assert.deepEqual(parseHostHeader(v), { ok: false, code: 'HOST_INVALID_PORT', message: 'invalid port in Host header' }, v);
    }
    assert.equal(parseHostHeader('a.example:65535').ok, true);
  });

  it('rejects labels that are not valid punycode, keeps valid ones', () => {
    for (const v of ['xn--zz', 'a.xn--zz.example', 'xn--', 'xn--a.example']) assert.equal(parseHostHeader(v).ok, false, v);
    assert.deepEqual(parseHostHeader('xn--bcher-kva.example'), { ok: true, host: 'xn--bcher-kva.example', ipLiteral: false });
  });
});

describe('request ids', () => {
  it('keeps a well-formed X-Request-Id, replaces a malformed one, generates one when absent; logs it', async () => {
    await request(p.port, { host: 'app.example', path: '/id1', headers: { 'x-request-id': 'abc-123_DEF.4' } });
    await request(p.port, { host: 'app.example', path: '/id2', headers: { 'x-request-id': 'has space, and comma' } });
    await request(p.port, { host: 'app.example', path: '/id3' });
    const seen = (path: string) => vm.proxied().find((r) => r.url === path)!.headers['x-request-id'] as string;
    assert.equal(seen('/id1'), 'abc-123_DEF.4');
    assert.match(seen('/id2'), /^[0-9a-f-]{36}$/);
    assert.match(seen('/id3'), /^[0-9a-f-]{36}$/);
    assert.notEqual(seen('/id2'), seen('/id3'));
    const line = p.logs.find((l) => l.msg === 'request routed' && l.url === '/id3');
    assert.equal(line?.requestId, seen('/id3'));
  });
});

describe('process health after abuse', () => {
  it('200 malformed requests in parallel leave no connection open on the proxy', async () => {
    const bad = [
      'GET / HTTP/1.1\r\nHost: app.example\r\nX\x01: y\r\n\r\n',
      'CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n',
      `GET / HTTP/1.1\r\nHost: a\r\nX: ${'z'.repeat(20_000)}\r\n\r\n`,
    ];
    await Promise.all(Array.from({ length: 200 }, (_, i) => rawExchange(p.port, [bad[i % bad.length]!], { timeoutMs: 3000 })));
    const count = () => new Promise<number>((r) => p.proxy.server.getConnections((_e, n) => r(n)));
    const deadline = Date.now() + 3000;
    while ((await count()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    assert.equal(await count(), 0);
    assert.equal((await request(p.port, { host: 'app.example' })).status, 200);
  });
});
