#!/usr/bin/env node
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ConfigError, resolveConfig } from '../config/config.js';
import { VERSION } from '../version.js';
import { withConfigOptions } from './options.js';
import { serve } from './serve.js';

/** Bad usage or configuration: one line on stderr, exit status 2. */
function usageError(message: string): never {
  process.stderr.write(`edgeproxy: ${message}\n`);
  process.exit(2);
}

export async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('edgeproxy')
    .usage('$0 [command] [options]\n\nHTTP edge proxy routing each request by Host to the VM serving the domain, from routing state in PostgreSQL.')
    .command(
      ['serve', '$0'],
      'Run the proxy (the default command)',
      (y) =>
        withConfigOptions(y).example([
          ['EDGEPROXY_DATABASE_URL=postgres://edge@db/zeitwork EDGEPROXY_REGION_ID=<uuid> $0', 'serve with settings from the environment'],
          ['$0 serve --database-url postgres://edge@db/zeitwork --region-id <uuid> --http-addr 127.0.0.1:8080', 'the same with flags'],
        ]),
      async (args) => {
        let config;
        try {
          config = resolveConfig(args as Record<string, unknown>, process.env);
        } catch (err) {
          if (err instanceof ConfigError) usageError(err.message);
          throw err;
        }
        await serve(config);
      },
    )
    .strict()
    .version(VERSION)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((msg, err) => {
      if (err !== undefined && err !== null && !(err instanceof ConfigError)) throw err;
      usageError((msg ?? err?.message ?? 'invalid usage').split('\n')[0]!);
    })
    .parseAsync();
}

await main(hideBin(process.argv));
