import type { Env } from "../env/index.ts";
import type { KeelError } from "../errors/index.ts";
import { contextOf } from "./context.ts";
import { Emitter, type PolicyEvent } from "./event.ts";
import {
  checkEnv,
  checkNumber,
  checkOptions,
  configError,
  refusal,
  TIME_EPSILON,
} from "./internal.ts";
import type { ExecuteOptions, Policy, PolicyFn } from "./types.ts";

/** Emitted when a rate limiter refuses. */
export interface RateLimitedEvent {
  readonly retryAfterMs: number;
}

/** A rate limiter (token bucket or sliding window). */
export interface RateLimiter extends Policy {
  readonly kind: "token-bucket" | "sliding-window";
  /**
   * Low-level: takes `cost` permits (default 1). Returns 0 when granted, otherwise the exact time
   * in ms after which the same request would be granted (nothing is taken then).
   */
  tryAcquire(cost?: number): number;
  /** Permits that could be taken now. */
  readonly available: number;
  readonly onRateLimited: PolicyEvent<RateLimitedEvent>;
}

/** Options of `tokenBucket`. */
export interface TokenBucketOptions {
  readonly env: Env;
  /** Steady rate at which permits come back. */
  readonly ratePerSecond: number;
  /** Permits that can be taken at once after a quiet period (the bucket's size). */
  readonly burst: number;
}

/** Options of `slidingWindow`. */
export interface SlidingWindowOptions {
  readonly env: Env;
  /** Permits granted in any window of `windowMs`. */
  readonly limit: number;
  readonly windowMs: number;
}

/**
 * A token bucket: `burst` permits, refilled continuously at `ratePerSecond`. Refusals are
 * RATE_LIMITED with the exact `details.retryAfterMs`. Kept as one number (GCRA, the "theoretical
 * arrival time"), so it needs no timer and no refill loop.
 *
 * @example
 * const limiter = tokenBucket({ env, ratePerSecond: 100, burst: 20 });
 * await limiter.execute(() => send(message)); // RATE_LIMITED when over
 */
export function tokenBucket(options: TokenBucketOptions): RateLimiter {
  const name = "tokenBucket";
  checkOptions(name, options);
  const env = checkEnv(name, options.env);
  checkNumber(name, "ratePerSecond", options.ratePerSecond, { above: 0 });
  checkNumber(name, "burst", options.burst, { integer: true, min: 1 });
  return new TokenBucket(env, options.ratePerSecond, options.burst);
}

/**
 * A sliding-window limit: at most `limit` permits in any `windowMs`. Exact (it remembers the time
 * of each permit in the window, so memory grows with `limit`); refusals are RATE_LIMITED with the
 * exact `details.retryAfterMs`.
 *
 * @example
 * const limiter = slidingWindow({ env, limit: 5, windowMs: 60_000 }); // 5 logins a minute
 */
export function slidingWindow(options: SlidingWindowOptions): RateLimiter {
  const name = "slidingWindow";
  checkOptions(name, options);
  const env = checkEnv(name, options.env);
  checkNumber(name, "limit", options.limit, { integer: true, min: 1, max: 10_000_000 });
  checkNumber(name, "windowMs", options.windowMs, { above: 0 });
  return new SlidingWindow(env, options.limit, options.windowMs);
}

abstract class Limiter implements RateLimiter {
  abstract readonly kind: "token-bucket" | "sliding-window";
  protected readonly env: Env;
  readonly #limited = new Emitter<RateLimitedEvent>();
  readonly onRateLimited = this.#limited.event;

  constructor(env: Env) {
    this.env = env;
  }

  /** Takes `cost` permits: 0, or the wait before they could be taken (then nothing is taken). */
  protected abstract take(cost: number): number;
  abstract get available(): number;

  tryAcquire(cost = 1): number {
    const wait = this.take(cost);
    if (wait > 0 && this.#limited.active) this.#limited.emit({ retryAfterMs: wait });
    return wait;
  }

  async execute<T>(fn: PolicyFn<T>, options?: ExecuteOptions): Promise<T> {
    const wait = this.take(1);
    if (wait > 0) throw this.refused(wait);
    return await fn(contextOf(options));
  }

  protected refused(retryAfterMs: number): KeelError {
    if (this.#limited.active) this.#limited.emit({ retryAfterMs });
    return refusal("RATE_LIMITED", `rate limit exceeded; retry after ${retryAfterMs} ms`, {
      refusedBy: this.kind,
      retryAfterMs,
    });
  }

  protected checkCost(cost: number, max: number): void {
    if (!(Number.isInteger(cost) && cost >= 1 && cost <= max)) {
      throw configError(this.kind, `cost must be an integer in 1..${max}, got ${cost}`);
    }
  }
}

class TokenBucket extends Limiter {
  readonly kind = "token-bucket";
  /** ms per permit. */
  readonly #interval: number;
  readonly #burst: number;
  /**
   * When the bucket will be full again if nothing more is taken ("theoretical arrival time"):
   * permits available at `now` are `burst - (tat - now) / interval`.
   */
  #tat: number;

  constructor(env: Env, ratePerSecond: number, burst: number) {
    super(env);
    this.#interval = 1000 / ratePerSecond;
    this.#burst = burst;
    this.#tat = env.clock.now();
  }

  protected take(cost: number): number {
    if (cost !== 1) this.checkCost(cost, this.#burst);
    const now = this.env.clock.now();
    const tat = Math.max(this.#tat, now) + cost * this.#interval;
    const wait = tat - now - this.#burst * this.#interval;
    if (wait > TIME_EPSILON) return wait;
    this.#tat = tat;
    return 0;
  }

  get available(): number {
    const now = this.env.clock.now();
    const owed = this.#tat > now ? (this.#tat - now) / this.#interval : 0;
    return Math.floor(this.#burst - owed + TIME_EPSILON / this.#interval);
  }
}

class SlidingWindow extends Limiter {
  readonly kind = "sliding-window";
  readonly #windowMs: number;
  /** Times of the permits in the window, oldest at `#head`: a ring of size `limit`. */
  readonly #times: Float64Array;
  #head = 0;
  #count = 0;

  constructor(env: Env, limit: number, windowMs: number) {
    super(env);
    this.#windowMs = windowMs;
    this.#times = new Float64Array(limit);
  }

  protected take(cost: number): number {
    const times = this.#times;
    const limit = times.length;
    if (cost !== 1) this.checkCost(cost, limit);
    const now = this.env.clock.now();
    this.#evict(now);
    const over = this.#count + cost - limit;
    if (over > 0) {
      // The `over`-th oldest permit must leave the window first.
      const wait = times[(this.#head + over - 1) % limit]! + this.#windowMs - now;
      return wait;
    }
    for (let k = 0; k < cost; k++) times[(this.#head + this.#count++) % limit] = now;
    return 0;
  }

  get available(): number {
    this.#evict(this.env.clock.now());
    return this.#times.length - this.#count;
  }

  #evict(now: number): void {
    const times = this.#times;
    const expired = now - this.#windowMs + TIME_EPSILON;
    while (this.#count > 0 && times[this.#head]! <= expired) {
      this.#head = this.#head + 1 === times.length ? 0 : this.#head + 1;
      this.#count--;
    }
  }
}
