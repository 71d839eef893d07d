-- EdgeProxy development/test schema: the part of the control plane's schema that the proxy reads.
-- The production schema belongs to the control plane; see migrations/README.md.
--
-- Shaped like the control plane's own (ORM-generated) schema, on purpose:
--   * uuid primary keys with NO default: callers always supply ids.
--   * created_at / updated_at default to now(); updated_at is NOT maintained by a trigger
--     (the control plane sets it from application code).
--   * deleted_at is a soft-delete marker. The documented routing query does not look at it.
--   * domains.name is NOT unique: the same name may appear on several rows (per project, stale
--     rows, soft-deleted rows...). The routing query orders by name and a consumer must cope
--     with duplicates.
--   * Foreign keys are plain (ON DELETE NO ACTION / ON UPDATE NO ACTION), as the control plane
--     declares them: it soft-deletes and re-points rows, it does not cascade. Consequences for
--     tests: re-pointing a row (UPDATE domains SET deployment_id = ...) always works; deleting a
--     parent that still has children fails with 23503, so delete children first (or re-point
--     them), or use TRUNCATE ... CASCADE to empty tables.
--   * Nullable links: a domain may exist before it has a deployment (deployment_id NULL), a
--     deployment has no VM until it is scheduled (vm_id NULL), a VM may not have a port yet
--     (port NULL). The routing query uses inner joins, so such rows simply do not route, but
--     vms.port can be NULL on a row that otherwise routes.
--   * Every table has a primary key and the default REPLICA IDENTITY (needed for logical
--     replication of UPDATE/DELETE).

CREATE TYPE deployment_status AS ENUM ('pending', 'building', 'ready', 'failed', 'inactive');
CREATE TYPE vm_status AS ENUM ('pending', 'starting', 'running', 'stopping', 'stopped', 'failed');

CREATE TABLE regions (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    code        text NOT NULL,
    public_ipv4 inet NOT NULL,
    public_ipv6 inet,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE vms (
    id          uuid PRIMARY KEY,
    region_id   uuid NOT NULL REFERENCES regions (id),
    status      vm_status NOT NULL DEFAULT 'pending',
    private_ip  inet NOT NULL,
    port        integer,
    vcpus       integer NOT NULL DEFAULT 1,
    memory_mb   integer NOT NULL DEFAULT 512,
    metadata    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE deployments (
    id            uuid PRIMARY KEY,
    status        deployment_status NOT NULL DEFAULT 'pending',
    vm_id         uuid REFERENCES vms (id),
    github_commit text,
    ready_at      timestamptz,
    failed_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);

CREATE TABLE domains (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL,
    deployment_id      uuid REFERENCES deployments (id),
    verification_token text,
    verified_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);

-- Plain (non-unique) indexes on the columns the routing query joins and filters on.
CREATE INDEX vms_region_id_idx ON vms (region_id);
CREATE INDEX deployments_vm_id_idx ON deployments (vm_id);
CREATE INDEX domains_deployment_id_idx ON domains (deployment_id);
CREATE INDEX domains_name_idx ON domains (name);
