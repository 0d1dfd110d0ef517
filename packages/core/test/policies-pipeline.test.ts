import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { expectTypeOf } from "expect-type";
import { createVirtualEnv, type VirtualEnv } from "../src/env/index.ts";
import { hasCode, KeelError } from "../src/errors/index.ts";
import {
  type AttemptContext,
  bulkhead,
  circuitBreaker,
  fallback,
  type GiveUpEvent,
  hedge,
  pipeline,
  retry,
  timeout,
} from "../src/policies/index.ts";
import { capture, countControllers } from "./support.ts";

/** The recommended stack. */
function stack(env: VirtualEnv, fallbackValue: string) {
  const retryPolicy = retry({
    env,
    maxAttempts: 5,
    backoff: { kind: "constant", delayMs: 100 },
    maxDelayMs: 500,
  });
  const breaker = circuitBreaker({
    env,
    policy: { kind: "consecutive", threshold: 3 },
    halfOpenAfterMs: 1000,
  });
  const policy = pipeline(
    fallback({ value: fallbackValue }),
    retryPolicy,
    breaker,
    hedge({ env, delayMs: 1000, maxHedges: 1 }),
    bulkhead({ env, maxConcurrent: 10, maxQueue: 10 }),
    timeout({ env, ms: 50 }),
  );
  return { policy, retryPolicy, breaker };
}

describe("pipeline", () => {
  it("composes outermost first; contexts carry attempt, deadline and signal inwards", async () => {
    const env = createVirtualEnv();
    const { policy } = stack(env, "fallback");
    const seen: AttemptContext[] = [];
    const controller = new AbortController();
    const out = capture(
      policy.execute(
        async (ctx) => {
          seen.push(ctx);
          if (seen.length < 3) throw new KeelError("UNAVAILABLE", "down");
          return "ok";
        },
        { deadline: 1000, signal: controller.signal },
      ),
    );
    await env.runAll();
    assert.equal(out.value, "ok");
    assert.deepEqual(
      seen.map((c) => [c.attempt, c.deadline]),
      [
        [0, 50],
        [2, 150], // retry attempt 1 is hedge attempt 2 (maxHedges 1): 1 * (1 + 1) + 0
        [4, 250],
      ],
    );
    controller.abort();
    assert.equal(seen[2]!.signal!.aborted, true, "the caller's signal reaches fn");
  });

  it("retries per-attempt timeouts within the caller's deadline", async () => {
    const env = createVirtualEnv();
    const { policy } = stack(env, "fallback");
    const starts: number[] = [];
    const out = capture(
      policy.execute(
        async (ctx) => {
          starts.push(env.clock.now());
          await env.timers.sleep(starts.length < 3 ? 80 : 10, ctx.signal);
          return "third time";
        },
        { deadline: 10_000 },
      ),
    );
    await env.runAll();
    assert.equal(out.value, "third time");
    assert.deepEqual(starts, [0, 150, 300], "each attempt timed out at 50, then waited 100");
  });

  it("retry sees the breaker open (retryAfterMs > maxDelayMs), gives up; fallback answers", async () => {
    const env = createVirtualEnv();
    const { policy, retryPolicy, breaker } = stack(env, "fallback");
    const giveUps: GiveUpEvent[] = [];
    retryPolicy.onGiveUp((e) => giveUps.push(e));
    let calls = 0;
    const out = capture(
      policy.execute(() => {
        calls++;
        throw new KeelError("UNAVAILABLE", "down");
      }),
    );
    await env.runAll();
    assert.equal(out.value, "fallback");
    assert.equal(calls, 3, "the breaker opened after 3 failures and refused the 4th attempt");
    assert.equal(breaker.state.kind, "open");
    assert.equal(giveUps[0]?.reason, "delay");
    assert.ok(hasCode(giveUps[0]?.error, "CIRCUIT_OPEN"));
  });

  it("creates no AbortController when fn does not read ctx.signal", async () => {
    const env = createVirtualEnv();
    const { policy } = stack(env, "fallback");
    const created = await countControllers(async () => {
      for (let i = 0; i < 50; i++) {
        await policy.execute(async (ctx) => ctx.attempt, {
          signal: new Original().signal,
          deadline: 100,
        });
      }
    });
    assert.equal(created, 0);
  });

  it("types the fallback's value into the result", async () => {
    const env = createVirtualEnv();
    const p = pipeline(
      fallback({ value: "none" as const }),
      retry({ env, maxAttempts: 2, backoff: { kind: "constant", delayMs: 1 }, maxDelayMs: 1 }),
    );
    const result = p.execute(async () => 42);
    expectTypeOf(result).toEqualTypeOf<Promise<number | "none">>();
    const plain = pipeline(timeout({ env, ms: 10 })).execute(() => 1);
    expectTypeOf(plain).toEqualTypeOf<Promise<number>>();
    assert.equal(await result, 42);
    assert.equal(await pipeline().execute(() => "bare"), "bare");
  });
});

const Original = globalThis.AbortController;

describe("fallback", () => {
  it("replaces failures, passes the error to fn, and leaves CANCELLED alone by default", async () => {
    const byValue = fallback({ value: 0 });
    assert.equal(
      await byValue.execute(() => {
        throw new Error("x");
      }),
      0,
    );
    await assert.rejects(
      byValue.execute(() => {
        throw new KeelError("CANCELLED", "caller left");
      }),
      (e) => hasCode(e, "CANCELLED"),
    );
    const byFn = fallback({
      fn: async (error) => `recovered from ${(error as Error).message}`,
      on: (error) => !hasCode(error, "INVALID_ARGUMENT"),
    });
    const events: unknown[] = [];
    byFn.onFallback((e) => events.push(e.error));
    assert.equal(
      await byFn.execute(() => Promise.reject(new Error("boom"))),
      "recovered from boom",
    );
    await assert.rejects(
      byFn.execute(() => {
        throw new KeelError("INVALID_ARGUMENT", "bad");
      }),
      (e) => hasCode(e, "INVALID_ARGUMENT"),
    );
    assert.equal(events.length, 1);
  });
});

describe("policy events", () => {
  it("stop on dispose (or `using`), even from inside a listener", async () => {
    const env = createVirtualEnv();
    const breaker = circuitBreaker({
      env,
      policy: { kind: "consecutive", threshold: 1 },
      halfOpenAfterMs: 10,
    });
    const seen: string[] = [];
    const first = breaker.onStateChange(({ to }) => {
      seen.push(`first:${to.kind}`);
      first.dispose();
    });
    {
      using _second = breaker.onStateChange(({ to }) => seen.push(`second:${to.kind}`));
      breaker.isolate();
    }
    breaker.reset();
    first.dispose(); // twice is fine
    assert.deepEqual(seen, ["first:isolated", "second:isolated"]);
  });
});
