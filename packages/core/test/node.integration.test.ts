import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import {
  type Context,
  createNode,
  defineEvent,
  defineService,
  hasCode,
  isKeelError,
  jsonCodec,
  KeelError,
  silentLogger,
  type Transport,
  type TransportStatus,
  WIRE_VERSION,
} from "../src/index.ts";
import { type Cluster, capture, cluster, memoryLogger } from "./support.ts";

/** Abort reasons seen by handlers, per test. */
type Seen = Array<{ node: string; code: string | undefined; remaining: number }>;

function workService(seen: Seen = []) {
  const body = async ({ ms }: { ms: number }, ctx: Context) => {
    ctx.signal.addEventListener("abort", () => {
      const reason = ctx.signal.reason as unknown;
      seen.push({
        node: ctx.node,
        code: isKeelError(reason) ? reason.code : undefined,
        remaining: ctx.remainingMs(),
      });
    });
    await ctx.env.timers.sleep(ms, ctx.signal);
    return { node: ctx.node };
  };
  return defineService("work")
    .action("idem", {
      input: z.object({ ms: z.number() }),
      output: z.object({ node: z.string() }),
      idempotent: true,
      handler: body,
    })
    .action("once", {
      input: z.object({ ms: z.number() }),
      output: z.object({ node: z.string() }),
      handler: body,
    });
}

describe("calls between nodes", () => {
  it("returns typed results and carries caller, metadata and idempotency key", async () => {
    await using c = cluster();
    const seen: Array<Pick<Context, "caller" | "meta" | "idempotencyKey" | "node">> = [];
    const echo = defineService("echo").action("say", {
      input: z.object({ text: z.string() }),
      output: z.object({ text: z.string() }),
      handler: ({ text }, ctx) => {
        seen.push({
          caller: ctx.caller,
          meta: ctx.meta,
          idempotencyKey: ctx.idempotencyKey,
          node: ctx.node,
        });
        return { text: text.toUpperCase() };
      },
    });
    const front = defineService("front").action("relay", {
      input: z.string(),
      output: z.string(),
      handler: async (text, ctx) =>
        (await ctx.call(echo, "say", { text }, { meta: { tenant: "t1" }, idempotencyKey: "k1" }))
          .text,
    });
    c.add("a", [echo]);
    const b = c.add("b", [front]);
    await c.start();
    const out = capture(b.call(front, "relay", "hello"));
    await c.env.advance(1);
    assert.equal(out.value, "HELLO");
    assert.deepEqual(seen, [
      {
        caller: { node: "b", service: "front" },
        meta: { tenant: "t1" },
        idempotencyKey: "k1",
        node: "a",
      },
    ]);
  });

  it("rejects schema violations with INVALID_ARGUMENT and the failing path, on both paths", async () => {
    await using c = cluster();
    const svc = defineService("acct").action("open", {
      input: z.object({ owner: z.object({ email: z.email() }) }),
      output: z.object({ id: z.string() }),
      handler: () => ({ id: "1" }),
    });
    const local = c.add("a", [svc]);
    const remote = c.add("b");
    await c.start();
    for (const caller of [local, remote]) {
      const out = capture(caller.call(svc, "open", { owner: { email: "nope" } }));
      await c.env.advance(1);
      assert.ok(hasCode(out.error, "INVALID_ARGUMENT"), String(out.error));
      assert.match(out.error.message, /owner\.email/);
      assert.deepEqual(
        (out.error.details?.["issues"] as Array<{ path: string }> | undefined)?.[0]?.path,
        "owner.email",
      );
      assert.equal(out.error.retryable, false);
    }
  });

  it("turns handler exceptions and bad outputs into INTERNAL without leaking them", async () => {
    await using c = cluster();
    const log = memoryLogger();
    const svc = defineService("leaky")
      .action("throws", {
        input: z.null(),
        output: z.null(),
        handler: () => {
          throw new Error("db password is hunter2");
        },
      })
      .action("badOutput", {
        input: z.null(),
        output: z.number(),
        handler: () => "not a number" as unknown as number,
      });
    c.add("a", [svc], { logger: log });
    const b = c.add("b");
    await c.start();
    const thrown = capture(b.call(svc, "throws", null));
    const bad = capture(b.call(svc, "badOutput", null));
    await c.env.advance(1);
    assert.ok(hasCode(thrown.error, "INTERNAL"));
    assert.equal(thrown.error.remote, true);
    assert.doesNotMatch(
      `${thrown.error.message} ${JSON.stringify(thrown.error.details)} ${thrown.error.stack}`,
      /hunter2/,
    );
    assert.ok(hasCode(bad.error, "INTERNAL"));
    assert.match(bad.error.message, /output of leaky\.badOutput/);
    assert.ok(
      log.lines.some((l) => l.level === "error" && /hunter2/.test(JSON.stringify(l.obj))),
      "the server logs the real error",
    );
  });

  it("answers NOT_FOUND for an unknown action and UNAVAILABLE when nobody hosts the service", async () => {
    await using c = cluster();
    const svc = defineService("s").action("a", {
      input: z.null(),
      output: z.null(),
      handler: () => null,
    });
    const other = defineService("ghost").action("a", {
      input: z.null(),
      output: z.null(),
      handler: () => null,
    });
    c.add("a", [svc]);
    const b = c.add("b");
    await c.start();
    const unknown = capture(b.call(svc, "zzz" as "a", null));
    const nobody = capture(b.call(other, "a", null));
    await c.env.advance(1);
    assert.ok(hasCode(unknown.error, "NOT_FOUND"));
    assert.ok(hasCode(nobody.error, "UNAVAILABLE"));
    assert.equal(nobody.error.details?.["notProcessed"], true);
  });
});

