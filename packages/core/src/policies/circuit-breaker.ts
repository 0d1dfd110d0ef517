import type { Env } from "../env/index.ts";
import { CALLER_MISTAKES, isKeelError, type KeelError } from "../errors/index.ts";
import {
  type BreakerWindowSnapshot,
  ConsecutiveWindow,
  CountWindow,
  type FailureWindow,
  type RateRule,
  TimeWindow,
} from "./breaker-window.ts";
import { contextOf } from "./context.ts";
import { Emitter, type PolicyEvent } from "./event.ts";
import {
  checkEnv,
  checkFunction,
  checkNumber,
  checkOptions,
  configError,
  refusal,
} from "./internal.ts";
import type { CallOutcome, ExecuteOptions, Policy, PolicyFn } from "./types.ts";

export type { BreakerWindowSnapshot } from "./breaker-window.ts";

/** When a closed breaker opens. */
export type BreakerPolicy =
  /** After `threshold` failures in a row. */
  | { readonly kind: "consecutive"; readonly threshold: number }
  /** When, over the last `size` calls (and at least `minimumCalls`), failures reach the rate. */
  | {
      readonly kind: "count-window";
      readonly size: number;
      readonly failureRateThreshold: number;
      readonly minimumCalls: number;
    }
  /** When, over the last `windowMs` (and at least `minimumCalls` calls), failures reach the rate. */
  | {
      readonly kind: "time-window";
      readonly windowMs: number;
      /** Buckets the window slides by (default 10). */
      readonly buckets?: number;
      readonly failureRateThreshold: number;
      readonly minimumCalls: number;
    };

/** A breaker's state. `until` is on the Env's monotonic clock. */
export type BreakerState =
  | { readonly kind: "closed" }
  | { readonly kind: "open"; readonly until: number }
  | { readonly kind: "half-open"; readonly inFlight: number; readonly successes: number }
  /** Held open by `isolate()` until `reset()`. */
  | { readonly kind: "isolated" };

/**
 * A breaker's state for persistence (`toJSON`, `initialState`). Times are durations, never
 * monotonic timestamps: those mean nothing in another process.
 */
export interface BreakerSnapshot {
  readonly version: 1;
  readonly state:
    | { readonly kind: "closed"; readonly window: BreakerWindowSnapshot }
    | { readonly kind: "open"; readonly remainingMs: number }
    | { readonly kind: "half-open"; readonly successes: number }
    | { readonly kind: "isolated" };
}

/** Options of `circuitBreaker`. */
export interface CircuitBreakerOptions {
  readonly env: Env;
  readonly policy: BreakerPolicy;
  /** How long the breaker stays open before letting probes through. */
  readonly halfOpenAfterMs: number;
  /**
   * Probes let through at once when half-open, and probe successes that close the breaker
   * (default `{ probes: 1, successThreshold: 1 }`). One failed (or slow) probe re-opens it.
   */
  readonly halfOpen?: { readonly probes: number; readonly successThreshold: number };
  /**
   * Calls taking `durationMs` or more are slow; the breaker opens when their rate reaches
   * `rateThreshold`, even if they succeed. Needs a count-window or time-window policy.
   */
  readonly slowCall?: { readonly durationMs: number; readonly rateThreshold: number };
  /**
   * Whether an error counts as the dependency's failure. Default: any error except the codes
   * that report the caller's mistake (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
   * FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED), which count as successes: the
   * dependency answered. Whatever this says, CANCELLED and a local policy's refusal (a KeelError
   * with `details.refusedBy` that did not come over the wire) are ignored.
   */
  readonly isFailure?: (error: unknown) => boolean;
  /** State to start from, as saved by `toJSON()`. */
  readonly initialState?: BreakerSnapshot;
}

/** A change of state. */
export interface BreakerStateChange {
  readonly from: BreakerState;
  readonly to: BreakerState;
}

/** A permit from `tryAcquire`; pass it to `record`. A number, so taking one allocates nothing. */
export type BreakerPermit = number;

