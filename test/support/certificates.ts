import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

/**
 * A self-signed certificate (P-256) for `names` from the system's openssl, valid from now for
 * `days`. The first name is the subject's CN; all go in subjectAltName unless `san` is false.
 */
export function makeCertificate(names: readonly string[], { days = 30, san = true } = {}): TestCertificate {
  const dir = mkdtempSync(path.join(tmpdir(), 'edgeproxy-cert-'));
  try {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    const subject = ['-subj', `/CN=${names[0]}`];
    const altNames = san ? ['-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`] : [];
    const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    const out = ['-days', String(days), '-keyout', key, '-out', cert];
    execFileSync('openssl', ['req', '-x509', ...curve, ...subject, ...altNames, ...out], { stdio: 'ignore' });
    return { certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
