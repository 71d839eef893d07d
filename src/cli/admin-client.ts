import type { ListenAddress } from '../config/config.js';
import { formatUpstream } from '../proxy/decide.js';
import { CommandFailed, UsageError } from './exit.js';

/**
 * The URL `resync` and `routes` use to reach the admin API of the proxy on this host, from the
 * same EDGEPROXY_ADMIN_ADDR the proxy listens on. A wildcard listen address is reached on loopback.
 */
export function adminBaseUrl(addr: ListenAddress | undefined): string {
  if (addr === undefined) {
    throw new UsageError(
      'the admin API address is empty (EDGEPROXY_ADMIN_ADDR or --admin-addr): this command talks to the running proxy through it',
    );
  }
  let host = addr.host ?? '127.0.0.1';
  if (host === '0.0.0.0') host = '127.0.0.1';
  if (host === '::') host = '::1';
  return `http://${formatUpstream({ ip: host, port: addr.port })}`;
}

export interface AdminReply {
  readonly status: number;
  readonly body: unknown;
}

/** One request to the admin API; unreachable, timed out or not JSON → CommandFailed with a hint. */
export async function callAdmin(base: string, path: string, opts: { method?: string; timeoutMs: number }): Promise<AdminReply> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { method: opts.method ?? 'GET', signal: AbortSignal.timeout(opts.timeoutMs) });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    if (e.name === 'TimeoutError') throw new CommandFailed(`no answer from the proxy's admin API at ${base} within ${opts.timeoutMs} ms`);
    const why = e.cause?.code ?? e.cause?.message ?? e.message;
    throw new CommandFailed(
      `cannot reach the proxy's admin API at ${base} (${why}): is \`edgeproxy serve\` running on this host, with the same EDGEPROXY_ADMIN_ADDR?`,
    );
  }
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as unknown };
  } catch {
    throw new CommandFailed(`the admin API at ${base} answered ${res.status} with something that is not JSON: ${text.slice(0, 200)}`);
  }
}
