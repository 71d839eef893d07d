// Keep-alive HTTPS speed by protocol (issue 11's keep-alive target): `edgeproxy serve` as users run
// it against nginx with TLS on the same certificate, in one run, targets alternated.
//
//   npm run build && npm exec -- node --import tsx bench/https-protocols.ts [--rounds 3] [--duration 8]
//     [--connections 64] [--streams 10] [--routes 100000] [--workers 1] [--baseline DIR]
//
// Needs nginx and h2load (`apt-get install -y nginx nghttp2-client`). Targets, each its own process,
// both forwarding to the same nginx backend (1 worker, `return 200`, 12-byte body), both serving one
// self-signed ECDSA P-256 certificate for bench.example (bench/support/https-targets.ts):
//   nginx      1 worker, a plain port and `listen … ssl http2` (the certificate's files), upstream keepalive
//   edgeproxy  `edgeproxy serve` from the built bin, streaming from a throwaway PostgreSQL: `--routes`
//              routes (bench.example → the backend among them) and the certificate's row in
//              edgeproxy_certificates; EDGEPROXY_WORKERS=`--workers` (1: one thread, as nginx's one
//              worker; the HTTPS port is on the main thread whatever the setting)
// Loads, h2load with `--connections` keep-alive connections for `--duration` s after a 2 s warm-up:
//   plain h1   HTTP/1.1 on the plain port: the ratio issue 11's keep-alive target is relative to
//   h1         HTTP/1.1 over TLS
//   h2         HTTP/2, one stream at a time per connection (the same concurrency as h1)
//   h2 ×m      HTTP/2, `--streams` concurrent streams per connection
// Each round runs every load on every target, the target order rotating by one per round. Printed:
// each run (req/s, the target's CPU per request from /proc, non-2xx answers and 5xx among them,
// requests left without an answer, and the warn/error lines the bin logged during the run, by
// message and code), then medians, ratios to nginx (medians of per-round ratios: of req/s, and of
// requests per CPU-second, the steadier on a shared machine) and the verdict, on req/s as issue 11 words it:
// HTTPS ÷ nginx ≥ 0.9 × plain ÷ nginx, and no 5xx or unanswered request in any of EdgeProxy's rounds
// of that load or of plain h1 (a 5xx is cheap and fast: a round with some is not comparable).
// --baseline DIR adds `edgeproxy-base`: the build in DIR (another checkout, built), in the same run.
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { LongRun } from '../test/support/cli.js';
import { h2loadAsync, type H2loadOptions } from './support/h2load.js';
import { certificateOnDisk, edgeproxyHttpsTarget, nginxHttpsTarget, type HttpsTarget } from './support/https-targets.js';
import { backendConf, startNginx } from './support/nginx.js';
import { cpuMs, freePort, has, median, stopAll } from './support/processes.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '8' },
    connections: { type: 'string', default: '64' },
    streams: { type: 'string', default: '10' },
    routes: { type: 'string', default: '100000' },
    workers: { type: 'string', default: '1' },
    baseline: { type: 'string' },
  },
});
const ROUNDS = Number(values.rounds);
const DURATION = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const STREAMS = Number(values.streams);
const ROUTES = Number(values.routes);
const NAME = 'bench.example';
const WARMUP_S = 2;

interface Load {
  readonly name: string;
  readonly tls: boolean;
  readonly protocol: 'h1' | 'h2';
  readonly streams: number;
}
const LOADS: Load[] = [
  { name: 'plain h1', tls: false, protocol: 'h1', streams: 1 },
  { name: 'h1', tls: true, protocol: 'h1', streams: 1 },
  { name: 'h2', tls: true, protocol: 'h2', streams: 1 },
  { name: `h2 ×${STREAMS}`, tls: true, protocol: 'h2', streams: STREAMS },
];

interface Target extends HttpsTarget {
  /** The bin's log, for EdgeProxy targets. */
  readonly run?: LongRun;
}

interface Figure {
  /** req/s; NaN when the target does not offer h2. */
  readonly rps: number;
  readonly cpuUsPerReq: number;
  readonly non2xx: number;
  readonly status5xx: number;
  readonly unanswered: number;
  /** warn/error lines the bin logged during the run: `msg [code]` → count. */
  readonly logged: Map<string, number>;
}

const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

