import type { Env } from "../env/index.ts";
import { isKeelError, type KeelError } from "../errors/index.ts";
import { contextOf } from "./context.ts";
import { Emitter, type PolicyEvent } from "./event.ts";
import { checkEnv, checkNumber, checkOptions, configError, refusal } from "./internal.ts";
import type { ExecuteOptions, Policy, PolicyFn } from "./types.ts";

/** How the limit adapts, after Netflix's concurrency-limits. */
export type AdaptiveAlgorithm =
  /**
   * Additive increase, multiplicative decrease: +1 per window while the limit is in use,
   * `* backoffRatio` after a window with a drop (or an average RTT above `timeoutMs`).
   */
  | {
      readonly kind: "aimd";
      readonly initial: number;
      readonly min: number;
      readonly max: number;
      readonly backoffRatio: number;
      readonly timeoutMs?: number;
    }
  /**
   * Latency gradient, per window: `limit * clamp(minRtt * tolerance / rtt, 0.5, 1) + sqrt(limit)`
   * with `rtt` the window's average, smoothed (`smoothing`, default 0.2) and clamped. `tolerance`
   * (default 1.5) is how much queueing latency is accepted. minRtt is the least RTT seen; every
   * `longWindow` windows (default 600) it is probed afresh, as in Netflix's GradientLimit: the
   * limit dips to half for two windows while minRtt is re-measured, then comes back. So a
   * lasting slowdown of the dependency is learnt, and the limit does not drift up, as it would
   * if minRtt were simply forgotten under a load that keeps every RTT above the no-load one.
   */
  | {
      readonly kind: "gradient";
      readonly initial: number;
      readonly min: number;
      readonly max: number;
      readonly smoothing?: number;
      readonly tolerance?: number;
      readonly longWindow?: number;
    };

/** Options of `adaptiveLimit`. */
export interface AdaptiveLimitOptions {
  readonly env: Env;
  readonly algorithm: AdaptiveAlgorithm;
}

/**
 * How a call under an adaptive limit ended: a latency sample ("success"), a sign of overload
 * ("dropped": timed out or shed downstream), or no information ("ignore").
 */
export type LimitOutcome = "success" | "dropped" | "ignore";

/** A slot under an adaptive limit. */
export interface AdaptivePermit {
  /** Gives the slot back and feeds the algorithm; `rttMs` defaults to the time since acquiring. */
  release(outcome: LimitOutcome, rttMs?: number): void;
}

/** Emitted when a call is shed. */
export interface LimitShedEvent {
  readonly limit: number;
  readonly inFlight: number;
}

/** Emitted when the (whole) limit changes. */
export interface LimitChangeEvent {
  readonly from: number;
  readonly to: number;
}

/** An adaptive concurrency limit. */
export interface AdaptiveLimitPolicy extends Policy {
  readonly kind: "adaptive-limit";
  /** Calls allowed at once now. */
  readonly limit: number;
  readonly inFlight: number;
  /** Low-level: a slot, or OVERLOADED (retryable) at once when the limit is reached. */
  acquire(): AdaptivePermit | KeelError;
  readonly onShed: PolicyEvent<LimitShedEvent>;
  readonly onLimitChange: PolicyEvent<LimitChangeEvent>;
}

/**
 * An adaptive concurrency limit for a server (per action) or a client (per dependency): it learns
 * how many calls can run at once before latency grows, and sheds the rest immediately with
 * OVERLOADED: it never queues, since queueing is what makes latency grow.
 *
 * Samples are aggregated in windows of `max(10, limit)` samples (about one round trip at full
 * load), and the algorithm runs once per window, as Netflix's WindowedLimit does: updating on
 * every sample reacts to latencies of calls admitted a round trip ago, overshoots and oscillates.
 *
 * @example
 * const limiter = adaptiveLimit({
 *   env,
 *   algorithm: { kind: "gradient", initial: 20, min: 4, max: 500 },
 * });
 * const result = await limiter.execute(() => handler(input)); // OVERLOADED when shed
 */
