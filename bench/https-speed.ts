// HTTPS speed (issue 11): EdgeProxy against nginx with TLS on the same ECDSA P-256 certificate, in
// one invocation, targets alternated.
//
//   npm run build && npm exec -- node --import tsx bench/https-speed.ts [--rounds 3] [--duration 10]
//     [--connections 64] [--streams 10] [--handshake-concurrency 16] [--groups X25519]
//     [--measures plain-h1,tls-h1,tls-h2,full,resumed] [--node-floor] [--baseline DIR] [--workers 1,2]
//
// Needs nginx and h2load (`apt-get install -y nginx nghttp2-client`). Targets, each its own process,
// both forwarding to the same nginx backend (1 worker, `return 200`, 12-byte body):
//   nginx      1 worker, plain port + `listen ssl http2` (TLS 1.2 and 1.3, session tickets on),
//              proxy_pass with upstream keepalive (as bench/proxy-speed.ts)
//   edgeproxy  `edgeproxy serve` from the built bin, streaming from a throwaway PostgreSQL: one
//              route and its certificate row (edgeproxy_certificates), plain and HTTPS ports
// For each target and round: plain-HTTP and HTTPS keep-alive req/s over HTTP/1.1 (h2load --h1,
// `--connections`), HTTPS over HTTP/2 (h2load, `--streams` per connection; "n/a" when the target
// does not offer h2 by ALPN), then full and resumed TLS 1.3 handshakes per second (a Node client,
// `--handshake-concurrency` loops of connect, handshake, one `GET /` with Connection: close; resumed
// offers the last session ticket and counts isSessionReused()). The CPU time of the target's
// processes per 1,000 requests or handshakes comes from /proc. Each round runs the targets in a
// rotating order; the report gives medians and ratios from the same rounds, then the issue's targets.
// The handshake client offers only the key-exchange groups of `--groups` (default X25519, what
// nginx on the system OpenSSL 3.0 negotiates anyway: Node 24's OpenSSL 3.5 would otherwise pick the
// hybrid X25519MLKEM768, which costs the server ≈ 35 µs more per handshake); `default` = Node's list.
// The group each target negotiated is printed.
// --node-floor adds `node-https` and `node-front` (bench/targets/node-tls.ts), each answering
// itself, nothing proxied: Node's own https.createServer (what any one-thread Node server pays for
// TLS), and EdgeProxy's TLS front feeding node:http (the front's own cost is the difference).
// --baseline DIR adds `edgeproxy-base`: the build in DIR (`DIR/dist/src/cli/bin.js`, another
// commit's checkout, built) as a second EdgeProxy target, so a change is measured before and after
// in the same run.
// --workers 1,2 runs one EdgeProxy target per EDGEPROXY_WORKERS value (`edgeproxy-1w`, `edgeproxy-2w`)
// instead of one with the default (the cores this process may use): HTTPS on the main thread vs in
// the workers (docs/decisions/0021).
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { h2load } from './support/h2load.js';
import { handshakeLoad } from './support/handshakes.js';
import { certificateOnDisk, edgeproxyHttpsTarget, nginxHttpsTarget, untilServed, type HttpsTarget } from './support/https-targets.js';
import { backendConf, startNginx } from './support/nginx.js';
import { nodeArgs } from './support/bundle.js';
import { cpuMs, freePort, has, median, start, stopAll } from './support/processes.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '64' },
    streams: { type: 'string', default: '10' },
    'handshake-concurrency': { type: 'string', default: '16' },
    groups: { type: 'string', default: 'X25519' },
    measures: { type: 'string', default: 'plain-h1,tls-h1,tls-h2,full,resumed' },
    'node-floor': { type: 'boolean', default: false },
    baseline: { type: 'string' },
    workers: { type: 'string' },
  },
});
const ROUNDS = Number(values.rounds);
const DURATION = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const STREAMS = Number(values.streams);
const HANDSHAKE_CONCURRENCY = Number(values['handshake-concurrency']);
const NAME = 'bench.example';
const WARMUP_S = 2;

