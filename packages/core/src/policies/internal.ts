import type { Env } from "../env/index.ts";
import { type ErrorDetails, isKeelError, KeelError } from "../errors/index.ts";

// Shared helpers of the policies: option checks and the errors policies raise. Not exported from
// the package.

/** The error for an invalid option, raised when a policy is defined. */
export function configError(policy: string, message: string): KeelError {
  return new KeelError("CONFIGURATION", `${policy}: ${message}`);
}

/** Bounds for `checkNumber`; `above`/`below` are exclusive, `min`/`max` inclusive. */
export interface NumberRule {
  readonly min?: number;
  readonly max?: number;
  readonly above?: number;
  readonly below?: number;
  readonly integer?: boolean;
  /** Allow Infinity (otherwise the value must be finite). */
  readonly infinite?: boolean;
}

function describe(rule: NumberRule): string {
  const parts: string[] = [];
  if (rule.integer === true) parts.push("an integer");
  else parts.push(rule.infinite === true ? "a number" : "a finite number");
  if (rule.min !== undefined) parts.push(`>= ${rule.min}`);
  if (rule.above !== undefined) parts.push(`> ${rule.above}`);
  if (rule.max !== undefined) parts.push(`<= ${rule.max}`);
  if (rule.below !== undefined) parts.push(`< ${rule.below}`);
  return parts.join(" ");
}

/** Checks a numeric option and returns it; throws CONFIGURATION naming the option otherwise. */
export function checkNumber(
  policy: string,
  name: string,
  value: unknown,
  rule: NumberRule,
): number {
  const ok =
    typeof value === "number" &&
    !Number.isNaN(value) &&
    (rule.infinite === true || Number.isFinite(value)) &&
    (rule.integer !== true || Number.isInteger(value) || !Number.isFinite(value)) &&
    (rule.min === undefined || value >= rule.min) &&
    (rule.max === undefined || value <= rule.max) &&
    (rule.above === undefined || value > rule.above) &&
    (rule.below === undefined || value < rule.below);
  if (!ok) {
    throw configError(policy, `${name} must be ${describe(rule)}, got ${String(value)}`);
  }
  return value;
}

/** Checks that an options object and its Env are present. */
export function checkOptions(policy: string, options: unknown): void {
  if (typeof options !== "object" || options === null) {
    throw configError(policy, "options must be an object");
  }
}

/** Checks the Env option. */
export function checkEnv(policy: string, env: unknown): Env {
  const e = env as Partial<Env> | undefined;
  if (
    typeof e !== "object" ||
    e === null ||
    typeof e.clock?.now !== "function" ||
    typeof e.timers?.schedule !== "function" ||
    typeof e.random?.next !== "function"
  ) {
    throw configError(policy, "env must be an Env (clock, timers, random)");
  }
  return e as Env;
}

/** Checks an optional function option. */
export function checkFunction(policy: string, name: string, value: unknown): void {
  if (value !== undefined && typeof value !== "function") {
    throw configError(policy, `${name} must be a function`);
  }
}

/** The error for an aborted signal: its reason if that is a KeelError, else CANCELLED. */
export function cancelledBy(reason: unknown, message = "the call was cancelled"): KeelError {
  if (isKeelError(reason)) return reason;
  return new KeelError("CANCELLED", message, {
    noStack: true,
    ...(reason === undefined ? {} : { cause: reason }),
  });
}

/**
 * A refusal raised by a local policy. `refusedBy` tells a breaker it is not the dependency's
 * answer (unless it came back over the wire, when a server's own bulkhead shed the call).
 */
export function refusal(
  code: "CIRCUIT_OPEN" | "OVERLOADED" | "RATE_LIMITED",
  message: string,
  details: ErrorDetails,
): KeelError {
  return new KeelError(code, message, { noStack: true, details });
}

/** The server's retry hint of an error (`details.retryAfterMs`), or undefined. */
export function retryAfterOf(error: unknown): number | undefined {
  if (!isKeelError(error) || error.details === undefined) return undefined;
  const hint = error.details["retryAfterMs"];
  return typeof hint === "number" && hint >= 0 ? hint : undefined;
}

/** True for a value with a `then` method: the function returned a promise. */
export function isPromiseLike<T>(value: Promise<T> | T): value is Promise<T> {
  return (
    value instanceof Promise ||
    (typeof value === "object" &&
      value !== null &&
      typeof (value as { then?: unknown }).then === "function")
  );
}

/**
 * Comparison slack for times, in ms. Times are doubles: `now + (t - now)` may miss `t` by one
 * unit in the last place, and a refusal must not be repeated because of that.
 */
export const TIME_EPSILON = 1e-3;
