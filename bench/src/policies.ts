import { createRequire } from "node:module";
import {
  circuitBreaker,
  createRealEnv,
  type Env,
  type Policy,
  pipeline,
  type RetryBudget,
  retry,
  retryBudget,
  type TimeoutPolicy,
  timeout,
} from "@keel/core";
import * as cockatiel from "cockatiel";
import {
  type BenchCase,
  overhead,
  type PreparedSuite,
  prepareCases,
  ratio,
  type Stop,
} from "./harness.ts";
import { startLocalBroker } from "./moleculer.ts";

const INPUT = 42;

/** The protected operation of every case: always succeeds, through a promise. */
const fn = async (x: number): Promise<number> => x;

/** Per-attempt time limit of every stack, in ms. */
const TIMEOUT_MS = 1000;

// ---- opossum ----------------------------------------------------------------------------------

/** The options of opossum 9 used here. */
interface OpossumOptions {
  readonly timeout: number;
  readonly errorThresholdPercentage: number;
  readonly resetTimeout: number;
}

/** The part of an opossum 9 breaker used here. */
interface OpossumBreaker<A extends unknown[], R> {
  fire(...args: A): Promise<R>;
  shutdown(): void;
}

type OpossumConstructor = new <A extends unknown[], R>(
  action: (...args: A) => Promise<R>,
  options: OpossumOptions,
) => OpossumBreaker<A, R>;

// opossum 9 ships no type declarations (and @types/opossum is not a dependency): load it through
// require and describe the two methods used.
const Opossum: OpossumConstructor = createRequire(import.meta.url)("opossum");

// ---- hand-written floor -----------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The least any one-timer-per-call design costs: a retry loop (2 attempts, exponential backoff)
 * around a `new Promise` racing `fn` against a `setTimeout` that is cleared on completion. No
 * breaker (a failure counter would cost about a nanosecond), no cancellation, no events.
 */
async function handWritten(x: number): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("timed out")), TIMEOUT_MS);
        fn(x).then(
          (value) => {
            clearTimeout(timer);
            resolve(value);
          },
          (error: unknown) => {
            clearTimeout(timer);
            reject(error);
          },
        );
      });
    } catch (error) {
      if (attempt + 1 >= 2) throw error;
      await sleep(128 * 2 ** attempt);
    }
  }
}

// ---- keel -------------------------------------------------------------------------------------

/**
 * The keel stack like cockatiel's: retry (2 attempts, exponential backoff from cockatiel's
 * defaults: 128 ms doubling, at most 30 s) outside a consecutive-failure breaker (5, half-open
 * after 10 s) outside a 1 s timeout per attempt.
 */
function keelStack(env: Env, timeouts: TimeoutPolicy[], budget?: RetryBudget): Policy {
  const perAttempt = timeout({ env, ms: TIMEOUT_MS });
  timeouts.push(perAttempt);
  return pipeline(
    retry({
      env,
      maxAttempts: 2,
      backoff: { kind: "exponential", initialMs: 128, maxMs: 30_000 },
      maxDelayMs: 30_000,
      ...(budget === undefined ? {} : { budget }),
    }),
    circuitBreaker({
      env,
      policy: { kind: "consecutive", threshold: 5 },
      halfOpenAfterMs: 10_000,
    }),
    perAttempt,
  );
}

