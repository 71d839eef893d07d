import type { ExplainView, TableView } from '../admin/routes-view.js';
import type { ListenAddress } from '../config/config.js';
import { formatUpstream } from '../proxy/decide.js';
import { adminBaseUrl, callAdmin } from './admin-client.js';
import { CommandFailed } from './exit.js';
import { formatTable } from './table.js';

export interface RoutesArgs {
  readonly adminAddr: ListenAddress | undefined;
  readonly host: string | undefined;
  /** Table only: at most this many routes, and only hosts containing `contains`. */
  readonly limit: number;
  readonly contains: string | undefined;
  readonly timeoutMs: number;
  readonly json: boolean;
}

/**
 * `edgeproxy routes [host]`: the running proxy's table (GET /routes), or how one host would be
 * routed now and why (GET /routes/<host>). With a host, exits 1 when it is not routed.
 */
export async function routesCommand(args: RoutesArgs, out: (text: string) => void): Promise<void> {
  const base = adminBaseUrl(args.adminAddr);
  if (args.host === undefined) {
    const q = new URLSearchParams({ limit: String(args.limit), ...(args.contains === undefined ? {} : { contains: args.contains }) });
    const reply = await callAdmin(base, `/routes?${q}`, { timeoutMs: args.timeoutMs });
    const view = reply.body as TableView;
    if (args.json) {
      out(`${JSON.stringify(view)}\n`);
      if (!view.ready) throw new CommandFailed('the route table is not loaded yet');
      return;
    }
    if (!view.ready) throw new CommandFailed('the route table is not loaded yet (the proxy answers 503 to every request)');
    out(
      formatTable(
        ['HOST', 'KIND', 'TARGET', 'VM', 'VM REGION'],
        view.routes.map((r) => [r.host, r.kind, r.target, formatUpstream({ ip: r.vmIp, port: r.vmPort }), r.vmRegionId]),
      ),
    );
    const s = view.sync;
    out(
      `${view.count} route${view.count === 1 ? '' : 's'}${args.contains === undefined ? '' : ` containing "${args.contains}"`}` +
        `${view.truncated ? ` (the first ${view.routes.length} shown; --limit)` : ''}; this proxy's region ${view.regionId}; snapshot ${view.generation} from ${view.source}, published ${view.publishedAt}` +
        `${view.position === null ? '' : ` at LSN ${view.position.lsn}`}; sync mode ${s.mode}, fed by ${s.feeding}, state ${s.state}` +
        `${s.streamError === undefined ? '' : ` (${s.streamError.code}: ${s.streamError.message})`}\n`,
    );
    return;
  }
  const reply = await callAdmin(base, `/routes/${encodeURIComponent(args.host)}`, { timeoutMs: args.timeoutMs });
  const view = reply.body as ExplainView;
  if (args.json) out(`${JSON.stringify(view)}\n`);
  else {
    out(`${view.host ?? view.query}: ${view.decision}\n  ${view.reason}\n`);
    if (view.route !== null) {
      const r = view.route;
      out(`  route: VM ${r.vmIp}:${r.vmPort} in region ${r.vmRegionId}; that region's load balancer ${r.regionPublicIp}\n`);
    }
  }
  if (view.decision === 'not-found' || view.decision === 'not-ready')
    throw new CommandFailed(
      view.decision === 'not-ready' ? 'the route table is not loaded yet' : `${view.host ?? view.query} is not routed`,
    );
}