/** A circuit breaker. */
export interface CircuitBreaker extends Policy {
  readonly kind: "circuit-breaker";
  /** The current state (an open breaker past its time becomes half-open on reading). */
  readonly state: BreakerState;
  /**
   * True when a call now would be refused: open and not yet due, isolated, or half-open with
   * every probe out. For a balancer skipping endpoints; changes no state.
   */
  isOpen(): boolean;
  /**
   * Low-level: a permit to make a call, or the CIRCUIT_OPEN error refusing it (retryable, with
   * `details.retryAfterMs` when the breaker will let probes through).
   */
  tryAcquire(): BreakerPermit | KeelError;
  /**
   * Low-level: the outcome of a permitted call. Always record, even "ignore": a half-open probe
   * holds a slot until then. Outcomes of calls permitted before the last change of state are
   * dropped.
   */
  record(permit: BreakerPermit, outcome: CallOutcome, durationMs?: number): void;
  /** How `execute` counts an error; for low-level callers. */
  classify(error: unknown): CallOutcome;
  /** Holds the breaker open until `reset()` (e.g. a dependency taken out for maintenance). */
  isolate(): void;
  /** Closes the breaker and forgets its record. */
  reset(): void;
  /** The state, for persistence; `JSON.stringify(breaker)` uses it. */
  toJSON(): BreakerSnapshot;
  readonly onStateChange: PolicyEvent<BreakerStateChange>;
}

type Inner =
  | { readonly kind: "closed" }
  | { readonly kind: "open"; readonly until: number }
  | { readonly kind: "half-open"; inFlight: number; successes: number }
  | { readonly kind: "isolated" };

const CLOSED: Inner & BreakerState = Object.freeze({ kind: "closed" });
const ISOLATED: Inner & BreakerState = Object.freeze({ kind: "isolated" });

const defaultIsFailure = (error: unknown): boolean =>
  !(isKeelError(error) && CALLER_MISTAKES.has(error.code));

/**
 * A circuit breaker: stops calling a dependency that keeps failing (or is slow), lets a few probes
 * through after `halfOpenAfterMs`, and closes again when they succeed. No timer: time is looked at
 * when a call asks.
 *
 * @example
 * const breaker = circuitBreaker({
 *   env,
 *   policy: { kind: "count-window", size: 100, failureRateThreshold: 0.5, minimumCalls: 20 },
 *   halfOpenAfterMs: 5_000,
 *   halfOpen: { probes: 2, successThreshold: 3 },
 * });
 * breaker.onStateChange(({ to }) => log.warn({ state: to.kind }, "breaker"));
 * const stock = await breaker.execute(() => inventory.get(sku));
 */
export function circuitBreaker(options: CircuitBreakerOptions): CircuitBreaker {
  const name = "circuitBreaker";
  checkOptions(name, options);
  const env = checkEnv(name, options.env);
  checkNumber(name, "halfOpenAfterMs", options.halfOpenAfterMs, { above: 0 });
  const halfOpen = options.halfOpen ?? { probes: 1, successThreshold: 1 };
  if (typeof halfOpen !== "object" || halfOpen === null) {
    throw configError(name, "halfOpen must be { probes, successThreshold }");
  }
  checkNumber(name, "halfOpen.probes", halfOpen.probes, { integer: true, min: 1 });
  checkNumber(name, "halfOpen.successThreshold", halfOpen.successThreshold, {
    integer: true,
    min: 1,
  });
  let slowMs = Number.POSITIVE_INFINITY;
  let slowRate = Number.POSITIVE_INFINITY;
  if (options.slowCall !== undefined) {
    slowMs = checkNumber(name, "slowCall.durationMs", options.slowCall.durationMs, { above: 0 });
    slowRate = checkNumber(name, "slowCall.rateThreshold", options.slowCall.rateThreshold, {
      above: 0,
      max: 1,
    });
  }
  checkFunction(name, "isFailure", options.isFailure);
  const window = makeWindow(name, env, options.policy, slowRate);
  const breaker = new Breaker(env, options, window, slowMs, halfOpen);
  if (options.initialState !== undefined) breaker.hydrate(options.initialState);
  return breaker;
}

function makeWindow(
  name: string,
  env: Env,
  policy: BreakerPolicy,
  slowRate: number,
): FailureWindow {
  if (typeof policy !== "object" || policy === null) {
    throw configError(name, "policy must be an object with a kind");
  }
  switch (policy.kind) {
    case "consecutive":
      checkNumber(name, "policy.threshold", policy.threshold, { integer: true, min: 1 });
      if (slowRate !== Number.POSITIVE_INFINITY) {
        throw configError(name, "slowCall needs a count-window or time-window policy");
      }
      return new ConsecutiveWindow(policy.threshold);
    case "count-window": {
      const size = checkNumber(name, "policy.size", policy.size, {
        integer: true,
        min: 1,
        max: 1_000_000,
      });
      return new CountWindow(size, rateRule(name, policy, size, slowRate));
    }
    case "time-window": {
      checkNumber(name, "policy.windowMs", policy.windowMs, { above: 0 });
      const buckets = checkNumber(name, "policy.buckets", policy.buckets ?? 10, {
        integer: true,
        min: 1,
        max: 1000,
      });
      const rule = rateRule(name, policy, Number.POSITIVE_INFINITY, slowRate);
      return new TimeWindow(env, policy.windowMs, buckets, rule);
    }
    default:
      throw configError(
        name,
        `policy.kind must be "consecutive", "count-window" or "time-window", got ${String((policy as { kind?: unknown }).kind)}`,
      );
  }
}