describe("failover and failure detection", () => {
  it("detects a crashed node within 1 s and fails idempotent in-flight calls over", async () => {
    await using c = cluster(7);
    // Pin the first attempt to r1 with consistent hashing, then kill r1 mid-call.
    const { work, r1, caller, toR1 } = await twoReplicasKeyedToR1(c);
    let downAt: number | undefined;
    caller.registry.onChange((e) => {
      if (e.kind === "node-down" && e.node === "r1") downAt = c.env.clock.now();
    });
    const out = capture(caller.call(work, "idem", { ms: 50 }, { ...toR1, timeoutMs: 5000 }));
    await c.env.advance(10);
    const crashedAt = c.env.clock.now();
    r1.crash();
    await c.env.advance(1500);
    assert.deepEqual(out.value, { node: "r2" });
    assert.equal(caller.stats.failovers, 1);
    assert.ok(
      downAt !== undefined && downAt - crashedAt <= 1000,
      `detected after ${(downAt ?? Infinity) - crashedAt} ms`,
    );
    assert.deepEqual(
      caller.registry.endpoints("work", 1).map((e) => e.node),
      ["r2"],
    );
  });

  it("does not re-run a non-idempotent call whose outcome is unknown", async () => {
    await using c = cluster(7);
    const { work, r1, caller, toR1 } = await twoReplicasKeyedToR1(c);
    const out = capture(caller.call(work, "once", { ms: 50 }, { ...toR1, timeoutMs: 5000 }));
    await c.env.advance(10);
    r1.crash();
    await c.env.advance(1500);
    assert.ok(hasCode(out.error, "UNAVAILABLE"), String(out.error));
    assert.match(out.error.message, /r1/);
    assert.equal(caller.stats.failovers, 0);
  });

  it("drops an isolated node and takes it back when the partition heals", async () => {
    await using c = cluster(3);
    const work = workService();
    c.add("r1", [work]);
    const caller = c.add("caller");
    await c.start();
    c.network.isolate("r1");
    await c.env.advance(1000);
    assert.deepEqual(caller.registry.endpoints("work", 1), []);
    c.network.heal();
    await c.env.advance(500);
    assert.deepEqual(
      caller.registry.endpoints("work", 1).map((e) => e.node),
      ["r1"],
    );
    const out = capture(caller.call(work, "idem", { ms: 1 }));
    await c.env.advance(5);
    assert.deepEqual(out.value, { node: "r1" });
  });

  it("recognises a node restarted under the same id, even one that crashed mid-drain", async () => {
    await using c = cluster(13);
    const work = workService();
    const r1 = c.add("r1", [work]);
    const caller = c.add("caller");
    await c.start();
    const inflight = capture(caller.call(work, "once", { ms: 10_000 }, { timeoutMs: 20_000 }));
    await c.env.advance(1);
    void r1.stop({ graceMs: 60_000 });
    await c.env.advance(1);
    assert.equal(caller.registry.node("r1")?.state, "draining");
    r1.crash();
    const reborn = c.add("r1", [work]);
    await reborn.start();
    await c.env.advance(300);
    // The old life's call fails at once instead of waiting out its deadline.
    assert.ok(hasCode(inflight.error, "UNAVAILABLE"), String(inflight.error));
    assert.match(inflight.error.message, /restarted/);
    assert.equal(caller.registry.node("r1")?.state, "ready");
    const out = capture(caller.call(work, "once", { ms: 1 }));
    await c.env.advance(5);
    assert.deepEqual(out.value, { node: "r1" });
  });

  it("keeps working with lossy, duplicating, slow links", async () => {
    await using c = cluster(11);
    const work = workService();
    c.add("r1", [work]);
    c.add("r2", [work]);
    const caller = c.add("caller");
    c.network.setDefaultFaults({ latency: { kind: "exponential", mean: 2 }, duplicate: 0.2 });
    await c.start();
    await c.env.advance(50);
    const outs = Array.from({ length: 200 }, () => capture(caller.call(work, "idem", { ms: 1 })));
    await c.env.advance(1000);
    assert.ok(
      outs.every((o) => o.done && o.error === undefined),
      "every call answered exactly once, despite duplicates",
    );
    assert.ok(c.network.stats.duplicated > 0);
  });
});

