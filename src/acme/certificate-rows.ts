import type pg from 'pg';

/** A name and the validity of its certificate that expires last (what renewal decides on). */
export interface LatestCertificate {
  readonly name: string;
  readonly notBefore: number;
  readonly notAfter: number;
}

/**
 * Per name, the stored certificate that expires last, read on the primary (renewal is background
 * work, never on the request path). Wildcard names are left out: HTTP-01 cannot issue them.
 */
export async function latestCertificates(pool: pg.Pool): Promise<LatestCertificate[]> {
  const { rows } = await pool.query<{ name: string; not_before: Date; not_after: Date }>(
    `SELECT DISTINCT ON (name) name, not_before, not_after
       FROM edgeproxy_certificates, unnest(names) AS name
      WHERE name NOT LIKE '*.%'
      ORDER BY name, not_after DESC`,
  );
  return rows.map((r) => ({ name: r.name, notBefore: r.not_before.getTime(), notAfter: r.not_after.getTime() }));
}

/** The certificate of `name` that expires last, or undefined (checked again once the order lock is held). */
export async function latestCertificate(pool: pg.Pool, name: string): Promise<LatestCertificate | undefined> {
  const { rows } = await pool.query<{ not_before: Date; not_after: Date }>(
    'SELECT not_before, not_after FROM edgeproxy_certificates WHERE $1 = ANY (names) ORDER BY not_after DESC LIMIT 1',
    [name],
  );
  const row = rows[0];
  return row === undefined ? undefined : { name, notBefore: row.not_before.getTime(), notAfter: row.not_after.getTime() };
}

/** A certificate row removed by `deleteSupersededExpired`. */
export interface DeletedCertificate {
  readonly id: string;
  readonly names: readonly string[];
  readonly notAfter: number;
}

/**
 * Deletes, on the primary, each certificate row past its not-after for which every one of its
 * names has a newer row that is valid now (begun, not expired, expiring later); returns them.
 * Never the only certificate of a name, even an expired one: a name whose renewal failed keeps
 * its last row for the operator to see. No lock: one statement, judged by one `now()`, that only
 * removes expired rows, so passes of several proxies at once cannot remove what another needs.
 */
export async function deleteSupersededExpired(pool: pg.Pool): Promise<DeletedCertificate[]> {
  const { rows } = await pool.query<{ id: string; names: string[]; not_after: Date }>(
    `DELETE FROM edgeproxy_certificates AS old
      WHERE old.not_after <= now()
        AND NOT EXISTS (
          SELECT 1 FROM unnest(old.names) AS name
           WHERE NOT EXISTS (
             SELECT 1 FROM edgeproxy_certificates AS newer
              WHERE name = ANY (newer.names) AND newer.not_before <= now() AND newer.not_after > now()
                AND newer.not_after > old.not_after))
      RETURNING old.id, old.names, old.not_after`,
  );
  return rows.map((r) => ({ id: r.id, names: r.names, notAfter: r.not_after.getTime() }));
}
