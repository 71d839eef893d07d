/**
 * Node targets run as plain JavaScript bundles (esbuild, as installed with tsx), like the compiled
 * service: tsx itself compiles with keepNames, which adds a defineProperty call to every closure
 * created. Falls back to tsx when esbuild cannot be loaded.
 */
import { basename, join } from 'node:path';

/** The node arguments that run `entry` (a .ts file) as a bundle, or through tsx. */
export async function nodeArgs(entry: string): Promise<string[]> {
  try {
    const { build } = await import('esbuild');
    const outfile = join('node_modules', '.cache', 'edgeproxy-bench', basename(entry).replace(/\.ts$/, '.mjs'));
    await build({
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      outfile,
      logLevel: 'silent',
    });
    return [outfile];
  } catch (err) {
    console.log(`# esbuild unavailable (${String(err)}): running ${entry} through tsx`);
    return ['--import', 'tsx', entry];
  }
}
