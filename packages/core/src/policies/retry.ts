import type { Env } from "../env/index.ts";
import { isKeelError } from "../errors/index.ts";
import { type Backoff, backoffDelay, checkBackoff } from "./backoff.ts";
import { PassContext } from "./context.ts";
import { Emitter, type PolicyEvent } from "./event.ts";
import {
  cancelledBy,
  checkEnv,
  checkFunction,
  checkNumber,
  checkOptions,
  configError,
  retryAfterOf,
} from "./internal.ts";
import type { RetryBudget } from "./retry-budget.ts";
import type { AttemptContext, ExecuteOptions, Policy, PolicyFn } from "./types.ts";

/** Options of `retry`. */
export interface RetryOptions {
  readonly env: Env;
  /** Attempts in all, the first included (1 = never retry). */
  readonly maxAttempts: number;
  readonly backoff: Backoff;
  /** No wait is longer: the backoff is capped at it, and a retry hint above it ends retrying. */
  readonly maxDelayMs: number;
  /** Whether an error may be retried (default: a KeelError with `retryable: true`). */
  readonly retryOn?: (error: unknown, attempt: number) => boolean;
  /** A budget shared by the retry policies of one client; without it, only maxAttempts bounds load. */
  readonly budget?: RetryBudget;
}

/** Why a retry policy stopped retrying and returned the last error. */
export type GiveUpReason =
  /** `retryOn` refused the error. */
  | "not-retryable"
  /** maxAttempts were made. */
  | "attempts"
  /** The next attempt would start at or after the deadline. */
  | "deadline"
  /** The retry budget was spent. */
  | "budget"
  /** The server asked for a wait (`details.retryAfterMs`) longer than maxDelayMs. */
  | "delay"
  /** The caller's signal aborted. */
  | "cancelled";

/** Emitted before each retry's wait. */
export interface RetryEvent {
  /** The number of the attempt about to run (1 for the first retry). */
  readonly attempt: number;
  readonly delayMs: number;
  /** The error of the attempt that failed. */
  readonly error: unknown;
}

/** Emitted when a call fails for good. */
export interface GiveUpEvent {
  readonly reason: GiveUpReason;
  /** Attempts made. */
  readonly attempts: number;
  readonly error: unknown;
}

/** A retry policy. */
export interface RetryPolicy extends Policy {
  readonly kind: "retry";
  readonly maxAttempts: number;
  /**
   * Low-level, for callers that run their own attempts (the runtime, choosing another endpoint
   * each time): call once per call, before its first attempt; it feeds the budget.
   */
  begin(): void;
  /**
   * Low-level: after attempt `attempt` (0-based) failed with `error`, the delay in ms before the
   * next one, or why to give up (onGiveUp is then emitted). A returned delay has been taken from
   * the budget. Pass back as `previousMs` the delay this returned last time (0 at first), and
   * the call's deadline on the Env's clock.
   */
  nextDelay(
    error: unknown,
    attempt: number,
    previousMs: number,
    deadline?: number,
  ): number | GiveUpReason;
  readonly onRetry: PolicyEvent<RetryEvent>;
  readonly onGiveUp: PolicyEvent<GiveUpEvent>;
}

const defaultRetryOn = (error: unknown): boolean => isKeelError(error) && error.retryable;

/**
 * Retries failed attempts with backoff, within maxAttempts, the call's deadline and an optional
 * retry budget. Honours `details.retryAfterMs` of an error (waits at least that long). Each
 * attempt's context has `attempt` = 0, 1, …, so `fn` can pick another endpoint.
 *
 * @example
 * const policy = retry({
 *   env,
 *   maxAttempts: 4,
 *   backoff: { kind: "decorrelated-jitter", initialMs: 50, maxMs: 2000 },
 *   maxDelayMs: 2000,
 *   budget: retryBudget({ env, ratio: 0.1, minRetriesPerSecond: 10, windowMs: 10_000 }),
 * });
 * const user = await policy.execute((ctx) => fetchUser(id, ctx.signal), { deadline });
 */
