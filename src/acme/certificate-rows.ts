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
