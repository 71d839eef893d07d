import type { Argv } from 'yargs';
import { OPTIONS, type Config } from '../config/config.js';

/**
 * Declares configuration options as flags: all of them (serve), or the ones a command uses. No
 * yargs defaults: an absent flag must fall back to its environment variable, so the default is
 * only shown in --help and applied by resolveConfig / resolveOptions.
 */
/** The default as --help shows it: the value, `""` for an empty one, or `required`. */
export function helpDefault(o: (typeof OPTIONS)[number]): string {
  const d: string | undefined = 'default' in o ? o.default : undefined;
  if (d === undefined) return 'required';
  return d === '' ? '""' : d;
}

export function withConfigOptions<T>(y: Argv<T>, keys?: readonly (keyof Config)[], optional: readonly (keyof Config)[] = []): Argv<T> {
  let out = y;
  for (const o of OPTIONS) {
    if (keys !== undefined && !keys.includes(o.key)) continue;
    out = out.option(o.flag, {
      type: 'string',
      describe: `${o.description} [env ${o.env}]`,
      defaultDescription: optional.includes(o.key) ? 'optional' : helpDefault(o),
      group: 'Configuration (flag over env var over default):',
    });
  }
  return out;
}
