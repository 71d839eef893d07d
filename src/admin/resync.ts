import { toFailure } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Metrics, ResyncTrigger } from '../metrics/metrics.js';
import type { ResyncOutcome } from '../sync/status.js';

/**
 * An operator's resync (POST /resync, `edgeproxy resync`, SIGHUP): runs the service's full resync,
 * logs the request and the outcome, and records it in the metrics. Never rejects.
 */
export async function operatorResync(
  resync: () => Promise<ResyncOutcome>,
  trigger: ResyncTrigger,
  logger: Logger,
  metrics: Metrics,
): Promise<ResyncOutcome> {
  logger.info({ trigger }, 'resync requested');
  const started = performance.now();
  let outcome: ResyncOutcome;
  try {
    outcome = await resync();
  } catch (err) {
    outcome = toFailure(err, 'LOAD_FAILED');
  }
  const durationMs = Math.round((performance.now() - started) * 10) / 10;
  metrics.recordResync(trigger, outcome, durationMs);
  if (outcome.ok) {
    const { added, removed, changed } = outcome.diff;
    logger.info(
      { trigger, routes: outcome.routes, added: added.length, removed: removed.length, changed: changed.length, durationMs },
      'resync finished',
    );
  } else {
    logger.error({ trigger, code: outcome.code, error: outcome.message, durationMs }, 'resync failed');
  }
  return outcome;
}
