/**
 * Retry: backoff with jitter, what is and is not retried, a server's retry hint, the caller's
 * deadline, and a retry budget that keeps an outage from multiplying the load. On virtual time
 * with a fixed seed, so every run prints the same numbers.
 *
 * Run from the repository root: npx node docs/examples/resilience-retry.ts
 */
import {
  createVirtualEnv,
  type GiveUpReason,
  hasCode,
  KeelError,
  type RetryPolicy,
  retry,
  retryBudget,
} from "@keel/core";

const env = createVirtualEnv({ seed: 3 });

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
}

/** Observes a promise at once (so it never rejects unhandled); read the fields later. */
function settle<T>(promise: Promise<T>): { done: boolean; value?: T; error?: unknown } {
  const out: { done: boolean; value?: T; error?: unknown } = { done: false };
  promise.then(
    (value) => Object.assign(out, { done: true, value }),
    (error: unknown) => Object.assign(out, { done: true, error }),
  );
  return out;
}

const down = (details?: Record<string, unknown>) =>
  new KeelError("UNAVAILABLE", "dependency down", {
    noStack: true,
    ...(details === undefined ? {} : { details }),
  });

/** The reasons a policy gave up, in order. */
function giveUps(policy: RetryPolicy): GiveUpReason[] {
  const reasons: GiveUpReason[] = [];
  policy.onGiveUp((e) => reasons.push(e.reason));
  return reasons;
}

// --- 1. A flaky dependency: two failures, then success. -------------------------------------
console.log("1. decorrelated-jitter backoff, 4 attempts at most");
const flaky = retry({
  env,
  maxAttempts: 4,
  backoff: { kind: "decorrelated-jitter", initialMs: 50, maxMs: 1000 },
  maxDelayMs: 1000,
});
flaky.onRetry(({ attempt, delayMs }) =>
  console.log(`  retry ${attempt} after ${delayMs.toFixed(1)} ms`),
);
const starts: number[] = [];
const first = settle(
  flaky.execute((ctx) => {
    starts.push(env.clock.now());
    if (ctx.attempt < 2) throw down();
    return `ok on attempt ${ctx.attempt}`;
  }),
);
while (!first.done && (await env.runNext()));
console.log(
  `  -> ${String(first.value)}; attempts started at ${starts.map((t) => t.toFixed(1))} ms`,
);
check(first.value === "ok on attempt 2", "the third attempt succeeds");
check(starts[1]! - starts[0]! >= 50, "decorrelated jitter waits at least initialMs");

// --- 2. What is retried: retryable KeelErrors only, unless retryOn says otherwise. ----------
console.log("\n2. not retried: a caller mistake, and a plain Error (default retryOn)");
const reasons = giveUps(flaky);
for (const error of [new KeelError("INVALID_ARGUMENT", "bad sku"), new TypeError("bug")]) {
  let calls = 0;
  const out = settle(
    flaky.execute(() => {
      calls++;
      throw error;
    }),
  );
  await env.flush();
  console.log(`  ${error.name}: ${calls} attempt, gave up: ${reasons.at(-1)}`);
  check(out.error === error && calls === 1, "not retried, the error passes through unchanged");
}
check(reasons.join() === "not-retryable,not-retryable", "both not-retryable");

// --- 3. A server's retryAfterMs paces the retry; one above maxDelayMs ends it. --------------
console.log("\n3. details.retryAfterMs");
const paced: number[] = [];
const hinted = settle(
  flaky.execute((ctx) => {
    paced.push(env.clock.now());
    if (ctx.attempt === 0) throw down({ retryAfterMs: 400 });
    return "ok";
  }),
);
while (!hinted.done && (await env.runNext()));
const waited = paced[1]! - paced[0]!;
console.log(`  hint 400 ms: the retry came ${waited.toFixed(1)} ms later`);
check(hinted.value === "ok" && waited >= 400, "waited at least the hint");
const tooLong = settle(
  flaky.execute(() => {
    throw down({ retryAfterMs: 5000 });
  }),
);
await env.flush();
console.log(`  hint 5000 ms > maxDelayMs 1000: gave up at once (${reasons.at(-1)})`);
check(hasCode(tooLong.error, "UNAVAILABLE") && reasons.at(-1) === "delay", "gave up: delay");

// --- 4. The deadline: no retry that could only start too late. -------------------------------
console.log("\n4. a 120 ms deadline");
const t0 = env.clock.now();
const steady = retry({
  env,
  maxAttempts: 10,
  backoff: { kind: "constant", delayMs: 50 },
  maxDelayMs: 1000,
});
const steadyReasons = giveUps(steady);
let steadyCalls = 0;
const late = settle(
  steady.execute(
    () => {
      steadyCalls++;
      throw down();
    },
    { deadline: t0 + 120 },
  ),
);
while (!late.done && (await env.runNext()));
console.log(
  `  ${steadyCalls} attempts (at 0, 50, 100 ms), gave up at ${env.clock.now() - t0} ms: ${steadyReasons[0]}`,
);
check(steadyCalls === 3 && steadyReasons[0] === "deadline", "3 attempts, then deadline");
check(env.clock.now() - t0 === 100, "no wait for a retry that could not happen");

// --- 5. An outage: every call fails for 60 s. ------------------------------------------------
console.log("\n5. an outage of 60 s, 2000 requests, maxAttempts 5");
const outage = async (withBudget: boolean) => {
  const budget = retryBudget({ env, ratio: 0.1, minRetriesPerSecond: 1, windowMs: 10_000 });
  const policy = retry({
    env,
    maxAttempts: 5,
    backoff: { kind: "full-jitter", initialMs: 50, maxMs: 2000 },
    maxDelayMs: 2000,
    ...(withBudget ? { budget } : {}),
  });
  let attempts = 0;
  const fail = () => {
    attempts++;
    throw down();
  };
  const outs: Array<{ done: boolean }> = [];
  for (let i = 0; i < 2000; i++) {
    outs.push(settle(policy.execute(fail)));
    await env.advance(30); // one request every 30 ms
  }
  await env.advance(10_000); // let the last retries run
  check(
    outs.every((o) => o.done),
    "every call finished",
  );
  return attempts / 2000;
};
const unbudgeted = await outage(false);
const budgeted = await outage(true);
console.log(`  without a budget: ${unbudgeted.toFixed(3)} attempts per request`);
console.log(`  with retryBudget({ ratio: 0.1 }): ${budgeted.toFixed(3)} attempts per request`);
check(unbudgeted === 5, "without a budget the load is multiplied by maxAttempts");
check(budgeted <= 1.1 && budgeted > 1, "the budget keeps retries within 10 % of requests");

console.log("\nok");
