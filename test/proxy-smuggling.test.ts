import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { rawExchange, request, startProxy, type TestProxy } from './support/backend.js';
import { readRequest, startRawVm, RAW_VM_OK, type RawVm } from './support/raw-vm.js';

/**
 * Request smuggling, row by row (docs/request-smuggling.md): raw bytes from a client socket, what
 * the client gets back, and every byte the VM receives, recorded by a raw TCP "VM". Nothing
 * ambiguous may reach a VM: it sees nothing, one request re-framed by the proxy (exactly one of
 * Content-Length or chunked, the body decoded from it, nothing after it), or, for a body the
 * parser gives up on halfway, an unfinished request on a connection that is then closed.
 */
let vm: RawVm;
let p: TestProxy;

before(async () => {
  vm = await startRawVm();
  // One probe for the whole file (probe connections are left out of the record anyway).
  p = await startProxy({
    healthCacheTtlMs: 3_600_000,
    server: { timeouts: { headerTimeoutMs: 5000, requestTimeoutMs: 10_000, idleTimeoutMs: 5000 } },
  });
  p.routes({ 'app.example': { vmPort: vm.port } });
});
after(async () => {
  await p.close();
  await vm.close();
});

const H = 'Host: app.example\r\nX-Request-Id: t1\r\n';
const CHUNKED_HELLO = '5\r\nhello\r\n0\r\n\r\n';
const post = (headers: string, body: string, version = '1.1') => `POST / HTTP/${version}\r\n${H}${headers}\r\n${body}`;
/** A whole request inside a body: it must stay body. */
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: app.example\r\n\r\n';
const WS = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';

/** The head the VM gets for a request from this file, up to the proxy's framing line. */
const forwardedHead = (requestLine: string, extra = '') =>
  `${requestLine}\r\n${extra}host: app.example\r\nconnection: keep-alive\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nx-forwarded-host: app.example\r\nx-request-id: t1`;
const POSTED = { head: forwardedHead('POST / HTTP/1.1'), body: 'hello' };

/** What the VM must receive: nothing, requests (head without framing line, decoded body), or an unfinished request. */
type VmSees = 'nothing' | 'unfinished' | readonly { head: string; body?: string; after?: string }[];

interface Row {
  /** The row's name in docs/request-smuggling.md. */
  readonly name: string;
  readonly send: string;
  /** The statuses the client gets, in order (none: it gets no answer before it gives up). */
  readonly statuses: readonly number[];
  /** The proxy closes the connection after its answer. */
  readonly closed: boolean;
  readonly vm: VmSees;
  /** What the VM answers (default RAW_VM_OK). */
  readonly vmAnswer?: string;
  /** With 'unfinished': whole requests (these heads, no body) the VM may also have got, depending on timing. */
  readonly vmMay?: readonly string[];
}

const BAD = { statuses: [400], closed: true, vm: 'nothing' } as const;
const OK_POST = { statuses: [200], closed: false, vm: [POSTED] } as const;

