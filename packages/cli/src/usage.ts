/** A usage error: bad options, arguments or input. The CLI prints it and exits 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Exit codes of the `keel` command. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** Parses a TCP port (0–65535) or throws a UsageError naming the option. */
export function parsePort(value: string, option: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) {
    throw new UsageError(`${option} must be a port number (0-65535), got '${value}'`);
  }
  return n;
}

/** Parses a positive integer or throws a UsageError naming the option. */
export function parsePositiveInt(value: string, option: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || !Number.isSafeInteger(n)) {
    throw new UsageError(`${option} must be a positive integer, got '${value}'`);
  }
  return n;
}
