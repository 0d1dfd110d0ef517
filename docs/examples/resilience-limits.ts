/**
 * Limits: a bulkhead (fixed concurrency and a bounded queue), a token bucket and a sliding window
 * (rates, with the exact retryAfterMs), and adaptive concurrency limits (AIMD and gradient)
 * keeping latency bounded when a server is offered 3x what it can serve. On virtual time.
 *
 * Run from the repository root: npx node docs/examples/resilience-limits.ts
 */
import {
  type AdaptiveAlgorithm,
  adaptiveLimit,
  bulkhead,
  createVirtualEnv,
  hasCode,
  isKeelError,
  slidingWindow,
  tokenBucket,
  type VirtualEnv,
} from "@keel/core";

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

const env = createVirtualEnv({ seed: 9 });

// --- 1. Bulkhead: 2 at once, 1 waiting, the rest refused at once. ----------------------------
console.log("1. bulkhead({ maxConcurrent: 2, maxQueue: 1 }), 4 calls of 100 ms");
const pool = bulkhead({ env, maxConcurrent: 2, maxQueue: 1 });
pool.onShed(({ active, queued }) => console.log(`  shed: ${active} active, ${queued} queued`));
const started: string[] = [];
const job = (id: string) => () => {
  started.push(`${id}@${env.clock.now()}`);
  return env.timers.sleep(100).then(() => id);
};
const jobs = ["a", "b", "c", "d"].map((id) => settle(pool.execute(job(id))));
await env.flush();
const shed = jobs[3]!.error;
if (!hasCode(shed, "OVERLOADED")) throw new Error("expected OVERLOADED");
console.log(`  d: ${shed.code} ${JSON.stringify(shed.details)}`);
await env.advance(200);
console.log(`  started: ${started.join(", ")}`);
check(started.join() === "a@0,b@0,c@100", "c waited for a slot, d never ran");
check(shed.retryable && shed.details?.["refusedBy"] === "bulkhead", "a local, retryable refusal");

// A queued call whose deadline passes leaves the queue and never runs.
settle(pool.execute(job("e")));
settle(pool.execute(job("f")));
const g = settle(pool.execute(job("g"), { deadline: env.clock.now() + 30 }));
await env.advance(30);
check(hasCode(g.error, "DEADLINE_EXCEEDED"), "a queued call gives up at its deadline");
await env.advance(200);

// --- 2. Token bucket and sliding window: RATE_LIMITED with the exact wait. -------------------
console.log("\n2. tokenBucket({ ratePerSecond: 10, burst: 3 })");
const bucket = tokenBucket({ env, ratePerSecond: 10, burst: 3 });
const grants = [0, 1, 2].map(() => bucket.tryAcquire());
const limited = await bucket.execute(() => "sent").catch((e: unknown) => e);
if (!hasCode(limited, "RATE_LIMITED")) throw new Error("expected RATE_LIMITED");
const retryAfterMs = limited.details?.["retryAfterMs"] as number;
console.log(`  a burst of 3 granted; the 4th: ${limited.code}, retryAfterMs ${retryAfterMs}`);
check(grants.join() === "0,0,0" && retryAfterMs === 100, "one permit per 100 ms");
await env.advance(retryAfterMs);
check((await bucket.execute(() => "sent")) === "sent", "granted exactly retryAfterMs later");

console.log("\n3. slidingWindow({ limit: 3, windowMs: 1000 })");
const window = slidingWindow({ env, limit: 3, windowMs: 1000 });
for (const wait of [0, 200, 300]) {
  await env.advance(wait);
  check(window.tryAcquire() === 0, "within the limit");
}
await env.advance(100);
const wait = window.tryAcquire();
console.log(`  3 permits at +0, +200, +500 ms; at +600 ms the next one waits ${wait} ms`);
check(wait === 400, "until the first permit leaves the window");

// --- 4. Adaptive limits under 3x overload. ----------------------------------------------------
// A server whose latency grows with concurrency: BASE_MS while at most CAPACITY calls run, then
// proportionally more. It can serve CAPACITY / BASE_MS = 400 calls/s; it is offered 1200/s.
const BASE_MS = 50;
const CAPACITY = 20;
const SECONDS = 4;

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
}

async function overload(algorithm: AdaptiveAlgorithm | undefined) {
  const sim: VirtualEnv = createVirtualEnv({ seed: "overload" });
  const limiter = algorithm === undefined ? undefined : adaptiveLimit({ env: sim, algorithm });
  let inFlight = 0;
  const server = async () => {
    inFlight++;
    try {
      await sim.timers.sleep(BASE_MS * Math.max(1, inFlight / CAPACITY));
    } finally {
      inFlight--;
    }
  };
  const latencies: number[] = [];
  let offered = 0;
  let shedCount = 0;
  // Measured: the second half, once the limit has settled. Latencies are those of the calls
  // that complete in it; the calls still queued at the end (without a limit) are left out.
  const measureFrom = (SECONDS * 1000) / 2;
  for (let now = 0; now < SECONDS * 1000; now += 5) {
    for (let k = 0; k < 6; k++) {
      if (now >= measureFrom) offered++;
      const start = sim.clock.now();
      const call = limiter === undefined ? server() : limiter.execute(server);
      call.then(
        () => {
          if (sim.clock.now() >= measureFrom) latencies.push(sim.clock.now() - start);
        },
        (error: unknown) => {
          check(isKeelError(error) && error.code === "OVERLOADED", "shed with OVERLOADED");
          if (start >= measureFrom) shedCount++;
        },
      );
    }
    await sim.advance(5);
  }
  return {
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    shed: shedCount / offered,
    goodput: latencies.length / (SECONDS / 2),
    limit: limiter?.limit ?? Number.POSITIVE_INFINITY,
  };
}

console.log(`\n4. a server of capacity ${(CAPACITY * 1000) / BASE_MS}/s offered 1200/s`);
const runs = {
  "no limit": await overload(undefined),
  aimd: await overload({
    kind: "aimd",
    initial: 10,
    min: 2,
    max: 500,
    backoffRatio: 0.9,
    timeoutMs: 1.5 * BASE_MS,
  }),
  gradient: await overload({ kind: "gradient", initial: 10, min: 2, max: 500 }),
};
for (const [name, r] of Object.entries(runs)) {
  console.log(
    `  ${name.padEnd(8)}  p50 ${r.p50.toFixed(0).padStart(5)} ms  p99 ${r.p99.toFixed(0).padStart(5)} ms  ` +
      `shed ${(r.shed * 100).toFixed(1).padStart(4)} %  goodput ${r.goodput.toFixed(0)}/s  limit ${r.limit}`,
  );
}
check(runs["no limit"].p99 > 10 * BASE_MS, "without a limit, the queue grows without bound");
for (const r of [runs.aimd, runs.gradient]) {
  check(r.p99 <= 2 * BASE_MS, "an adaptive limit keeps p99 within 2x the base latency");
  check(r.shed > 0.6 && r.shed < 0.72, "and sheds about 2/3 of a 3x load");
  check(r.goodput >= 0.9 * ((CAPACITY * 1000) / BASE_MS), "while the server stays busy");
}

console.log("\nok");
