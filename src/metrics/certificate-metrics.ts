/** The stored certificates, read at scrape time from the current snapshot: how many in each state, and the soonest expiry. */
import { Gauge, type Registry } from 'prom-client';
import { CERTIFICATE_STATES, certificateState } from '../admin/certificates-view.js';
import type { RouteSnapshot } from '../sync/route-store.js';

export function certificateMetrics(registry: Registry, snapshot: () => RouteSnapshot | undefined): void {
  new Gauge({
    name: 'edgeproxy_tls_certificates',
    help: 'Stored TLS certificates by state: serving (handshakes get it), standby (valid, another one is served), not-yet-valid, expired, unusable',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const s = snapshot();
      const counts = new Map<string, number>(CERTIFICATE_STATES.map((state) => [state, 0]));
      const now = Date.now();
      for (const r of s?.tls.stored ?? []) {
        const state = certificateState(r, s!, now);
        counts.set(state, counts.get(state)! + 1);
      }
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  new Gauge({
    name: 'edgeproxy_tls_certificate_soonest_expiry_timestamp_seconds',
    help: 'The earliest not-after (Unix time) among the certificates being served; 0 when none is (alert when it comes near)',
    registers: [registry],
    collect() {
      const s = snapshot();
      const now = Date.now();
      let soonest = Infinity;
      for (const r of s?.tls.stored ?? []) {
        if (r.problem === undefined && r.notAfter < soonest && certificateState(r, s!, now) === 'serving') soonest = r.notAfter;
      }
      this.set(soonest === Infinity ? 0 : soonest / 1000);
    },
  });
}
