import type { ArgumentsCamelCase, Argv } from 'yargs';
import { MAX_ROUTE_LIMIT } from '../admin/routes-view.js';
import { ConfigError, resolveConfig, resolveOptions, type Config } from '../config/config.js';
import { parseDuration } from '../config/duration.js';
import { describePgError } from '../db/errors.js';
import { CommandFailed, UsageError } from './exit.js';
import { withConfigOptions } from './options.js';
import { resyncCommand } from './resync.js';
import { routesCommand } from './routes.js';

// Each command's definition for yargs (name, options, examples, epilogue) and its handler, which
// turns the parsed flags into the arguments of the command's implementation (resync.ts, routes.ts...).

const out = (text: string) => void process.stdout.write(text);
const err = (text: string) => void process.stderr.write(text);

/** Bad usage or configuration: one line on stderr, exit status 2. */
export function usageError(message: string): never {
  process.stderr.write(`edgeproxy: ${message}\n`);
  process.exit(2);
}

/** Runs a command: usage errors exit 2, failures exit 1 with one line on stderr (never the password). */
async function run(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) usageError(e.message);
    if (e instanceof CommandFailed) {
      err(`edgeproxy: ${e.message}\n`);
      process.exit(1);
    }
    const d = describePgError(e);
    // Database and socket errors are the operator's to fix: their message is enough. Anything else is a bug: show the stack.
    err(
      d.code !== undefined
        ? `edgeproxy: ${d.message} (${d.code})\n`
        : `edgeproxy: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    process.exit(1);
  }
}

function options<K extends keyof Config, O extends K = never>(
  keys: readonly K[],
  args: Record<string, unknown>,
  optional: readonly O[] = [],
) {
  return resolveOptions(keys, args, process.env, optional);
}

function timeoutOf(args: Record<string, unknown>): number {
  const raw = String(args.timeout);
  const ms = parseDuration(raw);
  if (ms === undefined || ms <= 0) throw new UsageError(`--timeout: ${JSON.stringify(raw)} is not a positive duration (examples: 30s, 2m)`);
  return ms;
}

function limitOf(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_ROUTE_LIMIT)
    throw new UsageError(`--limit: must be an integer from 1 to ${MAX_ROUTE_LIMIT}`);
  return limit;
}

const jsonOption = <T>(y: Argv<T>, what: string) =>
  y.option('json', { type: 'boolean', default: false, describe: `Print ${what} as one JSON document (for scripts)` });

/** A yargs command module; the handler's arguments are typed by the options its builder declares. */
function spec<U>(module: {
  readonly command: string | readonly string[];
  readonly describe: string;
  readonly builder: (y: Argv) => Argv<U>;
  readonly handler: (args: ArgumentsCamelCase<U>) => Promise<void>;
}) {
  return module;
}

export const serveSpec = spec({
  command: ['serve', '$0'],
  describe: 'Run the proxy (the default command)',
  builder: (y) =>
    withConfigOptions(y).example([
      ['EDGEPROXY_DATABASE_URL=postgres://edge@db/zeitwork EDGEPROXY_REGION_ID=<uuid> $0', 'serve with settings from the environment'],
      ['$0 serve --database-url postgres://edge@db/zeitwork --region-id <uuid> --http-addr 127.0.0.1:8080', 'the same with flags'],
    ]),
  handler: async (args) => {
    let config;
    try {
      config = resolveConfig(args as Record<string, unknown>, process.env);
    } catch (err) {
      if (err instanceof ConfigError) usageError(err.message);
      throw err;
    }
    // Loaded on demand, like doctor and migrate: the client commands and --help start faster.
    const { serve } = await import('./serve.js');
    await serve(config);
  },
});

export const resyncSpec = spec({
  command: 'resync',
  describe:
    'Ask the proxy running on this host (its admin API) to reload the whole route table now; wait and print what changed. SIGHUP to the proxy does the same.',
  builder: (y) =>
    jsonOption(withConfigOptions(y, ['adminAddr']), 'the outcome')
      .option('verbose', {
        alias: 'v',
        type: 'boolean',
        default: false,
        describe: 'Also list the hosts added (+), removed (-) and changed (~)',
      })
      .option('timeout', { type: 'string', default: '60s', describe: 'How long to wait for the resync to finish' })
      .example([
        ['$0 resync', 'reload now; prints e.g. "resync done in 41.2 ms: 1200 routes (3 added, 0 removed, 1 changed)"'],
        ['$0 resync -v --admin-addr 127.0.0.1:9191', 'a proxy whose admin API listens elsewhere; list the hosts'],
        ['kill -HUP $(pidof edgeproxy)', 'the same, without waiting for the outcome (it is logged)'],
      ])
      .epilogue('Exit status: 0 done, 1 the proxy is unreachable or the resync failed, 2 bad usage.'),
  handler: (args) =>
    run(() =>
      resyncCommand(
        { adminAddr: options(['adminAddr'], args).adminAddr, timeoutMs: timeoutOf(args), json: args.json, verbose: args.verbose },
        out,
      ),
    ),
});

export const routesSpec = spec({
  command: 'routes [host]',
  describe: "Show the running proxy's route table, or how one host would be routed right now and why",
  builder: (y) =>
    jsonOption(withConfigOptions(y, ['adminAddr']), 'the table or the explanation')
      .positional('host', {
        type: 'string',
        describe: 'A host name, as in a Host header (port, case and a trailing dot do not matter)',
      })
      .option('timeout', { type: 'string', default: '10s', describe: 'How long to wait for the proxy' })
      .option('limit', {
        type: 'number',
        default: 1000,
        describe: 'Table: show at most this many routes, the first by host name (1-100000)',
      })
      .option('contains', { type: 'string', describe: 'Table: only hosts containing this text' })
      .example([
        ['$0 routes', 'the table: host, kind (same-region or cross-region), target, VM, VM region'],
        ['$0 routes shop.example.com', 'not found / same region with the last health check / cross region via which load balancer'],
        ['$0 routes --json | jq \'.routes[] | select(.kind == "cross-region")\'', 'for scripts'],
      ])
      .epilogue(
        'Exit status: 0 shown (with a host: it is routed), 1 the host is not routed, the table is not loaded yet, or the proxy is unreachable; 2 bad usage.',
      ),
  handler: (args) =>
    run(() =>
      routesCommand(
        {
          adminAddr: options(['adminAddr'], args).adminAddr,
          host: args.host,
          limit: limitOf(args.limit),
          contains: args.contains,
          timeoutMs: timeoutOf(args),
          json: args.json,
        },
        out,
      ),
    ),
});

const certsRenewSpec = spec({
  command: 'renew <name>',
  describe:
    "Ask the proxy running on this host to order a new certificate for NAME now (ignoring its renewal time and backoff, not the fleet's order lock); wait and print the new not-after",
  builder: (y) =>
    jsonOption(withConfigOptions(y, ['adminAddr']), 'the outcome')
      .positional('name', { type: 'string', demandOption: true, describe: 'A host name with a route (HTTP-01: no wildcard)' })
      .option('timeout', { type: 'string', default: '120s', describe: 'How long to wait for the order' })
      .example([
        [
          '$0 certs renew shop.example.com',
          'prints e.g. "renewed shop.example.com: certificate <id> from <issuer>, not after 2026-03-04T10:00:00.000Z"',
        ],
      ])
      .epilogue(
        "Exit status: 0 renewed, 1 the name has no route, this proxy issues no certificates, the name is being ordered now (the fleet lock), the order failed (with the CA's words) or the proxy is unreachable; 2 bad usage.",
      ),
  handler: (args) =>
    run(async () => {
      const { certsRenewCommand } = await import('./certs-renew.js');
      await certsRenewCommand(
        { adminAddr: options(['adminAddr'], args).adminAddr, name: args.name, timeoutMs: timeoutOf(args), json: args.json },
        out,
      );
    }),
});

export const certsSpec = spec({
  command: 'certs',
  describe: "Show the running proxy's stored TLS certificates: names, issuer, not-after and state, soonest to expire first",
  builder: (y) =>
    jsonOption(withConfigOptions(y, ['adminAddr']), 'the certificates')
      .command(certsRenewSpec)
      .option('name', { type: 'string', describe: 'Only certificates naming this (a wildcard as *.example.com)' })
      .option('timeout', { type: 'string', default: '10s', describe: 'How long to wait for the proxy' })
      .example([
        ['$0 certs', 'every stored certificate; STATE is serving, standby, not-yet-valid, expired or unusable (with its error code)'],
        ['$0 certs --name shop.example.com --json', 'for scripts'],
        ['$0 certs renew shop.example.com', 'a new certificate for the name now (see `$0 certs renew --help`)'],
      ])
      .epilogue('Exit status: 0 shown, 1 the table is not loaded yet or the proxy is unreachable, 2 bad usage.'),
  handler: (args) =>
    run(async () => {
      const { certsCommand } = await import('./certs.js');
      await certsCommand(
        { adminAddr: options(['adminAddr'], args).adminAddr, name: args.name, timeoutMs: timeoutOf(args), json: args.json },
        out,
      );
    }),
});

export const migrateSpec = spec({
  command: 'migrate',
  describe:
    'Create or update the tables EdgeProxy owns (TLS certificates, ACME state) in EDGEPROXY_DATABASE_URL; applied files are skipped',
  builder: (y) =>
    jsonOption(withConfigOptions(y, ['databaseUrl']), 'what was applied')
      .option('dev-schema', {
        type: 'boolean',
        default: false,
        describe:
          "Also create the development copy of the control plane's schema (domains, deployments, vms, regions); never in production",
      })
      .option('dry-run', {
        type: 'boolean',
        default: false,
        describe: 'List the migrations that would run, without running them (only the bookkeeping tables are created)',
      })
      .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: "Show node-pg-migrate's progress on stderr" })
      .example([
        ['EDGEPROXY_DATABASE_URL=postgres://edgeproxy_admin@primary:5432/app $0 migrate', "create EdgeProxy's tables on the primary"],
        ['EDGEPROXY_DATABASE_URL=postgres://postgres@127.0.0.1:5432/dev $0 migrate --dev-schema', 'a development database: both schemas'],
        ['$0 migrate --dry-run --database-url postgres://postgres@127.0.0.1:5432/dev', 'what would run'],
      ])
      .epilogue(
        "Run it on the primary. EdgeProxy's tables are recorded in edgeproxy_migrations, the development schema in pgmigrations. The production control-plane schema belongs to the control plane: --dev-schema is for development and tests only.",
      ),
  handler: (args) =>
    run(async () => {
      const { migrateCommand } = await import('./migrate.js');
      await migrateCommand(
        {
          databaseUrl: options(['databaseUrl'], args).databaseUrl,
          devSchema: args['dev-schema'],
          dryRun: args['dry-run'],
          json: args.json,
          verbose: args.verbose,
        },
        out,
        err,
      );
    }),
});

const DOCTOR_OPTIONS = [
  'databaseUrl',
  'publication',
  'syncMode',
  'regionAddressColumn',
  'regionId',
  'primaryDatabaseUrl',
  'tlsStorageKey',
  'tlsStorageKeyFile',
  'acmeDirectoryUrl',
  'acmeCaRootsFile',
] as const;

export const doctorSpec = spec({
  command: 'doctor',
  describe: 'Check a database for everything EdgeProxy needs; one line per check, with the fix for each failure',
  builder: (y) =>
    jsonOption(withConfigOptions(y, DOCTOR_OPTIONS, ['regionId']), 'the checks')
      .example([
        ['EDGEPROXY_DATABASE_URL=postgres://edge@replica/zeitwork $0 doctor', 'check the database a proxy would use'],
        ['$0 doctor --sync-mode poll --database-url postgres://edge@replica/zeitwork', 'skip the streaming checks (polling only)'],
        ['$0 doctor --json | jq \'.checks[] | select(.status == "fail")\'', 'for scripts'],
      ])
      .epilogue(
        'Checks: connect, server version, primary or standby (and whether it can decode on a standby), wal_level, the publication and its four tables, ' +
          'primary keys, REPLICATION attribute, free replication slots and WAL senders, read access, the routing query (the columns it reads, with likely candidates when one is missing) and how many routes it returns, ' +
          'rows it cannot route, duplicate domain names, the certificate tables (readable) and the storage key (opens every stored certificate), the ACME directory (answers as one; skipped when EDGEPROXY_ACME_DIRECTORY_URL is off) and the primary (EDGEPROXY_PRIMARY_DATABASE_URL: not a standby, and this role may write what issuance writes; skipped when unset). --region-id is optional here (splits the route count by region).\n' +
          'Exit status: 0 no check failed (warnings allowed), 1 a check failed, 2 bad usage.',
      ),
  handler: (args) =>
    run(async () => {
      const o = options(DOCTOR_OPTIONS, args, ['regionId']);
      const { doctorCommand } = await import('./doctor.js');
      await doctorCommand({ ...o, regionId: o.regionId, json: args.json }, out);
    }),
});
