import { randomUUID } from 'node:crypto';
import pg from 'pg';

export interface RouteSeed {
  readonly name: string;
  readonly regionId: string;
  readonly regionIp?: string;
  readonly vmIp?: string;
  readonly vmPort: number;
  readonly vmStatus?: string;
  readonly deploymentStatus?: string;
  readonly verified?: boolean;
}

export interface SeededRoute {
  readonly domainId: string;
  readonly deploymentId: string;
  readonly vmId: string;
}

/** Writes rows in the development schema (migrations/). */
export class Seeder {
  constructor(readonly client: pg.Client) {}

  static async connect(url: string): Promise<Seeder> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    return new Seeder(client);
  }

  async region(id: string, publicIp = '127.0.0.1'): Promise<void> {
    await this.client.query(
      `INSERT INTO regions (id, name, code, public_ipv4) VALUES ($1, $2, $2, $3)
       ON CONFLICT (id) DO UPDATE SET public_ipv4 = EXCLUDED.public_ipv4`,
      [id, `region-${id.slice(0, 4)}`, publicIp],
    );
  }

  /** One domain → deployment → VM chain; the region must exist. */
  async route(s: RouteSeed): Promise<SeededRoute> {
    const vmId = randomUUID();
    const deploymentId = randomUUID();
    const domainId = randomUUID();
    await this.client.query('INSERT INTO vms (id, region_id, status, private_ip, port) VALUES ($1, $2, $3, $4, $5)', [
      vmId,
      s.regionId,
      s.vmStatus ?? 'running',
      s.vmIp ?? '127.0.0.1',
      s.vmPort,
    ]);
    await this.client.query('INSERT INTO deployments (id, status, vm_id) VALUES ($1, $2, $3)', [
      deploymentId,
      s.deploymentStatus ?? 'ready',
      vmId,
    ]);
    await this.client.query('INSERT INTO domains (id, name, deployment_id, verified_at) VALUES ($1, $2, $3, $4)', [
      domainId,
      s.name,
      deploymentId,
      s.verified === false ? null : new Date(),
    ]);
    return { domainId, deploymentId, vmId };
  }

  query(sql: string, params?: unknown[]): Promise<pg.QueryResult> {
    return this.client.query(sql, params);
  }

  close(): Promise<void> {
    return this.client.end();
  }
}
