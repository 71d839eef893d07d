import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Config } from '../../src/config/config.js';
import { startBackend, type Backend, type Handler } from './backend.js';
import { makeCertificate, type TestCertificate } from './certificates.js';
import { createDatabase, type PgServer } from './postgres.js';
import { Seeder } from './seed.js';
import { eventually, REGION_A, startTestService, type TestService } from './service.js';

/** A default certificate for the HTTPS tests, on disk as the service reads it; `remove` deletes the files. */
export interface CertificateFiles extends TestCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  remove(): void;
}

export function certificateFiles(names: readonly string[]): CertificateFiles {
  const dir = mkdtempSync(path.join(tmpdir(), 'edgeproxy-https-'));
  const certificate = makeCertificate(names);
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  writeFileSync(certFile, certificate.certPem);
  writeFileSync(keyFile, certificate.keyPem);
  return { ...certificate, certFile, keyFile, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface HttpsService {
  readonly vm: Backend;
  readonly proxy: TestService;
  readonly httpsPort: number;
  readonly seed: Seeder;
  close(): Promise<void>;
}

/**
 * The real service on its own database with the HTTPS port on, `app.example` routed to a real
 * backend (answering with `handler`, else the default echo line).
 */
export async function startHttpsService(pg: PgServer, overrides: Partial<Config> = {}, handler?: Handler): Promise<HttpsService> {
  const db = await createDatabase(pg);
  const seed = await Seeder.connect(db.url);
  await seed.region(REGION_A, '127.0.0.1');
  const vm = await startBackend('vm', handler);
  await seed.route({ name: 'app.example', regionId: REGION_A, vmPort: vm.port });
  const proxy = await startTestService({ databaseUrl: db.url, httpsAddr: { host: '127.0.0.1', port: 0 }, ...overrides });
  await eventually('first route table load', () => proxy.store.ready);
  return {
    vm,
    proxy,
    httpsPort: proxy.httpsPort!,
    seed,
    async close() {
      await proxy.stop('test done');
      await vm.close();
      await seed.close();
      await db.drop();
    },
  };
}

/** `edgeproxy_tls_handshakes_total` for one result, summed over protocols unless one is given. */
export async function handshakes(p: TestService, result: string, protocol?: string): Promise<number> {
  const text = (await p.metrics.exposition()).body;
  const pattern = new RegExp(`^edgeproxy_tls_handshakes_total\\{result="${result}",protocol="([^"]*)"\\} (\\d+)`, 'gm');
  let total = 0;
  for (const m of text.matchAll(pattern)) if (protocol === undefined || m[1] === protocol) total += Number(m[2]);
  return total;
}
