/**
 * The clients of the benchmarks at scale (bench/route-scale.ts, bench/worker-scale.ts): plain
 * node:http requests with a Host header, paced load on fresh connections, the process's RSS, GC
 * pauses from /metrics (every thread's), latency summaries.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { host } from './scale-seed.js';

export const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 4 });

/** A keep-alive request is sent again once when the server had closed its idle connection meanwhile. */
export async function get(
  port: number,
  path: string,
  hostHeader: string,
  agent: http.Agent | false,
): Promise<{ status: number; body: string }> {
  try {
    return await getOnce(port, path, hostHeader, agent);
  } catch (err) {
    if (agent === false || (err as NodeJS.ErrnoException).code !== 'ECONNRESET') throw err;
    return getOnce(port, path, hostHeader, agent);
  }
}

/** One request to 127.0.0.1:`port` (GET unless told), its status and body. */
export function getOnce(
  port: number,
  path: string,
  hostHeader: string,
  agent: http.Agent | false,
  method = 'GET',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', method, path, headers: { host: hostHeader }, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Asks for `h` (keep-alive) every `gapMs` until it answers from `ip`; ms since `since`. The gap
 * keeps the probe from loading the machine it measures: asked back to back, its requests (and the
 * VMs answering them, in this process) took a core of two from the main thread applying the
 * change, and a move of 1,000 routes measured twice what it did with the main thread serving. So
 * the figure is late by up to a gap (plus a timer's slack, ~1 ms).
 */
export async function routedAfter(port: number, h: string, ip: string, since: number, gapMs = 1): Promise<number> {
  for (;;) {
    const r = await get(port, '/', h, keepAlive);
    if (r.body === ip) return performance.now() - since;
    if (performance.now() - since > 60_000) throw new Error(`${h} not routed to ${ip} within 60 s (answer ${r.status} ${r.body})`);
    await sleep(gapMs);
  }
}

/**
 * Paced requests, each on a fresh connection, to random hosts; latencies in ms. An answer other
 * than 200 throws, unless `failures` is given: then it is counted there (by status) and left out.
 */
export async function pacedLoad(port: number, n: number, count: number, rate: number, failures?: Map<number, number>): Promise<number[]> {
  const out: number[] = [];
  const inflight: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    const h = host(Math.floor(Math.random() * n));
    const t = performance.now();
    inflight.push(
      get(port, '/', h, false).then((r) => {
        if (r.status === 200) out.push(performance.now() - t);
        else if (failures !== undefined) failures.set(r.status, (failures.get(r.status) ?? 0) + 1);
        else throw new Error(`${h}: ${r.status} ${r.body.slice(0, 100)}`);
      }),
    );
  }
  await Promise.all(inflight);
  return out;
}

export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

/** Pause counts by bucket from /metrics (edgeproxy_nodejs_gc_duration_seconds, every kind). */
export async function gcBuckets(adminPort: number): Promise<Map<string, number>> {
  const text = (await get(adminPort, '/metrics', '127.0.0.1', keepAlive)).body;
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^edgeproxy_nodejs_gc_duration_seconds_(bucket\{le="([^"]+)"|count\{)[^}]*\} (\S+)$/gm)) {
    const key = m[2] ?? 'count';
    out.set(key, (out.get(key) ?? 0) + Number(m[3]));
  }
  return out;
}

export function gcDelta(before: Map<string, number>, after: Map<string, number>) {
  const d = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  const pauses = d('count');
  const les = [...after.keys()].filter((k) => k !== 'count' && k !== '+Inf').sort((a, b) => Number(a) - Number(b));
  // The smallest bucket holding every pause is the bound on the longest one.
  const maxBound = les.find((le) => d(le) === pauses) ?? '+Inf';
  return { pauses, over10ms: pauses - d('0.01'), longestAtMostS: maxBound };
}

const pct = (s: number[], p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
export function summary(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const r = (n: number) => Math.round(n * 100) / 100;
  return { n: s.length, p50: r(pct(s, 0.5)), p99: r(pct(s, 0.99)), max: r(s[s.length - 1]!) };
}
