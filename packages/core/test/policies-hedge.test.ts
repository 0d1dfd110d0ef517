import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createVirtualEnv } from "../src/env/index.ts";
import { hasCode, KeelError } from "../src/errors/index.ts";
import { type HedgeEvent, type HedgePolicy, hedge } from "../src/policies/index.ts";
import { capture, percentile } from "./support.ts";

describe("hedge", () => {
  it("starts attempt 1 after the delay; the first success wins and the loser is cancelled", async () => {
    const env = createVirtualEnv();
    const policy = hedge({ env, delayMs: 50, maxHedges: 2 });
    const hedges: HedgeEvent[] = [];
    policy.onHedge((e) => hedges.push(e));
    const signals: AbortSignal[] = [];
    const latency = [200, 10, 10];
    const out = capture(
      policy.execute(async (ctx) => {
        signals.push(ctx.signal!);
        await env.timers.sleep(latency[ctx.attempt]!);
        return `attempt ${ctx.attempt}`;
      }),
    );
    await env.advance(59);
    assert.equal(out.done, false);
    await env.advance(1);
    assert.equal(out.value, "attempt 1");
    assert.deepEqual(hedges, [{ attempt: 1, afterMs: 50 }]);
    assert.equal(signals.length, 2, "no third attempt: the second won before its delay");
    assert.equal(signals[0]!.aborted, true);
    assert.ok(hasCode(signals[0]!.reason, "CANCELLED"));
    assert.equal(signals[1]!.aborted, false);
  });

  it("hedges up to maxHedges, one delay apart", async () => {
    const env = createVirtualEnv();
    const policy = hedge({ env, delayMs: 30, maxHedges: 2 });
    const starts: number[] = [];
    const out = capture(
      policy.execute(async (ctx) => {
        starts.push(env.clock.now());
        await env.timers.sleep(ctx.attempt === 2 ? 5 : 1000);
        return ctx.attempt;
      }),
    );
    await env.advance(100);
    assert.deepEqual(starts, [0, 30, 60]);
    assert.equal(out.value, 2);
  });

  it("fails with the last error once every started attempt failed, without waiting", async () => {
    const env = createVirtualEnv();
    const policy = hedge({ env, delayMs: 50, maxHedges: 1 });
    const early = capture(
      policy.execute(async () => {
        await env.timers.sleep(5);
        throw new KeelError("INVALID_ARGUMENT", "bad input");
      }),
    );
    await env.advance(5);
    assert.ok(hasCode(early.error, "INVALID_ARGUMENT"), "no hedge for a failure");

    const errors = ["first", "second"];
    const both = capture(
      policy.execute(async (ctx) => {
        await env.timers.sleep(ctx.attempt === 0 ? 100 : 40);
        throw new Error(errors[ctx.attempt]);
      }),
    );
    await env.advance(90);
    assert.equal(both.done, false, "attempt 0 is still running");
    await env.advance(10);
    assert.equal((both.error as Error).message, "first", "the last to fail");

    const rescued = capture(
      policy.execute(async (ctx) => {
        await env.timers.sleep(ctx.attempt === 0 ? 60 : 100);
        if (ctx.attempt === 0) throw new Error("attempt 0 failed");
        return "attempt 1";
      }),
    );
    await env.advance(200);
    assert.equal(rescued.value, "attempt 1", "a running hedge can still succeed");
  });

  it("does not hedge past the deadline, and numbers attempts under an outer retry", async () => {
    const env = createVirtualEnv();
    const policy = hedge({ env, delayMs: 50, maxHedges: 1 });
    const attempts: number[] = [];
    const fn = async (ctx: { attempt: number }) => {
      attempts.push(ctx.attempt);
      await env.timers.sleep(100);
      return ctx.attempt;
    };
    const out = capture(policy.execute(fn, { deadline: 40 }));
    await env.advance(100);
    assert.deepEqual(attempts, [0]);
    assert.equal(out.value, 0);
    attempts.length = 0;
    capture(policy.execute(fn, { attempt: 2, deadline: Number.POSITIVE_INFINITY }));
    await env.advance(100);
    assert.deepEqual(attempts, [4, 5], "retry attempt 2, hedges 0 and 1");
  });

  it("learns its delay from the latency percentile", async () => {
    const env = createVirtualEnv();
    const policy = hedge({ env, delayMs: { percentile: 0.9, minSamples: 10 }, maxHedges: 1 });
    assert.equal(policy.delay(), Number.POSITIVE_INFINITY, "no hedging before minSamples");
    for (let ms = 1; ms <= 10; ms++) policy.recordLatency(ms * 10);
    assert.equal(policy.delay(), 90);

    // With a window of 8 the percentile is refreshed on every sample: it must be the exact
    // nearest-rank percentile of the last 8, duplicates included.
    for (const p of [0.5, 0.9, 0.95, 0.01]) {
      const exact = hedge({
        env,
        delayMs: { percentile: p, minSamples: 8, windowSize: 8 },
        maxHedges: 1,
      });
      const recent: number[] = [];
      for (let i = 0; i < 400; i++) {
        const ms = i % 3 === 0 ? env.random.int(5) : env.random.next() * 100;
        exact.recordLatency(ms);
        recent.push(ms);
        if (recent.length > 8) recent.shift();
        if (recent.length === 8) assert.equal(exact.delay(), percentile(recent, p), `p${p} #${i}`);
      }
    }
  });

  it("brings p99 near the fast replicas' when one replica of 25 is 10x slower", async (t) => {
    const replicas = 25;
    type Env = ReturnType<typeof createVirtualEnv>;
    const run = async (makePolicy?: (env: Env) => HedgePolicy) => {
      const env = createVirtualEnv({ seed: "replicas" });
      const p = makePolicy?.(env);
      const latencies: number[] = [];
      let attempts = 0;
      const calls = 3000;
      const warmup = 300;
      for (let i = 0; i < calls; i += 5) {
        for (let k = 0; k < 5; k++) {
          const start = env.clock.now();
          const first = env.random.int(replicas);
          const fn = async (ctx: { attempt: number }) => {
            attempts++;
            const replica = (first + ctx.attempt) % replicas;
            const ms = (replica === 0 ? 100 : 10) * (1 + 0.5 * env.random.next());
            await env.timers.sleep(ms);
            return replica;
          };
          const call = p === undefined ? fn({ attempt: 0 }) : p.execute(fn);
          if (i >= warmup) {
            void call.then(() => {
              latencies.push(env.clock.now() - start);
            });
          }
        }
        await env.advance(10);
      }
      await env.advance(1000);
      return {
        p99: percentile(latencies, 0.99),
        p50: percentile(latencies, 0.5),
        load: attempts / calls,
      };
    };
    const plain = await run();
    const hedged = await run((env) =>
      hedge({ env, delayMs: { percentile: 0.95, minSamples: 100 }, maxHedges: 1 }),
    );
    t.diagnostic(
      `p99 without hedging ${plain.p99.toFixed(1)} ms, with hedging at p95 ${hedged.p99.toFixed(1)} ms ` +
        `(fast replicas: 10-15 ms, slow: 100-150 ms; p50 ${plain.p50.toFixed(1)} / ${hedged.p50.toFixed(1)} ms; ` +
        `attempts per call ${hedged.load.toFixed(3)})`,
    );
    assert.ok(plain.p99 >= 100);
    assert.ok(hedged.p99 <= 35, `hedged p99 ${hedged.p99}`);
    assert.ok(hedged.load < 1.1, "hedging costs about 5 % more attempts");
  });
});
