/**
 * The HTTPS listener's handshakes, by result (`ok` or the refusal reason, REFUSAL_HELP) and the
 * protocol ALPN chose (`h2`, `http/1.1`; `none` for a refused one).
 */
import { Counter, type Registry } from 'prom-client';
import { ALPN_PROTOCOLS, type ServedProtocol } from '../tls/https-listener.js';
import { REFUSAL_REASONS, type RefusalReason } from '../tls/tls-front.js';

export type HandshakeResult = 'ok' | RefusalReason;

export function tlsMetrics(registry: Registry): (result: HandshakeResult, protocol?: ServedProtocol) => void {
  const handshakes = new Counter({
    name: 'edgeproxy_tls_handshakes_total',
    help: 'TLS handshakes on the HTTPS port, by result (ok, or why the connection was refused before any request) and the protocol served (h2, http/1.1; none when refused)',
    labelNames: ['result', 'protocol'] as const,
    registers: [registry],
  });
  const children = new Map<string, { inc(): void }>();
  for (const protocol of ALPN_PROTOCOLS) children.set(`ok|${protocol}`, handshakes.labels('ok', protocol));
  for (const reason of REFUSAL_REASONS) children.set(`${reason}|none`, handshakes.labels(reason, 'none'));
  return (result, protocol) => children.get(`${result}|${result === 'ok' ? protocol : 'none'}`)?.inc();
}
