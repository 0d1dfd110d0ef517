import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createVirtualEnv } from "../src/env/index.ts";
import { hasCode } from "../src/errors/index.ts";
import { type RateLimiter, slidingWindow, tokenBucket } from "../src/policies/index.ts";

/** Waiting exactly the announced time is enough, and a hair less is not. */
async function checkExact(
  env: ReturnType<typeof createVirtualEnv>,
  limiter: RateLimiter,
  steps: number,
): Promise<number> {
  let refusals = 0;
  for (let i = 0; i < steps; i++) {
    await env.advance(env.random.next() < 0.5 ? 0 : env.random.int(400));
    const wait = limiter.tryAcquire();
    if (wait === 0) continue;
    refusals++;
    await env.advance(wait - 0.01);
    assert.ok(limiter.tryAcquire() > 0, `granted 0.01 ms before the announced ${wait} ms`);
    await env.advance(0.01);
    assert.equal(limiter.tryAcquire(), 0, `refused after the announced ${wait} ms`);
  }
  return refusals;
}

describe("token bucket", () => {
  it("grants a burst, then refuses with the exact retryAfterMs", async () => {
    const env = createVirtualEnv();
    const limiter = tokenBucket({ env, ratePerSecond: 10, burst: 3 });
    const events: number[] = [];
    limiter.onRateLimited((e) => events.push(e.retryAfterMs));
    assert.equal(limiter.available, 3);
    assert.deepEqual([limiter.tryAcquire(), limiter.tryAcquire(), limiter.tryAcquire()], [0, 0, 0]);
    assert.equal(limiter.tryAcquire(), 100);
    const refused = await limiter.execute(() => "ran").catch((e: unknown) => e);
    assert.ok(hasCode(refused, "RATE_LIMITED"));
    assert.equal(refused.retryable, true);
    assert.equal(refused.details?.["retryAfterMs"], 100);
    await env.advance(99);
    assert.equal(limiter.tryAcquire(), 1);
    await env.advance(1);
    assert.equal(await limiter.execute(() => "ran"), "ran");
    assert.deepEqual(events, [100, 100, 1]);
    await env.advance(10_000);
    assert.equal(limiter.available, 3, "never more than the burst");
    // Several permits at once: 3 taken, 2 more need 2 intervals.
    assert.equal(limiter.tryAcquire(3), 0);
    assert.equal(limiter.tryAcquire(2), 200);
  });

  it("retryAfterMs is exact at rates that are not round", async () => {
    for (const ratePerSecond of [3, 7, 0.5, 1234]) {
      const env = createVirtualEnv({ seed: ratePerSecond });
      const limiter = tokenBucket({ env, ratePerSecond, burst: 4 });
      assert.ok((await checkExact(env, limiter, 300)) > 20, `rate ${ratePerSecond}`);
    }
  });
});

describe("sliding window", () => {
  it("allows limit per window and refuses with the exact time until the oldest leaves", async () => {
    const env = createVirtualEnv();
    const limiter = slidingWindow({ env, limit: 3, windowMs: 1000 });
    assert.equal(limiter.tryAcquire(), 0);
    await env.advance(200);
    assert.equal(limiter.tryAcquire(), 0);
    await env.advance(300);
    assert.equal(limiter.tryAcquire(), 0);
    await env.advance(100);
    const refused = await limiter.execute(() => "ran").catch((e: unknown) => e);
    assert.ok(hasCode(refused, "RATE_LIMITED"));
    assert.equal(refused.details?.["retryAfterMs"], 400);
    await env.advance(399);
    assert.equal(limiter.tryAcquire(), 1);
    await env.advance(1);
    assert.equal(limiter.tryAcquire(), 0, "the permit of t=0 left the window at t=1000");
    assert.equal(limiter.tryAcquire(), 200, "next to leave: t=200");
    assert.equal(limiter.tryAcquire(2), 500, "two must leave: t=200 and t=500");
    assert.equal(limiter.available, 0);
  });

  it("retryAfterMs is exact under a random schedule", async () => {
    const env = createVirtualEnv({ seed: "window" });
    const limiter = slidingWindow({ env, limit: 5, windowMs: 777 });
    assert.ok((await checkExact(env, limiter, 300)) > 20);
  });
});