describe("failover safety", () => {
  it("never lets a downstream 'not processed' make a caller re-run a handler that did run", async () => {
    await using c = cluster(3);
    const down = defineService("down").action("x", {
      input: z.null(),
      output: z.null(),
      handler: () => null,
    });
    let runs = 0;
    const front = defineService("front").action("go", {
      input: z.null(),
      output: z.null(),
      handler: async (_, ctx) => {
        runs++;
        return ctx.call(down, "x", null); // nobody hosts `down`: UNAVAILABLE, not processed
      },
    });
    c.add("f1", [front]);
    c.add("f2", [front]);
    const caller = c.add("caller");
    await c.start();
    const out = capture(caller.call(front, "go", null));
    await c.env.advance(5);
    assert.ok(hasCode(out.error, "UNAVAILABLE"));
    assert.equal(out.error.details?.["notProcessed"], undefined);
    assert.equal(runs, 1);
    assert.equal(caller.stats.failovers, 0);
  });

  it("fails an idempotent call over when the drain grace period cuts it off", async () => {
    await using c = cluster(5);
    const { work, r1, caller, toR1 } = await twoReplicasKeyedToR1(c);
    const out = capture(caller.call(work, "idem", { ms: 500 }, toR1));
    await c.env.advance(5);
    void r1.stop({ graceMs: 100 });
    await c.env.advance(700);
    assert.deepEqual(out.value, { node: "r2" });
    assert.equal(caller.stats.failovers, 1);
  });

  it("waits for replies that a goodbye overtook", async () => {
    await using c = cluster(5);
    const work = workService();
    c.add("r1", [work]);
    const caller = c.add("caller");
    await c.start();
    c.network.setLink("r1", "caller", { latency: { kind: "fixed", ms: 50 } });
    const out = capture(caller.call(work, "once", { ms: 10 }));
    await c.env.advance(5);
    // A leave that arrives before the reply (as on a link that reorders).
    c.network.inject("r1", "caller", jsonCodec.encode({ v: WIRE_VERSION, k: "leave", from: "r1" }));
    await c.env.advance(100);
    assert.deepEqual(out.value, { node: "r1" });
    assert.deepEqual(caller.registry.endpoints("work", 1), []);
  });

  it("does not bring back a node whose late frames arrive after its goodbye", async () => {
    await using c = cluster(5);
    const work = workService();
    c.add("r1", [work]);
    const caller = c.add("caller");
    await c.start();
    const inc = caller.registry.node("r1")?.incarnation ?? "";
    const raw = (frame: object) =>
      c.network.inject("r1", "caller", jsonCodec.encode(frame as never));
    raw({ v: WIRE_VERSION, k: "leave", from: "r1" });
    // A draining announce and a heartbeat of the same life, overtaken by the leave.
    raw({
      v: WIRE_VERSION,
      k: "announce",
      from: "r1",
      inc,
      seq: 1,
      state: "draining",
      services: [],
    });
    raw({ v: WIRE_VERSION, k: "hb", from: "r1", inc, seq: 1 });
    await c.env.advance(1);
    assert.equal(caller.registry.node("r1"), undefined);
    // A new life of the same id is welcome.
    raw({
      v: WIRE_VERSION,
      k: "announce",
      from: "r1",
      inc: "new-life",
      seq: 0,
      state: "ready",
      services: [],
    });
    await c.env.advance(1);
    assert.equal(caller.registry.node("r1")?.incarnation, "new-life");
  });

  it("cuts one direction only with a one-way partition", async () => {
    await using c = cluster(6);
    const work = workService();
    c.add("r1", [work]);
    const caller = c.add("caller");
    await c.start();
    // Requests reach r1, but its replies and heartbeats never come back.
    c.network.partition(["r1"], ["caller"], { oneWay: true });
    const out = capture(caller.call(work, "once", { ms: 1 }, { timeoutMs: 300 }));
    await c.env.advance(301);
    assert.ok(hasCode(out.error, "DEADLINE_EXCEEDED"));
    await c.env.advance(1000);
    assert.deepEqual(
      caller.registry.endpoints("work", 1),
      [],
      "the silent direction looks like a failure",
    );
    // The other way still works: r1 keeps hearing the caller.
    const r1 = c.nodes.get("r1")!;
    assert.ok(r1.registry.nodes().includes("caller"));
    c.network.heal();
    await c.env.advance(500);
    assert.deepEqual(
      caller.registry.endpoints("work", 1).map((e) => e.node),
      ["r1"],
    );
  });

  it("keeps frames in order on a link unless told to reorder", async () => {
    const c = cluster(8);
    const got: number[] = [];
    const a = c.network.transport("x");
    const b = c.network.transport("y");
    await a.connect();
    await b.connect();
    const reader = (async () => {
      for await (const f of b) got.push(f.frame[0] ?? -1);
    })();
    c.network.setLink("x", "y", { latency: { kind: "uniform", min: 1, max: 100 } });
    for (let i = 0; i < 50; i++) a.send("y", new Uint8Array([i]));
    await c.env.advance(200);
    assert.deepEqual(
      got,
      Array.from({ length: 50 }, (_, i) => i),
    );
    got.length = 0;
    c.network.setLink("x", "y", { latency: { kind: "uniform", min: 1, max: 100 }, reorder: true });
    for (let i = 0; i < 50; i++) a.send("y", new Uint8Array([i]));
    await c.env.advance(300);
    assert.equal(got.length, 50);
    assert.notDeepEqual(
      got,
      Array.from({ length: 50 }, (_, i) => i),
    );
    await b.close();
    await reader;
    await a.close();
  });
});

describe("drain", () => {
  it("finishes in-flight requests, sends new ones elsewhere, and answers stragglers after the grace period", async () => {
    await using c = cluster(5);
    const { work, r1, caller, toR1 } = await twoReplicasKeyedToR1(c);
    const short = capture(caller.call(work, "once", { ms: 100 }, toR1));
    const long = capture(caller.call(work, "once", { ms: 5000 }, toR1));
    await c.env.advance(5);
    const stopped = capture(r1.stop({ graceMs: 300 }));
    await c.env.advance(1);
    assert.equal(r1.state, "draining");
    // New work with the same key now lands on r2: r1 announced it is draining.
    const fresh = capture(caller.call(work, "once", { ms: 1 }, toR1));
    await c.env.advance(120);
    assert.deepEqual(short.value, { node: "r1" }, "in-flight request finished during drain");
    assert.deepEqual(fresh.value, { node: "r2" });
    assert.equal(long.done, false);
    await c.env.advance(300);
    assert.ok(stopped.done);
    assert.equal(r1.state, "stopped");
    assert.ok(hasCode(long.error, "UNAVAILABLE"), "a straggler gets an answer, not silence");
    assert.match(long.error.message, /stopped before the request finished/);
  });

  it("refuses a request that arrives while draining with a retryable not-processed UNAVAILABLE", async () => {
    await using c = cluster(5);
    const work = workService();
    const r1 = c.add("r1", [work]);
    const caller = c.add("caller");
    await c.start();
    // Slow the announce of the drain so a request crosses it.
    c.network.setLink("r1", "caller", { latency: { kind: "fixed", ms: 50 } });
    const busy = capture(caller.call(work, "once", { ms: 100 }));
    await c.env.advance(1);
    void r1.stop({ graceMs: 1000 });
    const late = capture(caller.call(work, "once", { ms: 1 }));
    await c.env.advance(60);
    assert.ok(hasCode(late.error, "UNAVAILABLE"));
    assert.equal(late.error.details?.["notProcessed"], true);
    assert.equal(late.error.retryable, true);
    await c.env.advance(200);
    assert.deepEqual(busy.value, { node: "r1" });
  });
});

