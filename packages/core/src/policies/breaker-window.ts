import type { Env } from "../env/index.ts";

// The closed state's record of recent calls, one kind per breaker policy. `add` returns true when
// the breaker should open.

/** A closed breaker's record of recent calls, as exported by `toJSON`. */
export type BreakerWindowSnapshot =
  /** Failures in a row. */
  | { readonly kind: "consecutive"; readonly failures: number }
  /** Outcomes, oldest first: bit 1 = failure, bit 2 = slow. */
  | { readonly kind: "count-window"; readonly outcomes: readonly number[] }
  /**
   * Buckets, newest first, as `[calls, failures, slow]`; the newest began `currentAgeMs` ago and
   * each other one bucket width before the next.
   */
  | {
      readonly kind: "time-window";
      readonly currentAgeMs: number;
      readonly buckets: ReadonlyArray<readonly [number, number, number]>;
    };

/** Thresholds shared by the rate-based windows. */
export interface RateRule {
  readonly failureRate: number;
  readonly minimumCalls: number;
  /** Rate of slow calls that opens the breaker; Infinity when slow calls are not watched. */
  readonly slowRate: number;
}

export interface FailureWindow {
  /** Records a finished call; true when the breaker should open. */
  add(failure: boolean, slow: boolean, now: number): boolean;
  /** True when `add` needs the current time. */
  readonly needsTime: boolean;
  reset(now: number): void;
  snapshot(now: number): BreakerWindowSnapshot;
  /** Loads a snapshot of the same kind; false if it does not fit this window. */
  restore(snapshot: BreakerWindowSnapshot, now: number): boolean;
}

