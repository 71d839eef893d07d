/**
 * The two HTTPS targets of the speed benches, each its own process, both serving one certificate
 * for one name and forwarding to the same backend:
 * - nginx as a TLS reverse proxy (1 worker, a plain port and `listen … ssl http2`, upstream keepalive);
 * - `edgeproxy serve` from the built bin, streaming from a throwaway PostgreSQL that holds the
 *   routes (`seedRoutes`: `routes` domains on one VM, the bench's name among them) and the
 *   certificate's row in `edgeproxy_certificates` (sealed with a storage key, as the issuer stores it).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { makeCertificate, makeStorageKeyText, storeCertificate, type TestCertificate } from '../../test/support/certificates.js';
import type { LongRun } from '../../test/support/cli.js';
import { createDatabase, startPostgres } from '../../test/support/postgres.js';
import { Seeder } from '../../test/support/seed.js';
import { REGION_A } from '../../test/support/service.js';
import { nginxConf, PROXY_LOCATION, startNginx, upstream } from './nginx.js';
import { freePort } from './processes.js';
import { serveBuiltBin } from './serve-bin.js';

export interface HttpsTarget {
  readonly name: string;
  readonly plainPort: number;
  readonly tlsPort: number;
  /** The process whose CPU is counted (nginx: its master, whose child is the worker). */
  readonly pid: number | undefined;
  /** The protocol it picks when offered h2 and http/1.1 by ALPN. */
  readonly alpn: string | false;
}

/** The protocol the server picks when offered h2 and http/1.1 (a handshake also proves the certificate is served). */
function negotiated(port: number, name: string): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const s = tls.connect(
      { host: '127.0.0.1', port, servername: name, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] },
      () => {
        resolve(s.alpnProtocol ?? false);
        s.destroy();
      },
    );
    s.on('error', reject);
  });
}

/** Waits until `port` completes a TLS handshake for `name` (the certificate is served); its ALPN choice. */
export async function untilServed(port: number, name: string, timeoutMs = 30_000): Promise<string | false> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await negotiated(port, name);
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`no TLS for ${name} on ${port} within ${timeoutMs} ms`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** A certificate for `name` (ECDSA P-256, the test CA's kind) and its PEM files in `tmp`, for nginx. */
export function certificateOnDisk(tmp: string, name: string): { cert: TestCertificate; certFile: string; keyFile: string } {
  const cert = makeCertificate([name]);
  const certFile = join(tmp, 'cert.pem');
  const keyFile = join(tmp, 'key.pem');
  writeFileSync(certFile, cert.certPem);
  writeFileSync(keyFile, cert.keyPem, { mode: 0o600 });
  return { cert, certFile, keyFile };
}

/** nginx as the TLS reverse proxy to the backend on `backendPort`, the certificate from its files. */
export async function nginxHttpsTarget(o: {
  tmp: string;
  backendPort: number;
  name: string;
  certFile: string;
  keyFile: string;
}): Promise<HttpsTarget> {
  const plainPort = await freePort();
  const tlsPort = await freePort();
  const tlsConf = `ssl_certificate ${o.certFile}; ssl_certificate_key ${o.keyFile}; ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on;`;
  const dir = nginxConf(
    o.tmp,
    'nginx',
    `${upstream(o.backendPort)} server { listen 127.0.0.1:${plainPort}; listen 127.0.0.1:${tlsPort} ssl http2; server_name ${o.name}; ${tlsConf} ${PROXY_LOCATION} }`,
  );
  const { pid } = await startNginx(dir, tlsPort);
  return { name: 'nginx', plainPort, tlsPort, pid, alpn: await untilServed(tlsPort, o.name) };
}

/**
 * One region, one VM (127.0.0.1:`backendPort`), one ready deployment, and `routes` verified
 * domains on it: `host`, then `d1.example` … (one INSERT … SELECT, so 1,000,000 rows take seconds).
 */
export async function seedRoutes(seed: Seeder, o: { host: string; backendPort: number; routes: number }): Promise<void> {
  await seed.region(REGION_A, '127.0.0.1');
  const { deploymentId } = await seed.route({ name: o.host, regionId: REGION_A, vmPort: o.backendPort });
  await seed.query(
    `INSERT INTO domains (id, name, deployment_id, verified_at)
     SELECT gen_random_uuid(), 'd' || i || '.example', $1, now() FROM generate_series(1, $2::int - 1) AS i`,
    [deploymentId, o.routes],
  );
}

export interface EdgeproxyHttps {
  readonly target: HttpsTarget;
  /** The bin's output: its JSON log lines so far. */
  readonly run: LongRun;
  /** What the bin reported once its stream was up (`replication stream started`: `routes`, `setupMs`, …). */
  readonly started: Record<string, unknown>;
  stop(): Promise<void>;
}

/**
 * `edgeproxy serve` from the built bin (`root`'s build, this checkout's by default) streaming
 * `routes` routes and `cert`'s row from its own throwaway PostgreSQL; plain and HTTPS ports on
 * 127.0.0.1, no redirect to HTTPS. `env` adds or overrides settings (e.g. `EDGEPROXY_WORKERS`).
 */
export async function edgeproxyHttpsTarget(o: {
  name?: string;
  host: string;
  backendPort: number;
  routes: number;
  cert: TestCertificate;
  root?: string;
  env?: Record<string, string>;
}): Promise<EdgeproxyHttps> {
  const pg = await startPostgres();
  const db = await createDatabase(pg);
  const seed = await Seeder.connect(db.url);
  const storageKey = makeStorageKeyText();
  await seedRoutes(seed, o);
  await storeCertificate(seed.client, storageKey, o.cert);
  const run = serveBuiltBin(
    {
      EDGEPROXY_DATABASE_URL: db.url,
      EDGEPROXY_REGION_ID: REGION_A,
      EDGEPROXY_HTTP_ADDR: '127.0.0.1:0',
      EDGEPROXY_HTTPS_ADDR: '127.0.0.1:0',
      EDGEPROXY_ADMIN_ADDR: '127.0.0.1:0',
      EDGEPROXY_TLS_STORAGE_KEY: storageKey,
      EDGEPROXY_HTTPS_REDIRECT: 'off',
      ...o.env,
    },
    o.root,
  );
  const stop = async () => {
    if (run.child.exitCode === null) run.child.kill('SIGTERM');
    await run.exited;
    await seed.close();
    await db.drop();
    await pg.stop();
  };
  try {
    const plainPort = (await run.waitFor((l) => l.msg === 'listening', 120_000)).port as number;
    const tlsPort = (await run.waitFor((l) => l.msg === 'HTTPS listening', 120_000)).port as number;
    const started = await run.waitFor((l) => l.msg === 'replication stream started', 120_000);
    const alpn = await untilServed(tlsPort, o.host);
    return { target: { name: o.name ?? 'edgeproxy', plainPort, tlsPort, pid: run.child.pid, alpn }, run, started, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
