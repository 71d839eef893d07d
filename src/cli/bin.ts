#!/usr/bin/env -S node --max-semi-space-size=32
// The `edgeproxy` executable: the runtime check first, then the CLI (loaded only once it can run).
import { runtimeProblem } from './runtime.js';

const problem = runtimeProblem(process.versions.node, process.execPath);
if (problem !== undefined) {
  process.stderr.write(`edgeproxy: ${problem}\n`);
  process.exit(1);
}
await import('./main.js');
