import type { Argv } from 'yargs';
import { OPTIONS } from '../config/config.js';

/**
 * Declares every configuration option as a flag. No yargs defaults: an absent flag must fall back
 * to its environment variable, so the default is only shown in --help and applied by resolveConfig.
 */
export function withConfigOptions<T>(y: Argv<T>): Argv<T> {
  let out = y;
  for (const o of OPTIONS) {
    out = out.option(o.flag, {
      type: 'string',
      describe: `${o.description} [env ${o.env}]`,
      defaultDescription: 'default' in o ? o.default : 'required',
      group: 'Configuration (flag over env var over default):',
    });
  }
  return out;
}
