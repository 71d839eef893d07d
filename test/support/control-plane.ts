import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { createDatabase, type PgServer, type TestDatabase } from './postgres.js';

const SCHEMA = readFileSync(new URL('../fixtures/control-plane-schema.sql', import.meta.url), 'utf8');

/** A database with the control plane's own schema (test/fixtures/control-plane-schema.sql), one organisation and project, and a way to write its rows. */
export class ControlPlane {
  readonly #organisation = randomUUID();
  readonly #project = randomUUID();

  private constructor(
    readonly db: TestDatabase,
    readonly client: pg.Client,
  ) {}

  static async create(server: PgServer): Promise<ControlPlane> {
    const db = await createDatabase(server, { migrate: false });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const cp = new ControlPlane(db, client);
    await client.query(SCHEMA);
    await client.query(`INSERT INTO organisations (id, name, slug) VALUES ($1, 'Acme', 'acme')`, [cp.#organisation]);
    await client.query(`INSERT INTO projects (id, name, slug, organisation_id) VALUES ($1, 'Shop', 'shop', $2)`, [
      cp.#project,
      cp.#organisation,
    ]);
    return cp;
  }

  async region(id: string, ipv4: string, ipv6: string | null = null): Promise<void> {
    await this.client.query(
      `INSERT INTO regions (id, name, code, country, load_balancer_ipv4, load_balancer_ipv6) VALUES ($1, 'Falkenstein', 'fsn', 'de', $2, $3)`,
      [id, ipv4, ipv6],
    );
  }

  /** A verified domain → ready deployment → running VM, with the control plane's NOT NULL columns filled in. */
  async route(name: string, regionId: string, vmIp: string, vmPort: number): Promise<{ vmId: string; domainId: string }> {
    const vmId = randomUUID();
    const deploymentId = randomUUID();
    const domainId = randomUUID();
    await this.client.query(
      `INSERT INTO vms (id, vcpus, memory, status, region_id, private_ip, port) VALUES ($1, 2, 2048, 'running', $2, $3, $4)`,
      [vmId, regionId, vmIp, vmPort],
    );
    await this.client.query(
      `INSERT INTO deployments (id, status, github_commit, vm_id, project_id, organisation_id) VALUES ($1, 'ready', 'abc123', $2, $3, $4)`,
      [deploymentId, vmId, this.#project, this.#organisation],
    );
    await this.client.query(
      `INSERT INTO domains (id, name, verification_token, verified_at, deployment_id, project_id, organisation_id)
       VALUES ($1, $2, 'token', now(), $3, $4, $5)`,
      [domainId, name, deploymentId, this.#project, this.#organisation],
    );
    return { vmId, domainId };
  }

  query(sql: string, params?: unknown[]): Promise<pg.QueryResult> {
    return this.client.query(sql, params);
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
    await this.db.drop();
  }
}
