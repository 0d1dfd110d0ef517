import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  type AdminServer,
  createInProcessNetwork,
  createNode,
  createVirtualEnv,
  type Decision,
  defineService,
  hedge,
  KEEL_METRICS,
  KeelError,
  type KeelNode,
  retry,
  silentLogger,
  startAdminServer,
} from "@keel/core";
import { Counter, type OpenMetricsContentType, Registry, register } from "prom-client";
import { z } from "zod";
import { createPrometheusMetrics, type PrometheusMetrics } from "../src/index.ts";
import { type Exposition, parseExposition, sampleOf, sumOf } from "./exposition-parse.ts";

const ROOT = join(import.meta.dirname, "..", "..", "..");

/** Replicas can be told to fail `get`, per node. */
const failing = new Set<string>();

const shop = defineService("shop")
  .action("get", {
    input: z.null(),
    output: z.string(),
    idempotent: true,
    handler: async (_: null, ctx) => {
      await ctx.env.timers.sleep(2);
      if (failing.has(ctx.node)) throw new KeelError("UNAVAILABLE", `${ctx.node} is down`);
      return ctx.node;
    },
  })
  .action("lookup", {
    input: z.null(),
    output: z.string(),
    idempotent: true,
    handler: async (_: null, ctx) => {
      await ctx.env.timers.sleep(30, ctx.signal);
      return ctx.node;
    },
  })
  .action("pay", {
    input: z.string(),
    output: z.string(),
    handler: async (input: string, ctx) => {
      await ctx.env.timers.sleep(4);
      if (input === "bad") throw new KeelError("FAILED_PRECONDITION", "card refused");
      return "paid";
    },
  });

const limited = defineService("limited")
  .action("slow", {
    input: z.null(),
    output: z.null(),
    limits: { concurrency: { maxConcurrent: 1 } },
    handler: async (_: null, ctx) => {
      await ctx.env.timers.sleep(50);
      return null;
    },
  })
  .action("rated", {
    input: z.null(),
    output: z.null(),
    limits: { rate: { ratePerSecond: 1, burst: 1 } },
    handler: () => null,
  });

/** GETs a path of an admin server: status, content type and body. */
async function get(
  port: number,
  path: string,
): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, type: res.headers.get("content-type"), body: await res.text() };
}

