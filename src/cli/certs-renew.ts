import type { RenewResponse } from '../admin/certificate-renewal.js';
import type { ListenAddress } from '../config/config.js';
import { adminBaseUrl, callAdmin } from './admin-client.js';
import { CommandFailed } from './exit.js';

export interface CertsRenewArgs {
  readonly adminAddr: ListenAddress | undefined;
  readonly name: string;
  readonly timeoutMs: number;
  readonly json: boolean;
}

/** `edgeproxy certs renew NAME`: POST /certificates/NAME/renew on the local proxy, wait for the order, print the outcome. */
export async function certsRenewCommand(args: CertsRenewArgs, out: (text: string) => void): Promise<void> {
  const base = adminBaseUrl(args.adminAddr);
  const reply = await callAdmin(base, `/certificates/${encodeURIComponent(args.name)}/renew`, {
    method: 'POST',
    timeoutMs: args.timeoutMs,
  });
  const body = reply.body as RenewResponse;
  if (args.json) out(`${JSON.stringify(body)}\n`);
  if (!body.ok) {
    const why = body.error ?? `the admin API answered ${reply.status}`;
    throw new CommandFailed(`renewal of ${args.name} failed: ${why}${body.code === undefined ? '' : ` (${body.code})`}`);
  }
  if (!args.json) out(`renewed ${body.name}: certificate ${body.id} from ${body.issuer}, not after ${body.notAfter}\n`);
}