const ALL_MEASURES = ['plain-h1', 'tls-h1', 'tls-h2', 'full', 'resumed'] as const;
type Measure = (typeof ALL_MEASURES)[number];
const MEASURES = values.measures.split(',').map((m) => {
  if (!(ALL_MEASURES as readonly string[]).includes(m)) throw new Error(`--measures: ${m} is not one of ${ALL_MEASURES.join(', ')}`);
  return m as Measure;
});
const GROUPS = values.groups === 'default' ? undefined : values.groups;

interface Figure {
  /** Requests or handshakes per second; NaN when not measured (no h2). */
  readonly rate: number;
  /** CPU µs of the target per 1,000 requests or handshakes, i.e. ms per 1,000. */
  readonly cpuMsPer1000: number;
  readonly errors: number;
  /** Resumed handshakes: the share of connections the client saw resumed. */
  readonly reusedShare?: number;
  /** Handshakes: the key-exchange group negotiated. */
  readonly group?: string;
}

const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

async function nodeFloorTarget(mode: 'https' | 'front', certFile: string, keyFile: string): Promise<HttpsTarget> {
  const plainPort = await freePort();
  const tlsPort = await freePort();
  const args = [...(await nodeArgs('bench/targets/node-tls.ts')), mode, String(plainPort), String(tlsPort), certFile, keyFile];
  const { pid } = await start(process.execPath, args, true, tlsPort);
  return { name: `node-${mode}`, plainPort, tlsPort, pid, alpn: await untilServed(tlsPort, NAME) };
}

/** Runs `work` and charges the target's CPU time over it to `count(result)` requests or handshakes. */
async function measured<T>(t: HttpsTarget, work: () => T | Promise<T>, count: (r: T) => number): Promise<{ r: T; cpuMsPer1000: number }> {
  const cpu0 = cpuMs(t.pid);
  const r = await work();
  return { r, cpuMsPer1000: ((cpuMs(t.pid) - cpu0) * 1000) / count(r) };
}

async function keepAlive(t: HttpsTarget, m: 'plain-h1' | 'tls-h1' | 'tls-h2'): Promise<Figure> {
  if (m === 'tls-h2' && t.alpn !== 'h2') return { rate: NaN, cpuMsPer1000: NaN, errors: 0 };
  const o = {
    scheme: m === 'plain-h1' ? ('http' as const) : ('https' as const),
    name: NAME,
    port: m === 'plain-h1' ? t.plainPort : t.tlsPort,
    protocol: m === 'tls-h2' ? ('h2' as const) : ('h1' as const),
    clients: CONNECTIONS,
    streams: STREAMS,
    seconds: DURATION,
    warmupSeconds: WARMUP_S,
  };
  // The warm-up is inside the run, and so inside the CPU window: charge it by the same rate.
  const { r, cpuMsPer1000 } = await measured(
    t,
    () => h2load(o),
    (f) => f.rps * (DURATION + WARMUP_S),
  );
  if (m === 'tls-h2' && r.protocol !== 'h2') throw new Error(`${t.name}: h2load used ${r.protocol}, not h2`);
  return { rate: r.rps, cpuMsPer1000, errors: r.errors };
}

async function handshakes(t: HttpsTarget, resume: boolean): Promise<Figure> {
  const o = { port: t.tlsPort, servername: NAME, concurrency: HANDSHAKE_CONCURRENCY, resume, groups: GROUPS };
  await handshakeLoad({ ...o, seconds: 1 });
  const { r, cpuMsPer1000 } = await measured(
    t,
    () => handshakeLoad({ ...o, seconds: DURATION }),
    (f) => f.handshakes,
  );
  if (r.protocol !== 'TLSv1.3') throw new Error(`${t.name}: handshakes used ${r.protocol}, not TLSv1.3`);
  return { rate: r.perSecond, cpuMsPer1000, errors: r.errors, reusedShare: r.reused / r.handshakes, group: r.group };
}

