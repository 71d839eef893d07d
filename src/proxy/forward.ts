import { RequestForwarder } from './forward-request.js';
import { UpgradeForwarder } from './forward-upgrade.js';

/** The upstream side's options; every one comes from the option table (src/config/config.ts). */
export interface ForwarderOptions {
  /** Connecting to the upstream (then 502): EDGEPROXY_UPSTREAM_CONNECT_TIMEOUT. */
  readonly connectTimeoutMs: number;
  /** From the request fully sent to the response headers (then 504): EDGEPROXY_UPSTREAM_HEADER_TIMEOUT. */
  readonly headerTimeoutMs: number;
  /** Idle pooled upstream connections are closed after this: EDGEPROXY_UPSTREAM_IDLE_TIMEOUT. */
  readonly idleTimeoutMs: number;
}

/**
 * The two last steps of the request flow: plain requests go through undici (`forward-request.ts`,
 * docs/decisions/0006), WebSocket upgrades through http-proxy-3 (`forward-upgrade.ts`). Errors are
 * classified in `upstream-errors.ts`.
 */
export class Forwarder {
  readonly requests: RequestForwarder;
  readonly upgrades: UpgradeForwarder;

  constructor(opts: ForwarderOptions) {
    this.requests = new RequestForwarder(opts);
    this.upgrades = new UpgradeForwarder(opts);
  }

  /** Closes every pooled upstream connection (plain requests in flight are cut). */
  close(): void {
    this.requests.close();
    this.upgrades.close();
  }
}
