/**
 * `edgeproxy serve` as users run it: the built bin (`npm run build`), with the Node flags its
 * shebang line gives (decision 0007), on the Node running this script (the pinned Node 24 under
 * `npm exec`). Its JSON log lines are followed as in the tests (test/support/cli.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, spawnLong, type LongRun } from '../../test/support/cli.js';

const BIN = 'dist/src/cli/bin.js';

/** `root`: the checkout whose build runs (another commit's, to compare in one run); this one by default. */
export function serveBuiltBin(env: Record<string, string>, root = ROOT): LongRun {
  const bin = join(root, BIN);
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`npm run build\` there first`);
  // "#!/usr/bin/env -S node --max-semi-space-size=32": the flags after `node`.
  const shebang = readFileSync(bin, 'utf8').split('\n', 1)[0]!;
  const flags = shebang.split(/\s+/).slice(shebang.split(/\s+/).indexOf('node') + 1);
  return spawnLong([bin, 'serve'], env, { nodeArgs: flags });
}
