/** The HTTPS listener's handshakes, by result: `ok` or the refusal reason (REFUSAL_HELP). */
import { Counter, type Registry } from 'prom-client';
import { REFUSAL_REASONS, type RefusalReason } from '../tls/tls-front.js';

export type HandshakeResult = 'ok' | RefusalReason;

export function tlsMetrics(registry: Registry): (result: HandshakeResult) => void {
  const handshakes = new Counter({
    name: 'edgeproxy_tls_handshakes_total',
    help: 'TLS handshakes on the HTTPS port, by result: ok, or why the connection was refused before any request',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const results: HandshakeResult[] = ['ok', ...REFUSAL_REASONS];
  const children = new Map(results.map((r) => [r, handshakes.labels(r)]));
  return (result) => children.get(result)?.inc();
}
