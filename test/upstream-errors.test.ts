import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { errors as undiciErrors } from 'undici';
import { EdgeProxyError, ERROR_CODES } from '../src/errors.js';
import { classifyUpstreamError, UpstreamError } from '../src/proxy/upstream-errors.js';

/** The classification of forwarding failures: status, code and the passive-health signal. */

const system = (code: string) => Object.assign(new Error(`connect ${code} 10.0.0.1:80`), { code });

describe('classifyUpstreamError', () => {
  it('refused and reset connections are connection failures (passive health), 502', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'EPIPE']) {
      assert.deepEqual(classifyUpstreamError(system(code), false), {
        code,
        message: `connect ${code} 10.0.0.1:80`,
        status: 502,
        connectionFailed: true,
      });
    }
  });

  it("undici's socket error carries the system error as its cause; its timeouts get our codes", () => {
    const socket = new undiciErrors.SocketError('other side closed');
    Object.assign(socket, { cause: system('ECONNRESET') });
    assert.equal(classifyUpstreamError(socket, false).code, 'ECONNRESET');
    assert.equal(classifyUpstreamError(new undiciErrors.SocketError('other side closed'), false).code, 'UND_ERR_SOCKET');
    assert.deepEqual(classifyUpstreamError(new undiciErrors.ConnectTimeoutError(), false), {
      code: 'UPSTREAM_CONNECT_TIMEOUT',
      message: 'Connect Timeout Error',
      status: 502,
      connectionFailed: false,
    });
    const headers = classifyUpstreamError(new undiciErrors.HeadersTimeoutError(), false);
    assert.deepEqual([headers.code, headers.status, headers.connectionFailed], ['UPSTREAM_HEADERS_TIMEOUT', 504, false]);
  });

  it('a connection lost after the response headers is UPSTREAM_CLOSED, keeping the underlying code in the message', () => {
    for (const err of [system('ECONNRESET'), new undiciErrors.SocketError('other side closed')]) {
      const info = classifyUpstreamError(err, true);
      assert.equal(info.code, 'UPSTREAM_CLOSED');
      assert.equal(info.connectionFailed, true);
      assert.match(info.message, /^upstream closed the connection mid-response \((ECONNRESET|UND_ERR_SOCKET): /);
    }
    // A refusal cannot happen after a response: it keeps its code.
    assert.equal(classifyUpstreamError(system('ECONNREFUSED'), true).code, 'ECONNREFUSED');
  });

  it('our own errors keep their code; an error without one is UPSTREAM_FAILED', () => {
    const own = new UpstreamError('UPSTREAM_INVALID_RESPONSE', 'Invalid character in header content ["x-bad"]');
    assert.deepEqual(classifyUpstreamError(own, true), {
      code: 'UPSTREAM_INVALID_RESPONSE',
      message: 'Invalid character in header content ["x-bad"]',
      status: 502,
      connectionFailed: false,
    });
    assert.deepEqual(classifyUpstreamError(new Error('something odd'), false), {
      code: 'UPSTREAM_FAILED',
      message: 'something odd',
      status: 502,
      connectionFailed: false,
    });
    assert.equal(classifyUpstreamError('not even an Error', false).message, 'not even an Error');
  });

  it('UpstreamError is one of the family, with a documented code', () => {
    const e = new UpstreamError('CLIENT_CLOSED', 'client closed the connection');
    assert.ok(e instanceof EdgeProxyError);
    assert.equal(e.name, 'UpstreamError');
    for (const code of [
      'UPSTREAM_CONNECT_TIMEOUT',
      'UPSTREAM_HEADERS_TIMEOUT',
      'UPSTREAM_INVALID_RESPONSE',
      'UPSTREAM_CLOSED',
      'UPSTREAM_FAILED',
      'CLIENT_CLOSED',
    ])
      assert.ok(code in ERROR_CODES, code);
  });
});