/** Runs `promtool check metrics` on an exposition. */
function promtool(text: string): { status: number | null; output: string } {
  const run = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  if (run.error !== undefined) throw run.error;
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("@keel/prometheus on a workload", () => {
  const env = createVirtualEnv({ seed: 6 });
  const network = createInProcessNetwork({ env });
  let metrics: PrometheusMetrics;
  let nodes: KeelNode[];
  let caller: KeelNode;
  let admin: AdminServer;
  let text: string;
  let scraped: Exposition;
  const decisions: Decision[] = [];

  before(async () => {
    metrics = createPrometheusMetrics();
    const add = (id: string, services: Parameters<typeof createNode>[0]["services"], more = {}) =>
      createNode({
        id,
        env,
        transport: network.transport(id),
        services: services ?? [],
        logger: silentLogger,
        metrics,
        ...more,
      });
    caller = add("caller", [], {
      retry: retry({
        env,
        maxAttempts: 3,
        backoff: { kind: "constant", delayMs: 5 },
        maxDelayMs: 50,
      }),
      breaker: { policy: { kind: "consecutive", threshold: 2 }, halfOpenAfterMs: 60_000 },
    });
    nodes = [add("s1", [shop, limited]), add("s2", [shop]), caller];
    caller.onDecision((d) => decisions.push(d));
    for (const n of nodes) await n.start();
    await env.advance(1);
    admin = await startAdminServer(caller, { port: 0, metrics });

    // 1. A hedged call: both replicas are slow, so a second attempt starts after 5 ms.
    const hedged = caller.call(shop, "lookup", null, {
      hedge: hedge({ env, delayMs: 5, maxHedges: 1 }),
    });
    await env.advance(40);
    await hedged;
    // 2. Five payments succeed and two are refused by the handler (not retried: not idempotent).
    const pays = ["a", "b", "c", "d", "e", "bad", "bad"].map((x) =>
      caller.call(shop, "pay", x).catch((e: unknown) => e),
    );
    await env.advance(10);
    await Promise.all(pays);
    // 3. s1 fails `get`: its breaker opens after two failures, each retried on s2.
    failing.add("s1");
    for (let i = 0; i < 6; i++) {
      const p = caller.call(shop, "get", null, { balancer: "round-robin" });
      await env.advance(20);
      await p;
    }
    // 4. Three calls at once to an action that runs one at a time: two are shed.
    const slow = [1, 2, 3].map(() =>
      caller.call(limited, "slow", null, { retry: false }).catch((e: unknown) => e),
    );
    // 5. Three calls at once to an action limited to one per second: two are rate-limited.
    const rated = [1, 2, 3].map(() =>
      caller.call(limited, "rated", null, { retry: false }).catch((e: unknown) => e),
    );
    await env.advance(60);
    await Promise.all([...slow, ...rated]);

    const res = await get(admin.port, "/metrics");
    assert.equal(res.status, 200);
    assert.equal(res.type, "text/plain; version=0.0.4; charset=utf-8");
    text = res.body;
    scraped = parseExposition(text);
  });

  after(async () => {
    await admin?.close();
    const stopping = nodes.map((n) => n.stop({ graceMs: 0 }));
    await env.advance(10);
    await Promise.all(stopping);
    metrics.close();
  });

  const S = { service: "shop@1" };

  it("counts calls by outcome on the caller, once per call whatever its attempts", () => {
    const c = { node: "caller", ...S };
    const q = (action: string, outcome: string) =>
      sampleOf(scraped, "keel_client_requests_total", { ...c, action, outcome });
    assert.equal(q("lookup", "ok"), 1);
    assert.equal(q("pay", "ok"), 5);
    assert.equal(q("pay", "FAILED_PRECONDITION"), 2);
    assert.equal(q("get", "ok"), 6);
    const l = { node: "caller", service: "limited@1" };
    assert.equal(
      sampleOf(scraped, "keel_client_requests_total", { ...l, action: "slow", outcome: "ok" }),
      1,
    );
    assert.equal(
      sampleOf(scraped, "keel_client_requests_total", {
        ...l,
        action: "slow",
        outcome: "OVERLOADED",
      }),
      2,
    );
    assert.equal(
      sampleOf(scraped, "keel_client_requests_total", {
        ...l,
        action: "rated",
        outcome: "RATE_LIMITED",
      }),
      2,
    );
    // Each histogram counts what the counter counts.
    assert.equal(
      sampleOf(scraped, "keel_client_request_duration_seconds_count", {
        ...c,
        action: "pay",
        outcome: "ok",
      }),
      5,
    );
    assert.equal(sumOf(scraped, "keel_client_requests_in_flight", { node: "caller" }), 0);
  });

  it("counts requests by outcome on the servers, attempts included", () => {
    const sum = (action: string, outcome: string, node?: string) =>
      sumOf(scraped, "keel_server_requests_total", {
        ...S,
        action,
        outcome,
        ...(node === undefined ? {} : { node }),
      });
    assert.equal(sum("pay", "ok"), 5);
    assert.equal(sum("pay", "FAILED_PRECONDITION"), 2);
    // The hedged call ran on both replicas: one answered, the other was cancelled.
    assert.equal(sum("lookup", "ok"), 1);
    assert.equal(sum("lookup", "CANCELLED"), 1);
    // s1 failed `get` twice before its breaker opened; every call then succeeded on s2.
    assert.equal(sum("get", "UNAVAILABLE", "s1"), 2);
    assert.equal(sum("get", "ok", "s2"), 6);
    // Payments take 4 ms of virtual time in the handler.
    const paid = { node: "s1", ...S, action: "pay", outcome: "ok" };
    const n1 = sampleOf(scraped, "keel_server_request_duration_seconds_count", paid);
    const s1 = sampleOf(scraped, "keel_server_request_duration_seconds_sum", paid);
    assert.ok(Math.abs(s1 - n1 * 0.004) < 1e-9, `sum ${s1} for ${n1} payments`);
    assert.equal(
      sampleOf(scraped, "keel_server_request_duration_seconds_bucket", { ...paid, le: "0.0025" }),
      0,
    );
    assert.equal(
      sampleOf(scraped, "keel_server_request_duration_seconds_bucket", { ...paid, le: "0.005" }),
      n1,
    );
  });

  it("counts retries, hedges and breaker changes as the node decided them", () => {
    const c = { node: "caller", ...S };
    const retries = decisions.filter((d) => d.kind === "retry").length;
    assert.equal(retries, 2);
    assert.equal(
      sampleOf(scraped, "keel_client_retries_total", { ...c, action: "get", code: "UNAVAILABLE" }),
      2,
    );
    assert.equal(sampleOf(scraped, "keel_client_hedges_total", { ...c, action: "lookup" }), 1);
    const b = { node: "caller", peer: "s1", ...S };
    assert.equal(
      sampleOf(scraped, "keel_client_circuit_breaker_state", { ...b, state: "open" }),
      1,
    );
    assert.equal(
      sampleOf(scraped, "keel_client_circuit_breaker_state", { ...b, state: "closed" }),
      0,
    );
    assert.equal(
      sampleOf(scraped, "keel_client_circuit_breaker_transitions_total", { ...b, to: "open" }),
      1,
    );
  });

  it("counts shed and rate-limited requests, and reads limits, registry and state", () => {
    const l = { node: "s1", service: "limited@1" };
    assert.equal(
      sampleOf(scraped, "keel_server_shed_total", { ...l, action: "slow", limit: "concurrency" }),
      2,
    );
    assert.equal(
      sampleOf(scraped, "keel_server_shed_total", { ...l, action: "rated", limit: "rate" }),
      2,
    );
    assert.equal(sampleOf(scraped, "keel_server_bulkhead_queued", { ...l, action: "slow" }), 0);
    assert.equal(sampleOf(scraped, "keel_server_bulkhead_active", { ...l, action: "slow" }), 0);
    assert.equal(sampleOf(scraped, "keel_registry_nodes", { node: "caller", state: "ready" }), 3);
    assert.equal(
      sampleOf(scraped, "keel_registry_endpoints", { node: "caller", service: "shop@1" }),
      2,
    );
    assert.equal(
      sampleOf(scraped, "keel_registry_endpoints", { node: "caller", service: "limited@1" }),
      1,
    );
    assert.equal(sampleOf(scraped, "keel_node_state", { node: "caller", state: "ready" }), 1);
    // Event-loop lag comes from prom-client's default metrics, on by default on Keel's registry.
    assert.ok(sampleOf(scraped, "nodejs_eventloop_lag_max_seconds") >= 0);
  });

  it("exports every metric of the catalogue with its documented type", () => {
    for (const m of Object.values(KEEL_METRICS))
      assert.equal(scraped.types.get(m.name), m.type, m.name);
  });

  it("passes promtool check metrics", () => {
    const { status, output } = promtool(text);
    assert.equal(output, "", "no lint problems");
    assert.equal(status, 0);
  });

  it("documents every exported metric in docs/metrics.md", () => {
    const doc = readFileSync(join(ROOT, "docs", "metrics.md"), "utf8");
    for (const name of scraped.types.keys()) assert.ok(doc.includes(`\`${name}\``), name);
  });

  it("has a Grafana dashboard whose queries use only exported metrics", () => {
    const dashboard = JSON.parse(
      readFileSync(join(ROOT, "docs", "grafana", "keel-dashboard.json"), "utf8"),
    ) as {
      panels: Array<{ title: string; type: string; targets?: Array<{ expr: string }> }>;
      templating: { list: Array<{ name: string; type: string; query?: unknown }> };
    };
    assert.ok(
      dashboard.templating.list.some((v) => v.type === "datasource" && v.query === "prometheus"),
      "a Prometheus datasource variable",
    );
    // What the node exposes: every family (series or not yet), with a histogram's three suffixes.
    const exported = new Set<string>();
    for (const [name, type] of scraped.types) {
      exported.add(name);
      if (type === "histogram")
        for (const x of ["_bucket", "_sum", "_count"]) exported.add(name + x);
    }
    let queries = 0;
    for (const panel of dashboard.panels) {
      if (panel.type === "row") continue;
      assert.ok((panel.targets ?? []).length > 0, `panel '${panel.title}' has queries`);
      for (const t of panel.targets ?? []) {
        const names = t.expr.match(/\b(?:keel|process|nodejs)_[a-z0-9_]+/g) ?? [];
        assert.ok(names.length > 0, `query of '${panel.title}' names a metric`);
        for (const name of names) assert.ok(exported.has(name), `'${panel.title}' uses ${name}`);
        queries++;
      }
    }
    assert.ok(queries >= 10);
    // Every query parses as PromQL: promtool checks them as recording rules.
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    const rules = exprs.map((expr, i) => {
      const concrete = expr.replaceAll("$__rate_interval", "5m").replace(/\$(node|service)/g, ".*");
      return `      - record: keel:panel_${i}\n        expr: ${JSON.stringify(concrete)}\n`;
    });
    const dir = mkdtempSync(join(tmpdir(), "keel-dashboard-"));
    const file = join(dir, "rules.yml");
    writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${rules.join("")}`);
    const check = spawnSync("promtool", ["check", "rules", file], { encoding: "utf8" });
    rmSync(dir, { recursive: true });
    assert.equal(check.status, 0, `${check.stdout}${check.stderr}`);
  });
});

describe("@keel/prometheus with your own prom-client registry", () => {
  const isConfiguration = (e: unknown) => e instanceof KeelError && e.code === "CONFIGURATION";

  it("puts Keel's metrics next to yours, reads its gauges when you scrape, and leaves the rest", async () => {
    const registry = new Registry();
    const jobs = new Counter({
      name: "app_jobs_total",
      help: "Jobs the application ran.",
      labelNames: ["kind"],
      registers: [registry],
    });
    jobs.inc({ kind: "import" }, 3);
    const metrics = createPrometheusMetrics({ registry });
    assert.equal(metrics.registry, registry);
    const env = createVirtualEnv({ seed: 9 });
    const node = createNode({
      id: "n",
      env,
      transport: createInProcessNetwork({ env }).transport("n"),
      services: [shop],
      logger: silentLogger,
      metrics,
    });
    await node.start();
    const paid = node.call(shop, "pay", "x");
    await env.advance(10);
    assert.equal(await paid, "paid");

    // Scraped through the user's registry, not through Keel.
    const text = await registry.metrics();
    const scraped = parseExposition(text);
    assert.equal(sampleOf(scraped, "app_jobs_total", { kind: "import" }), 3);
    const pay = { node: "n", service: "shop@1", action: "pay", outcome: "ok" };
    assert.equal(sampleOf(scraped, "keel_client_requests_total", pay), 1);
    assert.equal(sampleOf(scraped, "keel_server_request_duration_seconds_count", pay), 1);
    assert.equal(
      sampleOf(scraped, "keel_server_request_duration_seconds_bucket", { ...pay, le: "0.005" }),
      1,
    );
    // A gauge read by a collect hook: the node's state at the scrape.
    assert.equal(sampleOf(scraped, "keel_node_state", { node: "n", state: "ready" }), 1);
    assert.deepEqual(
      [...scraped.types.keys()].filter((n) => !n.startsWith("keel_")),
      ["app_jobs_total"],
      "no default metrics on a registry that is not Keel's unless asked",
    );
    assert.equal(promtool(text).status, 0);
    assert.equal(
      register.getSingleMetric("keel_client_requests_total"),
      undefined,
      "prom-client's global register untouched",
    );

    // A second set on the same registry clashes with a coded error; close() frees the names.
    const again = createPrometheusMetrics({ registry });
    assert.throws(() => again.counter(KEEL_METRICS.clientRequests), isConfiguration);
    const stopping = node.stop({ graceMs: 0 });
    await env.advance(10);
    await stopping;
    metrics.close();
    assert.equal(registry.getSingleMetric("keel_client_requests_total"), undefined);
    assert.equal(registry.getSingleMetric("app_jobs_total"), jobs);
    assert.equal(metrics.value("keel_client_requests_total", pay), 1, "values stay readable");
  });

  it("adds prom-client's default metrics when asked, with a prefix, once per registry", async () => {
    const registry = new Registry();
    const metrics = createPrometheusMetrics({ registry, defaultMetrics: { prefix: "shop_" } });
    const text = await metrics.render();
    const names = new Set(parseExposition(text).types.keys());
    assert.ok(names.has("shop_nodejs_eventloop_lag_p99_seconds"));
    assert.ok(names.has("shop_process_cpu_seconds_total"));
    assert.ok(!names.has("shop_nodejs_active_handles_total"), "gauges named _total are dropped");
    assert.deepEqual(promtool(text), { status: 0, output: "" });
    assert.throws(
      () => createPrometheusMetrics({ registry, defaultMetrics: { prefix: "shop_" } }),
      isConfiguration,
    );
    assert.throws(
      () => createPrometheusMetrics({ defaultMetrics: { prefix: "1x" } }),
      isConfiguration,
    );
    metrics.close();
    assert.equal(registry.getMetricsAsArray().length, 0);
  });

  it("speaks OpenMetrics when the registry does", async () => {
    const registry = new Registry<OpenMetricsContentType>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const metrics = createPrometheusMetrics({ registry });
    metrics.counter(KEEL_METRICS.hedges).inc({ node: "n", service: "s@1", action: "a" });
    assert.equal(metrics.contentType, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    const text = await metrics.render();
    assert.match(text, /^# TYPE keel_client_hedges counter$/m);
    assert.match(text, /^keel_client_hedges_total\{node="n",service="s@1",action="a"\} 1$/m);
    assert.ok(text.endsWith("# EOF\n"));
    metrics.close();
  });
});

describe("the admin server's health endpoints", () => {
  it("answer live and ready, and turn not-ready while the node drains", async () => {
    const env = createVirtualEnv({ seed: 7 });
    const network = createInProcessNetwork({ env });
    const svc = defineService("work").action("run", {
      input: z.null(),
      output: z.null(),
      handler: async (_: null, ctx) => {
        await ctx.env.timers.sleep(1000);
        return null;
      },
    });
    const server = createNode({
      id: "w",
      env,
      transport: network.transport("w"),
      services: [svc],
      logger: silentLogger,
    });
    const client = createNode({
      id: "c",
      env,
      transport: network.transport("c"),
      logger: silentLogger,
    });
    await using admin = await startAdminServer(server, { port: 0 });
    assert.equal((await get(admin.port, "/health/ready")).status, 503, "not started");
    await server.start();
    await client.start();
    const early = JSON.parse((await get(admin.port, "/health/ready")).body) as Record<
      string,
      unknown
    >;
    assert.deepEqual(early, {
      status: "not-ready",
      node: "w",
      state: "ready",
      transport: "connected",
      registrySynced: false,
    });
    await env.advance(200); // one heartbeat interval: the registry has heard the cluster
    assert.equal((await get(admin.port, "/health/ready")).status, 200);
    assert.equal((await get(admin.port, "/health/live")).status, 200);
    assert.equal((await get(admin.port, "/metrics")).status, 404, "no metrics configured");
    const running = client.call(svc, "run", null);
    await env.advance(1);
    const stopping = server.stop();
    const drain = await get(admin.port, "/health/ready");
    assert.equal(drain.status, 503);
    assert.equal((JSON.parse(drain.body) as { state: string }).state, "draining");
    assert.equal((await get(admin.port, "/health/live")).status, 200, "still live while draining");
    await env.advance(1000);
    await running;
    await stopping;
    assert.equal((await get(admin.port, "/health/ready")).status, 503);
    await client.stop();
  });

  it("refuse a bad port with a coded error", async () => {
    const env = createVirtualEnv({ seed: 8 });
    const node = createNode({
      id: "x",
      env,
      transport: createInProcessNetwork({ env }).transport("x"),
      logger: silentLogger,
    });
    await assert.rejects(
      startAdminServer(node, { port: 70000 }),
      (e: unknown) => e instanceof KeelError && e.code === "CONFIGURATION",
    );
  });
});
