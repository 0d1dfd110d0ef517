import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import {
  createMemoryMetrics,
  type Decision,
  defineService,
  hasCode,
  KEEL_METRICS,
  KeelError,
  noopMetrics,
  retry,
} from "../src/index.ts";
import { capture, cluster } from "./support.ts";

const coded = (code: Parameters<typeof hasCode>[1]) => (err: unknown) => hasCode(err, code);

describe("memory metrics", () => {
  it("count, gauge and bucket with fixed labels", () => {
    const m = createMemoryMetrics();
    const c = m.counter({ name: "jobs_total", help: "Jobs.", labelNames: ["kind"] });
    const series = c.labels({ kind: "a" });
    series.inc();
    series.inc(2);
    c.inc({ kind: "b" });
    const g = m.gauge({ name: "depth", help: "Depth.", labelNames: [] });
    g.labels({}).inc(5);
    g.labels({}).dec(2);
    const h = m.histogram({ name: "wait_seconds", help: "Wait.", labelNames: [], buckets: [1, 2] });
    for (const v of [0.5, 1, 1.5, 3]) h.observe({}, v);
    assert.equal(m.value("jobs_total", { kind: "a" }), 3);
    assert.equal(m.value("jobs_total", { kind: "b" }), 1);
    assert.equal(m.value("depth"), 3);
    const wait = m.collect().find((f) => f.name === "wait_seconds");
    assert.deepEqual(wait?.series[0], {
      labels: {},
      buckets: [
        { le: 1, count: 2 },
        { le: 2, count: 3 },
        { le: Number.POSITIVE_INFINITY, count: 4 },
      ],
      sum: 6,
      count: 4,
    });
  });

  it("return the same metric for the same declaration, refuse a clash", () => {
    const m = createMemoryMetrics();
    const spec = { name: "x_total", help: "X.", labelNames: ["a"] } as const;
    m.counter(spec).inc({ a: "1" });
    m.counter(spec).inc({ a: "1" });
    assert.equal(m.value("x_total", { a: "1" }), 2);
    assert.throws(() => m.gauge(spec), coded("CONFIGURATION"));
    assert.throws(() => m.counter({ ...spec, labelNames: ["b"] }), coded("CONFIGURATION"));
  });

  it("refuse bad names, labels, buckets and values with coded errors", () => {
    const m = createMemoryMetrics();
    const bad = (f: () => unknown, code: "CONFIGURATION" | "INVALID_ARGUMENT") =>
      assert.throws(f, coded(code));
    bad(() => m.counter({ name: "1x", help: "h", labelNames: [] }), "CONFIGURATION");
    bad(() => m.counter({ name: "x", help: "", labelNames: [] }), "CONFIGURATION");
    bad(() => m.counter({ name: "x", help: "h", labelNames: ["__a"] }), "CONFIGURATION");
    bad(() => m.counter({ name: "x", help: "h", labelNames: ["a", "a"] }), "CONFIGURATION");
    bad(() => m.histogram({ name: "h", help: "h", labelNames: ["le"] }), "CONFIGURATION");
    bad(
      () => m.histogram({ name: "h", help: "h", labelNames: [], buckets: [2, 1] }),
      "CONFIGURATION",
    );
    const c = m.counter({ name: "c_total", help: "h", labelNames: ["a"] });
    bad(() => c.inc({ a: "1" }, -1), "INVALID_ARGUMENT");
    bad(() => c.inc({} as { a: string }), "INVALID_ARGUMENT");
    bad(() => c.inc({ a: "2", b: "3" } as { a: string }), "INVALID_ARGUMENT");
  });

  it("noopMetrics accepts everything and keeps nothing", () => {
    const c = noopMetrics.counter({ name: "n_total", help: "h", labelNames: ["a"] });
    c.inc({ a: "x" });
    c.labels({ a: "x" }).inc(5);
    noopMetrics.histogram({ name: "h", help: "h", labelNames: [] }).observe({}, 1);
    let ran = false;
    noopMetrics.onCollect(() => {
      ran = true;
    })();
    assert.equal(ran, false);
  });
});

const echo = defineService("echo")
  .action("ping", {
    input: z.string(),
    output: z.string(),
    handler: async (input: string, ctx) => {
      await ctx.env.timers.sleep(10);
      if (input === "no") throw new KeelError("FAILED_PRECONDITION", "refused");
      return input;
    },
  })
  .action("now", { input: z.null(), output: z.string(), handler: () => "sync" })
  .action("one", {
    input: z.null(),
    output: z.null(),
    limits: { concurrency: { maxConcurrent: 1 } },
    handler: async (_: null, ctx) => {
      await ctx.env.timers.sleep(50);
      return null;
    },
  });

