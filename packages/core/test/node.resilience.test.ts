import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import {
  type Decision,
  defineService,
  hasCode,
  hedge,
  KeelError,
  retry,
  retryBudget,
} from "../src/index.ts";
import { capture, cluster } from "./support.ts";

/** A service whose replicas can be told to fail or be slow, per node. */
function flaky(failing: Set<string>, calls: string[] = []) {
  const handler = async (
    _: null,
    ctx: { node: string; env: { timers: { sleep(ms: number): Promise<void> } } },
  ) => {
    calls.push(ctx.node);
    await ctx.env.timers.sleep(1);
    if (failing.has(ctx.node)) throw new KeelError("UNAVAILABLE", `${ctx.node} is down`);
    return ctx.node;
  };
  return defineService("flaky")
    .action("get", { input: z.null(), output: z.string(), idempotent: true, handler })
    .action("post", { input: z.null(), output: z.string(), handler });
}

describe("circuit breakers per endpoint", () => {
  it("open on a failing endpoint, route around it, half-open and close when it recovers", async () => {
    await using c = cluster(3);
    const failing = new Set(["r1"]);
    const calls: string[] = [];
    const svc = flaky(failing, calls);
    c.add("r1", [svc]);
    c.add("r2", [svc]);
    const caller = c.add("caller", [], {
      breaker: { policy: { kind: "consecutive", threshold: 3 }, halfOpenAfterMs: 1000 },
    });
    const decisions: Decision[] = [];
    caller.onDecision((d) => decisions.push(d));
    await c.start();
    for (let i = 0; i < 40; i++) {
      void caller.call(svc, "get", null, { balancer: "round-robin" }).catch(() => undefined);
      await c.env.advance(5);
    }
    const toR1 = calls.filter((n) => n === "r1").length;
    assert.equal(toR1, 3, "after 3 failures r1 gets no more calls");
    assert.ok(decisions.some((d) => d.kind === "breaker" && d.peer === "r1" && d.to === "open"));
    failing.delete("r1");
    await c.env.advance(1000);
    calls.length = 0;
    for (let i = 0; i < 10; i++) {
      void caller.call(svc, "get", null, { balancer: "round-robin" }).catch(() => undefined);
      await c.env.advance(5);
    }
    assert.ok(calls.includes("r1"), "the probe went through and the breaker closed");
    assert.ok(decisions.some((d) => d.kind === "breaker" && d.peer === "r1" && d.to === "closed"));
  });
});