export function adaptiveLimit(options: AdaptiveLimitOptions): AdaptiveLimitPolicy {
  const name = "adaptiveLimit";
  checkOptions(name, options);
  const env = checkEnv(name, options.env);
  const a = options.algorithm;
  if (typeof a !== "object" || a === null) {
    throw configError(name, "algorithm must be an object with a kind");
  }
  if (a.kind !== "aimd" && a.kind !== "gradient") {
    throw configError(
      name,
      `algorithm.kind must be "aimd" or "gradient", got ${String((a as { kind?: unknown }).kind)}`,
    );
  }
  const min = checkNumber(name, "algorithm.min", a.min, { integer: true, min: 1 });
  const max = checkNumber(name, "algorithm.max", a.max, { integer: true, min });
  checkNumber(name, "algorithm.initial", a.initial, { integer: true, min, max });
  if (a.kind === "aimd") {
    checkNumber(name, "algorithm.backoffRatio", a.backoffRatio, { above: 0, below: 1 });
    if (a.timeoutMs !== undefined) {
      checkNumber(name, "algorithm.timeoutMs", a.timeoutMs, { above: 0 });
    }
    return new AdaptiveLimit(env, new Aimd(a.backoffRatio, a.timeoutMs), a);
  }
  const smoothing = checkNumber(name, "algorithm.smoothing", a.smoothing ?? 0.2, {
    above: 0,
    max: 1,
  });
  const tolerance = checkNumber(name, "algorithm.tolerance", a.tolerance ?? 1.5, { min: 1 });
  // A probe takes two windows: probing more often than every third would never leave it.
  const longWindow = checkNumber(name, "algorithm.longWindow", a.longWindow ?? 600, {
    integer: true,
    min: 3,
  });
  return new AdaptiveLimit(env, new Gradient(smoothing, tolerance, longWindow), a);
}

/** What a window of samples saw. */
interface WindowStats {
  /** Average RTT of the window's successful samples (NaN if none). */
  readonly rtt: number;
  /** Least RTT of the window's successful samples. */
  readonly minRtt: number;
  readonly samples: number;
  /** Most calls in flight when one of the window's calls started. */
  readonly inFlight: number;
  readonly dropped: boolean;
}

/** One step of an algorithm: the new limit after a window. */
interface Algorithm {
  update(limit: number, window: WindowStats): number;
}

class Aimd implements Algorithm {
  readonly #backoff: number;
  readonly #timeoutMs: number;

  constructor(backoffRatio: number, timeoutMs: number | undefined) {
    this.#backoff = backoffRatio;
    this.#timeoutMs = timeoutMs ?? Number.POSITIVE_INFINITY;
  }

  update(limit: number, w: WindowStats): number {
    if (w.dropped || w.rtt > this.#timeoutMs) return limit * this.#backoff;
    // Grow only when the limit is what holds calls back, not when demand is low.
    return w.inFlight * 2 >= limit ? limit + 1 : limit;
  }
}

/** Where the gradient algorithm is in re-measuring the no-load RTT. */
type Probe =
  | { readonly kind: "steady"; readonly windowsLeft: number }
  /** The limit was halved; minRtt is re-measured over `windowsLeft` more windows. */
  | {
      readonly kind: "probing";
      readonly windowsLeft: number;
      readonly minRtt: number;
      /** The limit before the probe, restored after it. */
      readonly limit: number;
    };

class Gradient implements Algorithm {
  readonly #smoothing: number;
  readonly #tolerance: number;
  readonly #probeEvery: number;
  #minRtt = Number.POSITIVE_INFINITY;
  #probe: Probe;

  constructor(smoothing: number, tolerance: number, longWindow: number) {
    this.#smoothing = smoothing;
    this.#tolerance = tolerance;
    this.#probeEvery = longWindow;
    this.#probe = { kind: "steady", windowsLeft: longWindow };
  }

