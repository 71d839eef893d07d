import type { ResyncResponse } from '../admin/server.js';
import type { ListenAddress } from '../config/config.js';
import { adminBaseUrl, callAdmin } from './admin-client.js';
import { CommandFailed } from './exit.js';

export interface ResyncArgs {
  readonly adminAddr: ListenAddress | undefined;
  readonly timeoutMs: number;
  readonly json: boolean;
  readonly verbose: boolean;
}

/** `edgeproxy resync`: POST /resync on the local proxy, wait, print what changed. */
export async function resyncCommand(args: ResyncArgs, out: (text: string) => void): Promise<void> {
  const base = adminBaseUrl(args.adminAddr);
  const reply = await callAdmin(base, '/resync', { method: 'POST', timeoutMs: args.timeoutMs });
  const body = reply.body as ResyncResponse;
  if (args.json) out(`${JSON.stringify(body)}\n`);
  if (!body.ok) throw new CommandFailed(`resync failed: ${body.error ?? `admin API answered ${reply.status}`}`);
  if (args.json) return;
  const { added, removed, changed } = body;
  out(
    `resync done in ${body.durationMs} ms: ${body.routes} route${body.routes === 1 ? '' : 's'} ` +
      `(${added.length} added, ${removed.length} removed, ${changed.length} changed)\n`,
  );
  if (args.verbose) {
    for (const h of added) out(`  + ${h}\n`);
    for (const h of removed) out(`  - ${h}\n`);
    for (const h of changed) out(`  ~ ${h}\n`);
  }
}
