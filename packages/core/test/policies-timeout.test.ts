import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createVirtualEnv } from "../src/env/index.ts";
import { hasCode, KeelError } from "../src/errors/index.ts";
import { type AttemptContext, type TimeoutEvent, timeout } from "../src/policies/index.ts";
import { capture, countControllers } from "./support.ts";

describe("timeout", () => {
  it("rejects with a retryable DEADLINE_EXCEEDED when ms passes, dropping the late result", async () => {
    const env = createVirtualEnv();
    const policy = timeout({ env, ms: 100 });
    const events: TimeoutEvent[] = [];
    policy.onTimeout((e) => events.push(e));
    let finished = false;
    const out = capture(
      policy.execute(async () => {
        await env.timers.sleep(150);
        finished = true;
        throw new Error("too late to matter"); // must not surface as an unhandled rejection
      }),
    );
    await env.advance(99);
    assert.equal(out.done, false);
    await env.advance(1);
    assert.ok(hasCode(out.error, "DEADLINE_EXCEEDED"));
    assert.equal(out.error.retryable, true);
    assert.equal(out.error.details?.["timeoutMs"], 100);
    assert.deepEqual(events, [{ afterMs: 100, outer: false }]);
    await env.advance(100);
    assert.equal(finished, true, "cooperative: fn is not stopped unless it listens");
    assert.equal(policy.pending, 0);
  });

  it("passes results through and aborts ctx.signal with the same error on time", async () => {
    const env = createVirtualEnv();
    const policy = timeout({ env, ms: 50 });
    assert.equal(await policy.execute(() => 7), 7);
    assert.equal(await policy.execute(async () => 8), 8);
    await assert.rejects(
      policy.execute(() => {
        throw new Error("sync");
      }),
      /sync/,
    );
    let reason: unknown;
    const out = capture(
      policy.execute(
        (ctx) =>
          new Promise((_, reject) => {
            ctx.signal!.addEventListener("abort", () => {
              reason = ctx.signal!.reason;
              reject(reason);
            });
          }),
      ),
    );
    await env.advance(50);
    assert.ok(hasCode(reason, "DEADLINE_EXCEEDED"));
    assert.equal(out.error, reason);
  });

  it("creates an AbortController only when fn reads ctx.signal", async () => {
    const env = createVirtualEnv();
    const policy = timeout({ env, ms: 50 });
    const unread = await countControllers(async () => {
      for (let i = 0; i < 100; i++) await policy.execute(async (ctx) => ctx.attempt);
    });
    assert.equal(unread, 0);
    const read = await countControllers(async () => {
      await policy.execute(async (ctx) => ctx.signal!.aborted);
    });
    assert.equal(read, 1);
  });

  it("uses one Env timer for many executions in flight", async () => {
    const env = createVirtualEnv();
    const policy = timeout({ env, ms: 1000 });
    const outs = Array.from({ length: 500 }, (_, i) =>
      capture(policy.execute(() => env.timers.sleep(i % 2 === 0 ? 10 : 5000))),
    );
    assert.equal(env.pendingTimers, 500 + 1, "500 sleeps of the test, one timer of the policy");
    await env.advance(1000);
    assert.equal(outs.filter((o) => o.done && o.error === undefined).length, 250);
    assert.equal(outs.filter((o) => hasCode(o.error, "DEADLINE_EXCEEDED")).length, 250);
  });

  it("combines with an outer deadline: the earlier wins, and the outer one is not retryable", async () => {
    const env = createVirtualEnv();
    const policy = timeout({ env, ms: 100 });
    let ctx: AttemptContext | undefined;
    const out = capture(
      policy.execute(
        (c) => {
          ctx = c;
          return env.timers.sleep(1000);
        },
        { deadline: 40, attempt: 3 },
      ),
    );
    assert.equal(ctx?.deadline, 40);
    assert.equal(ctx?.attempt, 3, "the outer attempt number passes through");
    await env.advance(40);
    assert.ok(hasCode(out.error, "DEADLINE_EXCEEDED"));
    assert.equal(out.error.retryable, false);

    let called = false;
    await assert.rejects(
      policy.execute(
        () => {
          called = true;
        },
        { deadline: env.clock.now() },
      ),
      (e) => hasCode(e, "DEADLINE_EXCEEDED"),
    );
    assert.equal(called, false, "no time left: fn is not started");
    assert.equal(policy.deadline(), env.clock.now() + 100);
    assert.equal(policy.deadline(env.clock.now() + 5), env.clock.now() + 5);
  });

  it("passes the caller's abort to ctx.signal", async () => {
    const env = createVirtualEnv();
    const policy = timeout({ env, ms: 100 });
    const controller = new AbortController();
    let inner: AbortSignal | undefined;
    const out = capture(
      policy.execute(
        (ctx) => {
          inner = ctx.signal;
          return env.timers.sleep(1000, ctx.signal);
        },
        { signal: controller.signal },
      ),
    );
    const reason = new KeelError("CANCELLED", "user left");
    controller.abort(reason);
    await env.flush();
    assert.equal(inner?.aborted, true);
    assert.equal(out.error, reason);
  });
});
