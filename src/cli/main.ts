import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ConfigError } from '../config/config.js';
import { VERSION } from '../version.js';
import { certsSpec, doctorSpec, migrateSpec, resyncSpec, routesSpec, serveSpec, usageError } from './commands.js';

/** The `edgeproxy` command line: its commands (see commands.ts), --help, --version and usage errors. */
export async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('edgeproxy')
    .usage(
      '$0 [command] [options]\n\nHTTP edge proxy routing each request by Host to the VM serving the domain, from routing state in PostgreSQL.',
    )
    .command(serveSpec)
    .command(resyncSpec)
    .command(routesSpec)
    .command(certsSpec)
    .command(migrateSpec)
    .command(doctorSpec)
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
