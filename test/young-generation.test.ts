import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

/** new_space sizes (MiB) of a worker given `mib` and of the main thread, in a process started as the bin starts it. */
function probe(mib: number): { workerNewSpace: number; mainNewSpace: number } {
  const out = execFileSync(
    process.execPath,
    ['--max-semi-space-size=32', '--import', 'tsx', 'test/support/young-generation-probe.ts', String(mib)],
    { encoding: 'utf8' },
  );
  return JSON.parse(out) as { workerNewSpace: number; mainNewSpace: number };
}

describe('workerResourceLimits (EDGEPROXY_WORKER_YOUNG_GENERATION)', () => {
  it("sizes a worker's young generation from its limit, not from the bin's --max-semi-space-size=32, which the main thread keeps", () => {
    const small = probe(16);
    const large = probe(48);
    // --max-semi-space-size=32 alone gives every isolate a 64 MiB new space (two 32 MiB semi-spaces).
    assert.equal(small.mainNewSpace, 64);
    assert.equal(large.mainNewSpace, 64);
    // V8 splits maxYoungGenerationSizeMb in three (two semi-spaces, the new large-object space): 48 → a 2 × 16 MiB new space.
    assert.ok(small.workerNewSpace <= 16, `worker new_space ${small.workerNewSpace} MiB with a 16 MiB young generation`);
    assert.equal(large.workerNewSpace, 32);
  });
});