function measure(t: HttpsTarget, m: Measure): Promise<Figure> {
  if (m === 'full') return handshakes(t, false);
  if (m === 'resumed') return handshakes(t, true);
  return keepAlive(t, m);
}

type Results = Map<string, Map<Measure, Figure[]>>;

async function runRounds(targets: HttpsTarget[]): Promise<Results> {
  const results: Results = new Map(targets.map((t) => [t.name, new Map(MEASURES.map((m) => [m, []]))]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const m of MEASURES) {
      for (const t of order) {
        const f = await measure(t, m);
        results.get(t.name)!.get(m)!.push(f);
        const reused = f.reusedShare === undefined ? '' : `  resumed ${(f.reusedShare * 100).toFixed(1)} %  ${f.group ?? '?'}`;
        console.log(
          `  round ${round + 1} ${m.padEnd(8)} ${t.name.padEnd(10)} ${Number.isNaN(f.rate) ? '    n/a' : f.rate.toFixed(0).padStart(7)}/s  CPU ${f.cpuMsPer1000.toFixed(1)} ms/1000  errors ${f.errors}${reused}  load ${load()}`,
        );
      }
    }
  }
  return results;
}

interface Summary {
  readonly rate: number;
  readonly cpu: number;
  readonly errors: number;
  readonly reused: number | undefined;
}

function summarise(figures: Figure[]): Summary {
  const reused = figures[0]?.reusedShare === undefined ? undefined : median(figures.map((f) => f.reusedShare!));
  return {
    rate: median(figures.map((f) => f.rate)),
    cpu: median(figures.map((f) => f.cpuMsPer1000)),
    errors: figures.reduce((a, f) => a + f.errors, 0),
    reused,
  };
}

/** Median over rounds of `target` ÷ nginx for one figure, each ratio from the same round. */
function ratio(results: Results, m: Measure, pick: (f: Figure) => number, target = 'edgeproxy'): number {
  const e = results.get(target)!.get(m)!;
  const n = results.get('nginx')!.get(m)!;
  return median(e.map((f, i) => pick(f) / pick(n[i]!)));
}

function report(targets: HttpsTarget[], results: Results): void {
  const cell = (s: Summary, t: HttpsTarget, m: Measure) => {
    if (Number.isNaN(s.rate)) return m === 'tls-h2' && t.alpn !== 'h2' ? 'n/a (no h2 yet)' : 'n/a';
    const reused = s.reused === undefined ? '' : `, ${(s.reused * 100).toFixed(0)} % resumed`;
    return `${s.rate.toFixed(0)} (${s.cpu.toFixed(1)} ms CPU/1000${reused}${s.errors > 0 ? `, ${s.errors} errors` : ''})`;
  };
  console.log(`\n| target | ${MEASURES.join(' | ')} |`);
  console.log(`|---|${MEASURES.map(() => '---|').join('')}`);
  for (const t of targets) {
    const row = MEASURES.map((m) => cell(summarise(results.get(t.name)!.get(m)!), t, m));
    console.log(`| ${t.name} | ${row.join(' | ')} |`);
  }
  const rate = (f: Figure) => f.rate;
  const perCore = (f: Figure) => 1 / f.cpuMsPer1000; // handshakes per CPU-second, up to a constant
  for (const t of targets.filter((x) => x.name !== 'nginx')) {
    console.log(`\n| ${t.name} ÷ nginx (median of per-round ratios) | rate | per CPU second |`);
    console.log('|---|---|---|');
    for (const m of MEASURES)
      console.log(`| ${m} | ${ratio(results, m, rate, t.name).toFixed(3)}× | ${ratio(results, m, perCore, t.name).toFixed(3)}× |`);
  }
  verdicts(results, targets.find((t) => t.name !== 'nginx')!.name);
}

