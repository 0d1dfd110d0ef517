import { contextOf } from "./context.ts";
import type { FallbackPolicy } from "./fallback.ts";
import { checkOptions, configError } from "./internal.ts";
import type { ExecuteOptions, Policy, PolicyFn } from "./types.ts";

/**
 * What a policy may return instead of the function's result (a fallback's value). Matched by
 * type reference first: inferring `E` from a policy's generic `execute` alone yields `unknown`.
 * Built-in policies other than fallback (they have a `kind`) add nothing.
 */
type ExtraOf<P> =
  P extends FallbackPolicy<infer F>
    ? F
    : P extends Pipeline<infer E>
      ? E
      : P extends { readonly kind: string }
        ? never
        : P extends Policy<infer E>
          ? E
          : never;

/** Policies composed by `pipeline`. */
export interface Pipeline<Extra = never> extends Policy<Extra> {
  readonly kind: "pipeline";
  /** The policies, outermost first. */
  readonly policies: ReadonlyArray<Policy<unknown>>;
}

/**
 * Composes policies, outermost first: `pipeline(a, b, c).execute(fn)` is
 * `a.execute((ctx) => b.execute((ctx) => c.execute(fn, ctx), ctx), options)`. Each policy's
 * context is the next one's options, so signals, deadlines and attempt numbers flow inwards.
 *
 * The recommended order is
 * `fallback → retry → circuitBreaker → hedge → bulkhead | rate limiter → timeout`:
 * - fallback outermost: it sees every failure, breaker refusals and spent retries included;
 * - retry outside the breaker: each attempt asks the breaker and counts in it, and a breaker
 *   refusal's `retryAfterMs` paces the retry (or ends it, past maxDelayMs or the deadline);
 * - the breaker outside hedging: one call is one outcome, however many hedges it took;
 * - hedging outside the bulkhead and limiters: every hedge is extra load and takes its own slot
 *   or permit, so hedging cannot exceed the limits;
 * - timeout innermost: it bounds each attempt (hedges included) and leaves the rest of the
 *   caller's deadline to retries; a timeout outside retry would bound the whole call, which is
 *   what the caller's `deadline` is for.
 *
 * @example
 * const resilient = pipeline(
 *   fallback({ value: undefined }),
 *   retry({ env, maxAttempts: 3, backoff, maxDelayMs: 1_000, budget }),
 *   circuitBreaker({ env, policy: { kind: "consecutive", threshold: 5 }, halfOpenAfterMs: 5_000 }),
 *   bulkhead({ env, maxConcurrent: 32, maxQueue: 0 }),
 *   timeout({ env, ms: 500 }),
 * );
 * const user = await resilient.execute((ctx) => users.get(id, ctx), { deadline, signal });
 */
export function pipeline<const P extends ReadonlyArray<Policy<unknown>>>(
  ...policies: P
): Pipeline<ExtraOf<P[number]>> {
  policies.forEach((p, i) => {
    checkOptions("pipeline", p);
    if (typeof p.execute !== "function") {
      throw configError("pipeline", `policy ${i} has no execute method`);
    }
  });
  return new Chain(policies) as Pipeline<ExtraOf<P[number]>>;
}

class Chain implements Pipeline<unknown> {
  readonly kind = "pipeline";
  readonly policies: ReadonlyArray<Policy<unknown>>;

  constructor(policies: ReadonlyArray<Policy<unknown>>) {
    this.policies = [...policies];
  }

  execute<T>(fn: PolicyFn<T>, options?: ExecuteOptions): Promise<unknown> {
    if (this.policies.length === 0) {
      try {
        return Promise.resolve(fn(contextOf(options)));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.#run(0, fn, options);
  }

  #run<T>(i: number, fn: PolicyFn<T>, options: ExecuteOptions | undefined): Promise<unknown> {
    const policy = this.policies[i]!;
    if (i + 1 === this.policies.length) return policy.execute(fn, options);
    return policy.execute((ctx) => this.#run(i + 1, fn, ctx), options);
  }
}
