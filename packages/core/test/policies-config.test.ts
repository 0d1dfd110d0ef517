import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createVirtualEnv, type Env } from "../src/env/index.ts";
import { hasCode } from "../src/errors/index.ts";
import {
  adaptiveLimit,
  type Backoff,
  type BreakerPolicy,
  bulkhead,
  circuitBreaker,
  fallback,
  hedge,
  type Policy,
  pipeline,
  retry,
  retryBudget,
  slidingWindow,
  timeout,
  tokenBucket,
} from "../src/policies/index.ts";

const env = createVirtualEnv();
const backoff: Backoff = { kind: "constant", delayMs: 10 };
const consecutive: BreakerPolicy = { kind: "consecutive", threshold: 3 };

/** Invalid definitions, each with the option its error message must name. */
const INVALID: ReadonlyArray<readonly [string, () => unknown, RegExp]> = [
  [
    "retry: negative attempts",
    () => retry({ env, maxAttempts: -1, backoff, maxDelayMs: 10 }),
    /maxAttempts must be an integer >= 1, got -1/,
  ],
  [
    "retry: zero attempts",
    () => retry({ env, maxAttempts: 0, backoff, maxDelayMs: 10 }),
    /maxAttempts/,
  ],
  [
    "retry: no env",
    () => retry({ env: undefined as unknown as Env, maxAttempts: 2, backoff, maxDelayMs: 10 }),
    /env must be an Env/,
  ],
  [
    "retry: unknown backoff",
    () =>
      retry({
        env,
        maxAttempts: 2,
        backoff: { kind: "linear" } as unknown as Backoff,
        maxDelayMs: 10,
      }),
    /backoff.kind must be/,
  ],
  [
    "retry: negative delay",
    () =>
      retry({ env, maxAttempts: 2, backoff: { kind: "constant", delayMs: -5 }, maxDelayMs: 10 }),
    /backoff.delayMs/,
  ],
  [
    "retry: factor below 1",
    () =>
      retry({
        env,
        maxAttempts: 2,
        backoff: { kind: "exponential", initialMs: 10, factor: 0.5 },
        maxDelayMs: 10,
      }),
    /backoff.factor/,
  ],
  [
    "retry: jitter cap below initial",
    () =>
      retry({
        env,
        maxAttempts: 2,
        backoff: { kind: "decorrelated-jitter", initialMs: 100, maxMs: 50 },
        maxDelayMs: 10,
      }),
    /backoff.maxMs must be a number >= 100/,
  ],
  [
    "retry: negative maxDelayMs",
    () => retry({ env, maxAttempts: 2, backoff, maxDelayMs: -1 }),
    /maxDelayMs/,
  ],
  [
    "retry: retryOn",
    () => retry({ env, maxAttempts: 2, backoff, maxDelayMs: 10, retryOn: true as never }),
    /retryOn must be a function/,
  ],
  [
    "retry: foreign budget",
    () => retry({ env, maxAttempts: 2, backoff, maxDelayMs: 10, budget: {} as never }),
    /budget must come from retryBudget/,
  ],
  [
    "retryBudget: negative ratio",
    () => retryBudget({ env, ratio: -0.1, minRetriesPerSecond: 1, windowMs: 1000 }),
    /ratio/,
  ],
  [
    "retryBudget: negative floor",
    () => retryBudget({ env, ratio: 0.1, minRetriesPerSecond: -1, windowMs: 1000 }),
    /minRetriesPerSecond/,
  ],
  [
    "retryBudget: zero window",
    () => retryBudget({ env, ratio: 0.1, minRetriesPerSecond: 1, windowMs: 0 }),
    /windowMs must be a finite number > 0/,
  ],
  [
    "breaker: zero threshold",
    () =>
      circuitBreaker({ env, policy: { kind: "consecutive", threshold: 0 }, halfOpenAfterMs: 1000 }),
    /policy.threshold/,
  ],
  [
    "breaker: rate above 1",
    () =>
      circuitBreaker({
        env,
        policy: { kind: "count-window", size: 10, failureRateThreshold: 1.5, minimumCalls: 5 },
        halfOpenAfterMs: 1000,
      }),
    /policy.failureRateThreshold must be a finite number > 0 <= 1, got 1.5/,
  ],
  [
    "breaker: rate 0",
    () =>
      circuitBreaker({
        env,
        policy: { kind: "time-window", windowMs: 1000, failureRateThreshold: 0, minimumCalls: 5 },
        halfOpenAfterMs: 1000,
      }),
    /failureRateThreshold/,
  ],
  [
    "breaker: minimumCalls above size",
    () =>
      circuitBreaker({
        env,
        policy: { kind: "count-window", size: 10, failureRateThreshold: 0.5, minimumCalls: 11 },
        halfOpenAfterMs: 1000,
      }),
    /policy.minimumCalls must be an integer >= 1 <= 10/,
  ],
  [
    "breaker: zero window",
    () =>
      circuitBreaker({
        env,
        policy: { kind: "time-window", windowMs: 0, failureRateThreshold: 0.5, minimumCalls: 5 },
        halfOpenAfterMs: 1000,
      }),
    /policy.windowMs/,
  ],
  [
    "breaker: zero buckets",
    () =>
      circuitBreaker({
        env,
        policy: {
          kind: "time-window",
          windowMs: 1000,
          buckets: 0,
          failureRateThreshold: 0.5,
          minimumCalls: 5,
        },
        halfOpenAfterMs: 1000,
      }),
    /policy.buckets/,
  ],
  [
    "breaker: unknown policy",
    () =>
      circuitBreaker({
        env,
        policy: { kind: "sometimes" } as unknown as BreakerPolicy,
        halfOpenAfterMs: 1000,
      }),
    /policy.kind must be/,
  ],
  [
    "breaker: negative halfOpenAfterMs",
    () => circuitBreaker({ env, policy: consecutive, halfOpenAfterMs: -1 }),
    /halfOpenAfterMs/,
  ],
  [
    "breaker: zero probes",
    () =>
      circuitBreaker({
        env,
        policy: consecutive,
        halfOpenAfterMs: 1000,
        halfOpen: { probes: 0, successThreshold: 1 },
      }),
    /halfOpen.probes/,
  ],
  [
    "breaker: zero successThreshold",
    () =>
      circuitBreaker({
        env,
        policy: consecutive,
        halfOpenAfterMs: 1000,
        halfOpen: { probes: 1, successThreshold: 0 },
      }),
    /halfOpen.successThreshold/,
  ],
  [
    "breaker: slow rate above 1",
    () =>
      circuitBreaker({
        env,
        policy: { kind: "count-window", size: 10, failureRateThreshold: 0.5, minimumCalls: 5 },
        halfOpenAfterMs: 1000,
        slowCall: { durationMs: 100, rateThreshold: 2 },
      }),
    /slowCall.rateThreshold/,
  ],
  [
    "breaker: slow calls need a window",
    () =>
      circuitBreaker({
        env,
        policy: consecutive,
        halfOpenAfterMs: 1000,
        slowCall: { durationMs: 100, rateThreshold: 0.5 },
      }),
    /slowCall needs a count-window or time-window policy/,
  ],
  [
    "breaker: bad initialState",
    () =>
      circuitBreaker({
        env,
        policy: consecutive,
        halfOpenAfterMs: 1000,
        initialState: { version: 2 } as never,
      }),
    /initialState/,
  ],
  ["timeout: zero ms", () => timeout({ env, ms: 0 }), /ms must be a finite number > 0, got 0/],
  ["timeout: NaN ms", () => timeout({ env, ms: Number.NaN }), /ms must be/],
  [
    "bulkhead: zero concurrency",
    () => bulkhead({ env, maxConcurrent: 0, maxQueue: 0 }),
    /maxConcurrent/,
  ],
  ["bulkhead: negative queue", () => bulkhead({ env, maxConcurrent: 1, maxQueue: -1 }), /maxQueue/],
  [
    "tokenBucket: zero rate",
    () => tokenBucket({ env, ratePerSecond: 0, burst: 1 }),
    /ratePerSecond/,
  ],
  [
    "tokenBucket: fractional burst",
    () => tokenBucket({ env, ratePerSecond: 1, burst: 0.5 }),
    /burst/,
  ],
  ["slidingWindow: zero limit", () => slidingWindow({ env, limit: 0, windowMs: 1000 }), /limit/],
  ["slidingWindow: zero window", () => slidingWindow({ env, limit: 1, windowMs: 0 }), /windowMs/],
  [
    "adaptiveLimit: unknown kind",
    () => adaptiveLimit({ env, algorithm: { kind: "vegas" } as never }),
    /algorithm.kind/,
  ],
  [
    "adaptiveLimit: max below min",
    () =>
      adaptiveLimit({
        env,
        algorithm: { kind: "aimd", initial: 5, min: 10, max: 5, backoffRatio: 0.9 },
      }),
    /algorithm.max must be an integer >= 10/,
  ],
  [
    "adaptiveLimit: initial out of bounds",
    () => adaptiveLimit({ env, algorithm: { kind: "gradient", initial: 500, min: 1, max: 100 } }),
    /algorithm.initial/,
  ],
  [
    "adaptiveLimit: backoffRatio 1",
    () =>
      adaptiveLimit({
        env,
        algorithm: { kind: "aimd", initial: 5, min: 1, max: 10, backoffRatio: 1 },
      }),
    /algorithm.backoffRatio/,
  ],
  [
    "adaptiveLimit: zero smoothing",
    () =>
      adaptiveLimit({
        env,
        algorithm: { kind: "gradient", initial: 5, min: 1, max: 10, smoothing: 0 },
      }),
    /algorithm.smoothing/,
  ],
  [
    "adaptiveLimit: tolerance below 1",
    () =>
      adaptiveLimit({
        env,
        algorithm: { kind: "gradient", initial: 5, min: 1, max: 10, tolerance: 0.5 },
      }),
    /algorithm.tolerance/,
  ],
  ["hedge: negative hedges", () => hedge({ env, delayMs: 10, maxHedges: -1 }), /maxHedges/],
  ["hedge: negative delay", () => hedge({ env, delayMs: -10, maxHedges: 1 }), /delayMs must be/],
  [
    "hedge: percentile 1",
    () => hedge({ env, delayMs: { percentile: 1, minSamples: 10 }, maxHedges: 1 }),
    /delayMs.percentile must be a finite number > 0 < 1/,
  ],
  [
    "hedge: zero minSamples",
    () => hedge({ env, delayMs: { percentile: 0.9, minSamples: 0 }, maxHedges: 1 }),
    /delayMs.minSamples/,
  ],
  [
    "hedge: window below minSamples",
    () =>
      hedge({ env, delayMs: { percentile: 0.9, minSamples: 50, windowSize: 20 }, maxHedges: 1 }),
    /delayMs.windowSize/,
  ],
  ["fallback: neither value nor fn", () => fallback({} as never), /exactly one of value and fn/],
  [
    "fallback: both",
    () => fallback({ value: 1, fn: () => 2 } as never),
    /exactly one of value and fn/,
  ],
  ["fallback: fn not a function", () => fallback({ fn: 3 } as never), /fn must be a function/],
  ["pipeline: not a policy", () => pipeline({} as Policy), /policy 0 has no execute method/],
];

describe("policy options are checked at definition time", () => {
  for (const [name, define, message] of INVALID) {
    it(name, () => {
      assert.throws(define, (e: unknown) => {
        assert.ok(hasCode(e, "CONFIGURATION"), `${name}: ${String(e)}`);
        assert.match(e.message, message);
        return true;
      });
    });
  }

  it("valid definitions do not throw", () => {
    retry({
      env,
      maxAttempts: 1,
      backoff: { kind: "full-jitter", initialMs: 1, maxMs: 1 },
      maxDelayMs: Number.POSITIVE_INFINITY,
    });
    circuitBreaker({
      env,
      policy: { kind: "count-window", size: 5, failureRateThreshold: 1, minimumCalls: 5 },
      halfOpenAfterMs: 1,
      slowCall: { durationMs: 1, rateThreshold: 1 },
    });
    bulkhead({ env, maxConcurrent: 1, maxQueue: Number.POSITIVE_INFINITY });
    hedge({ env, delayMs: 0, maxHedges: 0 });
    fallback({ value: undefined });
    pipeline();
  });
});
