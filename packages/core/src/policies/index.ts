export {
  type AdaptiveAlgorithm,
  type AdaptiveLimitOptions,
  type AdaptiveLimitPolicy,
  type AdaptivePermit,
  adaptiveLimit,
  type LimitChangeEvent,
  type LimitOutcome,
  type LimitShedEvent,
} from "./adaptive-limit.ts";
export { type Backoff, backoffDelay } from "./backoff.ts";
export {
  type BulkheadOptions,
  type BulkheadPolicy,
  bulkhead,
  type ShedEvent,
} from "./bulkhead.ts";
export {
  type BreakerPermit,
  type BreakerPolicy,
  type BreakerSnapshot,
  type BreakerState,
  type BreakerStateChange,
  type BreakerWindowSnapshot,
  type CircuitBreaker,
  type CircuitBreakerOptions,
  circuitBreaker,
} from "./circuit-breaker.ts";
export type { EventDisposable, PolicyEvent } from "./event.ts";
export {
  type FallbackEvent,
  type FallbackOptions,
  type FallbackPolicy,
  fallback,
} from "./fallback.ts";
export {
  type HedgeEvent,
  type HedgeOptions,
  type HedgePercentileDelay,
  type HedgePolicy,
  hedge,
} from "./hedge.ts";
export { type Pipeline, pipeline } from "./pipeline.ts";
export {
  type RateLimitedEvent,
  type RateLimiter,
  type SlidingWindowOptions,
  slidingWindow,
  type TokenBucketOptions,
  tokenBucket,
} from "./rate-limit.ts";
export {
  type GiveUpEvent,
  type GiveUpReason,
  type RetryEvent,
  type RetryOptions,
  type RetryPolicy,
  retry,
} from "./retry.ts";
export { type RetryBudget, type RetryBudgetOptions, retryBudget } from "./retry-budget.ts";
export { type TimeoutEvent, type TimeoutOptions, type TimeoutPolicy, timeout } from "./timeout.ts";
export type { AttemptContext, CallOutcome, ExecuteOptions, Policy, PolicyFn } from "./types.ts";
