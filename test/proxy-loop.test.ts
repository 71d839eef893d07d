import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hasLoopMark } from '../src/proxy/headers.js';
import { OTHER_REGION, request, startBackend, startProxy, type Backend, type TestProxy } from './support/backend.js';

/** Cross-region loop guard (CDN-Loop, 508) and who may extend X-Forwarded-For. */

let vm: Backend;
let lb: Backend;
before(async () => {
  vm = await startBackend('vm');
  lb = await startBackend('lb');
});
after(async () => {
  await vm.close();
  await lb.close();
});

async function proxy(regionAddresses: string[], trustedProxies?: string[]): Promise<TestProxy> {
  const p = await startProxy({ crossRegionPort: lb.port, server: trustedProxies === undefined ? {} : { trustedProxies } });
  p.routes({ 'near.example': { vmPort: vm.port }, 'far.example': { vmPort: 1, region: OTHER_REGION } }, regionAddresses);
  return p;
}

describe('cross-region loop guard', () => {
  it('marks requests forwarded to another region with CDN-Loop, appending to an existing list', async () => {
    const p = await proxy(['127.0.0.1']);
    try {
      await request(p.port, { host: 'far.example', path: '/a' });
      await request(p.port, { host: 'far.example', path: '/b', headers: { 'cdn-loop': 'cloudflare; loops=1' } });
      await request(p.port, { host: 'near.example', path: '/c' });
      const seen = (path: string) => [...lb.proxied(), ...vm.proxied()].find((r) => r.url === path)!.headers['cdn-loop'];
      assert.equal(seen('/a'), 'edgeproxy');
      assert.equal(seen('/b'), 'cloudflare; loops=1, edgeproxy');
      assert.equal(seen('/c'), undefined, 'same-region requests are not marked');
    } finally {
      await p.close();
    }
  });

  it('a marked request that would cross regions again → 508 "Loop Detected", upstream untouched, logged', async () => {
    const p = await proxy(['127.0.0.1']);
    try {
      const before = lb.proxied().length;
      for (const mark of ['edgeproxy', 'other, EdgeProxy; x=1', 'foo,edgeproxy']) {
        const r = await request(p.port, { host: 'far.example', headers: { 'cdn-loop': mark } });
        assert.equal(r.status, 508, mark);
        assert.equal(r.body, 'Loop Detected');
      }
      assert.equal(lb.proxied().length, before);
      const warn = p.logs.find((l) => l.msg === 'loop detected; answered 508');
      assert.equal(warn?.level, 'warn');
      assert.equal(warn?.host, 'far.example');
      assert.ok(p.observed.requests.some((r) => r.kind === 'loop' && r.status === 508));
    } finally {
      await p.close();
    }
  });

  it('a marked request for a site in this region is served (the normal second hop)', async () => {
    const p = await proxy(['127.0.0.1']);
    try {
      const r = await request(p.port, { host: 'near.example', path: '/hop2', headers: { 'cdn-loop': 'edgeproxy' } });
      assert.equal(r.status, 200);
      assert.equal(r.body, 'vm GET /hop2');
    } finally {
      await p.close();
    }
  });

  it('hasLoopMark parses RFC 8586 lists', () => {
    assert.equal(hasLoopMark(undefined), false);
    assert.equal(hasLoopMark('edgeproxy-staging'), false);
    assert.equal(hasLoopMark('notedgeproxy'), false);
    assert.equal(hasLoopMark(' edgeproxy '), true);
    assert.equal(hasLoopMark(['a', 'edgeproxy;v=1']), true);
  });
});

describe('X-Forwarded-For trust', () => {
  it('from a region load balancer address: kept and appended to', async () => {
    const p = await proxy(['127.0.0.1']);
    try {
      await request(p.port, {
        host: 'near.example',
        path: '/lb',
        headers: { 'x-forwarded-for': '198.51.100.9', 'x-forwarded-proto': 'https' },
      });
      const h = vm.proxied().find((r) => r.url === '/lb')!.headers;
      assert.equal(h['x-forwarded-for'], '198.51.100.9, 127.0.0.1');
      assert.equal(h['x-forwarded-proto'], 'https', "a trusted hop's X-Forwarded-Proto is kept");
    } finally {
      await p.close();
    }
  });

  it('from anyone else: replaced by the connecting address (no forged client address)', async () => {
    const p = await proxy(['192.0.2.10']);
    try {
      await request(p.port, {
        host: 'far.example',
        path: '/forged',
        headers: { 'x-forwarded-for': '1.2.3.4', 'x-forwarded-proto': 'https' },
      });
      const h = lb.proxied().find((r) => r.url === '/forged')!.headers;
      assert.equal(h['x-forwarded-for'], '127.0.0.1');
      assert.equal(h['x-forwarded-proto'], 'http');
      await request(p.port, { host: 'far.example', path: '/none' });
      assert.equal(lb.proxied().find((r) => r.url === '/none')!.headers['x-forwarded-for'], '127.0.0.1');
    } finally {
      await p.close();
    }
  });

  it('from a configured trusted CIDR: appended to', async () => {
    const p = await proxy(['192.0.2.10'], ['10.0.0.0/8', '127.0.0.0/8']);
    try {
      await request(p.port, { host: 'near.example', path: '/cidr', headers: { 'x-forwarded-for': '203.0.113.5, 10.1.1.1' } });
      assert.equal(vm.proxied().find((r) => r.url === '/cidr')!.headers['x-forwarded-for'], '203.0.113.5, 10.1.1.1, 127.0.0.1');
    } finally {
      await p.close();
    }
  });

  it('two hops keep the original client: region A appends, region B trusts A and appends', async () => {
    // Proxy B (the VM's region) trusts 127.0.0.1 as a region address; proxy A forwards to B.
    const b = await startProxy({});
    b.routes({ 'far.example': { vmPort: vm.port } }, ['127.0.0.1']);
    const a = await startProxy({ crossRegionPort: b.port });
    a.routes({ 'far.example': { vmPort: 1, region: OTHER_REGION } }, ['127.0.0.1']);
    try {
      const r = await request(a.port, { host: 'far.example', path: '/two-hops', headers: { 'x-forwarded-for': '203.0.113.77' } });
      assert.equal(r.status, 200);
      const h = vm.proxied().find((x) => x.url === '/two-hops')!.headers;
      assert.equal(h['x-forwarded-for'], '203.0.113.77, 127.0.0.1, 127.0.0.1');
      assert.equal(h['cdn-loop'], 'edgeproxy');
      const idA = a.logs.find((l) => l.msg === 'request routed' && l.url === '/two-hops')?.requestId;
      assert.equal(h['x-request-id'], idA, 'the request id survives the hop');
    } finally {
      await a.close();
      await b.close();
    }
  });
});