function rateRule(
  name: string,
  policy: { readonly failureRateThreshold: number; readonly minimumCalls: number },
  maxCalls: number,
  slowRate: number,
): RateRule {
  const failureRate = checkNumber(
    name,
    "policy.failureRateThreshold",
    policy.failureRateThreshold,
    { above: 0, max: 1 },
  );
  // More than the window holds could never be reached: the breaker would never open.
  const minimumCalls = checkNumber(name, "policy.minimumCalls", policy.minimumCalls, {
    integer: true,
    min: 1,
    ...(maxCalls === Number.POSITIVE_INFINITY ? {} : { max: maxCalls }),
  });
  return { failureRate, minimumCalls, slowRate };
}

class Breaker implements CircuitBreaker {
  readonly kind = "circuit-breaker";
  readonly #env: Env;
  readonly #halfOpenAfterMs: number;
  readonly #probes: number;
  readonly #successThreshold: number;
  readonly #slowMs: number;
  readonly #isFailure: (error: unknown) => boolean;
  /** The closed state's record of recent calls (meaningful only while closed). */
  readonly #window: FailureWindow;
  #state: Inner = CLOSED;
  /** Counts changes of state: a permit is the epoch it was given in. */
  #epoch = 0;
  readonly #changes = new Emitter<BreakerStateChange>();
  readonly onStateChange = this.#changes.event;

  constructor(
    env: Env,
    options: CircuitBreakerOptions,
    window: FailureWindow,
    slowMs: number,
    halfOpen: { readonly probes: number; readonly successThreshold: number },
  ) {
    this.#env = env;
    this.#halfOpenAfterMs = options.halfOpenAfterMs;
    this.#probes = halfOpen.probes;
    this.#successThreshold = halfOpen.successThreshold;
    this.#slowMs = slowMs;
    this.#isFailure = options.isFailure ?? defaultIsFailure;
    this.#window = window;
  }

