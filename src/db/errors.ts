// Without pg itself, so that the CLI can describe errors without loading the driver.

/**
 * A pg error reduced to what helps an operator (code, message, detail), never the connection
 * string. pg's own messages do not contain the password.
 */
export function describePgError(err: unknown): { type: string; message: string; code?: string; detail?: string } {
  if (err instanceof Error) {
    const e = err as Error & { code?: string; detail?: string };
    return { type: e.name, message: e.message, ...(e.code ? { code: e.code } : {}), ...(e.detail ? { detail: e.detail } : {}) };
  }
  return { type: typeof err, message: String(err) };
}
