/**
 * The issue-13 shape, shared by the benchmarks at scale (bench/route-scale.ts, bench/worker-scale.ts):
 * N domains over 1,000 deployments on 1,000 VMs in the proxy's region, VM i at 127.1.x.y (one HTTP
 * server on every loopback address answering with the address it was reached on), domain i
 * `d<i>.scale.test` on deployment i % 1,000, the publication `edgeproxy serve` requires.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { createPublicationSql } from '../../src/db/publication.js';
import { tlsTablesExist } from '../../src/db/tls-rows.js';
import { HEALTH_USER_AGENT } from '../../src/proxy/health.js';

export const VMS = 1000;
export const REGION = '0a000000-0000-4000-8000-00000000000a';

export const uuid = (kind: number, i: number) => `${kind.toString(16).padStart(8, '0')}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
export const vmIp = (i: number) => `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;
export const host = (i: number) => `d${i}.scale.test`;
const sqlUuid = (kind: number, expr: string) =>
  `('${kind.toString(16).padStart(8, '0')}-0000-4000-8000-' || lpad(to_hex(${expr}), 12, '0'))::uuid`;

/** The VMs: one HTTP server on every loopback address, answering with the address it was reached on. */
/** `probes()`: the health probes (edgeproxy's User-Agent) the VMs have answered so far, all VMs together. */
export async function startVms(): Promise<{ port: number; probes(): number; close(): void }> {
  let probes = 0;
  const s = http.createServer((req, res) => {
    if (req.headers['user-agent'] === HEALTH_USER_AGENT) probes += 1;
    res.end(req.socket.localAddress ?? '');
  });
  s.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => s.listen(0, '0.0.0.0', r));
  return { port: (s.address() as AddressInfo).port, probes: () => probes, close: () => (s.closeAllConnections(), s.close()) };
}

export async function seed(url: string, n: number, vmPort: number): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`INSERT INTO regions (id, name, code, public_ipv4) VALUES ('${REGION}', 'here', 'here', '127.0.0.1')`);
    if (n > 0) {
      await c.query(
        `INSERT INTO vms (id, region_id, status, private_ip, port)
         SELECT ${sqlUuid(2, 'i')}, '${REGION}', 'running', ('127.1.' || (i / 250) || '.' || (i % 250 + 1))::inet, ${vmPort}
         FROM generate_series(0, ${VMS - 1}) AS i`,
      );
      await c.query(
        `INSERT INTO deployments (id, status, vm_id) SELECT ${sqlUuid(3, 'i')}, 'ready', ${sqlUuid(2, 'i')} FROM generate_series(0, ${VMS - 1}) AS i`,
      );
      await c.query(
        `INSERT INTO domains (id, name, deployment_id, verified_at)
         SELECT ${sqlUuid(4, 'i')}, 'd' || i || '.scale.test', ${sqlUuid(3, `i % ${VMS}`)}, now() FROM generate_series(0, ${n - 1}) AS i`,
      );
    }
    // The routing tables and, where they exist, the TLS tables, as `edgeproxy serve` requires.
    await c.query(createPublicationSql('edgeproxy', await tlsTablesExist(c)));
    await c.query('VACUUM ANALYZE');
    // The seed's dirty pages written out now, not during the first run after it (which was slower).
    await c.query('CHECKPOINT');
  } finally {
    await c.end();
  }
}
