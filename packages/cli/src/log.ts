import { type Clock, createJsonLogger, type Logger } from "@keel/core";

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50 } as const;
type Level = keyof typeof LEVELS;

/** Formats one value for a text log line: strings bare unless they contain spaces, the rest as JSON. */
function field(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.message);
  if (typeof value === "string") return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  return JSON.stringify(value) ?? String(value);
}

/** A human-readable logger: `2026-01-01T00:00:00.000Z INFO message key=value`. */
function createTextLogger(
  clock: Clock,
  threshold: number,
  write: (line: string) => void,
  bindings: Readonly<Record<string, unknown>>,
): Logger {
  const make = (level: Level) => (obj: object, msg?: string) => {
    if (LEVELS[level] < threshold) return;
    const pairs = Object.entries({ ...bindings, ...obj })
      .map(([k, v]) => `${k}=${field(v)}`)
      .join(" ");
    const text = [new Date(clock.wallNow()).toISOString(), level.toUpperCase(), msg ?? "", pairs]
      .filter((s) => s !== "")
      .join(" ");
    write(`${text}\n`);
  };
  return {
    trace: make("trace"),
    debug: make("debug"),
    info: make("info"),
    warn: make("warn"),
    error: make("error"),
    child: (more) => createTextLogger(clock, threshold, write, { ...bindings, ...more }),
  };
}

/** The CLI's logger on standard error: JSON lines with `--json`, text otherwise. */
export function cliLogger(json: boolean, clock: Clock, level: "info" | "warn" = "info"): Logger {
  const write = (line: string) => process.stderr.write(line);
  if (json) return createJsonLogger({ level, write, clock });
  return createTextLogger(clock, LEVELS[level], write, {});
}
