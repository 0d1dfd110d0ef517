/**
 * Hedging against a slow replica (delay from a latency percentile, and the extra load it costs),
 * then the recommended pipeline: fallback → retry → circuitBreaker → bulkhead → timeout, through
 * a slow attempt, an outage and the recovery. On virtual time with a fixed seed.
 *
 * Run from the repository root: npx node docs/examples/resilience-hedge-pipeline.ts
 */
import {
  type AttemptContext,
  bulkhead,
  circuitBreaker,
  createVirtualEnv,
  fallback,
  type GiveUpReason,
  hasCode,
  hedge,
  KeelError,
  pipeline,
  retry,
  retryBudget,
  timeout,
} from "@keel/core";

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
}

// --- 1. Hedging: one replica of 25 is 10x slower. ---------------------------------------------
const REPLICAS = 25;
const CALLS = 2000;

/** 2000 calls, 5 every 10 ms, each to a random replica; replica 0 takes 100-150 ms, others 10-15. */
async function replicas(hedged: boolean) {
  const env = createVirtualEnv({ seed: "replicas" });
  const policy = hedged
    ? hedge({ env, delayMs: { percentile: 0.95, minSamples: 100 }, maxHedges: 1 })
    : undefined;
  const latencies: number[] = [];
  let attempts = 0;
  for (let i = 0; i < CALLS; i += 5) {
    for (let k = 0; k < 5; k++) {
      const start = env.clock.now();
      const first = env.random.int(REPLICAS);
      // Each attempt goes to the next replica: a hedge never waits on the same slow one.
      const get = async (ctx: AttemptContext) => {
        attempts++;
        const replica = (first + ctx.attempt) % REPLICAS;
        await env.timers.sleep((replica === 0 ? 100 : 10) * (1 + 0.5 * env.random.next()));
        return replica;
      };
      const call =
        policy === undefined
          ? get({ attempt: 0, signal: undefined, deadline: Infinity })
          : policy.execute(get);
      const measured = i >= 200; // after the percentile has its 100 samples
      void call.then(() => {
        if (measured) latencies.push(env.clock.now() - start);
      });
    }
    await env.advance(10);
  }
  await env.advance(1_000);
  return {
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    load: attempts / CALLS,
    delay: policy?.delay(),
  };
}

console.log("1. hedge({ delayMs: { percentile: 0.95, minSamples: 100 }, maxHedges: 1 })");
const plain = await replicas(false);
const hedged = await replicas(true);
console.log(
  `  without hedging: p50 ${plain.p50.toFixed(1)} ms, p99 ${plain.p99.toFixed(1)} ms, 1.000 attempts per call`,
);
console.log(
  `  with hedging:    p50 ${hedged.p50.toFixed(1)} ms, p99 ${hedged.p99.toFixed(1)} ms, ` +
    `${hedged.load.toFixed(3)} attempts per call (hedging delay now ${hedged.delay?.toFixed(1)} ms)`,
);
check(plain.p99 >= 100, "without hedging, p99 is the slow replica's");
check(hedged.p99 <= 35, "with hedging, p99 is near the fast replicas'");
check(hedged.load < 1.1, "for about 5 % more attempts");

// --- 2. The recommended pipeline. --------------------------------------------------------------
console.log("\n2. pipeline(fallback, retry, circuitBreaker, bulkhead, timeout)");
const env = createVirtualEnv({ seed: 2 });
const retryPolicy = retry({
  env,
  maxAttempts: 3,
  backoff: { kind: "full-jitter", initialMs: 50, maxMs: 500 },
  maxDelayMs: 1_000,
  budget: retryBudget({ env, ratio: 0.1, minRetriesPerSecond: 10, windowMs: 10_000 }),
});
const breaker = circuitBreaker({
  env,
  policy: { kind: "consecutive", threshold: 3 },
  halfOpenAfterMs: 5_000,
});
const perAttempt = timeout({ env, ms: 100 });
const resilient = pipeline(
  fallback({ value: "cached price" as const }),
  retryPolicy,
  breaker,
  bulkhead({ env, maxConcurrent: 16, maxQueue: 0 }),
  perAttempt,
);
const reasons: GiveUpReason[] = [];
retryPolicy.onGiveUp((e) => reasons.push(e.reason));
breaker.onStateChange(({ to }) =>
  console.log(`  [t=${env.clock.now().toFixed(0)} ms] breaker: ${to.kind}`),
);

/** Runs one call to completion on virtual time. */
async function run<T>(promise: Promise<T>): Promise<T> {
  let out: { value: T } | undefined;
  void promise.then((value) => {
    out = { value };
  });
  while (out === undefined && (await env.runNext()));
  await env.flush();
  if (out === undefined) throw new Error("the call never finished");
  return out.value;
}

// a. The first attempt hangs: the timeout ends it (and its signal stops the work), a retry answers.
const seen: string[] = [];
const slowFirst = async (ctx: AttemptContext) => {
  seen.push(
    `attempt ${ctx.attempt} at ${env.clock.now().toFixed(1)} ms, deadline ${ctx.deadline.toFixed(1)}`,
  );
  await env.timers.sleep(ctx.attempt === 0 ? 10_000 : 20, ctx.signal);
  return "live price";
};
const a = await run(resilient.execute(slowFirst, { deadline: env.clock.now() + 1_000 }));
for (const line of seen) console.log(`  ${line}`);
console.log(`  -> ${a}`);
check(a === "live price" && seen.length === 2, "attempt 0 timed out at 100 ms; attempt 1 answered");
check(perAttempt.pending === 0, "nothing left under the timeout");

// b. An outage: the breaker opens after 3 failures; its retryAfterMs (5 s) exceeds maxDelayMs
//    (1 s), so retry gives up at once, and the fallback answers.
let calls = 0;
const down = () => {
  calls++;
  throw new KeelError("UNAVAILABLE", "pricing down", { noStack: true });
};
const b1 = await run(resilient.execute(down));
const b2 = await run(resilient.execute(down));
console.log(
  `  outage: ${b1}, ${b2}; the dependency was called ${calls} times; gave up: ${reasons.join(", ")}`,
);
check(b1 === "cached price" && b2 === "cached price", "the fallback answers");
check(calls === 3, "3 attempts opened the breaker; then no more calls reached the dependency");
check(
  reasons.join() === "attempts,delay",
  "first out of attempts, then refused by the open breaker",
);

// c. Recovery: after halfOpenAfterMs one probe goes through and closes the breaker.
await env.advance(5_000);
const c = await run(resilient.execute(() => "live price again"));
console.log(`  after 5 s: ${c}`);
check(c === "live price again" && breaker.state.kind === "closed", "recovered");

// The caller's own cancellation is not papered over by the fallback.
const controller = new AbortController();
const cancelled = resilient.execute((ctx) => env.timers.sleep(50, ctx.signal), {
  signal: controller.signal,
});
controller.abort(new KeelError("CANCELLED", "caller left"));
const why = await cancelled.then(
  () => undefined,
  (error: unknown) => error,
);
check(hasCode(why, "CANCELLED"), "CANCELLED passes through the fallback");
console.log("  a cancelled call rejects with CANCELLED, not the fallback value");

perAttempt.dispose();
console.log("\nok");
