/**
 * Circuit breaker: a failure-rate window with minimumCalls, the CIRCUIT_OPEN refusal and its
 * details, half-open probes, slow calls that open a breaker although they succeed, what counts
 * as a failure, and saving a breaker's state. On virtual time.
 *
 * Run from the repository root: npx node docs/examples/resilience-breaker.ts
 */
import {
  type CircuitBreaker,
  circuitBreaker,
  createVirtualEnv,
  hasCode,
  KeelError,
} from "@keel/core";

const env = createVirtualEnv({ seed: 5 });

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
}

const fail = () => {
  throw new KeelError("UNAVAILABLE", "dependency down", { noStack: true });
};
const ok = () => "ok";

/** Runs `fn` through the breaker; returns its value or its error, never throws. */
async function call(breaker: CircuitBreaker, fn: () => unknown): Promise<unknown> {
  try {
    return await breaker.execute(fn);
  } catch (error) {
    return error;
  }
}

// --- 1. Open on a failure rate, refuse, probe, close. ----------------------------------------
console.log("1. count window of 20 calls, opens at 50 % failures once 10 calls are known");
const breaker = circuitBreaker({
  env,
  policy: { kind: "count-window", size: 20, failureRateThreshold: 0.5, minimumCalls: 10 },
  halfOpenAfterMs: 5_000,
  halfOpen: { probes: 2, successThreshold: 2 },
});
const changes: string[] = [];
breaker.onStateChange(({ from, to }) => {
  changes.push(`${from.kind} -> ${to.kind}`);
  console.log(`  [t=${env.clock.now()}] ${from.kind} -> ${to.kind}`);
});

for (let i = 0; i < 6; i++) await call(breaker, fail);
console.log(`  6 failures of 6 calls: ${breaker.state.kind} (fewer than minimumCalls)`);
check(breaker.state.kind === "closed", "minimumCalls keeps a handful of calls from opening it");
for (let i = 0; i < 3; i++) await call(breaker, ok);
check(breaker.state.kind === "closed", "6 of 9");
await call(breaker, ok); // 6 failures in 10 calls: 60 %
check(breaker.state.kind === "open", "opens on the 10th call");

await env.advance(2_000);
let ran = false;
const refused = await call(breaker, () => {
  ran = true;
});
if (!hasCode(refused, "CIRCUIT_OPEN")) throw new Error("expected CIRCUIT_OPEN");
console.log(
  `  refused: ${refused.code}, retryable ${refused.retryable}, details ${JSON.stringify(refused.details)}`,
);
check(!ran, "an open breaker does not call the dependency");
check(refused.retryable && refused.details?.["retryAfterMs"] === 3_000, "retry in 3 s");
check(refused.details?.["refusedBy"] === "circuit-breaker", "a local refusal");

await env.advance(3_000);
const probe1 = breaker.execute(() => env.timers.sleep(10).then(() => "probe 1"));
const probe2 = breaker.execute(() => env.timers.sleep(20).then(() => "probe 2"));
const third = await call(breaker, ok);
check(
  hasCode(third, "CIRCUIT_OPEN") && third.details?.["state"] === "half-open",
  "only 2 probes at once",
);
await env.advance(20);
console.log(`  probes: ${await probe1}, ${await probe2}; state ${breaker.state.kind}`);
check(breaker.state.kind === "closed", "two probe successes close it");
check(
  changes.join() === "closed -> open,open -> half-open,half-open -> closed",
  "closed, open, half-open, closed",
);

// --- 2. Slow calls: a brownout opens the breaker although every call succeeds. --------------
console.log("\n2. slow calls: 200 ms or more is slow; opens at 50 % slow over 10 calls");
const slowAware = circuitBreaker({
  env,
  policy: { kind: "count-window", size: 10, failureRateThreshold: 0.5, minimumCalls: 10 },
  halfOpenAfterMs: 5_000,
  slowCall: { durationMs: 200, rateThreshold: 0.5 },
});
for (let i = 0; i < 10; i++) {
  const ms = i < 5 ? 20 : 400; // the dependency slows down half-way
  const done = slowAware.execute(() => env.timers.sleep(ms).then(() => ms));
  await env.advance(ms);
  await done;
}
console.log(`  10 successes, 5 of them slow: ${slowAware.state.kind}`);
check(slowAware.state.kind === "open", "slow successes open it");

// --- 3. What counts as a failure. -------------------------------------------------------------
console.log("\n3. classify(error)");
const samples: Array<[string, unknown]> = [
  ["UNAVAILABLE", new KeelError("UNAVAILABLE", "down")],
  ["plain Error", new Error("bug")],
  ["INVALID_ARGUMENT", new KeelError("INVALID_ARGUMENT", "bad input")],
  ["CANCELLED", new KeelError("CANCELLED", "caller left")],
  [
    "local bulkhead refusal",
    new KeelError("OVERLOADED", "the bulkhead is full", { details: { refusedBy: "bulkhead" } }),
  ],
];
const classified = samples.map(([name, error]) => `${name}: ${breaker.classify(error)}`);
for (const line of classified) console.log(`  ${line}`);
check(
  classified.join() ===
    "UNAVAILABLE: failure,plain Error: failure,INVALID_ARGUMENT: success,CANCELLED: ignore,local bulkhead refusal: ignore",
  "the default classification",
);

// --- 4. Save and restore: durations, not timestamps. ------------------------------------------
console.log("\n4. toJSON / initialState");
await env.advance(1_000);
const saved = JSON.stringify(slowAware); // open, 4 s to go
const elsewhere = createVirtualEnv({ seed: 6 }); // another process: another clock origin
await elsewhere.advance(123_456);
const restored = circuitBreaker({
  env: elsewhere,
  policy: { kind: "count-window", size: 10, failureRateThreshold: 0.5, minimumCalls: 10 },
  halfOpenAfterMs: 5_000,
  slowCall: { durationMs: 200, rateThreshold: 0.5 },
  initialState: JSON.parse(saved),
});
console.log(`  saved ${saved}`);
console.log(`  restored: ${JSON.stringify(restored.state)}`);
check(saved === '{"version":1,"state":{"kind":"open","remainingMs":4000}}', "saved as a duration");
check(restored.isOpen() && restored.state.kind === "open", "still open after the restart");
await elsewhere.advance(4_000);
check(!restored.isOpen(), "due for probes 4 s later, on its own clock");

// --- 5. isolate(): hold it open for maintenance. ----------------------------------------------
console.log("\n5. isolate(): refused, with no retryAfterMs, until reset()");
breaker.isolate();
await env.advance(60_000);
const isolated = await call(breaker, ok);
check(
  hasCode(isolated, "CIRCUIT_OPEN") && isolated.details?.["retryAfterMs"] === undefined,
  "isolated: refused, with no retry hint",
);
breaker.reset();
check((await call(breaker, ok)) === "ok", "reset() closes it");

console.log("\nok");