export function retry(options: RetryOptions): RetryPolicy {
  const name = "retry";
  checkOptions(name, options);
  const env = checkEnv(name, options.env);
  checkNumber(name, "maxAttempts", options.maxAttempts, { integer: true, min: 1 });
  checkBackoff(name, options.backoff);
  checkNumber(name, "maxDelayMs", options.maxDelayMs, { min: 0, infinite: true });
  checkFunction(name, "retryOn", options.retryOn);
  const budget = options.budget;
  if (budget !== undefined && (typeof budget !== "object" || budget.kind !== "retry-budget")) {
    throw configError(name, "budget must come from retryBudget()");
  }
  return new Retry(env, options);
}

class Retry implements RetryPolicy {
  readonly kind = "retry";
  readonly maxAttempts: number;
  readonly #env: Env;
  readonly #backoff: Backoff;
  readonly #maxDelayMs: number;
  readonly #retryOn: (error: unknown, attempt: number) => boolean;
  readonly #budget: RetryBudget | undefined;
  readonly #retry = new Emitter<RetryEvent>();
  readonly #giveUp = new Emitter<GiveUpEvent>();
  readonly onRetry = this.#retry.event;
  readonly onGiveUp = this.#giveUp.event;

  constructor(env: Env, options: RetryOptions) {
    this.#env = env;
    this.maxAttempts = options.maxAttempts;
    this.#backoff = options.backoff;
    this.#maxDelayMs = options.maxDelayMs;
    this.#retryOn = options.retryOn ?? defaultRetryOn;
    this.#budget = options.budget;
  }

  begin(): void {
    this.#budget?.deposit();
  }

  nextDelay(
    error: unknown,
    attempt: number,
    previousMs: number,
    deadline = Number.POSITIVE_INFINITY,
  ): number | GiveUpReason {
    const reason = this.#decide(error, attempt, previousMs, deadline);
    if (typeof reason !== "number") this.#gaveUp(reason, attempt + 1, error);
    return reason;
  }

  #decide(
    error: unknown,
    attempt: number,
    previousMs: number,
    deadline: number,
  ): number | GiveUpReason {
    if (!this.#retryOn(error, attempt)) return "not-retryable";
    if (attempt + 1 >= this.maxAttempts) return "attempts";
    let delay = Math.min(
      this.#maxDelayMs,
      backoffDelay(this.#backoff, attempt, previousMs, this.#env.random),
    );
    const hint = retryAfterOf(error);
    if (hint !== undefined && hint > delay) {
      if (hint > this.#maxDelayMs) return "delay";
      delay = hint;
    }
    // An attempt that would start at the deadline could only fail: give up now, with the error
    // the caller can act on, instead of after a pointless wait.
    if (this.#env.clock.now() + delay >= deadline) return "deadline";
    // Last, so that no token is spent on a retry refused for another reason.
    if (this.#budget !== undefined && !this.#budget.tryWithdraw()) return "budget";
    return delay;
  }

  #gaveUp(reason: GiveUpReason, attempts: number, error: unknown): void {
    if (this.#giveUp.active) this.#giveUp.emit({ reason, attempts, error });
  }

  async execute<T>(fn: PolicyFn<T>, options?: ExecuteOptions): Promise<T> {
    this.#budget?.deposit();
    const deadline = options?.deadline ?? Number.POSITIVE_INFINITY;
    let previous = 0;
    for (let attempt = 0; ; attempt++) {
      const ctx: AttemptContext =
        options === undefined
          ? { attempt, signal: undefined, deadline }
          : new PassContext(options, attempt, deadline);
      try {
        return await fn(ctx);
      } catch (error) {
        // The signal is read only now: on the success path an outer lazy one stays uncreated.
        const signal = options?.signal;
        if (signal?.aborted === true) {
          this.#gaveUp("cancelled", attempt + 1, error);
          throw cancelledBy(signal.reason);
        }
        const delay = this.nextDelay(error, attempt, previous, deadline);
        if (typeof delay !== "number") throw error;
        previous = delay;
        if (this.#retry.active) this.#retry.emit({ attempt: attempt + 1, delayMs: delay, error });
        if (delay > 0) {
          try {
            await this.#env.timers.sleep(delay, signal);
          } catch (reason) {
            this.#gaveUp("cancelled", attempt + 1, error);
            throw cancelledBy(reason);
          }
        }
      }
    }
  }
}