/** The issue's targets, for `edge` (the first EdgeProxy target). */
function verdicts(results: Results, edge: string): void {
  if (MEASURES.includes('full')) {
    const full = ratio(results, 'full', (f) => 1 / f.cpuMsPer1000, edge);
    console.log(`\nfull handshakes per core ÷ nginx's: ${full.toFixed(3)}× (target ≥ 0.7×): ${full >= 0.7 ? 'met' : 'NOT met'}`);
  }
  if (!MEASURES.includes('plain-h1')) return;
  const plain = ratio(results, 'plain-h1', (f) => f.rate, edge);
  for (const m of (['tls-h1', 'tls-h2'] as const).filter((x) => MEASURES.includes(x))) {
    const r = ratio(results, m, (f) => f.rate, edge);
    if (Number.isNaN(r)) {
      console.log(`${m} keep-alive: n/a (no h2 yet)`);
      continue;
    }
    const verdict = r >= 0.9 * plain ? 'met' : 'NOT met';
    console.log(
      `${m} keep-alive req/s ÷ nginx's: ${r.toFixed(3)}× vs 0.9 × plain-HTTP ratio ${plain.toFixed(3)}× = ${(0.9 * plain).toFixed(3)}×: ${verdict}`,
    );
  }
}

async function main(): Promise<void> {
  for (const tool of ['nginx', 'h2load'])
    if (!has(tool)) throw new Error(`${tool} is not installed: apt-get install -y nginx nghttp2-client`);
  console.log(`# https-speed: ${cpus().length} CPUs (${cpus()[0]?.model}), Node ${process.version}, load ${load()}`);
  console.log(
    `# keep-alive: h2load -c${CONNECTIONS} -D${DURATION} --warm-up-time=${WARMUP_S} (--h1 -m1 | h2 -m${STREAMS}); handshakes: ${HANDSHAKE_CONCURRENCY} loops × ${DURATION} s, groups offered ${GROUPS ?? "Node's default"}; rounds: ${ROUNDS}; measures: ${MEASURES.join(', ')}`,
  );
  const tmp = mkdtempSync(join(tmpdir(), 'edgeproxy-https-bench-'));
  const { cert, certFile, keyFile } = certificateOnDisk(tmp, NAME);
  const stops: (() => Promise<void>)[] = [];
  try {
    const backendPort = await freePort();
    await startNginx(backendConf(tmp, backendPort), backendPort);
    const nginx = await nginxHttpsTarget({ tmp, backendPort, name: NAME, certFile, keyFile });
    const targets = [nginx];
    for (const workers of values.workers?.split(',') ?? [undefined]) {
      const edge = await edgeproxyHttpsTarget({
        name: workers === undefined ? 'edgeproxy' : `edgeproxy-${workers}w`,
        host: NAME,
        backendPort,
        routes: 1,
        cert,
        ...(workers === undefined ? {} : { env: { EDGEPROXY_WORKERS: workers } }),
      });
      stops.push(edge.stop);
      targets.push(edge.target);
    }
    if (values.baseline !== undefined) {
      const base = await edgeproxyHttpsTarget({
        name: 'edgeproxy-base',
        host: NAME,
        backendPort,
        routes: 1,
        cert,
        root: resolve(values.baseline),
      });
      stops.push(base.stop);
      targets.push(base.target);
    }
    if (values['node-floor'])
      targets.push(await nodeFloorTarget('https', certFile, keyFile), await nodeFloorTarget('front', certFile, keyFile));
    for (const t of targets) console.log(`# ${t.name}: ALPN offered h2, http/1.1 → ${t.alpn === 'h2' ? 'h2' : 'http/1.1 (no h2)'}`);
    report(targets, await runRounds(targets));
    console.log(`# load after: ${load()}`);
  } finally {
    for (const stop of stops) await stop();
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
