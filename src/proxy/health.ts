/**
 * Active health checks for same-region VMs, with a short per-VM cache.
 *
 * Spec: before proxying to a same-region VM, `GET http://{ip}:{port}/` with a 2 s timeout;
 * 2xx/3xx is healthy (a redirect is not followed: the 3xx itself counts), a connection error,
 * a timeout, 4xx or 5xx is unhealthy.
 *
 * The original service probed before every request. Here each VM's result is cached for
 * `cacheTtlMs` from the moment its probe finished, and concurrent checks of one VM share the probe
 * in flight. `cacheTtlMs: 0` reproduces probe-per-request exactly: no cache and no sharing.
 * See docs/decisions/0003-health-check-cache.md.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { ProxyObserver } from './observer.js';

/** A VM to probe. `ip` has no brackets (IPv4 or IPv6). */
export interface HealthTarget {
  readonly ip: string;
  readonly port: number;
}

export type HealthResult =
  { readonly healthy: true; readonly status: number } | { readonly healthy: false; readonly status?: number; readonly reason: string };

/** What the request path asks of health: the checker itself, or a worker thread's view of the main thread's (src/workers/health-board.ts). */
export type HealthView = Pick<HealthChecker, 'peek' | 'check' | 'markUnhealthy'>;

export interface HealthCheckerOptions {
  /** Covers the wait for a pooled socket, connect and the response headers (spec: 2000). */
  timeoutMs: number;
  /** How long a result stays fresh after its probe finished; 0 = probe per request. */
  cacheTtlMs: number;
  logger: Logger;
  /** Monotonic millisecond clock, for tests; defaults to `performance.now()`. */
  now?: () => number;
  /** Told about every probe that finished (not cache hits), for metrics. */
  observer?: ProxyObserver;
  /** Told about every result recorded (probe or passive mark): the board worker threads read. Must not throw. */
  onRecord?: (target: HealthTarget, result: HealthResult) => void;
}

export interface HealthSnapshot {
  readonly result: HealthResult;
  /** When the result was recorded, on the checker's clock (`now`, monotonic ms). */
  readonly checkedAt: number;
  readonly ageMs: number;
}

/** Sent on every probe. */
export const HEALTH_USER_AGENT = 'edgeproxy-health/1';

/** Drained bodies larger than this are cut off (socket destroyed) instead of read to the end. */
const MAX_DRAIN_BYTES = 64 * 1024;
/** Entries whose result is older than max(ttl * 10, this) are pruned. */
const MIN_PRUNE_AGE_MS = 60_000;
/** A prune pass runs at least every this many new entries (and when the prune age has passed). */
const PRUNE_EVERY_INSERTS = 256;
/** Idle pooled probe sockets are closed after this long (a VM that vanished must not pin an fd). */
const IDLE_SOCKET_TIMEOUT_MS = 30_000;

const CLOSED: HealthResult = Object.freeze({ healthy: false, reason: 'closed' });
const CLOSED_PROMISE: Promise<HealthResult> = Promise.resolve(CLOSED);

interface Entry {
  /** Last recorded result (probe or passive mark); undefined until the first one. */
  result: HealthResult | undefined;
  /** `Promise.resolve(result)`, kept so the fresh path allocates nothing. */
  settled: Promise<HealthResult> | undefined;
  checkedAt: number;
  /** The shared probe in flight (only when cacheTtlMs > 0). */
  inflight: Promise<HealthResult> | undefined;
}

/**
 * The probes' keep-alive agent. Once closed it opens no new connection: requests still queued in
 * the agent when close() destroyed them would otherwise get a fresh socket as the busy ones close.
 */
class ProbeAgent extends http.Agent {
  closed = false;

  override createConnection(
    options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    if (this.closed) {
      callback?.(new Error('health checker closed'), undefined as unknown as Duplex);
      return undefined;
    }
    return super.createConnection(options, callback);
  }
}

function keyOf(target: HealthTarget): string {
  return `${target.ip}|${target.port}`;
}

/** `ip:port`, IPv6 bracketed: the Host header value and the log label. */
export function hostPort(target: HealthTarget): string {
  return target.ip.includes(':') ? `[${target.ip}]:${target.port}` : `${target.ip}:${target.port}`;
}