  get state(): BreakerState {
    const s = this.#state;
    if (s.kind === "open" && this.#env.clock.now() >= s.until) return { ...this.#toHalfOpen() };
    return s.kind === "half-open" ? { ...s } : s;
  }

  isOpen(): boolean {
    const s = this.#state;
    switch (s.kind) {
      case "closed":
        return false;
      case "open":
        return this.#env.clock.now() < s.until;
      case "half-open":
        return s.inFlight >= this.#probes;
      case "isolated":
        return true;
    }
  }

  tryAcquire(): BreakerPermit | KeelError {
    const s = this.#state;
    switch (s.kind) {
      case "closed":
        return this.#epoch;
      case "open": {
        const now = this.#env.clock.now();
        if (now < s.until) return this.#refuse("open", s.until - now);
        return this.#probe(this.#toHalfOpen());
      }
      case "half-open":
        return this.#probe(s);
      case "isolated":
        return this.#refuse("isolated", undefined);
    }
  }

  record(permit: BreakerPermit, outcome: CallOutcome, durationMs = 0): void {
    this.#record(permit, outcome, durationMs, undefined);
  }

  #record(permit: number, outcome: CallOutcome, durationMs: number, now: number | undefined): void {
    // A call permitted before the last change of state says nothing about this one.
    if (permit !== this.#epoch) return;
    const s = this.#state;
    if (s.kind === "closed") {
      if (outcome === "ignore") return;
      const window = this.#window;
      const at = window.needsTime ? (now ?? this.#env.clock.now()) : 0;
      if (window.add(outcome === "failure", durationMs >= this.#slowMs, at)) {
        this.#open(now ?? this.#env.clock.now());
      }
    } else if (s.kind === "half-open") {
      s.inFlight--;
      if (outcome === "ignore") return;
      if (outcome === "failure" || durationMs >= this.#slowMs) {
        this.#open(now ?? this.#env.clock.now());
      } else if (++s.successes >= this.#successThreshold) {
        this.#change(CLOSED);
        this.#window.reset(now ?? this.#env.clock.now());
      }
    }
  }

  classify(error: unknown): CallOutcome {
    if (isKeelError(error)) {
      if (error.code === "CANCELLED") return "ignore";
      // A local bulkhead or limiter refused the call before it reached the dependency.
      if (!error.remote && error.details?.["refusedBy"] !== undefined) return "ignore";
    }
    return this.#isFailure(error) ? "failure" : "success";
  }

  isolate(): void {
    if (this.#state.kind !== "isolated") this.#change(ISOLATED);
  }

  reset(): void {
    this.#window.reset(this.#env.clock.now());
    if (this.#state.kind !== "closed") this.#change(CLOSED);
  }

  async execute<T>(fn: PolicyFn<T>, options?: ExecuteOptions): Promise<T> {
    const permit = this.tryAcquire();
    if (typeof permit !== "number") throw permit;
    const ctx = contextOf(options);
    // The clock is read only when slow calls are watched: a read costs tens of nanoseconds.
    const timed = this.#slowMs !== Number.POSITIVE_INFINITY;
    const start = timed ? this.#env.clock.now() : 0;
    let value: T;
    try {
      value = await fn(ctx);
    } catch (error) {
      const now = timed ? this.#env.clock.now() : undefined;
      this.#record(permit, this.classify(error), now === undefined ? 0 : now - start, now);
      throw error;
    }
    const now = timed ? this.#env.clock.now() : undefined;
    this.#record(permit, "success", now === undefined ? 0 : now - start, now);
    return value;
  }

  toJSON(): BreakerSnapshot {
    const now = this.#env.clock.now();
    const s = this.#state;
    switch (s.kind) {
      case "closed":
        return { version: 1, state: { kind: "closed", window: this.#window.snapshot(now) } };
      case "open":
        return { version: 1, state: { kind: "open", remainingMs: Math.max(0, s.until - now) } };
      case "half-open":
        return { version: 1, state: { kind: "half-open", successes: s.successes } };
      case "isolated":
        return { version: 1, state: { kind: "isolated" } };
    }
  }

  /** Loads a snapshot; throws CONFIGURATION if it does not fit this breaker. */
  hydrate(snapshot: BreakerSnapshot): void {
    const bad = (why: string) => configError("circuitBreaker", `initialState ${why}`);
    if (typeof snapshot !== "object" || snapshot === null || snapshot.version !== 1) {
      throw bad("must be a snapshot from toJSON() (version 1)");
    }
    const now = this.#env.clock.now();
    const s = snapshot.state;
    switch (s?.kind) {
      case "closed":
        if (
          typeof s.window !== "object" ||
          s.window === null ||
          !this.#window.restore(s.window, now)
        ) {
          throw bad("has a closed-state window that does not fit this breaker's policy");
        }
        this.#state = CLOSED;
        return;
      case "open":
        checkNumber("circuitBreaker", "initialState.state.remainingMs", s.remainingMs, { min: 0 });
        this.#state = { kind: "open", until: now + s.remainingMs };
        return;
      case "half-open":
        checkNumber("circuitBreaker", "initialState.state.successes", s.successes, {
          integer: true,
          min: 0,
        });
        // Probes in flight in the process that saved this are gone: their slots are free.
        this.#state = { kind: "half-open", inFlight: 0, successes: s.successes };
        return;
      case "isolated":
        this.#state = ISOLATED;
        return;
      default:
        throw bad("has an unknown state kind");
    }
  }

  #probe(s: { inFlight: number }): BreakerPermit | KeelError {
    if (s.inFlight >= this.#probes) return this.#refuse("half-open", 0);
    s.inFlight++;
    return this.#epoch;
  }

  #refuse(state: BreakerState["kind"], retryAfterMs: number | undefined): KeelError {
    return refusal(
      "CIRCUIT_OPEN",
      state === "isolated" ? "the circuit breaker is isolated" : `the circuit breaker is ${state}`,
      retryAfterMs === undefined
        ? { refusedBy: "circuit-breaker", state }
        : { refusedBy: "circuit-breaker", state, retryAfterMs },
    );
  }

  #toHalfOpen(): { kind: "half-open"; inFlight: number; successes: number } {
    const h = { kind: "half-open" as const, inFlight: 0, successes: 0 };
    this.#change(h);
    return h;
  }

  #open(now: number): void {
    this.#change({ kind: "open", until: now + this.#halfOpenAfterMs });
  }

  #change(to: Inner): void {
    const from = this.#state;
    this.#state = to;
    this.#epoch++;
    if (this.#changes.active) {
      this.#changes.emit({
        from: from.kind === "half-open" ? { ...from } : from,
        to: to.kind === "half-open" ? { ...to } : to,
      });
    }
  }
}
