import type { Clock } from "../env/index.ts";
import { KeelError } from "../errors/index.ts";

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

/** Keys whose values the built-in logger never writes (any depth, case and `_`/`-` ignored). */
export const DEFAULT_REDACT_KEYS: readonly string[] = Object.freeze([
  "password",
  "passwd",
  "secret",
  "clientSecret",
  "token",
  "accessToken",
  "refreshToken",
  "idToken",
  "authorization",
  "cookie",
  "setCookie",
  "apiKey",
  "credentials",
  "privateKey",
]);

/** Options for the built-in JSON-lines logger. */
export interface JsonLoggerOptions {
  /** Lowest level written (default `warn`). */
  readonly level?: LogLevel;
  /**
   * Levels per module: a child logger whose bindings have `module: "keel.calls"` takes the level
   * of the longest matching dotted prefix (`keel.calls`, then `keel`), else `level`. Keel's own
   * modules are `keel.node`, `keel.calls`, `keel.server` and `keel.events`; handler loggers
   * (`ctx.log`) use the service's name.
   */
  readonly levels?: Readonly<Record<string, LogLevel>>;
  /**
   * Keys whose values are replaced by `censor`, at any depth, matched ignoring case, `_` and `-`
   * (`apiKey` matches `api_key` and `API-KEY`). Default `DEFAULT_REDACT_KEYS`; pass a list to
   * replace it (spread `DEFAULT_REDACT_KEYS` to extend it), `[]` to turn redaction off.
   */
  readonly redact?: readonly string[];
  /** What a redacted value becomes (default `"[Redacted]"`). */
  readonly censor?: string;
  /** Where lines go (default: standard error). */
  readonly write?: (line: string) => void;
  /** Wall clock for the `time` field. */
  readonly clock?: Clock;
  readonly bindings?: object;
}

const normalize = (key: string) => key.toLowerCase().replace(/[-_]/g, "");

/** Deepest level of nesting the redaction looks into; deeper values are written as "[Too deep]". */
const MAX_DEPTH = 8;

/** Copies `value` with redacted keys censored; errors become `{ type, message, code, stack }`. */
function scrub(
  value: unknown,
  secret: ReadonlySet<string>,
  censor: string,
  depth: number,
): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (value instanceof Error) return errorFields(value, secret, censor, depth);
  if (depth >= MAX_DEPTH) return "[Too deep]";
  if (Array.isArray(value)) return value.map((v) => scrub(v, secret, censor, depth + 1));
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = secret.has(normalize(k)) ? censor : scrub(v, secret, censor, depth + 1);
  }
  return out;
}

function errorFields(
  value: Error,
  secret: ReadonlySet<string>,
  censor: string,
  depth: number,
): Record<string, unknown> {
  const out: Record<string, unknown> = { type: value.name, message: value.message };
  const code = (value as { code?: unknown }).code;
  if (code !== undefined) out["code"] = code;
  const details = (value as { details?: unknown }).details;
  if (details !== undefined) out["details"] = scrub(details, secret, censor, depth + 1);
  if (value.stack !== undefined) out["stack"] = value.stack;
  return out;
}

const LEVEL_NAMES = new Set(Object.keys(LEVELS));

function checkLevel(level: unknown, where: string): LogLevel {
  if (typeof level !== "string" || !LEVEL_NAMES.has(level)) {
    throw new KeelError(
      "CONFIGURATION",
      `${where}: unknown log level '${String(level)}' (one of ${[...LEVEL_NAMES].join(", ")})`,
    );
  }
  return level as LogLevel;
}

/** The level of `module`: its own, else its longest dotted prefix's, else undefined. */
function moduleLevel(
  levels: Readonly<Record<string, LogLevel>>,
  module: string,
): LogLevel | undefined {
  for (let m = module; ; m = m.slice(0, m.lastIndexOf("."))) {
    if (Object.hasOwn(levels, m)) return levels[m];
    if (!m.includes(".")) return undefined;
  }
}

/**
 * A dependency-free logger writing pino-compatible JSON lines (`level`, `time`, `msg`, bindings),
 * with redaction of secret fields and per-module levels. Applications may pass pino itself; this
 * is the default so core needs nothing.
 * @example
 * const logger = createJsonLogger({ level: "info", levels: { "keel.calls": "debug" } });
 * createNode({ id: "a", transport, logger });
 */
export function createJsonLogger(options: JsonLoggerOptions = {}): Logger {
  const level = checkLevel(options.level ?? "warn", "createJsonLogger");
  const levels = options.levels ?? {};
  for (const [m, l] of Object.entries(levels)) checkLevel(l, `createJsonLogger levels['${m}']`);
  const secret = new Set((options.redact ?? DEFAULT_REDACT_KEYS).map(normalize));
  const censor = options.censor ?? "[Redacted]";
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const clock = options.clock;
  const build = (threshold: number, bindings: Record<string, unknown>): Logger => {
    const make = (name: Exclude<LogLevel, "silent" | "fatal">) => {
      const n = LEVELS[name];
      if (n < threshold) return () => {};
      return (obj: object, msg?: string) => {
        const fields: Record<string, unknown> = { level: n };
        if (clock !== undefined) fields["time"] = clock.wallNow();
        Object.assign(fields, bindings);
        for (const [k, v] of Object.entries(obj)) {
          fields[k] = secret.has(normalize(k)) ? censor : scrub(v, secret, censor, 1);
        }
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
      child: (more) => {
        const added = scrub(more, secret, censor, 0) as Record<string, unknown>;
        const module = added["module"];
        const own = typeof module === "string" ? moduleLevel(levels, module) : undefined;
        return build(own === undefined ? threshold : LEVELS[own], { ...bindings, ...added });
      },
    };
  };
  const base = options.bindings === undefined ? {} : options.bindings;
  return build(LEVELS[level], scrub(base, secret, censor, 0) as Record<string, unknown>);
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
