import { type Clock, DEFAULT_REDACT_KEYS, type Logger, type LogLevel } from "@keel/core";
import { pino } from "pino";
import { UsageError } from "./usage.ts";

const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
const LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/** The log levels of a process: a base level and levels per module (`keel.calls`, a service). */
export interface LogLevels {
  readonly level: LogLevel;
  readonly levels: Readonly<Record<string, LogLevel>>;
}

function checkLevel(value: string, spec: string): LogLevel {
  if (!(LEVELS as readonly string[]).includes(value)) {
    throw new UsageError(
      `--log-level: unknown level '${value}' in '${spec}' (one of ${LEVELS.join(", ")})`,
    );
  }
  return value as LogLevel;
}

/**
 * Parses `--log-level`: a base level and `module=level` pairs, comma-separated, e.g.
 * `info,keel.calls=debug,orders=debug`. Throws a UsageError on an unknown level.
 */
export function parseLogLevels(spec: string, fallback: LogLevel = "info"): LogLevels {
  let level = fallback;
  const levels: Record<string, LogLevel> = {};
  for (const part of spec.split(",").map((s) => s.trim())) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq < 0) level = checkLevel(part, spec);
    else levels[part.slice(0, eq).trim()] = checkLevel(part.slice(eq + 1).trim(), spec);
  }
  return { level, levels };
}

/** The level of `module`: its own, else its longest dotted prefix's, else undefined. */
function moduleLevel(levels: Readonly<Record<string, LogLevel>>, module: string) {
  for (let m = module; ; m = m.slice(0, m.lastIndexOf("."))) {
    if (Object.hasOwn(levels, m)) return levels[m];
    if (!m.includes(".")) return undefined;
  }
}

/**
 * pino `redact` paths for secret keys: each key in the spellings people use (`apiKey`, `apikey`,
 * `ApiKey`, `api_key`, `API_KEY`), at the top level and up to three levels deep (pino's
 * wildcards match one level each).
 */
export function pinoRedactPaths(keys: readonly string[] = DEFAULT_REDACT_KEYS): string[] {
  const out = new Set<string>();
  for (const key of keys) {
    const snake = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    const spellings = new Set([
      key,
      key.toLowerCase(),
      key.charAt(0).toUpperCase() + key.slice(1),
      snake,
      snake.toUpperCase(),
    ]);
    for (const s of spellings)
      for (const prefix of ["", "*.", "*.*.", "*.*.*."]) out.add(prefix + s);
  }
  return [...out];
}

/** Formats one value for a text log line: strings bare unless they contain spaces, the rest as JSON. */
function field(value: unknown): string {
  if (typeof value === "string") return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  return JSON.stringify(value) ?? String(value);
}

/** Turns one of pino's JSON lines into `2026-01-01T00:00:00.000Z INFO message key=value`. */
export function textLine(json: string): string {
  const { level, time, msg, err, ...rest } = JSON.parse(json) as Record<string, unknown>;
  const pairs = Object.entries(rest).map(([k, v]) => `${k}=${field(v)}`);
  if (typeof err === "object" && err !== null) {
    const e = err as { message?: unknown; code?: unknown };
    pairs.push(`err=${field(e.code === undefined ? e.message : `${e.code}: ${e.message}`)}`);
  }
  const when = typeof time === "number" ? new Date(time).toISOString() : "";
  const name = LEVEL_NAMES[Number(level)] ?? String(level);
  return `${[when, name, typeof msg === "string" ? msg : "", pairs.join(" ")].filter((s) => s !== "").join(" ")}\n`;
}

/** Options of the CLI's logger. */
export interface CliLoggerOptions extends Partial<LogLevels> {
  /** JSON lines (pino's shape) when true, text for people otherwise. */
  readonly json: boolean;
  /** Wall clock for the `time` field. */
  readonly clock: Clock;
  /** Where lines go (default standard error). */
  readonly write?: (line: string) => void;
  /** Secret keys to redact (default `DEFAULT_REDACT_KEYS`). */
  readonly redact?: readonly string[];
}

/**
 * The CLI's logger: pino, with secret fields redacted through pino's own `redact` option and
 * levels per module (a child whose bindings have `module` takes that module's level). With
 * `json`, pino's JSON lines as they are; otherwise the same lines rendered as text.
 */
export function createCliLogger(options: CliLoggerOptions): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const levels = options.levels ?? {};
  const clock = options.clock;
  return pino(
    {
      level: options.level ?? "info",
      redact: { paths: pinoRedactPaths(options.redact), censor: "[Redacted]" },
      timestamp: () => `,"time":${Math.round(clock.wallNow())}`,
      ...(options.json ? {} : { base: null }),
      onChild(child) {
        const module = child.bindings()["module"];
        const level = typeof module === "string" ? moduleLevel(levels, module) : undefined;
        if (level !== undefined) child.level = level;
      },
    },
    { write: options.json ? write : (line: string) => write(textLine(line)) },
  );
}

/** The CLI's logger on standard error: JSON lines with `--json`, text otherwise. */
export function cliLogger(
  json: boolean,
  clock: Clock,
  level: LogLevel = "info",
  levels: Readonly<Record<string, LogLevel>> = {},
): Logger {
  return createCliLogger({ json, clock, level, levels });
}