describe("retries", () => {
  it("retry an idempotent call on another endpoint, within the deadline", async () => {
    await using c = cluster(4);
    const failing = new Set(["r1"]);
    const calls: string[] = [];
    const svc = flaky(failing, calls);
    c.add("r1", [svc]);
    c.add("r2", [svc]);
    const caller = c.add("caller");
    await c.start();
    const policy = retry({
      env: c.env,
      maxAttempts: 3,
      backoff: { kind: "constant", delayMs: 20 },
      maxDelayMs: 100,
    });
    const decisions: Decision[] = [];
    caller.onDecision((d) => decisions.push(d));
    const key = "k";
    // Land the first attempt on r1 (the failing one).
    let hashKey = key;
    for (let i = 0; i < 50; i++) {
      calls.length = 0;
      const probe = capture(
        caller.call(svc, "get", null, { balancer: "consistent-hash", hashKey: `${key}${i}` }),
      );
      await c.env.advance(5);
      if (calls[0] === "r1") {
        hashKey = `${key}${i}`;
        assert.ok(hasCode(probe.error, "UNAVAILABLE"));
        break;
      }
    }
    calls.length = 0;
    const out = capture(
      caller.call(svc, "get", null, { balancer: "consistent-hash", hashKey, retry: policy }),
    );
    await c.env.advance(100);
    assert.equal(out.value, "r2");
    assert.deepEqual(calls, ["r1", "r2"]);
    assert.deepEqual(
      decisions.filter((d) => d.kind === "retry").map((d) => (d.kind === "retry" ? d.delayMs : 0)),
      [20],
    );
  });

  it("never retry a non-idempotent call whose request may have run", async () => {
    await using c = cluster(4);
    const calls: string[] = [];
    const svc = flaky(new Set(["r1", "r2"]), calls);
    c.add("r1", [svc]);
    c.add("r2", [svc]);
    const policy = retry({
      env: c.env,
      maxAttempts: 5,
      backoff: { kind: "constant", delayMs: 1 },
      maxDelayMs: 10,
    });
    const caller = c.add("caller", [], { retry: policy });
    await c.start();
    const out = capture(caller.call(svc, "post", null));
    await c.env.advance(100);
    assert.ok(hasCode(out.error, "UNAVAILABLE"));
    assert.equal(calls.length, 1);
  });

  it("keep total attempts within the retry budget under a sustained outage", async () => {
    await using c = cluster(5);
    const calls: string[] = [];
    const svc = flaky(new Set(["r1", "r2"]), calls);
    c.add("r1", [svc]);
    c.add("r2", [svc]);
    const budget = retryBudget({
      env: c.env,
      ratio: 0.1,
      minRetriesPerSecond: 1,
      windowMs: 10_000,
    });
    const policy = retry({
      env: c.env,
      maxAttempts: 5,
      backoff: { kind: "full-jitter", initialMs: 5, maxMs: 50 },
      maxDelayMs: 50,
      budget,
    });
    const caller = c.add("caller", [], { retry: policy });
    await c.start();
    const first = 2000;
    for (let i = 0; i < first; i++) {
      void caller.call(svc, "get", null).catch(() => undefined);
      await c.env.advance(5); // 200 requests a second for 10 s
    }
    await c.env.advance(1000);
    const ratio = calls.length / first;
    assert.ok(ratio <= 1.1, `attempts / first attempts = ${ratio.toFixed(3)}`);
    assert.ok(ratio > 1, "some retries were allowed");
  });
});

describe("server-side limits", () => {
  it("shed over the concurrency limit with a not-processed OVERLOADED that fails over", async () => {
    await using c = cluster(6);
    const slow = (id: string) =>
      defineService("slow").action("run", {
        input: z.null(),
        output: z.string(),
        limits: { concurrency: { maxConcurrent: 2 } },
        handler: async (_, ctx) => {
          await ctx.env.timers.sleep(50);
          return id === "" ? ctx.node : ctx.node;
        },
      });
    const svc = slow("");
    const r1 = c.add("r1", [svc]);
    c.add("r2", [svc]);
    const caller = c.add("caller");
    const shed: Decision[] = [];
    r1.onDecision((d) => shed.push(d));
    await c.start();
    const key = "x";
    const outs = Array.from({ length: 4 }, () =>
      capture(caller.call(svc, "run", null, { balancer: "consistent-hash", hashKey: key })),
    );
    await c.env.advance(120);
    const nodes = outs.map((o) => o.value);
    assert.ok(
      outs.every((o) => o.error === undefined),
      "every call served, by one replica or the other",
    );
    const first = nodes[0];
    assert.equal(
      nodes.filter((n) => n === first).length,
      2,
      "two ran on the hashed replica, two went elsewhere",
    );
    assert.ok(caller.stats.failovers >= 2);
    if (first === "r1") assert.ok(shed.some((d) => d.kind === "shed" && d.by === "concurrency"));
  });

  it("answer RATE_LIMITED with the exact retry-after, and queue in a bulkhead when allowed", async () => {
    await using c = cluster(7);
    const svc = defineService("rl")
      .action("hit", {
        input: z.null(),
        output: z.null(),
        limits: { rate: { ratePerSecond: 10, burst: 2 } },
        handler: () => null,
      })
      .action("queued", {
        input: z.null(),
        output: z.number(),
        limits: { concurrency: { maxConcurrent: 1, maxQueue: 1 } },
        handler: async (_, ctx) => {
          await ctx.env.timers.sleep(10);
          return ctx.env.clock.now();
        },
      });
    const a = c.add("a", [svc]);
    await c.start();
    const hits = [
      capture(a.call(svc, "hit", null)),
      capture(a.call(svc, "hit", null)),
      capture(a.call(svc, "hit", null)),
    ];
    await c.env.flush();
    assert.equal(hits[0]?.error, undefined);
    assert.equal(hits[1]?.error, undefined);
    const limited = hits[2]?.error;
    assert.ok(hasCode(limited, "RATE_LIMITED"));
    assert.equal(limited.details?.["retryAfterMs"], 100);
    assert.equal(limited.retryable, true);
    const q = [
      capture(a.call(svc, "queued", null)),
      capture(a.call(svc, "queued", null)),
      capture(a.call(svc, "queued", null)),
    ];
    await c.env.advance(30);
    assert.ok(typeof q[0]?.value === "number" && typeof q[1]?.value === "number");
    assert.ok(
      (q[1]?.value as number) >= (q[0]?.value as number) + 10,
      "the second waited for the first",
    );
    assert.ok(hasCode(q[2]?.error, "OVERLOADED"), "the queue holds one");
  });

  it("refuse bad limits when the node is created", () => {
    const c = cluster();
    const bad = defineService("bad").action("x", {
      input: z.null(),
      output: z.null(),
      limits: { concurrency: { maxConcurrent: 0 } },
      handler: () => null,
    });
    assert.throws(
      () => c.add("n", [bad]),
      (e) => hasCode(e, "CONFIGURATION"),
    );
  });
});

