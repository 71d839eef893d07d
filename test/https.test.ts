import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import type tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { makeCertificate } from './support/certificates.js';
import { runCli } from './support/cli.js';
import { certificateFiles, handshakes, startHttpsService, type CertificateFiles } from './support/https-service.js';
import { startPostgres, type PgServer } from './support/postgres.js';
import { REGION_A } from './support/service.js';

let pg: PgServer;
let certificate: CertificateFiles;
let certFile: string;
let keyFile: string;

before(async () => {
  pg = await startPostgres();
  certificate = certificateFiles(['app.example', 'nowhere.example']);
  ({ certFile, keyFile } = certificate);
});
after(async () => {
  await pg.stop();
  certificate.remove();
});

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly cert: tls.PeerCertificate;
}

/** An HTTPS request to the proxy with `servername` in SNI and Host, trusting the test certificate. */
function get(port: number, servername: string, headers: Record<string, string> = {}, agent: https.Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: '127.0.0.1', port, servername, headers: { host: servername, ...headers }, ca: certificate.certPem, agent },
      (res) => {
        // Read now: with a keep-alive agent the socket goes back to the pool when the body ends.
        const cert = (res.socket as tls.TLSSocket).getPeerCertificate();
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body, cert }));
      },
    );
    req.on('error', reject);
  });
}

const setup = (overrides: Parameters<typeof startHttpsService>[1] = {}) => startHttpsService(pg, overrides);

describe('HTTPS listener', () => {
  it('routes like the HTTP port: the VM gets the request with X-Forwarded-Proto https, the client the answer', async () => {
    const t = await setup({ tlsDefaultCertFile: certFile, tlsDefaultKeyFile: keyFile });
    try {
      const r = await get(t.httpsPort, 'app.example', { 'x-forwarded-proto': 'http' });
      assert.equal(r.status, 200);
      assert.equal(r.cert.subject.CN, 'app.example');
      const seen = t.vm.proxied().at(-1)!;
      assert.equal(seen.headers.host, 'app.example');
      // A client's own X-Forwarded-Proto is not trusted: the VM learns how the client reached us.
      assert.equal(seen.headers['x-forwarded-proto'], 'https');
      assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(await handshakes(t.proxy, 'ok', 'http/1.1'), 1);
      await t.proxy.waitForLog((l) => l.msg === 'HTTPS listening' && l.port === t.httpsPort);
    } finally {
      await t.close();
    }
  });

  it('the same error table: an unknown host over HTTPS is 404 "Service Not Found"', async () => {
    const t = await setup({ tlsDefaultCertFile: certFile, tlsDefaultKeyFile: keyFile });
    try {
      const r = await get(t.httpsPort, 'nowhere.example');
      assert.deepEqual([r.status, r.body], [404, 'Service Not Found']);
      assert.equal(t.vm.proxied().length, 0);
    } finally {
      await t.close();
    }
  });

  it('no certificate for the name and no default: unrecognized_name, counted and logged at debug with the name', async () => {
    const t = await setup();
    try {
      await assert.rejects(get(t.httpsPort, 'app.example'), /unrecognized name.*alert number 112/);
      assert.equal(await handshakes(t.proxy, 'unrecognized-name'), 1);
      await t.proxy.waitForLog(
        (l) => l.msg === 'TLS handshake refused' && l.reason === 'unrecognized-name' && l.serverName === 'app.example',
      );
      assert.equal(t.vm.proxied().length, 0);
    } finally {
      await t.close();
    }
  });

  it('stop drains HTTPS connections too: a kept-alive one is closed, and the port stops accepting', async () => {
    const t = await setup({ tlsDefaultCertFile: certFile, tlsDefaultKeyFile: keyFile });
    const agent = new https.Agent({ keepAlive: true });
    try {
      assert.equal((await get(t.httpsPort, 'app.example', {}, agent)).status, 200);
      const started = performance.now();
      await t.proxy.stop('test');
      assert.ok(performance.now() - started < 4000, 'the idle keep-alive connection did not hold the drain');
      await assert.rejects(
        new Promise((resolve, reject) => net.connect(t.httpsPort, '127.0.0.1').on('connect', resolve).on('error', reject)),
        /ECONNREFUSED/,
      );
    } finally {
      agent.destroy();
      await t.close();
    }
  });

  it('EDGEPROXY_HTTPS_ADDR off: no HTTPS port', async () => {
    const t = await setup({ httpsAddr: undefined });
    try {
      assert.equal(t.proxy.httpsPort, undefined);
    } finally {
      await t.close();
    }
  });
});

describe('edgeproxy serve with a default certificate that cannot be served: exit 2, one line naming the variable', () => {
  const env = {
    EDGEPROXY_DATABASE_URL: 'postgres://edge@127.0.0.1:1/none',
    EDGEPROXY_REGION_ID: REGION_A,
    EDGEPROXY_HTTPS_ADDR: '127.0.0.1:0',
  };
  const cases: [string, Record<string, string>, RegExp][] = [
    [
      'a certificate without its key',
      { EDGEPROXY_TLS_DEFAULT_CERT: '/x/cert.pem' },
      /^edgeproxy: EDGEPROXY_TLS_DEFAULT_KEY is required with EDGEPROXY_TLS_DEFAULT_CERT\n$/,
    ],
    [
      'a file that does not exist',
      { EDGEPROXY_TLS_DEFAULT_CERT: '/nonexistent/cert.pem', EDGEPROXY_TLS_DEFAULT_KEY: '/nonexistent/key.pem' },
      /^edgeproxy: EDGEPROXY_TLS_DEFAULT_CERT: cannot read \/nonexistent\/cert\.pem \(ENOENT\)\n$/,
    ],
  ];
  for (const [what, extra, says] of cases) {
    it(what, async () => {
      const r = await runCli(['serve'], { ...env, ...extra });
      assert.equal(r.code, 2);
      assert.match(r.stderr, says);
    });
  }

  it('a key that belongs to another certificate', async () => {
    const other = makeCertificate(['other.example']);
    const otherKey = path.join(path.dirname(certFile), 'other-key.pem');
    writeFileSync(otherKey, other.keyPem);
    const r = await runCli(['serve'], { ...env, EDGEPROXY_TLS_DEFAULT_CERT: certFile, EDGEPROXY_TLS_DEFAULT_KEY: otherKey });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^edgeproxy: EDGEPROXY_TLS_DEFAULT_CERT \(.*cert\.pem\): the private key does not belong to the certificate\n$/);
    assert.ok(!r.stderr.includes('PRIVATE KEY'));
  });
});
