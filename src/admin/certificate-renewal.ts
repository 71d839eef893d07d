/**
 * An operator's forced renewal of one name's certificate (POST /certificates/<name>/renew,
 * `edgeproxy certs renew NAME`): the name is checked against the current snapshot (a name with no
 * route is never ordered, as on-demand issuance), then ordered now through the issuance engine's
 * one order flow (`renewNow`: the fleet lock, then the CA), and the outcome answered with its
 * HTTP status. Never rejects: a failed order is an answer.
 */
import type { Issuance } from '../acme/issuance.js';
import type { OrderOutcome } from '../acme/order-runner.js';
import type { ErrorCode } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { normaliseHost } from '../table/host.js';
import type { IssuanceSnapshot } from '../acme/tls-view.js';

/** JSON body of POST /certificates/<name>/renew. */
export type RenewResponse =
  | {
      readonly ok: true;
      readonly name: string;
      /** The new row of edgeproxy_certificates. */
      readonly id: string;
      readonly issuer: string;
      readonly notBefore: string;
      readonly notAfter: string;
    }
  | {
      readonly ok: false;
      readonly name: string;
      readonly code: ErrorCode;
      readonly error: string;
      /** ACME_ORDER_LOCKED: until when the other proxy holds the lock (unless it renews it). */
      readonly lockedUntil?: string;
    };

export interface RenewReply {
  readonly status: number;
  readonly body: RenewResponse;
}

export interface RenewContext {
  readonly current: () => IssuanceSnapshot | undefined;
  /** Undefined when this proxy issues no certificates. */
  readonly issuance: Pick<Issuance, 'renewNow'> | undefined;
  readonly logger: Logger;
}

const ISSUANCE_OFF =
  'this proxy issues no certificates: EDGEPROXY_ACME_DIRECTORY_URL is off, or EDGEPROXY_PRIMARY_DATABASE_URL, the storage key or the HTTPS listener is missing ' +
  '(its startup log line "on-demand certificate issuance off" says which, and so does `edgeproxy doctor`); ask a proxy that issues';

export async function renewCertificate(rawName: string, ctx: RenewContext): Promise<RenewReply> {
  const name = normaliseHost(rawName) ?? rawName;
  const refused = refusal(rawName, name, ctx);
  if (refused !== undefined) return refused;
  ctx.logger.info({ name }, 'certificate renewal requested');
  return reply(name, await ctx.issuance!.renewNow(name));
}

/** Why the name is not ordered at all, or undefined when it may be. */
function refusal(rawName: string, name: string, ctx: RenewContext): RenewReply | undefined {
  const no = (status: number, code: ErrorCode, error: string): RenewReply => ({ status, body: { ok: false, name, code, error } });
  if (normaliseHost(rawName) === undefined || name.startsWith('*.')) {
    return no(
      400,
      'ADMIN_INVALID_QUERY',
      `${JSON.stringify(rawName)} is not a host name this proxy can order (HTTP-01 issues no wildcard)`,
    );
  }
  const snapshot = ctx.current();
  if (snapshot === undefined) return no(503, 'LOAD_FAILED', 'the route table is not loaded yet');
  if (snapshot.routes.get(name) === undefined) {
    return no(404, 'NO_ROUTE', `${name} has no route (not a verified domain with a deployment): no certificate is ordered for it`);
  }
  if (ctx.issuance === undefined) return no(409, 'ACME_ISSUANCE_OFF', ISSUANCE_OFF);
  return undefined;
}

function reply(name: string, outcome: OrderOutcome): RenewReply {
  const iso = (ms: number) => new Date(ms).toISOString();
  switch (outcome.kind) {
    case 'issued': {
      const { id, issuer, notBefore, notAfter } = outcome.certificate;
      return { status: 200, body: { ok: true, name, id, issuer, notBefore: iso(notBefore), notAfter: iso(notAfter) } };
    }
    case 'busy':
      return {
        status: 409,
        body: {
          ok: false,
          name,
          code: 'ACME_ORDER_LOCKED',
          error: `${name} is being ordered now (the fleet lock, held by another proxy or an order of this one, runs until ${iso(outcome.lockedUntil)}): its certificate comes by the stream; not ordered twice`,
          lockedUntil: iso(outcome.lockedUntil),
        },
      };
    case 'failed':
      return { status: 502, body: { ok: false, name, code: outcome.code, error: outcome.message } };
    case 'backing-off':
    case 'not-needed':
      // A forced order ignores the backoff and the renewal time: the runner never answers these to it.
      throw new Error(`a forced renewal of ${name} answered ${outcome.kind}`);
  }
}