describe("deadlines and cancellation", () => {
  it("spends one budget across three hops and aborts the last callee when it runs out", async () => {
    await using c = cluster();
    const seen: Seen = [];
    const budgets: Record<string, number> = {};
    const cSvc = defineService("c").action("leaf", {
      input: z.null(),
      output: z.null(),
      handler: async (_, ctx) => {
        budgets["c"] = ctx.remainingMs();
        ctx.signal.addEventListener("abort", () => {
          const r = ctx.signal.reason as KeelError;
          seen.push({ node: ctx.node, code: r.code, remaining: ctx.remainingMs() });
        });
        await ctx.env.timers.sleep(1000, ctx.signal);
        return null;
      },
    });
    const bSvc = defineService("b").action("mid", {
      input: z.null(),
      output: z.null(),
      handler: async (_, ctx) => {
        budgets["b"] = ctx.remainingMs();
        await ctx.env.timers.sleep(60);
        return ctx.call(cSvc, "leaf", null, { timeoutMs: 10_000 });
      },
    });
    c.add("nc", [cSvc]);
    c.add("nb", [bSvc]);
    const a = c.add("na");
    c.network.setDefaultFaults({ latency: { kind: "fixed", ms: 5 } });
    await c.start();
    await c.env.advance(20);
    const t0 = c.env.clock.now();
    const out = capture(a.call(bSvc, "mid", null, { timeoutMs: 100 }));
    await c.env.advance(99);
    assert.equal(out.done, false);
    await c.env.advance(2);
    assert.ok(hasCode(out.error, "DEADLINE_EXCEEDED"));
    assert.equal(c.env.clock.now() - t0 >= 100, true);
    // Each hop saw what was left when the frame was sent (transit time cannot be measured without
    // synchronised clocks), never the 10 s the inner call asked for.
    assert.equal(budgets["b"], 100);
    assert.equal(budgets["c"], 40);
    await c.env.advance(50);
    assert.deepEqual(
      seen.map((s) => [s.node, s.code]),
      [["nc", "DEADLINE_EXCEEDED"]],
    );
  });

  it("spends one budget across nested calls on one node, sync and async", async () => {
    await using c = cluster();
    const seen: string[] = [];
    const leaf = defineService("leaf")
      .action("slow", {
        input: z.null(),
        output: z.null(),
        handler: async (_, ctx) => {
          seen.push(`slow budget ${ctx.remainingMs()}`);
          ctx.signal.addEventListener("abort", () =>
            seen.push(`slow ${(ctx.signal.reason as KeelError).code}`),
          );
          await ctx.env.timers.sleep(1000, ctx.signal);
          return null;
        },
      })
      .action("quick", {
        input: z.null(),
        output: z.number(),
        handler: (_, ctx) => ctx.remainingMs(),
      });
    const mid = defineService("mid").action("go", {
      input: z.null(),
      output: z.null(),
      handler: async (_, ctx) => {
        seen.push(`quick saw ${await ctx.call(leaf, "quick", null, { timeoutMs: 10_000 })}`);
        await ctx.env.timers.sleep(60);
        return ctx.call(leaf, "slow", null, { timeoutMs: 10_000 });
      },
    });
    const a = c.add("a", [leaf, mid]);
    await c.start();
    const out = capture(a.call(mid, "go", null, { timeoutMs: 100 }));
    await c.env.advance(99);
    assert.equal(out.done, false);
    await c.env.advance(2);
    assert.ok(hasCode(out.error, "DEADLINE_EXCEEDED"));
    assert.deepEqual(seen, ["quick saw 100", "slow budget 40", "slow DEADLINE_EXCEEDED"]);
    // A child started after its parent's deadline fails at once, before its handler's first await.
    const late = defineService("late").action("go", {
      input: z.null(),
      output: z.null(),
      handler: async (_, ctx) => {
        await ctx.env.timers.sleep(50);
        const child = capture(ctx.call(leaf, "slow", null));
        await c.env.flush();
        seen.push(`child ${hasCode(child.error, "DEADLINE_EXCEEDED")}`);
        return null;
      },
    });
    seen.length = 0;
    const b = c.add("b", [late, leaf]);
    await c.start();
    void b.call(late, "go", null, { timeoutMs: 50 }).catch(() => undefined);
    await c.env.advance(60);
    assert.deepEqual(
      seen.filter((x) => x.startsWith("child")),
      ["child true"],
    );
  });

  it("fails fast when no budget is left, without sending", async () => {
    await using c = cluster();
    const work = workService();
    c.add("r1", [work]);
    const a = c.add("a");
    await c.start();
    const sent = c.network.stats.sent;
    const out = capture(a.call(work, "idem", { ms: 1 }, { timeoutMs: 0 }));
    await c.env.flush();
    assert.ok(hasCode(out.error, "DEADLINE_EXCEEDED"));
    assert.equal(c.network.stats.sent, sent);
  });

  it("delivers a cancel to the remote callee and to the callee's own downstream calls", async () => {
    await using c = cluster();
    const seen: Seen = [];
    const work = workService(seen);
    const mid = defineService("mid").action("go", {
      input: z.null(),
      output: z.object({ node: z.string() }),
      handler: (_, ctx) => {
        ctx.signal.addEventListener("abort", () =>
          seen.push({ node: ctx.node, code: (ctx.signal.reason as KeelError).code, remaining: 0 }),
        );
        return ctx.call(work, "idem", { ms: 10_000 });
      },
    });
    c.add("leaf", [work]);
    c.add("m", [mid]);
    const a = c.add("a");
    await c.start();
    const ac = new AbortController();
    const out = capture(a.call(mid, "go", null, { signal: ac.signal }));
    await c.env.advance(10);
    ac.abort();
    await c.env.advance(1);
    assert.ok(hasCode(out.error, "CANCELLED"));
    assert.deepEqual(seen.map((s) => [s.node, s.code]).sort(), [
      ["leaf", "CANCELLED"],
      ["m", "CANCELLED"],
    ]);
  });

  it("honours deadlines and cancellation on the same-node fast path", async () => {
    await using c = cluster();
    const seen: Seen = [];
    const work = workService(seen);
    const a = c.add("a", [work]);
    await c.start();
    const timedOut = capture(a.call(work, "idem", { ms: 1000 }, { timeoutMs: 50 }));
    const ac = new AbortController();
    const aborted = capture(a.call(work, "idem", { ms: 1000 }, { signal: ac.signal }));
    await c.env.advance(10);
    ac.abort();
    await c.env.advance(45);
    assert.ok(hasCode(timedOut.error, "DEADLINE_EXCEEDED"));
    assert.ok(hasCode(aborted.error, "CANCELLED"));
    assert.deepEqual(seen.map((s) => s.code).sort(), ["CANCELLED", "DEADLINE_EXCEEDED"]);
  });
});

