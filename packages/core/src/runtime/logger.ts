import type { Clock } from "../env/index.ts";

/** Log levels, lowest first. */
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";

/** A pino-shaped logger: `log.warn({ node, err }, "message")`. */
export interface Logger {
  trace(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  /** A logger whose lines carry `bindings` too. */
  child(bindings: object): Logger;
}

const LEVELS: Record<LogLevel, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};

/** Options for the built-in JSON-lines logger. */
export interface JsonLoggerOptions {
  readonly level?: LogLevel;
  /** Where lines go (default: standard error). */
  readonly write?: (line: string) => void;
  /** Wall clock for the `time` field. */
  readonly clock?: Clock;
  readonly bindings?: object;
}

function errorFields(value: unknown): unknown {
  if (!(value instanceof Error)) return value;
  const out: Record<string, unknown> = { type: value.name, message: value.message };
  const code = (value as { code?: unknown }).code;
  if (code !== undefined) out["code"] = code;
  if (value.stack !== undefined) out["stack"] = value.stack;
  return out;
}

/**
 * A dependency-free logger writing pino-compatible JSON lines (`level`, `time`, `msg`, bindings).
 * Applications usually pass pino itself; this is the default so core needs nothing.
 */
export function createJsonLogger(options: JsonLoggerOptions = {}): Logger {
  const threshold = LEVELS[options.level ?? "warn"];
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const bindings = options.bindings ?? {};
  const make = (level: Exclude<LogLevel, "silent" | "fatal">) => {
    const n = LEVELS[level];
    if (n < threshold) return () => {};
    return (obj: object, msg?: string) => {
      const fields: Record<string, unknown> = { level: n };
      if (options.clock !== undefined) fields["time"] = options.clock.wallNow();
      Object.assign(fields, bindings);
      for (const [k, v] of Object.entries(obj)) fields[k] = k === "err" ? errorFields(v) : v;
      if (msg !== undefined) fields["msg"] = msg;
      write(`${JSON.stringify(fields)}\n`);
    };
  };
  return {
    trace: make("trace"),
    debug: make("debug"),
    info: make("info"),
    warn: make("warn"),
    error: make("error"),
    child: (more) => createJsonLogger({ ...options, bindings: { ...bindings, ...more } }),
  };
}

const noop = () => {};
/** A logger that drops everything. */
export const silentLogger: Logger = {
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
};
