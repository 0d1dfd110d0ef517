import type { Env } from "../env/index.ts";
import { checkEnv, checkNumber, checkOptions } from "./internal.ts";

/** Options of `retryBudget`. */
export interface RetryBudgetOptions {
  readonly env: Env;
  /** Retries earned per first attempt, e.g. 0.1: retries stay within 10 % of requests. */
  readonly ratio: number;
  /** Retries allowed per second however few requests there are (the floor), e.g. 10. */
  readonly minRetriesPerSecond: number;
  /** Sliding window over which first attempts and retries are counted, e.g. 10 000 ms. */
  readonly windowMs: number;
  /** Buckets of the sliding window (default 10): the window slides by `windowMs / buckets`. */
  readonly buckets?: number;
}

/** A retry budget, shared by every retry policy of one client. */
export interface RetryBudget {
  readonly kind: "retry-budget";
  /** Records a first attempt: it earns `ratio` of a retry. */
  deposit(): void;
  /** Takes one retry from the budget; false when it is spent (the retry must not happen). */
  tryWithdraw(): boolean;
  /** Retries the budget would allow now (may be fractional). */
  readonly available: number;
}

/**
 * A retry budget in the style of Finagle's and gRPC's: each first attempt deposits `ratio` tokens,
 * each retry withdraws one, both counted over a sliding window. Under an outage where every call
 * fails, retries add at most `ratio` to the load instead of multiplying it by maxAttempts.
 *
 * The floor differs from Finagle's reserve on purpose: the window allows
 * `max(ratio * firstAttempts, minRetriesPerSecond * windowSeconds)` retries, not their sum, so a
 * busy client stays within `ratio` while a quiet one can still retry.
 *
 * @example
 * const budget = retryBudget({ env, ratio: 0.1, minRetriesPerSecond: 10, windowMs: 10_000 });
 * const a = retry({ env, maxAttempts: 3, backoff, maxDelayMs: 1000, budget });
 * const b = retry({ env, maxAttempts: 5, backoff, maxDelayMs: 1000, budget }); // same client
 */
export function retryBudget(options: RetryBudgetOptions): RetryBudget {
  const name = "retryBudget";
  checkOptions(name, options);
  const env = checkEnv(name, options.env);
  const ratio = checkNumber(name, "ratio", options.ratio, { min: 0 });
  const floorPerSecond = checkNumber(name, "minRetriesPerSecond", options.minRetriesPerSecond, {
    min: 0,
  });
  const windowMs = checkNumber(name, "windowMs", options.windowMs, { above: 0 });
  const buckets = checkNumber(name, "buckets", options.buckets ?? 10, {
    integer: true,
    min: 1,
    max: 1000,
  });
  return new WindowedBudget(env, ratio, floorPerSecond * (windowMs / 1000), windowMs, buckets);
}

// Withdrawals compare a sum of `ratio`s against whole retries: 10 deposits of 0.1 must buy one.
const SLACK = 1e-9;

class WindowedBudget implements RetryBudget {
  readonly kind = "retry-budget";
  readonly #env: Env;
  readonly #ratio: number;
  readonly #floor: number;
  readonly #bucketMs: number;
  readonly #deposits: Int32Array;
  readonly #withdrawals: Int32Array;
  #index = 0;
  #bucketEnd: number;
  #depositSum = 0;
  #withdrawalSum = 0;

  constructor(env: Env, ratio: number, floor: number, windowMs: number, buckets: number) {
    this.#env = env;
    this.#ratio = ratio;
    this.#floor = floor;
    this.#bucketMs = windowMs / buckets;
    this.#deposits = new Int32Array(buckets);
    this.#withdrawals = new Int32Array(buckets);
    this.#bucketEnd = env.clock.now() + this.#bucketMs;
  }

  deposit(): void {
    this.#slide(this.#env.clock.now());
    this.#deposits[this.#index]!++;
    this.#depositSum++;
  }

  tryWithdraw(): boolean {
    this.#slide(this.#env.clock.now());
    if (this.#balance() < 1 - SLACK) return false;
    this.#withdrawals[this.#index]!++;
    this.#withdrawalSum++;
    return true;
  }

  get available(): number {
    this.#slide(this.#env.clock.now());
    return Math.max(0, this.#balance());
  }

  #balance(): number {
    return Math.max(this.#ratio * this.#depositSum, this.#floor) - this.#withdrawalSum;
  }

  #slide(now: number): void {
    if (now < this.#bucketEnd) return;
    const n = this.#deposits.length;
    const steps = Math.floor((now - this.#bucketEnd) / this.#bucketMs) + 1;
    for (let k = 0; k < Math.min(steps, n); k++) {
      this.#index = (this.#index + 1) % n;
      this.#depositSum -= this.#deposits[this.#index]!;
      this.#withdrawalSum -= this.#withdrawals[this.#index]!;
      this.#deposits[this.#index] = 0;
      this.#withdrawals[this.#index] = 0;
    }
    this.#bucketEnd += steps * this.#bucketMs;
  }
}