describe("balancing and versions", () => {
  it("routes a 5 % canary within tolerance", async () => {
    await using c = cluster(21);
    const v1 = defineService("orders", { version: 1 }).action("get", {
      input: z.null(),
      output: z.number(),
      handler: () => 1,
    });
    const v2 = defineService("orders", { version: 2 }).action("get", {
      input: z.null(),
      output: z.number(),
      handler: () => 2,
    });
    c.add("o1", [v1]);
    c.add("o2", [v2]);
    const a = c.add("a");
    await c.start();
    const client = a.client(v1, { versions: { 1: 95, 2: 5 } });
    const n = 4000;
    const outs = Array.from({ length: n }, () => capture(client.get(null)));
    await c.env.advance(10);
    const v2share = outs.filter((o) => o.value === 2).length / n;
    assert.ok(outs.every((o) => o.done && o.error === undefined));
    assert.ok(Math.abs(v2share - 0.05) < 0.015, `v2 got ${(v2share * 100).toFixed(2)} %`);
  });

  it("keeps a key on one node with consistent hashing and prefers local endpoints when asked", async () => {
    await using c = cluster(4);
    const work = workService();
    c.add("r1", [work]);
    c.add("r2", [work]);
    const local = c.add("r3", [work]);
    await c.start();
    const nodes = new Set<string>();
    for (let i = 0; i < 20; i++) nodes.add(await pinned(c, local, work, "customer-42"));
    assert.equal(nodes.size, 1);
    const out = capture(local.call(work, "idem", { ms: 1 }, { balancer: "prefer-local" }));
    await c.env.advance(2);
    assert.deepEqual(out.value, { node: "r3" });
  });

  it("sees a replica that joins, and one that leaves, on the same-node route", async () => {
    await using c = cluster(12);
    const work = workService();
    const a = c.add("a", [work], { balancer: "round-robin" });
    await c.start();
    const round = async (n: number) => {
      const outs = Array.from({ length: n }, () => capture(a.call(work, "idem", { ms: 1 })));
      await c.env.advance(5);
      return new Set(outs.map((o) => o.value?.node));
    };
    assert.deepEqual(await round(4), new Set(["a"]));
    const b = c.add("b", [work]);
    await c.start();
    assert.deepEqual(await round(4), new Set(["a", "b"]));
    const stopping = b.stop({ graceMs: 0 });
    await c.env.advance(5);
    await stopping;
    assert.deepEqual(await round(4), new Set(["a"]));
  });

  it("spreads load over replicas with p2c", async () => {
    await using c = cluster(9);
    const work = workService();
    c.add("r1", [work]);
    c.add("r2", [work]);
    c.add("r3", [work]);
    const a = c.add("a");
    await c.start();
    const outs = Array.from({ length: 300 }, () => capture(a.call(work, "idem", { ms: 5 })));
    await c.env.advance(50);
    const counts = new Map<string, number>();
    for (const o of outs) counts.set(o.value!.node, (counts.get(o.value!.node) ?? 0) + 1);
    assert.equal(counts.size, 3);
    for (const n of counts.values()) assert.ok(n > 50, JSON.stringify([...counts]));
  });
});

