import pg from 'pg';
import { DOCUMENTED_REGION_ADDRESS_COLUMN } from '../table/rows.js';

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

const REGION_ADDRESS = `r.${DOCUMENTED_REGION_ADDRESS_COLUMN} as region_public_ip`;

/**
 * The routing query for a schema whose regions keep their address in `regionAddressColumn`
 * (EDGEPROXY_REGION_ADDRESS_COLUMN): the documented query itself for the documented column,
 * otherwise the same text with that one column replaced. The only place the variant is built.
 */
export function routesQuery(regionAddressColumn: string): string {
  if (regionAddressColumn === DOCUMENTED_REGION_ADDRESS_COLUMN) return ROUTES_QUERY;
  return ROUTES_QUERY.replace(REGION_ADDRESS, `r.${pg.escapeIdentifier(regionAddressColumn)} as region_public_ip`);
}

/** Every region's address, as region_public_ip (the routing query only names regions that have routes). */
export function regionAddressesQuery(regionAddressColumn: string): string {
  return `SELECT ${pg.escapeIdentifier(regionAddressColumn)} AS region_public_ip FROM regions`;
}