describe("hedging", () => {
  it("sends a second attempt elsewhere when the first is slow, and cancels the loser", async () => {
    await using c = cluster(9);
    const cancelled: string[] = [];
    const svc = defineService("lookup").action("get", {
      input: z.null(),
      output: z.string(),
      idempotent: true,
      handler: async (_, ctx) => {
        ctx.signal.addEventListener("abort", () => cancelled.push(ctx.node));
        await ctx.env.timers.sleep(ctx.node === "slow" ? 200 : 10, ctx.signal);
        return ctx.node;
      },
    });
    c.add("slow", [svc]);
    c.add("fast", [svc]);
    const caller = c.add("caller");
    const decisions: Decision[] = [];
    caller.onDecision((d) => decisions.push(d));
    await c.start();
    const policy = hedge({ env: c.env, delayMs: 20, maxHedges: 1 });
    // Find a key that lands on the slow replica first.
    let hashKey = "";
    for (let i = 0; i < 50 && hashKey === ""; i++) {
      const probe = capture(
        caller.call(svc, "get", null, { balancer: "consistent-hash", hashKey: `k${i}` }),
      );
      await c.env.advance(250);
      if (probe.value === "slow") hashKey = `k${i}`;
    }
    cancelled.length = 0;
    const t0 = c.env.clock.now();
    const out = capture(
      caller.call(svc, "get", null, { balancer: "consistent-hash", hashKey, hedge: policy }),
    );
    let doneAt = 0;
    while (!out.done && c.env.clock.now() - t0 < 500) {
      await c.env.advance(1);
      if (out.done) doneAt = c.env.clock.now() - t0;
    }
    assert.equal(out.value, "fast");
    assert.ok(
      doneAt >= 30 && doneAt < 40,
      `answered after ${doneAt} ms, not the slow replica's 200`,
    );
    await c.env.advance(5);
    assert.deepEqual(cancelled, ["slow"], "the slow attempt was cancelled");
    assert.deepEqual(
      decisions.filter((d) => d.kind === "hedge").map((d) => (d.kind === "hedge" ? d.attempt : -1)),
      [1],
    );
    policy.dispose();
  });
});
