/**
 * The documented query (docs: ../shared/spec/edgeproxy-service.md, "Database Query"), verbatim.
 * It is the reference every other way of building the route table must agree with.
 */
export const ROUTES_QUERY = `SELECT
    d.name as domain_name,
    v.private_ip as vm_private_ip,
    v.port as vm_port,
    v.region_id as vm_region_id,
    r.public_ipv4 as region_public_ip
FROM domains d
INNER JOIN deployments dep ON d.deployment_id = dep.id
INNER JOIN vms v ON dep.vm_id = v.id
INNER JOIN regions r ON v.region_id = r.id
WHERE d.verified_at IS NOT NULL
  AND dep.status = 'ready'
  AND v.status = 'running'
ORDER BY d.name`;