describe("events", () => {
  it("emits to one node per subscribing service and broadcasts to every subscriber", async () => {
    await using c = cluster(2);
    const got: string[] = [];
    const paid = defineEvent("order.paid", z.object({ id: z.string() }));
    const mailer = defineService("mailer").on(paid, (p, ctx) => {
      got.push(`mailer@${ctx.node}:${p.id}:${ctx.from}`);
    });
    const ledger = defineService("ledger").on(paid, (p, ctx) => {
      got.push(`ledger@${ctx.node}:${p.id}`);
    });
    c.add("m1", [mailer]);
    c.add("m2", [mailer, ledger]);
    const a = c.add("a");
    await c.start();
    // Round-robin moves the mailer copy between m1 and m2; on m2 it shares the node with ledger.
    for (const id of ["o1", "o2", "o3", "o4"]) {
      got.length = 0;
      a.emit(paid, { id });
      await c.env.advance(1);
      assert.equal(got.filter((g) => g.startsWith("mailer")).length, 1, got.join());
      assert.deepEqual(
        got.filter((g) => g.startsWith("ledger")),
        [`ledger@m2:${id}`],
      );
    }
    got.length = 0;
    a.broadcast(paid, { id: "b1" });
    await c.env.advance(1);
    assert.deepEqual(got.sort(), ["ledger@m2:b1", "mailer@m1:b1:a", "mailer@m2:b1:a"]);
    assert.throws(
      () => a.emit(paid, { id: 3 } as unknown as { id: string }),
      (e) => hasCode(e, "INVALID_ARGUMENT"),
    );
  });
});

describe("bad input on the wire", () => {
  const svc = defineService("s").action("a", {
    input: z.null(),
    output: z.null(),
    handler: () => null,
  });

  it("refuses malformed, truncated, oversized and unknown-version frames and keeps serving", async () => {
    await using c = cluster();
    const log = memoryLogger();
    const node = c.add("a", [svc], { logger: log, maxFrameBytes: 4096 });
    const peer = c.add("b");
    await c.start();
    const valid = jsonCodec.encode({ v: WIRE_VERSION, k: "hb", from: "b", inc: "i1", seq: 0 });
    const frames = [
      new Uint8Array([0xff, 0x00, 0x13]),
      valid.subarray(0, valid.length - 3),
      new TextEncoder().encode(JSON.stringify({ v: 2, k: "hb", from: "b", seq: 0 })),
      new Uint8Array(5000).fill(0x20),
      new TextEncoder().encode(JSON.stringify({ v: 1, k: "teleport", from: "b" })),
    ];
    for (const f of frames) c.network.inject("b", "a", f);
    await c.env.advance(1);
    assert.equal(node.stats.protocolErrors, frames.length);
    // The sender is told, at most once a second, so two peers that cannot read each other don't loop.
    assert.equal(peer.stats.protocolErrors, 1);
    await c.env.advance(1000);
    c.network.inject("b", "a", new Uint8Array([0xff]));
    await c.env.advance(1);
    assert.equal(peer.stats.protocolErrors, 2);
    const messages = log.lines
      .filter((l) => l.msg === "refused a malformed frame")
      .map((l) => JSON.stringify(l.obj));
    assert.equal(messages.length, frames.length + 1);
    assert.ok(messages.some((m) => /unsupported wire version 2/.test(m)));
    assert.ok(messages.some((m) => /exceeds the limit of 4096/.test(m)));
    const still = capture(peer.call(svc, "a", null));
    await c.env.advance(1);
    assert.equal(still.error, undefined);
    assert.equal(node.state, "ready");
  });

  it("does not loop when two nodes speak different codecs", async () => {
    await using c = cluster();
    const { msgpackCodec } = await import("../src/wire/msgpack.ts");
    const a = c.add("a", [svc]);
    const b = c.add("b", [], { codec: msgpackCodec });
    await c.start();
    const sent = c.network.stats.sent;
    await c.env.advance(3000);
    // Heartbeats (about 15 each in 3 s) and at most one perr per peer per second.
    assert.ok(c.network.stats.sent - sent < 60, `${c.network.stats.sent - sent} frames in 3 s`);
    assert.ok(a.stats.protocolErrors > 0 && b.stats.protocolErrors > 0);
    assert.equal(a.state, "ready");
  });

  it("refuses a frame over the receiver's announced limit at the sender, at once", async () => {
    await using c = cluster();
    const big = defineService("big").action("put", {
      input: z.string(),
      output: z.null(),
      handler: () => null,
    });
    c.add("small", [big], { maxFrameBytes: 1024 });
    const b = c.add("b");
    await c.start();
    const out = capture(b.call(big, "put", "x".repeat(2000)));
    await c.env.flush();
    assert.ok(hasCode(out.error, "PROTOCOL"), String(out.error));
    assert.equal(out.error.details?.["limit"], 1024);
  });

  it("refuses a reply over the caller's announced limit with a PROTOCOL error, not silence", async () => {
    await using c = cluster();
    const big = defineService("big").action("get", {
      input: z.null(),
      output: z.string(),
      handler: () => "y".repeat(3000),
    });
    c.add("server", [big]);
    const small = c.add("small", [], { maxFrameBytes: 1024 });
    await c.start();
    const out = capture(small.call(big, "get", null));
    await c.env.advance(1);
    assert.ok(hasCode(out.error, "PROTOCOL"), String(out.error));
    assert.equal(out.error.details?.["limit"], 1024);
  });

  it("answers a malformed request by its id so the caller fails fast", async () => {
    await using c = cluster();
    c.add("a", [svc]);
    const peer = c.add("b");
    await c.start();
    const replies: unknown[] = [];
    // Speak as a raw client: a request whose deadline is not a number.
    const raw = c.network.transport("mallory");
    await raw.connect();
    const reader = (async () => {
      for await (const f of raw) replies.push(jsonCodec.decode(f.frame, 1 << 20));
    })();
    raw.send(
      "a",
      new TextEncoder().encode(
        JSON.stringify({
          v: 1,
          k: "req",
          id: "x1",
          from: "mallory",
          svc: "s",
          ver: 1,
          act: "a",
          dl: "soon",
          p: null,
        }),
      ),
    );
    await c.env.advance(1);
    assert.equal(replies.length, 1);
    const res = replies[0] as {
      k: string;
      id: string;
      ok: boolean;
      err: { code: string; message: string };
    };
    assert.equal(res.k, "res");
    assert.equal(res.id, "x1");
    assert.equal(res.err.code, "PROTOCOL");
    assert.match(res.err.message, /'dl'/);
    await raw.close();
    await reader;
    assert.equal(peer.state, "ready");
  });

  it("refuses an oversized payload before sending it", async () => {
    await using c = cluster();
    const big = defineService("big").action("put", {
      input: z.string(),
      output: z.null(),
      handler: () => null,
    });
    c.add("a", [big]);
    const b = c.add("b", [], { maxFrameBytes: 1024 });
    await c.start();
    const sent = c.network.stats.sent;
    const out = capture(b.call(big, "put", "x".repeat(2000)));
    await c.env.advance(1);
    assert.ok(hasCode(out.error, "PROTOCOL"));
    assert.deepEqual(out.error.details?.["limit"], 1024);
    assert.equal(c.network.stats.sent, sent);
  });
});