const ROWS: readonly Row[] = [
  { name: 'CL.TE', send: post('Content-Length: 6\r\nTransfer-Encoding: chunked\r\n', '0\r\n\r\nG'), ...BAD },
  { name: 'TE.CL', send: post('Transfer-Encoding: chunked\r\nContent-Length: 3\r\n', '8\r\nSMUGGLED\r\n0\r\n\r\n'), ...BAD },
  { name: 'CL.CL, different', send: post('Content-Length: 5\r\nContent-Length: 6\r\n', 'hello!'), ...BAD },
  { name: 'CL.CL, equal', send: post('Content-Length: 5\r\nContent-Length: 5\r\n', 'hello'), ...BAD },
  { name: 'Content-Length list', send: post('Content-Length: 5, 5\r\n', 'hello'), ...BAD },
  { name: 'Content-Length +5', send: post('Content-Length: +5\r\n', 'hello'), ...BAD },
  { name: 'Content-Length 005', send: post('Content-Length: 005\r\n', 'hello'), ...OK_POST },
  { name: 'TE chunked, identity', send: post('Transfer-Encoding: chunked, identity\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'TE identity, chunked', send: post('Transfer-Encoding: identity, chunked\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'TE gzip, chunked', send: post('Transfer-Encoding: gzip, chunked\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'TE CHUNKED', send: post('Transfer-Encoding: CHUNKED\r\n', CHUNKED_HELLO), ...OK_POST },
  { name: 'TE mixed-case name and value', send: post('tRaNsFeR-eNcOdInG: ChUnKeD\r\n', CHUNKED_HELLO), ...OK_POST },
  { name: 'TE spaces around value', send: post('Transfer-Encoding:   chunked  \r\n', CHUNKED_HELLO), ...OK_POST },
  {
    name: 'TE trailing tab',
    send: post('Transfer-Encoding: chunked\t\r\n', CHUNKED_HELLO),
    statuses: [400],
    closed: true,
    vm: 'unfinished',
  },
  { name: 'TE space before colon', send: post('Transfer-Encoding : chunked\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'TE name after a space (obs-fold)', send: post(' Transfer-Encoding: chunked\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'TE vertical tab before value', send: post('Transfer-Encoding:\x0bchunked\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'TE vertical tab after value', send: post('Transfer-Encoding: chunked\x0b\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'TE xchunked', send: post('Transfer-Encoding: xchunked\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'TE chunkedx', send: post('Transfer-Encoding: chunkedx\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'TE ,chunked', send: post('Transfer-Encoding: ,chunked\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'two TE: chunked, identity', send: post('Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'two TE: identity, chunked', send: post('Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'two TE: chunked, chunked', send: post('Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', CHUNKED_HELLO), ...BAD },
  {
    name: 'TE chunked in HTTP/1.0',
    send: post('Transfer-Encoding: chunked\r\n', CHUNKED_HELLO, '1.0'),
    statuses: [200],
    closed: true,
    vm: [POSTED],
  },
  { name: 'chunk size with leading zeros', send: post('Transfer-Encoding: chunked\r\n', '0005\r\nhello\r\n000\r\n\r\n'), ...OK_POST },
  { name: 'chunk extensions', send: post('Transfer-Encoding: chunked\r\n', '5;name=value\r\nhello\r\n0;x="y"\r\n\r\n'), ...OK_POST },
  {
    name: 'chunk extension ended by bare LF',
    send: post('Transfer-Encoding: chunked\r\n', '5;a\nhello\r\n0\r\n\r\n'),
    statuses: [400],
    closed: true,
    vm: 'unfinished',
  },
  {
    name: 'chunk size 0x5',
    send: post('Transfer-Encoding: chunked\r\n', '0x5\r\nhello\r\n0\r\n\r\n'),
    statuses: [400],
    closed: true,
    vm: 'unfinished',
  },
  {
    name: 'chunk size -5',
    send: post('Transfer-Encoding: chunked\r\n', '-5\r\nhello\r\n0\r\n\r\n'),
    statuses: [400],
    closed: true,
    vm: 'unfinished',
  },
  {
    name: 'chunk size over 64 bits',
    send: post('Transfer-Encoding: chunked\r\n', `${'f'.repeat(17)}\r\nhello\r\n0\r\n\r\n`),
    statuses: [400],
    closed: true,
    vm: 'unfinished',
  },
  {
    name: 'chunk size with a space',
    send: post('Transfer-Encoding: chunked\r\n', '5 \r\nhello\r\n0\r\n\r\n'),
    statuses: [400],
    closed: true,
    vm: 'unfinished',
  },
  {
    name: 'chunk data without its CRLF',
    send: post('Transfer-Encoding: chunked\r\n', '5\r\nhello0\r\n\r\n'),
    statuses: [400],
    closed: true,
    vm: 'unfinished',
  },
  { name: 'chunk trailer', send: post('Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n'), ...OK_POST },
  { name: 'bare LF line endings', send: 'GET / HTTP/1.1\nHost: app.example\nX-Request-Id: t1\n\n', ...BAD },
  { name: 'bare LF after one header', send: 'GET / HTTP/1.1\r\nHost: app.example\nX-Request-Id: t1\r\n\r\n', ...BAD },
  { name: 'bare CR', send: 'GET / HTTP/1.1\r\nHost: app.example\rX-Request-Id: t1\r\n\r\n', ...BAD },
  { name: 'obs-fold (space)', send: `GET / HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n`, ...BAD },
  { name: 'obs-fold (tab)', send: `GET / HTTP/1.1\r\n${H}X-A: a\r\n\tb\r\n\r\n`, ...BAD },
  { name: 'obs-fold hiding chunked', send: post('Transfer-Encoding: identity\r\n chunked\r\n', CHUNKED_HELLO), ...BAD },
  { name: 'two Host headers', send: 'GET / HTTP/1.1\r\nHost: app.example\r\nHost: other.example\r\nX-Request-Id: t1\r\n\r\n', ...BAD },
  { name: 'two equal Host headers', send: 'GET / HTTP/1.1\r\nHost: app.example\r\nHost: app.example\r\nX-Request-Id: t1\r\n\r\n', ...BAD },
  {
    name: 'Host list',
    send: 'GET / HTTP/1.1\r\nHost: app.example, other.example\r\nX-Request-Id: t1\r\n\r\n',
    statuses: [404],
    closed: false,
    vm: 'nothing',
  },
  { name: 'absolute-form naming another host', send: `GET http://other.example/ HTTP/1.1\r\n${H}\r\n`, ...BAD },
  {
    name: 'absolute-form naming the Host',
    send: `GET http://app.example/x HTTP/1.1\r\n${H}\r\n`,
    statuses: [200],
    closed: false,
    vm: [{ head: forwardedHead('GET /x HTTP/1.1') }],
  },
  {
    name: 'Expect: 100-continue, refused (404), body holding a request',
    send:
      `POST / HTTP/1.1\r\nHost: nope.example\r\nExpect: 100-continue\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}` +
      `GET /after HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
    statuses: [100, 404, 200],
    closed: true,
    vm: [{ head: forwardedHead('GET /after HTTP/1.1') }],
  },
  {
    name: 'Expect: 100-continue, refused (400), body holding a request',
    send: `POST http://other.example/ HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    statuses: [100, 400],
    closed: true,
    vm: 'nothing',
  },
  {
    name: 'pipelined GET, GET',
    send: `GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
    statuses: [200, 200],
    closed: true,
    vm: [{ head: forwardedHead('GET /1 HTTP/1.1') }, { head: forwardedHead('GET /2 HTTP/1.1') }],
  },
  {
    name: 'pipelined POST with body, GET',
    send: `${post('Content-Length: 5\r\n', 'hello')}GET /2 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
    statuses: [200, 200],
    closed: true,
    vm: [POSTED, { head: forwardedHead('GET /2 HTTP/1.1') }],
  },
  {
    name: 'pipelined after a refused request',
    send: `GET / HTTP/1.1\r\nHost: app.example\r\nHost: other.example\r\n\r\nGET /2 HTTP/1.1\r\n${H}\r\n`,
    ...BAD,
  },
  {
    name: 'pipelined after a refused ambiguous body',
    send: post('Transfer-Encoding: identity, chunked\r\n', `0\r\n\r\n${SMUGGLED}`),
    ...BAD,
  },
  {
    name: 'pipelined after Connection: close',
    send: `GET /1 HTTP/1.1\r\n${H}Connection: close\r\n\r\nGET /2 HTTP/1.1\r\n${H}\r\n`,
    // llhttp refuses any byte after a request that closes; Node answers 400 at once, /1's answer
    // with it. /1 may have been forwarded meanwhile; /2 never is.
    statuses: [400],
    closed: true,
    vm: 'unfinished',
    vmMay: [forwardedHead('GET /1 HTTP/1.1')],
  },
  {
    name: 'pipelined after a 404',
    send: `GET / HTTP/1.1\r\nHost: nope.example\r\n\r\nGET /2 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
    statuses: [404, 200],
    closed: true,
    vm: [{ head: forwardedHead('GET /2 HTTP/1.1') }],
  },
  { name: 'WebSocket upgrade with Content-Length', send: `GET /chat HTTP/1.1\r\n${H}${WS}Content-Length: 5\r\n\r\nhelloFRAME`, ...BAD },
  {
    name: 'WebSocket upgrade with Transfer-Encoding',
    send: `GET /chat HTTP/1.1\r\n${H}${WS}Transfer-Encoding: chunked\r\n\r\n${CHUNKED_HELLO}FRAME`,
    ...BAD,
  },
  {
    name: 'WebSocket upgrade with Content-Length: 0',
    send: `GET /chat HTTP/1.1\r\n${H}${WS}Content-Length: 0\r\n\r\nFRAME`,
    statuses: [101],
    closed: true,
    vmAnswer: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
    vm: [
      {
        head:
          'GET /chat HTTP/1.1\r\nhost: app.example\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n' +
          'content-length: 0\r\nconnection: upgrade\r\nupgrade: websocket\r\nx-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n' +
          'x-forwarded-host: app.example\r\nx-request-id: t1',
        after: 'FRAME',
      },
    ],
  },
  { name: 'HTTP/2 prior-knowledge preface', send: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', ...BAD },
];

/** The status of every response in `text`, in order (bodies are Content-Length framed). */
function statusesIn(text: string): number[] {
  const out: number[] = [];
  let rest = text;
  for (;;) {
    const m = /^HTTP\/1\.[01] (\d{3}) [^\r]*\r\n/.exec(rest);
    if (m === null) return out;
    out.push(Number(m[1]));
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return out;
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(rest.slice(0, end + 2))?.[1] ?? 0);
    rest = rest.slice(end + 4 + length);
  }
}

/** Asserts what the VM received for one row: `conns` are the row's connections, the sentinel left out. */
function assertVmSaw(row: Row, conns: string[]): void {
  if (row.vm === 'nothing') {
    assert.deepEqual(conns, [], `${row.name}: the VM got nothing`);
    return;
  }
  if (row.vm === 'unfinished') {
    // The parser found the fault after the head (Node had already handed the request on): the VM
    // may have the head and the body bytes parsed before the fault, re-chunked, but never the
    // final chunk; the proxy then closed the connection.
    for (const bytes of conns) {
      const got = readRequest(bytes);
      if (got?.complete === true && row.vmMay?.includes(got.head) === true && got.rest === '') continue;
      assert.ok(got === undefined || (!got.complete && got.rest === ''), `${row.name}: unfinished request only: ${JSON.stringify(bytes)}`);
      assert.ok(!bytes.includes('SMUGGLED') && !bytes.includes('0x') && !bytes.includes(';'), `${row.name}: no raw client bytes`);
    }
    return;
  }
  assert.equal(conns.length, row.vm.length, `${row.name}: one upstream connection per request: ${JSON.stringify(conns)}`);
  row.vm.forEach((want, i) => {
    const got = readRequest(conns[i]!);
    assert.ok(got !== undefined && got.complete, `${row.name}: a whole request: ${JSON.stringify(conns[i])}`);
    const framing = got.headers.filter(([n]) => n === 'content-length' || n === 'transfer-encoding');
    if (want.body === undefined) {
      assert.equal(got.head, want.head, `${row.name}: the exact head`);
      assert.ok(got.framing === 'none' || (got.framing === 'content-length' && got.body === ''), row.name);
    } else {
      // undici frames a body it already has whole with Content-Length, one still arriving chunked.
      assert.equal(framing.length, 1, `${row.name}: exactly one framing header`);
      assert.equal(got.head, `${want.head}\r\n${framing[0]![0]}: ${framing[0]![1]}`, `${row.name}: the exact head`);
      assert.ok(framing[0]![1] === 'chunked' || framing[0]![1] === String(want.body.length), `${row.name}: ${framing[0]!.join(': ')}`);
      assert.equal(got.body, want.body, `${row.name}: the body`);
    }
    assert.equal(got.rest, want.after ?? '', `${row.name}: nothing after the request`);
  });
}

describe('request smuggling: what the client gets and every byte the VM receives', () => {
  for (const row of ROWS) {
    it(row.name, async () => {
      const before = vm.connections().length;
      vm.answer = row.vmAnswer ?? RAW_VM_OK;
      const r = await rawExchange(p.port, [row.send], { timeoutMs: 5000, untilResponse: !row.closed && row.statuses.length === 1 });
      vm.answer = RAW_VM_OK;
      assert.deepEqual(statusesIn(r.text), row.statuses, `${row.name}: got ${JSON.stringify(r.text)}`);
      assert.equal(r.closed, row.closed, `${row.name}: connection closed`);
      if (!row.closed) assert.match(r.text, /\r\nConnection: keep-alive\r\n/i);
      // A request after it on a new connection: once it has reached the VM and every connection has
      // closed, the row's own upstream traffic is all in the record.
      assert.equal((await request(p.port, { host: 'app.example', path: '/sentinel' })).status, 200);
      await vm.settled();
      const conns = vm
        .connections()
        .slice(before)
        .map((c) => c.bytes)
        .filter((b) => !b.startsWith('GET /sentinel '));
      assertVmSaw(row, conns);
    });
  }

  it('docs/request-smuggling.md has a row for each case here, and no other', () => {
    const doc = readFileSync(new URL('../docs/request-smuggling.md', import.meta.url), 'utf8');
    const start = doc.indexOf('## The table');
    // This section only: the HTTP/2 section after it has its own table (test/https-h2.test.ts).
    const table = doc.slice(start, doc.indexOf('\n## ', start));
    const documented = [...table.matchAll(/^\| ([^|]+?) \|/gm)]
      .map((m) => m[1]!)
      .filter((name) => name !== 'case' && !name.startsWith('---'));
    assert.deepEqual(
      documented,
      ROWS.map((r) => r.name),
    );
  });
});
