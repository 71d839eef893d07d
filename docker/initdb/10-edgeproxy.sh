#!/usr/bin/env bash
# Runs once, when the primary starts on an empty volume (the postgres image's
# /docker-entrypoint-initdb.d): the schema, the publication, roles, a slot for the replica and
# one demo route. Everything EdgeProxy needs is created on the PRIMARY; the replica copies it.
set -euo pipefail
psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB")

# The development control-plane schema, then the tables EdgeProxy owns (as `edgeproxy migrate --dev-schema`).
for f in /migrations/control-plane/*.sql /migrations/edgeproxy/*.sql; do
  echo "applying $f"
  "${psql[@]}" -f "$f"
done

"${psql[@]}" <<'SQL'
-- Streaming needs the publication on the primary (a standby cannot create one).
CREATE PUBLICATION edgeproxy FOR TABLE domains, deployments, vms, regions, edgeproxy_certificates, edgeproxy_acme_challenges;

-- The replica clones the primary and streams from it through this slot.
CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'replicator';
SELECT pg_create_physical_replication_slot('replica1');

-- EdgeProxy's own role: read the four tables and its certificate tables, REPLICATION for its
-- logical stream, and (on the primary, through EDGEPROXY_PRIMARY_DATABASE_URL) write its own tables.
CREATE ROLE edgeproxy LOGIN REPLICATION PASSWORD 'edgeproxy';
GRANT SELECT ON domains, deployments, vms, regions TO edgeproxy;
GRANT SELECT, INSERT, UPDATE, DELETE ON edgeproxy_certificates, edgeproxy_acme_challenges, edgeproxy_acme_accounts, edgeproxy_acme_orders TO edgeproxy;

-- Demo data: one region (the proxy's), one VM (the demo-vm service), one domain.
INSERT INTO regions (id, name, code, public_ipv4) VALUES ('11111111-1111-4111-8111-111111111111', 'local', 'loc', '172.28.0.20');
INSERT INTO vms (id, region_id, status, private_ip, port)
  VALUES ('a0000000-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111', 'running', '172.28.0.10', 80);
INSERT INTO deployments (id, status, vm_id) VALUES ('d0000000-0000-4000-8000-000000000001', 'ready', 'a0000000-0000-4000-8000-000000000001');
INSERT INTO domains (id, name, deployment_id, verified_at)
  VALUES ('e0000000-0000-4000-8000-000000000001', 'demo.localhost', 'd0000000-0000-4000-8000-000000000001', now());
SQL

# Physical replication connections match only "replication" lines (logical ones match the database).
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
