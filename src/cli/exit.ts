import { EdgeProxyError } from '../errors.js';

/** Bad usage or configuration: the command prints `edgeproxy: <message>` and exits with status 2. */
export class UsageError extends EdgeProxyError {
  override name = 'UsageError';

  constructor(message: string) {
    super('USAGE', message);
  }
}

/** The command ran but failed (proxy unreachable, resync failed, a check failed...): status 1. */
export class CommandFailed extends EdgeProxyError {
  override name = 'CommandFailed';

  constructor(message: string) {
    super('COMMAND_FAILED', message);
  }
}
