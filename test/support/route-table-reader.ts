/**
 * A worker thread for test/table-route-table.test.ts: opens each version it is sent (a
 * RouteTable descriptor) and answers `get` for the hosts asked, from the shared buffers.
 */
import { parentPort } from 'node:worker_threads';
import { RouteTable, type RouteTableDescriptor } from '../../src/table/route-table.js';

const opened: RouteTable[] = [];
parentPort!.on('message', (m: { open?: RouteTableDescriptor; version?: number; hosts?: readonly string[] }) => {
  if (m.open !== undefined) {
    opened.push(RouteTable.open(m.open, opened[opened.length - 1]));
    parentPort!.postMessage({ opened: opened.length - 1 });
    return;
  }
  const table = opened[m.version!]!;
  parentPort!.postMessage({ size: table.size, routes: m.hosts!.map((h) => table.get(h) ?? null) });
});
