/** On-demand issuance and renewal: orders by outcome, and the attempts in flight (read at scrape time). */
import { Counter, Gauge, type Registry } from 'prom-client';
import { ORDER_OUTCOMES, type OrderOutcomeKind } from '../acme/order-runner.js';

export interface AcmeMetrics {
  readonly order: (kind: OrderOutcomeKind) => void;
  /** Where the in-flight gauge reads from, once issuance exists. */
  watchInFlight(source: () => number): void;
}

export function acmeMetrics(registry: Registry): AcmeMetrics {
  const orders = new Counter({
    name: 'edgeproxy_acme_orders_total',
    help: 'ACME order attempts of this proxy (on demand and renewal), by outcome: issued, failed, busy (another proxy orders it), backing-off, not-needed',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const children = new Map(ORDER_OUTCOMES.map((o) => [o, orders.labels(o)]));
  // Every outcome is exposed from the start, at 0, so that rate() has a series before the first.
  for (const child of children.values()) child.inc(0);
  let inFlight: (() => number) | undefined;
  new Gauge({
    name: 'edgeproxy_acme_orders_in_flight',
    help: 'On-demand attempts running now in this proxy (an order, or a wait on another proxy’s order); at most EDGEPROXY_ACME_MAX_ORDERS',
    registers: [registry],
    collect() {
      this.set(inFlight?.() ?? 0);
    },
  });
  return {
    order: (kind) => children.get(kind)?.inc(),
    watchInFlight: (source) => (inFlight = source),
  };
}
