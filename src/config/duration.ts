const UNITS_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
const PART = /^((?:[0-9]+(?:\.[0-9]*)?)|(?:\.[0-9]+))(ns|us|µs|μs|ms|s|m|h)/;

/**
 * Parses a Go-style duration (`10s`, `500ms`, `1m30s`, `1.5h`, `0`) into milliseconds.
 * Negative durations are rejected: no option here has a meaning for them.
 * Returns undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  let rest = text.trim();
  if (rest === '0') return 0;
  if (rest.length === 0) return undefined;
  let total = 0;
  while (rest.length > 0) {
    const m = PART.exec(rest);
    if (m === null) return undefined;
    total += Number(m[1]) * UNITS_MS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  // Round to whole nanoseconds: decimal fractions are not exact in binary (2.01 * 1000 = 2009.9999999999998).
  const ms = Math.round(total * 1e6) / 1e6;
  return Number.isFinite(ms) ? ms : undefined;
}

/** Formats milliseconds the way Go prints durations, for help texts and logs (`10s`, `1m30s`, `500ms`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  return `${h > 0 ? `${h}h` : ''}${h > 0 || m > 0 ? `${m}m` : ''}${s}s`;
}
