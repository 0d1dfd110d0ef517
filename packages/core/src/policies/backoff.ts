import type { Random } from "../env/index.ts";
import { checkNumber, configError } from "./internal.ts";

/**
 * How long to wait before each retry. The jittered kinds follow the AWS Architecture Blog's
 * "Exponential Backoff and Jitter": jitter spreads the retries of many clients that failed
 * together, so they do not come back together.
 */
export type Backoff =
  /** The same delay every time. */
  | { readonly kind: "constant"; readonly delayMs: number }
  /** `initialMs * factor^n` for the n-th retry (factor 2 by default), capped at `maxMs`. */
  | {
      readonly kind: "exponential";
      readonly initialMs: number;
      readonly factor?: number;
      readonly maxMs?: number;
    }
  /** Uniform in `[0, min(maxMs, initialMs * 2^n)]`. */
  | { readonly kind: "full-jitter"; readonly initialMs: number; readonly maxMs: number }
  /** Uniform in `[initialMs, min(maxMs, previous * 3)]`, the previous delay starting at `initialMs`. */
  | { readonly kind: "decorrelated-jitter"; readonly initialMs: number; readonly maxMs: number };

/** Checks a Backoff; throws CONFIGURATION for a bad one. */
export function checkBackoff(policy: string, backoff: unknown): Backoff {
  if (typeof backoff !== "object" || backoff === null) {
    throw configError(policy, "backoff must be an object with a kind");
  }
  const b = backoff as Backoff;
  switch (b.kind) {
    case "constant":
      checkNumber(policy, "backoff.delayMs", b.delayMs, { min: 0 });
      return b;
    case "exponential":
      checkNumber(policy, "backoff.initialMs", b.initialMs, { min: 0 });
      if (b.factor !== undefined) checkNumber(policy, "backoff.factor", b.factor, { min: 1 });
      if (b.maxMs !== undefined) {
        checkNumber(policy, "backoff.maxMs", b.maxMs, { min: b.initialMs, infinite: true });
      }
      return b;
    case "full-jitter":
    case "decorrelated-jitter":
      checkNumber(policy, "backoff.initialMs", b.initialMs, { above: 0 });
      checkNumber(policy, "backoff.maxMs", b.maxMs, { min: b.initialMs, infinite: true });
      return b;
    default:
      throw configError(
        policy,
        `backoff.kind must be "constant", "exponential", "full-jitter" or "decorrelated-jitter", got ${String((b as { kind?: unknown }).kind)}`,
      );
  }
}

/**
 * The delay before retry number `retry` (0 for the first retry), in ms. `previousMs` is the delay
 * returned for the retry before (only decorrelated jitter uses it; pass anything for retry 0).
 */
export function backoffDelay(
  backoff: Backoff,
  retry: number,
  previousMs: number,
  random: Random,
): number {
  switch (backoff.kind) {
    case "constant":
      return backoff.delayMs;
    case "exponential": {
      const d = backoff.initialMs * (backoff.factor ?? 2) ** retry;
      return Math.min(backoff.maxMs ?? Number.POSITIVE_INFINITY, d);
    }
    case "full-jitter":
      return random.next() * Math.min(backoff.maxMs, backoff.initialMs * 2 ** retry);
    case "decorrelated-jitter": {
      const base = backoff.initialMs;
      const previous = retry === 0 ? base : Math.max(base, previousMs);
      return Math.min(backoff.maxMs, base + random.next() * (previous * 3 - base));
    }
  }
}