function opens(rule: RateRule, calls: number, failures: number, slow: number): boolean {
  return (
    calls >= rule.minimumCalls &&
    (failures >= rule.failureRate * calls || slow >= rule.slowRate * calls)
  );
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

export class ConsecutiveWindow implements FailureWindow {
  readonly needsTime = false;
  readonly #threshold: number;
  #failures = 0;

  constructor(threshold: number) {
    this.#threshold = threshold;
  }

  add(failure: boolean): boolean {
    this.#failures = failure ? this.#failures + 1 : 0;
    return this.#failures >= this.#threshold;
  }

  reset(): void {
    this.#failures = 0;
  }

  snapshot(): BreakerWindowSnapshot {
    return { kind: "consecutive", failures: this.#failures };
  }

  restore(s: BreakerWindowSnapshot): boolean {
    if (s.kind !== "consecutive" || !isCount(s.failures) || s.failures >= this.#threshold) {
      return false;
    }
    this.#failures = s.failures;
    return true;
  }
}

export class CountWindow implements FailureWindow {
  readonly needsTime = false;
  readonly #rule: RateRule;
  readonly #ring: Uint8Array;
  #next = 0;
  #calls = 0;
  #failures = 0;
  #slow = 0;

  constructor(size: number, rule: RateRule) {
    this.#ring = new Uint8Array(size);
    this.#rule = rule;
  }

  add(failure: boolean, slow: boolean): boolean {
    const ring = this.#ring;
    if (this.#calls === ring.length) {
      const old = ring[this.#next]!;
      this.#failures -= old & 1;
      this.#slow -= old >> 1;
    } else {
      this.#calls++;
    }
    const code = (failure ? 1 : 0) | (slow ? 2 : 0);
    ring[this.#next] = code;
    this.#next = this.#next + 1 === ring.length ? 0 : this.#next + 1;
    this.#failures += code & 1;
    this.#slow += code >> 1;
    return opens(this.#rule, this.#calls, this.#failures, this.#slow);
  }

  reset(): void {
    this.#next = 0;
    this.#calls = 0;
    this.#failures = 0;
    this.#slow = 0;
  }

  snapshot(): BreakerWindowSnapshot {
    const ring = this.#ring;
    const outcomes: number[] = [];
    const first = this.#calls === ring.length ? this.#next : 0;
    for (let k = 0; k < this.#calls; k++) outcomes.push(ring[(first + k) % ring.length]!);
    return { kind: "count-window", outcomes };
  }

  restore(s: BreakerWindowSnapshot): boolean {
    if (
      s.kind !== "count-window" ||
      !Array.isArray(s.outcomes) ||
      s.outcomes.length > this.#ring.length ||
      !s.outcomes.every((o) => isCount(o) && o <= 3)
    ) {
      return false;
    }
    this.reset();
    for (const o of s.outcomes) this.add((o & 1) === 1, (o & 2) === 2);
    return true;
  }
}

export class TimeWindow implements FailureWindow {
  readonly needsTime = true;
  readonly #rule: RateRule;
  readonly #bucketMs: number;
  // Per bucket: calls, failures, slow calls.
  readonly #calls: Int32Array;
  readonly #failures: Int32Array;
  readonly #slowCalls: Int32Array;
  #index = 0;
  #bucketEnd: number;
  #callSum = 0;
  #failureSum = 0;
  #slowSum = 0;

  constructor(env: Env, windowMs: number, buckets: number, rule: RateRule) {
    this.#rule = rule;
    this.#bucketMs = windowMs / buckets;
    this.#calls = new Int32Array(buckets);
    this.#failures = new Int32Array(buckets);
    this.#slowCalls = new Int32Array(buckets);
    this.#bucketEnd = env.clock.now() + this.#bucketMs;
  }

  add(failure: boolean, slow: boolean, now: number): boolean {
    this.#slide(now);
    const i = this.#index;
    this.#calls[i]!++;
    this.#callSum++;
    if (failure) {
      this.#failures[i]!++;
      this.#failureSum++;
    }
    if (slow) {
      this.#slowCalls[i]!++;
      this.#slowSum++;
    }
    return opens(this.#rule, this.#callSum, this.#failureSum, this.#slowSum);
  }

  reset(now: number): void {
    this.#calls.fill(0);
    this.#failures.fill(0);
    this.#slowCalls.fill(0);
    this.#callSum = 0;
    this.#failureSum = 0;
    this.#slowSum = 0;
    this.#bucketEnd = now + this.#bucketMs;
  }

  snapshot(now: number): BreakerWindowSnapshot {
    this.#slide(now);
    const n = this.#calls.length;
    const buckets: Array<readonly [number, number, number]> = [];
    for (let k = 0; k < n; k++) {
      const i = (this.#index - k + n) % n;
      buckets.push([this.#calls[i]!, this.#failures[i]!, this.#slowCalls[i]!]);
    }
    while (buckets.length > 0 && buckets.at(-1)![0] === 0) buckets.pop();
    return { kind: "time-window", currentAgeMs: now - (this.#bucketEnd - this.#bucketMs), buckets };
  }

  restore(s: BreakerWindowSnapshot, now: number): boolean {
    const n = this.#calls.length;
    if (
      s.kind !== "time-window" ||
      typeof s.currentAgeMs !== "number" ||
      !(s.currentAgeMs >= 0 && s.currentAgeMs < this.#bucketMs) ||
      !Array.isArray(s.buckets) ||
      s.buckets.length > n ||
      !s.buckets.every((b) => Array.isArray(b) && b.length === 3 && b.every(isCount))
    ) {
      return false;
    }
    this.reset(now);
    // Align this window's buckets with the exported ones, so a round trip is exact.
    this.#bucketEnd = now - s.currentAgeMs + this.#bucketMs;
    this.#index = 0;
    s.buckets.forEach(([calls, failures, slow], k) => {
      const i = (n - k) % n;
      this.#calls[i] = calls;
      this.#failures[i] = failures;
      this.#slowCalls[i] = slow;
      this.#callSum += calls;
      this.#failureSum += failures;
      this.#slowSum += slow;
    });
    return true;
  }

  #slide(now: number): void {
    if (now < this.#bucketEnd) return;
    const n = this.#calls.length;
    const steps = Math.floor((now - this.#bucketEnd) / this.#bucketMs) + 1;
    for (let k = 0; k < Math.min(steps, n); k++) {
      const i = (this.#index + 1) % n;
      this.#index = i;
      this.#callSum -= this.#calls[i]!;
      this.#failureSum -= this.#failures[i]!;
      this.#slowSum -= this.#slowCalls[i]!;
      this.#calls[i] = 0;
      this.#failures[i] = 0;
      this.#slowCalls[i] = 0;
    }
    this.#bucketEnd += steps * this.#bucketMs;
  }
}
