/** Bad usage or configuration: the command prints `edgeproxy: <message>` and exits with status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The command ran but failed (proxy unreachable, resync failed, a check failed...): status 1. */
export class CommandFailed extends Error {
  override name = 'CommandFailed';
}