/** Builds every stack and starts the Moleculer brokers; pushes how to stop each onto `stops`. */
async function startCases(stops: Stop[]): Promise<BenchCase[]> {
  const env = createRealEnv();
  const timeouts: TimeoutPolicy[] = [];
  stops.push(async () => {
    for (const t of timeouts) t.dispose();
  });
  const keel = keelStack(env, timeouts);
  const keelBudget = keelStack(
    env,
    timeouts,
    retryBudget({ env, ratio: 0.1, minRetriesPerSecond: 10, windowMs: 10_000 }),
  );
  // Breakdown: each keel policy alone.
  const keelTimeout = timeout({ env, ms: TIMEOUT_MS });
  timeouts.push(keelTimeout);
  const keelRetry = retry({
    env,
    maxAttempts: 2,
    backoff: { kind: "exponential", initialMs: 128, maxMs: 30_000 },
    maxDelayMs: 30_000,
  });
  const keelBreaker = circuitBreaker({
    env,
    policy: { kind: "consecutive", threshold: 5 },
    halfOpenAfterMs: 10_000,
  });

  // Exactly the anchors' setup (shared/research/perf-anchors.md, "Resilience setups").
  const c = cockatiel;
  const cockatielStack = c.wrap(
    c.retry(c.handleAll, { maxAttempts: 2, backoff: new c.ExponentialBackoff() }),
    c.circuitBreaker(c.handleAll, {
      halfOpenAfter: 10_000,
      breaker: new c.ConsecutiveBreaker(5),
    }),
    c.timeout(TIMEOUT_MS, c.TimeoutStrategy.Aggressive),
  );

  const opossum = new Opossum(fn, {
    timeout: TIMEOUT_MS,
    errorThresholdPercentage: 50,
    resetTimeout: 10_000,
  });
  stops.push(async () => opossum.shutdown());

  const startBroker = (resilient: boolean) =>
    startLocalBroker(
      {
        nodeID: resilient ? "bench-resilient" : "bench-plain",
        ...(resilient
          ? {
              requestTimeout: TIMEOUT_MS,
              circuitBreaker: { enabled: true },
              retryPolicy: { enabled: true },
            }
          : {}),
      },
      { echo: fn },
      stops,
    );
  const moleculer = await startBroker(true);
  const moleculerPlain = await startBroker(false);

  return [
    {
      id: "baseline",
      label: "await fn(x), fn = async (x) => x: the protected operation, unprotected",
      op: () => fn(INPUT),
    },
    {
      id: "hand",
      label:
        "hand-written (the anchors' floor for a timer per call): retry loop, 2 attempts, + setTimeout/clearTimeout around a new Promise",
      op: () => handWritten(INPUT),
    },
    {
      id: "keel",
      label:
        "keel pipeline(retry 2 attempts exponential, circuitBreaker consecutive 5 / 10 s, timeout 1 s).execute, real Env",
      op: () => keel.execute(() => fn(INPUT)),
    },
    {
      id: "keel-budget",
      label:
        "the same keel pipeline, its retry with a retry budget (ratio 0.1, floor 10/s, 10 s window)",
      op: () => keelBudget.execute(() => fn(INPUT)),
    },
    {
      id: "cockatiel",
      label:
        "cockatiel 3 wrap(retry(handleAll, 2, ExponentialBackoff), circuitBreaker(ConsecutiveBreaker(5), 10 s), timeout(1 s, Aggressive))",
      op: () => cockatielStack.execute(() => fn(INPUT)),
    },
    {
      id: "opossum",
      label:
        "opossum 9 new CircuitBreaker(fn, { timeout 1 s, errorThresholdPercentage 50, resetTimeout 10 s }).fire(x)",
      op: () => opossum.fire(INPUT),
    },
    {
      id: "moleculer",
      label:
        'Moleculer 0.14 local broker.call("svc.echo", x): circuitBreaker + retryPolicy enabled, requestTimeout 1 s',
      op: () => moleculer.call<number, number>("svc.echo", INPUT),
    },
    {
      id: "keel-timeout",
      label: "breakdown: keel timeout(1 s) alone",
      op: () => keelTimeout.execute(() => fn(INPUT)),
    },
    {
      id: "keel-retry",
      label: "breakdown: keel retry (2 attempts, exponential) alone",
      op: () => keelRetry.execute(() => fn(INPUT)),
    },
    {
      id: "keel-breaker",
      label: "breakdown: keel circuitBreaker (consecutive 5) alone",
      op: () => keelBreaker.execute(() => fn(INPUT)),
    },
    {
      id: "moleculer-plain",
      label:
        "breakdown: Moleculer 0.14 local broker.call with its defaults (no CB, retry or timeout)",
      op: () => moleculerPlain.call<number, number>("svc.echo", INPUT),
    },
  ];
}

/** Peers whose retry + breaker + timeout keel must beat. */
const PEERS = ["cockatiel", "opossum", "moleculer"] as const;

/**
 * The policies suite: what retry + circuit breaker + timeout cost per successful call, in keel and
 * in cockatiel, opossum and Moleculer, next to a plain awaited call and a hand-written floor.
 */
export async function prepare(): Promise<PreparedSuite> {
  const { cases, teardown } = await prepareCases(startCases, INPUT);
  return {
    suite: {
      name: "policies",
      description:
        "retry + circuit breaker + timeout around async (x) => x: keel, cockatiel, opossum, Moleculer, hand-written floor",
      reference: "baseline",
      cases,
      comparisons: [
        overhead("hand overhead over baseline (floor)", "hand", "baseline"),
        overhead("keel overhead over baseline", "keel", "baseline", 1000),
        overhead("keel-budget overhead over baseline", "keel-budget", "baseline", 1000),
        ...PEERS.map((p) => overhead(`${p} overhead over baseline`, p, "baseline")),
        ...PEERS.map((p) => ratio(`throughput keel / ${p} (> 1: keel faster)`, "keel", p, 1)),
        ...PEERS.map((p) =>
          ratio(`throughput keel-budget / ${p} (> 1: keel faster)`, "keel-budget", p, 1),
        ),
        ratio("throughput keel / hand (hand-written floor)", "keel", "hand"),
        overhead("retry budget (keel-budget - keel)", "keel-budget", "keel"),
        overhead("breakdown: keel timeout alone over baseline", "keel-timeout", "baseline"),
        overhead("breakdown: keel retry alone over baseline", "keel-retry", "baseline"),
        overhead("breakdown: keel breaker alone over baseline", "keel-breaker", "baseline"),
        overhead(
          "breakdown: Moleculer CB + retry + timeout (moleculer - moleculer-plain)",
          "moleculer",
          "moleculer-plain",
        ),
      ],
      notes: [
        "Every case protects the same fn = async (x) => x, which always succeeds: these are success-path costs.",
        "keel runs on createRealEnv(); its policies are executed per call, outermost first: retry, breaker, timeout (one Env timer serves every call of a timeout policy).",
        "The Moleculer cases include Moleculer's own local call (moleculer-plain); opossum is a breaker + timeout with no retry; the hand-written floor has no breaker.",
        "keel's retry retries only retryable KeelErrors by default, cockatiel's handleAll every error; on this success path neither decides anything.",
      ],
    },
    teardown,
  };
}