/** The bin's warn and worse lines from `from` on, by message and code. */
function tally(lines: readonly Record<string, unknown>[], from: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (const l of lines.slice(from)) {
    if (l.level !== 'warn' && l.level !== 'error' && l.level !== 'fatal') continue;
    const err = l.err as { code?: unknown } | undefined;
    const code = err?.code ?? l.code;
    const key = `${String(l.msg)}${code === undefined ? '' : ` [${String(code)}]`}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

const NONE: Figure = { rps: NaN, cpuUsPerReq: NaN, non2xx: 0, status5xx: 0, unanswered: 0, logged: new Map() };

async function measure(t: Target, l: Load): Promise<Figure> {
  if (l.protocol === 'h2' && t.alpn !== 'h2') return NONE;
  const o: H2loadOptions = {
    scheme: l.tls ? 'https' : 'http',
    name: NAME,
    port: l.tls ? t.tlsPort : t.plainPort,
    protocol: l.protocol,
    clients: CONNECTIONS,
    streams: l.streams,
    seconds: DURATION,
    warmupSeconds: WARMUP_S,
  };
  const from = t.run?.lines.length ?? 0;
  const cpu0 = cpuMs(t.pid);
  const r = await h2loadAsync(o);
  // The warm-up is inside the run, and so inside the CPU window: charge it at the same rate.
  const cpuUsPerReq = ((cpuMs(t.pid) - cpu0) * 1000) / (r.rps * (DURATION + WARMUP_S));
  if (l.protocol === 'h2' && r.protocol !== 'h2') throw new Error(`${t.name}: h2load used ${r.protocol}, not h2`);
  const logged = t.run === undefined ? new Map<string, number>() : tally(t.run.lines, from);
  return { rps: r.rps, cpuUsPerReq, non2xx: r.non2xx, status5xx: r.status5xx, unanswered: r.unanswered, logged };
}

type Results = Map<string, Figure[]>; // `${load}|${target}` → one figure per round
const key = (l: Load, t: { name: string }) => `${l.name}|${t.name}`;

async function runRounds(targets: Target[]): Promise<Results> {
  const results: Results = new Map();
  for (let round = 0; round < ROUNDS; round++) {
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const l of LOADS) {
      for (const t of order) {
        const f = await measure(t, l);
        results.set(key(l, t), [...(results.get(key(l, t)) ?? []), f]);
        const logged = [...f.logged].map(([k, n]) => `${n}× ${k}`).join('; ');
        console.log(
          `  round ${round + 1} ${l.name.padEnd(8)} ${t.name.padEnd(14)} ${Number.isNaN(f.rps) ? '    n/a' : f.rps.toFixed(0).padStart(7)} req/s  ` +
            `CPU ${f.cpuUsPerReq.toFixed(0)} µs/req  non-2xx ${f.non2xx} (5xx ${f.status5xx})  unanswered ${f.unanswered}  load ${load()}` +
            (logged === '' ? '' : `  logged: ${logged}`),
        );
      }
    }
  }
  return results;
}

/** Median over rounds of `target` ÷ nginx in one load, each ratio from the same round. */
function ratio(results: Results, l: Load, target: string, pick: (f: Figure) => number = (f) => f.rps): number {
  const e = results.get(key(l, { name: target }))!;
  const n = results.get(key(l, { name: 'nginx' }))!;
  return median(e.map((f, i) => pick(f) / pick(n[i]!)));
}

/** Requests per CPU-second, up to a constant: the steadier figure on a shared machine. */
const perCpu = (f: Figure) => 1 / f.cpuUsPerReq;

/** The rounds (1-based) of `target` in `l` with a 5xx or an unanswered request. */
function badRounds(results: Results, l: Load, target: string): number[] {
  return results.get(key(l, { name: target }))!.flatMap((f, i) => (f.status5xx > 0 || f.unanswered > 0 ? [i + 1] : []));
}

function report(targets: Target[], results: Results): void {
  console.log(
    '\n| load | target | req/s (median) | rounds | ÷ nginx | CPU µs/req (median) | ÷ nginx per CPU-second | non-2xx per round (5xx) | unanswered per round |\n|---|---|---|---|---|---|---|---|---|',
  );
  for (const l of LOADS) {
    for (const t of targets) {
      const fs = results.get(key(l, t))!;
      if (Number.isNaN(fs[0]!.rps)) {
        console.log(`| ${l.name} | ${t.name} | n/a (no h2) | | | | | | |`);
        continue;
      }
      const r = t.name === 'nginx' ? 1 : ratio(results, l, t.name);
      const c = t.name === 'nginx' ? 1 : ratio(results, l, t.name, perCpu);
      console.log(
        `| ${l.name} | ${t.name} | ${Math.round(median(fs.map((f) => f.rps))).toLocaleString('en')} | ${fs.map((f) => Math.round(f.rps)).join(', ')} | ` +
          `${r.toFixed(2)}× | ${Math.round(median(fs.map((f) => f.cpuUsPerReq)))} | ${c.toFixed(2)}× | ${fs.map((f) => `${f.non2xx} (${f.status5xx})`).join(', ')} | ${fs.map((f) => f.unanswered).join(', ')} |`,
      );
    }
  }
  const [plainLoad, ...tlsLoads] = LOADS as [Load, ...Load[]];
  for (const t of targets.filter((x) => x.name !== 'nginx')) {
    const plain = ratio(results, plainLoad, t.name);
    const plainBad = badRounds(results, plainLoad, t.name);
    console.log(
      `\n${t.name}: plain h1 ÷ nginx ${plain.toFixed(3)}×, so the keep-alive target is ≥ 0.9 × that = ${(0.9 * plain).toFixed(3)}×`,
    );
    for (const l of tlsLoads) {
      const r = ratio(results, l, t.name);
      if (Number.isNaN(r)) {
        console.log(`  ${l.name}: n/a (no h2)`);
        continue;
      }
      const bad = [
        ...new Set([...plainBad.map((n) => `plain h1 round ${n}`), ...badRounds(results, l, t.name).map((n) => `${l.name} round ${n}`)]),
      ];
      const verdict = bad.length > 0 ? `NOT met (5xx or unanswered requests: ${bad.join(', ')})` : r >= 0.9 * plain ? 'met' : 'NOT met';
      const [cpu, cpuPlain] = [ratio(results, l, t.name, perCpu), ratio(results, plainLoad, t.name, perCpu)];
      console.log(
        `  ${l.name}: ÷ nginx ${r.toFixed(3)}× against ${(0.9 * plain).toFixed(3)}×: ${verdict}` +
          ` (per CPU-second: ${cpu.toFixed(3)}× against 0.9 × ${cpuPlain.toFixed(3)}× = ${(0.9 * cpuPlain).toFixed(3)}×: ${cpu >= 0.9 * cpuPlain ? 'above' : 'below'})`,
      );
    }
    const logged = new Map<string, number>();
    for (const [k, fs] of results)
      if (k.endsWith(`|${t.name}`)) for (const f of fs) for (const [m, n] of f.logged) logged.set(m, (logged.get(m) ?? 0) + n);
    console.log(
      `  warn/error lines logged during the runs: ${logged.size === 0 ? 'none' : [...logged].map(([m, n]) => `${n}× ${m}`).join('; ')}`,
    );
  }
}

async function main(): Promise<void> {
  for (const tool of ['nginx', 'h2load'])
    if (!has(tool)) throw new Error(`${tool} is not installed: apt-get install -y nginx nghttp2-client`);
  console.log(
    `# https-protocols: ${cpus().length} CPUs (${cpus()[0]?.model}), Node ${process.version}, load ${load()}; ` +
      `h2load -c${CONNECTIONS} -D${DURATION} --warm-up-time=${WARMUP_S}; ${ROUTES} routes; EDGEPROXY_WORKERS=${values.workers}; rounds ${ROUNDS}`,
  );
  const tmp = mkdtempSync(join(tmpdir(), 'edgeproxy-https-protocols-'));
  const { cert, certFile, keyFile } = certificateOnDisk(tmp, NAME);
  const stops: (() => Promise<void>)[] = [];
  try {
    const backendPort = await freePort();
    await startNginx(backendConf(tmp, backendPort), backendPort);
    const targets: Target[] = [await nginxHttpsTarget({ tmp, backendPort, name: NAME, certFile, keyFile })];
    const edgeproxies = [{ name: 'edgeproxy', root: undefined as string | undefined }];
    if (values.baseline !== undefined) edgeproxies.push({ name: 'edgeproxy-base', root: resolve(values.baseline) });
    for (const e of edgeproxies) {
      const env = { EDGEPROXY_WORKERS: values.workers };
      const started = await edgeproxyHttpsTarget({ ...e, host: NAME, backendPort, routes: ROUTES, cert, env });
      stops.push(started.stop);
      targets.push({ ...started.target, run: started.run });
      const s = started.started;
      console.log(`# ${e.name}: ${String(s.routes)} routes streamed (setup ${String(s.setupMs)} ms)`);
    }
    for (const t of targets) console.log(`# ${t.name}: ALPN offered h2, http/1.1 → ${t.alpn === false ? 'none' : t.alpn}`);
    report(targets, await runRounds(targets));
    console.log(`# load after: ${load()}`);
  } finally {
    for (const stop of stops) await stop();
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