describe("a node's metrics", () => {
  it("count calls and requests by outcome on both sides, with durations on the node's clock", async () => {
    await using c = cluster(11);
    const metrics = createMemoryMetrics();
    c.add("server", [echo], { metrics });
    const client = c.add("client", [], { metrics });
    await c.start();
    const calls = ["a", "b", "c", "no", "no"].map((x) => capture(client.call(echo, "ping", x)));
    await c.env.advance(20);
    assert.ok(calls.every((x) => x.done));
    const labels = (node: string, outcome: string) => ({
      node,
      service: "echo@1",
      action: "ping",
      outcome,
    });
    const v = (name: string, l: Record<string, string>) => metrics.value(name, l);
    assert.equal(v("keel_client_requests_total", labels("client", "ok")), 3);
    assert.equal(v("keel_client_requests_total", labels("client", "FAILED_PRECONDITION")), 2);
    assert.equal(v("keel_server_requests_total", labels("server", "ok")), 3);
    assert.equal(v("keel_server_requests_total", labels("server", "FAILED_PRECONDITION")), 2);
    const family = (name: string) => metrics.collect().find((f) => f.name === name);
    const okDuration = family("keel_server_request_duration_seconds")?.series.find(
      (s) =>
        s.labels["node"] === "server" &&
        s.labels["action"] === "ping" &&
        s.labels["outcome"] === "ok",
    );
    assert.ok(okDuration !== undefined && "sum" in okDuration);
    // Each handler sleeps 10 ms of virtual time; the in-process network adds none.
    assert.equal(okDuration.count, 3);
    assert.ok(Math.abs(okDuration.sum - 0.03) < 1e-9, `sum ${okDuration.sum}`);
    const inFlight = { node: "client", service: "echo@1", action: "ping" };
    assert.equal(v("keel_client_requests_in_flight", inFlight), 0);
    assert.equal(v("keel_server_requests_in_flight", { ...inFlight, node: "server" }), 0);
    // A same-node call counts on both sides of the one node.
    const server = c.nodes.get("server")!;
    assert.equal(await server.call(echo, "now", null), "sync");
    const now = { node: "server", service: "echo@1", action: "now", outcome: "ok" };
    assert.equal(v("keel_client_requests_total", now), 1);
    assert.equal(v("keel_server_requests_total", now), 1);
    assert.equal(v("keel_client_request_duration_seconds", now), 1);
  });

  it("count shed requests, and refusals before any attempt", async () => {
    await using c = cluster(12);
    const metrics = createMemoryMetrics();
    c.add("server", [echo], { metrics });
    const client = c.add("client", [], { metrics });
    await c.start();
    const calls = [1, 2, 3].map(() => capture(client.call(echo, "one", null)));
    await c.env.advance(1);
    // One runs; the two others find the bulkhead full (no queue) and are shed.
    const collect = () => metrics.collect();
    collect();
    const action = { node: "server", service: "echo@1", action: "one" };
    assert.equal(metrics.value("keel_server_bulkhead_active", action), 1);
    assert.equal(metrics.value("keel_server_requests_in_flight", action), 1);
    await c.env.advance(60);
    assert.ok(calls.every((x) => x.done));
    assert.equal(metrics.value("keel_server_shed_total", { ...action, limit: "concurrency" }), 2);
    assert.equal(
      metrics.value("keel_server_requests_total", { ...action, outcome: "OVERLOADED" }),
      2,
    );
    assert.equal(metrics.value("keel_server_requests_total", { ...action, outcome: "ok" }), 1);
    const callerSide = { ...action, node: "client" };
    assert.equal(
      metrics.value("keel_client_requests_total", { ...callerSide, outcome: "OVERLOADED" }),
      2,
    );
    // No endpoint: a call refused before any attempt still counts, as UNAVAILABLE.
    const ghost = defineService("ghost").action("x", {
      input: z.null(),
      output: z.null(),
      handler: () => null,
    });
    await assert.rejects(client.call(ghost, "x", null), coded("UNAVAILABLE"));
    assert.equal(
      metrics.value("keel_client_requests_total", {
        node: "client",
        service: "ghost@1",
        action: "x",
        outcome: "UNAVAILABLE",
      }),
      1,
    );
  });

  it("count retries, failovers and breaker changes as the decisions say", async () => {
    await using c = cluster(13);
    const failing = new Set(["r1"]);
    const flaky = defineService("flaky").action("get", {
      input: z.null(),
      output: z.string(),
      idempotent: true,
      handler: async (_: null, ctx) => {
        await ctx.env.timers.sleep(1);
        if (failing.has(ctx.node)) throw new KeelError("UNAVAILABLE", `${ctx.node} is down`);
        return ctx.node;
      },
    });
    const metrics = createMemoryMetrics();
    c.add("r1", [flaky], { metrics });
    c.add("r2", [flaky], { metrics });
    const caller = c.add("caller", [], {
      metrics,
      retry: retry({
        env: c.env,
        maxAttempts: 3,
        backoff: { kind: "constant", delayMs: 5 },
        maxDelayMs: 50,
      }),
      breaker: { policy: { kind: "consecutive", threshold: 2 }, halfOpenAfterMs: 10_000 },
    });
    const decisions: Decision[] = [];
    caller.onDecision((d) => decisions.push(d));
    await c.start();
    for (let i = 0; i < 10; i++) {
      void caller.call(flaky, "get", null, { balancer: "round-robin" }).catch(() => undefined);
      await c.env.advance(20);
    }
    const count = (kind: Decision["kind"]) => decisions.filter((d) => d.kind === kind).length;
    const base = { node: "caller", service: "flaky@1", action: "get" };
    assert.ok(count("retry") > 0, "the workload made retries");
    assert.equal(
      metrics.value("keel_client_retries_total", { ...base, code: "UNAVAILABLE" }) ?? 0,
      count("retry"),
    );
    assert.equal(metrics.value("keel_client_failovers_total", base) ?? 0, count("failover"));
    assert.equal(metrics.value("keel_client_requests_total", { ...base, outcome: "ok" }), 10);
    const breaker = { node: "caller", peer: "r1", service: "flaky@1" };
    assert.equal(
      metrics.value("keel_client_circuit_breaker_state", { ...breaker, state: "open" }),
      1,
    );
    assert.equal(
      metrics.value("keel_client_circuit_breaker_state", { ...breaker, state: "closed" }),
      0,
    );
    assert.equal(
      metrics.value("keel_client_circuit_breaker_transitions_total", { ...breaker, to: "open" }),
      1,
    );
    // The peer leaves: its breaker's series go with it.
    await c.nodes.get("r1")!.stop();
    await c.env.advance(10);
    metrics.collect();
    assert.equal(
      metrics.value("keel_client_circuit_breaker_state", { ...breaker, state: "open" }),
      undefined,
    );
  });

  it("read node state, registry size and limits when collected", async () => {
    await using c = cluster(14);
    const metrics = createMemoryMetrics();
    c.add("a", [echo], { metrics });
    c.add("b", [echo], { metrics });
    const watcher = c.add("w", [], { metrics });
    await c.start();
    metrics.collect();
    assert.equal(metrics.value("keel_node_state", { node: "w", state: "ready" }), 1);
    assert.equal(metrics.value("keel_node_state", { node: "w", state: "draining" }), 0);
    assert.equal(metrics.value("keel_registry_nodes", { node: "w", state: "ready" }), 3);
    assert.equal(metrics.value("keel_registry_endpoints", { node: "w", service: "echo@1" }), 2);
    const limit = { node: "a", service: "echo@1", action: "one" };
    assert.equal(metrics.value("keel_server_bulkhead_queued", limit), 0);
    await c.nodes.get("b")!.stop();
    await c.env.advance(5);
    metrics.collect();
    assert.equal(metrics.value("keel_registry_endpoints", { node: "w", service: "echo@1" }), 1);
    assert.equal(metrics.value("keel_node_state", { node: "b", state: "stopped" }), 1);
    assert.equal(watcher.state, "ready");
  });

  it("every metric the node declares is in the catalogue, and only those", async () => {
    await using c = cluster(15);
    const metrics = createMemoryMetrics();
    c.add("a", [echo], { metrics });
    await c.start();
    const declared = metrics.collect().map((f) => `${f.name}:${f.type}:${f.labelNames.join(",")}`);
    const catalogue = Object.values(KEEL_METRICS).map(
      (m) => `${m.name}:${m.type}:${m.labelNames.join(",")}`,
    );
    assert.deepEqual(declared.sort(), catalogue.sort());
  });
});

describe("metrics off (the default)", () => {
  it("a same-node synchronous call reads no clock; with metrics it reads two", async () => {
    const reads = async (withMetrics: boolean) => {
      await using c = cluster(16);
      const node = c.add("a", [echo], withMetrics ? { metrics: createMemoryMetrics() } : {});
      await c.start();
      const clock = c.env.clock;
      const original = clock.now;
      let n = 0;
      clock.now = () => {
        n++;
        return original.call(clock);
      };
      try {
        for (let i = 0; i < 10; i++) await node.call(echo, "now", null);
      } finally {
        clock.now = original;
      }
      return n;
    };
    assert.equal(await reads(false), 0);
    assert.equal(await reads(true), 20);
  });
});