describe("call option errors", () => {
  const kv = defineService("kv").action("get", {
    input: z.object({ k: z.string() }),
    output: z.string(),
    idempotent: true,
    handler: ({ k }) => k,
  });

  it("rejects (never throws synchronously) bad routing options, with one endpoint or two", async () => {
    await using c = cluster();
    const a = c.add("a", [kv]);
    await c.start();
    const bad = [
      { balancer: "consistent-hash" },
      { versions: { 1: -5 } },
      { versions: { 1: 0 } },
      { balancer: "fastest" as "p2c" },
      { timeoutMs: Number.NaN },
    ] as const;
    for (const options of bad) {
      let promise: Promise<string> | undefined;
      assert.doesNotThrow(() => {
        promise = a.call(kv, "get", { k: "x" }, options);
      });
      await assert.rejects(
        promise!,
        (err) => hasCode(err, "CONFIGURATION"),
        JSON.stringify(options),
      );
    }
    c.add("b", [kv]);
    await c.start();
    await assert.rejects(a.call(kv, "get", { k: "x" }, { balancer: "consistent-hash" }), (err) =>
      hasCode(err, "CONFIGURATION"),
    );
    assert.throws(
      () => a.client(kv, { versions: { 2: -1 } }),
      (err) => hasCode(err, "CONFIGURATION"),
    );
  });
});

describe("what the transport tells the node", () => {
  /** An in-process transport with a connection status and a frame limit of its own, like NATS. */
  function withStatus(inner: Transport, maxFrameBytes?: number) {
    const listeners = new Set<(s: TransportStatus) => void>();
    const transport: Transport = {
      nodeId: inner.nodeId,
      maxFrameBytes,
      connect: () => inner.connect(),
      send: (to, frame) => inner.send(to, frame),
      broadcast: (frame) => inner.broadcast(frame),
      close: () => inner.close(),
      [Symbol.asyncIterator]: () => inner[Symbol.asyncIterator](),
      onStatus(listener) {
        listeners.add(listener);
        return { [Symbol.dispose]: () => listeners.delete(listener) };
      },
    };
    return {
      transport,
      tell: (s: TransportStatus) => {
        for (const l of listeners) l(s);
      },
    };
  }

  it("refuses a transport that belongs to another node id", () => {
    const c = cluster();
    assert.throws(
      () =>
        createNode({
          id: "a",
          env: c.env,
          transport: c.network.transport("b"),
          logger: silentLogger,
        }),
      (e) => hasCode(e, "CONFIGURATION") && /transport of 'b'/.test(e.message),
    );
  });

  it("fails calls waiting on replies at once when the connection is lost", async () => {
    await using c = cluster();
    const work = workService();
    c.add("r1", [work]);
    const { transport, tell } = withStatus(c.network.transport("caller"));
    const caller = createNode({ id: "caller", env: c.env, transport, logger: silentLogger });
    c.nodes.set("caller", caller);
    await c.start();
    const out = capture(caller.call(work, "idem", { ms: 5000 }, { timeoutMs: 10_000 }));
    await c.env.advance(5);
    tell("reconnecting");
    await c.env.flush();
    assert.ok(hasCode(out.error, "UNAVAILABLE"), String(out.error));
    assert.equal(out.error.retryable, true);
    assert.match(out.error.message, /lost its transport connection \(reconnecting\)/);
  });

  it("lowers its frame limit to the transport's and announces it", async () => {
    await using c = cluster();
    const big = defineService("big").action("put", {
      input: z.string(),
      output: z.null(),
      handler: () => null,
    });
    const { transport } = withStatus(c.network.transport("small"), 2048);
    c.nodes.set(
      "small",
      createNode({ id: "small", env: c.env, transport, services: [big], logger: silentLogger }),
    );
    const b = c.add("b");
    await c.start();
    assert.equal(b.registry.node("small")?.maxFrameBytes, 2048);
    const out = capture(b.call(big, "put", "x".repeat(3000)));
    await c.env.flush();
    assert.ok(hasCode(out.error, "PROTOCOL"));
  });

  it("stops when its transport ends underneath it", async () => {
    await using c = cluster();
    const inner = c.network.transport("a");
    const a = createNode({ id: "a", env: c.env, transport: inner, logger: silentLogger });
    c.nodes.set("a", a);
    await c.start();
    await inner.close(); // as if the connection were closed for good
    await c.env.advance(1);
    assert.equal(a.state, "stopped");
  });
});

