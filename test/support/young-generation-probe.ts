// Run as `node --max-semi-space-size=32 --import tsx test/support/young-generation-probe.ts MiB`
// (test/young-generation.test.ts): one worker started with workerResourceLimits(MiB), both threads
// made to allocate until their young generation has grown to its largest; prints the two sizes.
import v8 from 'node:v8';
import { Worker } from 'node:worker_threads';
import { workerResourceLimits } from '../../src/workers/young-generation.js';

// Objects that survive a scavenge or two (a ring of 200,000), so V8 grows the semi-spaces to their limit.
const CHURN = `const ring = new Array(200000); for (let i = 0; i < 6e6; i++) ring[i % 200000] = { i, s: 'x' + i };`;
const NEW_SPACE = `require('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 1048576`;

const mib = Number(process.argv[2]);
const worker = new Worker(`${CHURN}; require('node:worker_threads').parentPort.postMessage(${NEW_SPACE});`, {
  eval: true,
  resourceLimits: workerResourceLimits(mib),
});
const workerNewSpace = await new Promise<number>((resolve, reject) => worker.once('message', resolve).once('error', reject));
new Function(CHURN)();
const mainNewSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size / 1048576;
process.stdout.write(JSON.stringify({ workerNewSpace, mainNewSpace }) + '\n');