  update(limit: number, w: WindowStats): number {
    const probe = this.#probe;
    if (probe.kind === "probing") {
      // Windows that end during a probe began with calls admitted under the old limit: take the
      // least RTT of both, and hold the limit meanwhile.
      const minRtt = Math.min(probe.minRtt, w.minRtt);
      if (probe.windowsLeft > 1) {
        this.#probe = { ...probe, windowsLeft: probe.windowsLeft - 1, minRtt };
        return limit;
      }
      if (minRtt !== Number.POSITIVE_INFINITY) this.#minRtt = minRtt;
      this.#probe = { kind: "steady", windowsLeft: this.#probeEvery };
      // A dip, not a restart: growing back from half would cost far more than the probe.
      return probe.limit;
    }
    if (w.minRtt < this.#minRtt) this.#minRtt = w.minRtt;
    if (probe.windowsLeft <= 1) {
      this.#probe = { kind: "probing", windowsLeft: 2, minRtt: Number.POSITIVE_INFINITY, limit };
      return limit / 2;
    }
    this.#probe = { kind: "steady", windowsLeft: probe.windowsLeft - 1 };
    // With demand below half the limit, latency says nothing about the limit (as in Netflix's
    // Gradient2): keep it.
    if (!w.dropped && w.inFlight * 2 < limit) return limit;
    const gradient =
      w.dropped || !(w.rtt > 0)
        ? 0.5
        : Math.max(0.5, Math.min(1, (this.#minRtt * this.#tolerance) / w.rtt));
    const target = limit * gradient + Math.sqrt(limit);
    return limit * (1 - this.#smoothing) + target * this.#smoothing;
  }
}

/** Fewest samples in a window: fewer make too noisy an average. */
const MIN_WINDOW = 10;

class Permit implements AdaptivePermit {
  readonly #policy: AdaptiveLimit;
  readonly #start: number;
  readonly #inFlight: number;
  #released = false;

  constructor(policy: AdaptiveLimit, start: number, inFlight: number) {
    this.#policy = policy;
    this.#start = start;
    this.#inFlight = inFlight;
  }

  release(outcome: LimitOutcome, rttMs?: number): void {
    if (this.#released) return;
    this.#released = true;
    this.#policy.complete(outcome, rttMs, this.#start, this.#inFlight);
  }
}

/** How `execute` reads an error: a timeout or a shed downstream is a sign of overload. */
function outcomeOf(error: unknown): LimitOutcome {
  return isKeelError(error) && (error.code === "DEADLINE_EXCEEDED" || error.code === "OVERLOADED")
    ? "dropped"
    : "ignore";
}

class AdaptiveLimit implements AdaptiveLimitPolicy {
  readonly kind = "adaptive-limit";
  readonly #env: Env;
  readonly #algorithm: Algorithm;
  readonly #min: number;
  readonly #max: number;
  /** The estimate, kept fractional so that small steps add up; calls allowed = floor. */
  #estimate: number;
  #limit: number;
  #inFlight = 0;
  // The current window of samples.
  #samples = 0;
  #rttSum = 0;
  #rttCount = 0;
  #minRtt = Number.POSITIVE_INFINITY;
  #maxInFlight = 0;
  #dropped = false;
  readonly #shed = new Emitter<LimitShedEvent>();
  readonly #changes = new Emitter<LimitChangeEvent>();
  readonly onShed = this.#shed.event;
  readonly onLimitChange = this.#changes.event;

  constructor(
    env: Env,
    algorithm: Algorithm,
    bounds: { readonly initial: number; readonly min: number; readonly max: number },
  ) {
    this.#env = env;
    this.#algorithm = algorithm;
    this.#min = bounds.min;
    this.#max = bounds.max;
    this.#estimate = bounds.initial;
    this.#limit = bounds.initial;
  }

  get limit(): number {
    return this.#limit;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  acquire(): AdaptivePermit | KeelError {
    if (this.#inFlight >= this.#limit) return this.#refuse();
    return new Permit(this, this.#env.clock.now(), ++this.#inFlight);
  }

  /** A permit came back (called by Permit.release). */
  complete(
    outcome: LimitOutcome,
    rttMs: number | undefined,
    start: number,
    inFlight: number,
  ): void {
    this.#inFlight--;
    if (outcome === "ignore") return;
    if (outcome === "dropped") {
      this.#dropped = true;
    } else {
      const rtt = rttMs ?? this.#env.clock.now() - start;
      this.#rttSum += rtt;
      this.#rttCount++;
      if (rtt < this.#minRtt) this.#minRtt = rtt;
    }
    if (inFlight > this.#maxInFlight) this.#maxInFlight = inFlight;
    if (++this.#samples < Math.max(MIN_WINDOW, this.#limit)) return;
    const next = this.#algorithm.update(this.#estimate, {
      rtt: this.#rttCount === 0 ? Number.NaN : this.#rttSum / this.#rttCount,
      minRtt: this.#minRtt,
      samples: this.#samples,
      inFlight: this.#maxInFlight,
      dropped: this.#dropped,
    });
    this.#samples = 0;
    this.#rttSum = 0;
    this.#rttCount = 0;
    this.#minRtt = Number.POSITIVE_INFINITY;
    this.#maxInFlight = 0;
    this.#dropped = false;
    this.#estimate = Math.min(this.#max, Math.max(this.#min, next));
    const limit = Math.floor(this.#estimate);
    if (limit !== this.#limit) {
      const from = this.#limit;
      this.#limit = limit;
      if (this.#changes.active) this.#changes.emit({ from, to: limit });
    }
  }

  async execute<T>(fn: PolicyFn<T>, options?: ExecuteOptions): Promise<T> {
    if (this.#inFlight >= this.#limit) throw this.#refuse();
    const start = this.#env.clock.now();
    const inFlight = ++this.#inFlight;
    let value: T;
    try {
      value = await fn(contextOf(options));
    } catch (error) {
      this.complete(outcomeOf(error), undefined, start, inFlight);
      throw error;
    }
    this.complete("success", undefined, start, inFlight);
    return value;
  }

  #refuse(): KeelError {
    if (this.#shed.active) this.#shed.emit({ limit: this.#limit, inFlight: this.#inFlight });
    return refusal("OVERLOADED", "the concurrency limit is reached", {
      refusedBy: "adaptive-limit",
      limit: this.#limit,
    });
  }
}