describe("lifecycle and configuration", () => {
  it("refuses bad options and definitions at definition time", () => {
    const isConfig = (e: unknown) => e instanceof KeelError && e.code === "CONFIGURATION";
    assert.throws(() => defineService("bad name!"), isConfig);
    assert.throws(() => defineService("ok", { version: 0 }), isConfig);
    assert.throws(
      () =>
        defineService("ok").action("x", {
          input: {} as never,
          output: z.null(),
          handler: () => null,
        }),
      isConfig,
    );
    const s = defineService("ok").action("x", {
      input: z.null(),
      output: z.null(),
      handler: () => null,
    });
    assert.throws(
      () => s.action("x" as never, { input: z.null(), output: z.null(), handler: () => null }),
      isConfig,
    );
    assert.throws(() => defineEvent("", z.null()), isConfig);
    const c = cluster();
    assert.throws(() => c.add("bad id with spaces"), isConfig);
    assert.throws(() => c.add("n1", [s, s]), isConfig);
    assert.throws(
      () => c.add("n2", [], { heartbeatIntervalMs: 500, failureTimeoutMs: 400 }),
      isConfig,
    );
    assert.throws(() => c.add("n3", [], { defaultTimeoutMs: -1 }), isConfig);
    assert.throws(() => c.network.setLink("a", "b", { drop: 2 }), isConfig);
  });

  it("accepts consistent-hash as the node's default balancer", async () => {
    await using c = cluster();
    const work = workService();
    c.add("r1", [work]);
    c.add("r2", [work]);
    const a = c.add("a", [], { balancer: "consistent-hash" });
    await c.start();
    const keyed = capture(a.call(work, "idem", { ms: 1 }, { hashKey: "k" }));
    const unkeyed = capture(a.call(work, "idem", { ms: 1 }));
    await c.env.advance(5);
    assert.ok(keyed.value !== undefined);
    assert.ok(hasCode(unkeyed.error, "CONFIGURATION"));
    assert.throws(
      () => c.add("b", [], { balancer: "fastest" as "p2c" }),
      (e) => hasCode(e, "CONFIGURATION"),
    );
  });

  it("can start again after a failed connect", async () => {
    await using c = cluster();
    const first = c.add("dup");
    await c.start();
    const second = createNodeOn(c, "dup");
    await assert.rejects(second.start(), (e) => hasCode(e, "CONFIGURATION"));
    assert.equal(second.state, "created");
    const stopping = first.stop();
    await c.env.advance(1);
    await stopping;
    await second.start();
    assert.equal(second.state, "ready");
    await assert.rejects(second.start(), (e) => hasCode(e, "FAILED_PRECONDITION"));
    const done = second.stop();
    await c.env.advance(1);
    await done;
  });

  it("moves through its lifecycle and refuses calls when not running", async () => {
    await using c = cluster();
    const s = defineService("s").action("a", {
      input: z.null(),
      output: z.null(),
      handler: () => null,
    });
    const n = c.add("a", [s]);
    const states: string[] = [];
    n.onStateChange((st) => states.push(st));
    await assert.rejects(n.call(s, "a", null), (e) => hasCode(e, "UNAVAILABLE"));
    await c.start();
    await assert.rejects(n.start(), (e) => hasCode(e, "FAILED_PRECONDITION"));
    const stopping = n.stop();
    await c.env.advance(1);
    await stopping;
    assert.deepEqual(states, ["starting", "ready", "draining", "stopped"]);
    await assert.rejects(n.call(s, "a", null), (e) => hasCode(e, "UNAVAILABLE"));
  });
});

/**
 * `work` on r1 and r2 and a caller, all started, with call options whose
 * consistent-hash key lands on r1 while r1 is up.
 */
async function twoReplicasKeyedToR1(c: Cluster) {
  const work = workService();
  const r1 = c.add("r1", [work]);
  c.add("r2", [work]);
  const caller = c.add("caller");
  await c.start();
  const key = await keyFor(c, caller, work, "r1");
  return { work, r1, caller, toR1: { balancer: "consistent-hash", hashKey: key } as const };
}

/** Which node a consistent-hash call with `key` lands on. */
async function pinned(
  c: ReturnType<typeof cluster>,
  from: ReturnType<ReturnType<typeof cluster>["add"]>,
  work: ReturnType<typeof workService>,
  key: string,
): Promise<string> {
  const out = capture(
    from.call(work, "idem", { ms: 1 }, { balancer: "consistent-hash", hashKey: key }),
  );
  await c.env.advance(2);
  assert.ok(out.value !== undefined, String(out.error));
  return out.value.node;
}

/** A consistent-hash key that lands on `node`. */
async function keyFor(
  c: ReturnType<typeof cluster>,
  from: ReturnType<ReturnType<typeof cluster>["add"]>,
  work: ReturnType<typeof workService>,
  node: string,
): Promise<string> {
  for (let i = 0; i < 100; i++)
    if ((await pinned(c, from, work, String(i))) === node) return String(i);
  throw new Error(`no key reaches ${node}`);
}

/** A node on the cluster's network that the fixture does not track (for duplicate-id tests). */
function createNodeOn(c: ReturnType<typeof cluster>, id: string) {
  return createNode({ id, env: c.env, transport: c.network.transport(id), logger: silentLogger });
}