function errorReason(err: unknown): string {
  if (err !== null && typeof err === 'object') {
    const { code, message } = err as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && code !== '') return code;
    if (typeof message === 'string' && message !== '') return message;
  }
  return String(err);
}

export class HealthChecker {
  readonly #timeoutMs: number;
  readonly #ttlMs: number;
  readonly #pruneAgeMs: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #observer: ProxyObserver | undefined;
  readonly #onRecord: ((target: HealthTarget, result: HealthResult) => void) | undefined;
  readonly #agent: ProbeAgent;
  readonly #entries = new Map<string, Entry>();
  /** Cancel functions of probes in flight or still draining a body; run by close(). */
  readonly #active = new Set<() => void>();
  #probeCount = 0;
  #insertsSincePrune = 0;
  #lastPruneAt: number;
  #closed = false;

  constructor(opts: HealthCheckerOptions) {
    if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) {
      throw new RangeError(`timeoutMs must be a positive number, got ${opts.timeoutMs}`);
    }
    if (!Number.isFinite(opts.cacheTtlMs) || opts.cacheTtlMs < 0) {
      throw new RangeError(`cacheTtlMs must be a number >= 0, got ${opts.cacheTtlMs}`);
    }
    this.#timeoutMs = opts.timeoutMs;
    this.#ttlMs = opts.cacheTtlMs;
    this.#pruneAgeMs = Math.max(opts.cacheTtlMs * 10, MIN_PRUNE_AGE_MS);
    this.#logger = opts.logger;
    this.#now = opts.now ?? (() => performance.now());
    this.#observer = opts.observer;
    this.#onRecord = opts.onRecord;
    this.#lastPruneAt = this.#now();
    // With a cache, a few connections per VM are plenty. With TTL 0 (probe per request, as the
    // original did) each request's probe must not queue behind others' and time out waiting.
    this.#agent = new ProbeAgent({ keepAlive: true, maxSockets: opts.cacheTtlMs === 0 ? Infinity : 4, timeout: IDLE_SOCKET_TIMEOUT_MS });
  }

  /** Total probes started (a retry on a stale keep-alive socket is part of the same probe). */
  get probes(): number {
    return this.#probeCount;
  }

  /** Resolves with the VM's health; never rejects. After close() resolves unhealthy 'closed'. */
  check(target: HealthTarget): Promise<HealthResult> {
    if (this.#closed) return CLOSED_PROMISE;
    if (this.#ttlMs <= 0) return this.#probeAndRecord(target, undefined);

    const key = keyOf(target);
    let entry = this.#entries.get(key);
    if (entry !== undefined) {
      if (entry.settled !== undefined && this.#now() - entry.checkedAt < this.#ttlMs) return entry.settled;
      if (entry.inflight !== undefined) return entry.inflight;
    } else {
      entry = this.#insert(key);
    }
    const inflight = this.#probeAndRecord(target, entry);
    entry.inflight = inflight;
    return inflight;
  }

  /**
   * The request path's fast path: the cached result without a promise, or undefined when the
   * caller has to `check()` and wait. A healthy result that has just expired (less than one probe
   * timeout past its TTL) is still returned while one probe refreshes it in the background, so
   * requests do not queue behind the refresh probe every TTL (it cost 0.5–1 ms at p99 under load);
   * such a result is at most TTL + probe time old, the bound `check()` already had. Unhealthy
   * results are never used past their TTL: a VM is routed again only after a probe succeeds.
   */
  peek(target: HealthTarget): HealthResult | undefined {
    if (this.#ttlMs <= 0 || this.#closed) return undefined;
    const entry = this.#entries.get(keyOf(target));
    const result = entry?.result;
    if (result === undefined) return undefined;
    const age = this.#now() - entry!.checkedAt;
    if (age < this.#ttlMs) return result;
    if (!result.healthy || age >= this.#ttlMs + this.#timeoutMs) return undefined;
    if (entry!.inflight === undefined) void this.check(target);
    return result;
  }

  /**
   * Passive health: the proxy saw a refused/reset connection. Caches 'unhealthy' now, so checks
   * get it without probing until the TTL runs out and a new probe succeeds. A probe already in
   * flight still answers the checks that joined it, but its result is not cached over this mark.
   */
  markUnhealthy(target: HealthTarget, reason: string): void {
    if (this.#closed) return;
    const key = keyOf(target);
    const entry = this.#entries.get(key) ?? this.#insert(key);
    entry.inflight = undefined;
    this.#record(target, entry, { healthy: false, reason: `marked by proxy: ${reason}` }, 'passive');
  }

  /** The last recorded result for the VM (fresh or not), for diagnostics. */
  last(target: HealthTarget): HealthSnapshot | undefined {
    const entry = this.#entries.get(keyOf(target));
    if (entry?.result === undefined) return undefined;
    return { result: entry.result, checkedAt: entry.checkedAt, ageMs: Math.max(0, this.#now() - entry.checkedAt) };
  }

  /** Cancels probes in flight (they resolve unhealthy 'closed') and destroys the agent's sockets. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#agent.closed = true;
    for (const cancel of [...this.#active]) cancel();
    this.#active.clear();
    for (const entry of this.#entries.values()) entry.inflight = undefined;
    this.#agent.destroy();
  }

  #insert(key: string): Entry {
    const now = this.#now();
    if (++this.#insertsSincePrune >= PRUNE_EVERY_INSERTS || now - this.#lastPruneAt >= this.#pruneAgeMs) {
      this.#prune(now);
    }
    const entry: Entry = { result: undefined, settled: undefined, checkedAt: now, inflight: undefined };
    this.#entries.set(key, entry);
    return entry;
  }

  #prune(now: number): void {
    this.#insertsSincePrune = 0;
    this.#lastPruneAt = now;
    for (const [key, entry] of this.#entries) {
      if (entry.inflight === undefined && now - entry.checkedAt >= this.#pruneAgeMs) this.#entries.delete(key);
    }
  }

  /**
   * Runs one probe and records its result. `shared` is the entry whose in-flight slot this probe
   * fills (TTL > 0); its result is cached only if it still owns the slot when it finishes (a
   * passive mark or close() in between releases it).
   */
  #probeAndRecord(target: HealthTarget, shared: Entry | undefined): Promise<HealthResult> {
    const started = this.#now();
    const promise: Promise<HealthResult> = this.#probe(target).then((result) => {
      const elapsed = this.#now() - started;
      const durationMs = Math.round(elapsed * 10) / 10;
      if (result !== CLOSED) {
        try {
          this.#observer?.probe(result.healthy, elapsed / 1000);
        } catch (err) {
          this.#logger.error({ err }, 'observer failed');
        }
      }
      this.#logger.debug(
        {
          target: hostPort(target),
          healthy: result.healthy,
          status: result.status ?? null,
          reason: result.healthy ? null : result.reason,
          durationMs,
        },
        'health probe',
      );
      if (this.#closed || result === CLOSED) return result;
      if (shared === undefined) {
        const key = keyOf(target);
        this.#record(target, this.#entries.get(key) ?? this.#insert(key), result, 'probe');
      } else if (shared.inflight === promise) {
        shared.inflight = undefined;
        this.#record(target, shared, result, 'probe');
      }
      return result;
    });
    return promise;
  }

  #record(target: HealthTarget, entry: Entry, result: HealthResult, source: 'probe' | 'passive'): void {
    const previous = entry.result;
    entry.result = result;
    entry.settled = Promise.resolve(result);
    entry.checkedAt = this.#now();
    this.#onRecord?.(target, result);
    if (!result.healthy && previous?.healthy !== false) {
      this.#logger.warn(
        {
          target: hostPort(target),
          status: result.status ?? null,
          reason: result.reason,
          source,
          previous: previous === undefined ? 'unknown' : 'healthy',
        },
        'vm unhealthy',
      );
    } else if (result.healthy && previous?.healthy === false) {
      this.#logger.info({ target: hostPort(target), status: result.status, source }, 'vm healthy again');
    }
  }

  /** One HTTP probe; resolves exactly once and never rejects. */
  #probe(target: HealthTarget): Promise<HealthResult> {
    this.#probeCount++;
    return new Promise<HealthResult>((resolve) => new Probe(target, this.#agent, this.#timeoutMs, this.#active, resolve).start());
  }
}

/** The verdict on a probe's status line: 2xx and 3xx are healthy (a redirect is not followed). */
function judgeStatus(status: number): HealthResult {
  return status >= 200 && status < 400 ? { healthy: true, status } : { healthy: false, status, reason: `status ${status}` };
}

/**
 * One probe's life, under one deadline: send the request (once more if a stale pooled socket was
 * reset), judge the status line, then drain a small body so the socket can go back to the pool.
 * Resolves exactly once; `cancel` (run by HealthChecker.close) resolves it 'closed'.
 */
class Probe {
  readonly #target: HealthTarget;
  readonly #agent: http.Agent;
  readonly #timeoutMs: number;
  /** The checker's cancel functions of probes in flight or draining; this one is in it until it ends. */
  readonly #active: Set<() => void>;
  readonly #resolve: (result: HealthResult) => void;
  #settled = false;
  #req: http.ClientRequest | undefined;
  #res: http.IncomingMessage | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    target: HealthTarget,
    agent: http.Agent,
    timeoutMs: number,
    active: Set<() => void>,
    resolve: (result: HealthResult) => void,
  ) {
    this.#target = target;
    this.#agent = agent;
    this.#timeoutMs = timeoutMs;
    this.#active = active;
    this.#resolve = resolve;
  }

  readonly cancel = (): void => {
    this.#settle(CLOSED);
    this.#finish(true);
  };

  start(): void {
    // One deadline for the whole probe: socket wait + connect + headers decide the verdict;
    // after the verdict, whatever is left of it bounds the body drain.
    this.#timer = setTimeout(this.#onDeadline, this.#timeoutMs);
    this.#active.add(this.cancel);
    this.#send(0);
  }

  readonly #onDeadline = (): void => {
    this.#settle({ healthy: false, reason: `timeout after ${this.#timeoutMs} ms` });
    this.#finish(true);
  };

  /** Sends one attempt: 0, or 1 after the keep-alive race. */
  #send(attempt: number): void {
    const target = this.#target;
    let r: http.ClientRequest;
    try {
      r = http.request({
        host: target.ip,
        port: target.port,
        path: '/',
        method: 'GET',
        agent: this.#agent,
        headers: { Host: hostPort(target), 'User-Agent': HEALTH_USER_AGENT },
      });
    } catch (err) {
      // e.g. an invalid port: http.request throws synchronously.
      this.#settle({ healthy: false, reason: errorReason(err) });
      this.#finish(true);
      return;
    }
    this.#req = r;
    r.on('error', (err: NodeJS.ErrnoException) => this.#onError(r, attempt, err));
    r.on('response', (response) => this.#onResponse(response));
    r.end();
  }

  #onError(r: http.ClientRequest, attempt: number, err: NodeJS.ErrnoException): void {
    if (this.#settled || r !== this.#req) return;
    // The pooled keep-alive socket was closed by the backend as we reused it: the request never
    // reached the app, so try once more on a fresh connection.
    if (attempt === 0 && r.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
      this.#send(1);
      return;
    }
    this.#settle({ healthy: false, reason: errorReason(err) });
    this.#finish(true);
  }

  #onResponse(response: http.IncomingMessage): void {
    this.#res = response;
    response.on('error', () => {
      // Body aborted after the verdict: nothing left to report, the socket is gone.
    });
    if (this.#settled) {
      // Timed out or cancelled in the meantime: the verdict stands, drop the connection.
      this.#finish(true);
      return;
    }
    this.#settle(judgeStatus(response.statusCode ?? 0));
    this.#drain(response);
  }

  /** Reads a small body to its end so the socket can be reused; a large one costs the socket. */
  #drain(response: http.IncomingMessage): void {
    let bytes = 0;
    response.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_DRAIN_BYTES) this.#finish(true);
    });
    response.on('end', () => this.#finish(false));
    response.on('close', () => this.#finish(false));
    response.resume();
  }

  #settle(result: HealthResult): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(result);
  }

  /**
   * Ends the probe's life: no timer, not cancellable any more; `destroy` drops the socket (on
   * error, timeout, close, or a body we will not drain) instead of keeping it pooled.
   */
  #finish(destroy: boolean): void {
    clearTimeout(this.#timer);
    this.#active.delete(this.cancel);
    if (destroy) {
      this.#res?.destroy();
      this.#req?.destroy();
    }
  }
}
