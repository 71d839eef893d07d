import type { CertificatesView } from '../admin/certificates-view.js';
import type { ListenAddress } from '../config/config.js';
import { adminBaseUrl, callAdmin } from './admin-client.js';
import { CommandFailed } from './exit.js';
import { formatTable } from './table.js';

export interface CertsArgs {
  readonly adminAddr: ListenAddress | undefined;
  /** Only certificates naming this (exactly as stored: `*.example.com` for a wildcard). */
  readonly name: string | undefined;
  readonly timeoutMs: number;
  readonly json: boolean;
}

/** `edgeproxy certs`: the running proxy's stored certificates (GET /certificates), soonest to expire first. */
export async function certsCommand(args: CertsArgs, out: (text: string) => void): Promise<void> {
  const q = args.name === undefined ? '' : `?${new URLSearchParams({ name: args.name })}`;
  const reply = await callAdmin(adminBaseUrl(args.adminAddr), `/certificates${q}`, { timeoutMs: args.timeoutMs });
  const view = reply.body as CertificatesView;
  if (args.json) out(`${JSON.stringify(view)}\n`);
  if (!view.ready) throw new CommandFailed('the route table is not loaded yet');
  if (args.json) return;
  out(
    formatTable(
      ['NAMES', 'ISSUER', 'NOT AFTER', 'STATE', 'ID'],
      view.certificates.map((c) => [
        c.names.join(',') || '-',
        c.issuer ?? '-',
        c.notAfter ?? '-',
        c.problem === null ? c.state : `${c.state} (${c.problem})`,
        c.id,
      ]),
    ),
  );
  out(`${view.count} certificate${view.count === 1 ? '' : 's'}${args.name === undefined ? '' : ` naming ${args.name}`}\n`);
}
