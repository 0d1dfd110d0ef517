import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SpanKind } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { z } from "zod";
import {
  createJsonLogger,
  DEFAULT_REDACT_KEYS,
  defineService,
  hasCode,
  KeelError,
} from "../src/index.ts";
import { capture, cluster } from "./support.ts";

type Line = Record<string, unknown>;

/** A JSON-lines logger whose lines are kept, raw and parsed. */
function captured(options: Parameters<typeof createJsonLogger>[0] = {}) {
  const raw: string[] = [];
  const logger = createJsonLogger({ level: "info", ...options, write: (l) => raw.push(l) });
  const lines = () => raw.map((l) => JSON.parse(l) as Line);
  return { logger, raw, lines };
}

const SECRETS = ["hunter2", "Bearer s3cr3t", "k-123", "k-456", "tok-789", "pk-000", "sid=1"];

describe("logs: fields", () => {
  it("lines from a handler carry node, service, action, trace_id and span_id of its server span", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    });
    const orders = defineService("orders")
      .action("place", {
        input: z.object({ id: z.string() }),
        output: z.null(),
        handler: async ({ id }, ctx) => {
          await ctx.env.timers.sleep(1);
          ctx.log.info({ orderId: id }, "placing");
          return null;
        },
      })
      .action("broken", {
        input: z.null(),
        output: z.null(),
        handler: () => {
          throw new Error("bug");
        },
      });
    const { logger, lines } = captured();
    await using c = cluster("logs-fields");
    c.add("s", [orders], { tracerProvider: provider, logger });
    const a = c.add("a", [], { tracerProvider: provider });
    await c.start();
    capture(a.call(orders, "place", { id: "o1" }));
    const broken = capture(a.call(orders, "broken", null));
    await c.env.advance(5);
    assert.ok(hasCode(broken.error, "INTERNAL"));

    const server = (name: string) =>
      exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER && s.name === name)!;
    const placing = lines().find((l) => l["msg"] === "placing");
    assert.deepEqual(placing, {
      level: 30,
      node: "s",
      module: "orders",
      service: "orders",
      action: "place",
      trace_id: server("orders/place").spanContext().traceId,
      span_id: server("orders/place").spanContext().spanId,
      orderId: "o1",
      msg: "placing",
    });
    const failed = lines().find((l) => l["msg"] === "handler failed");
    assert.ok(failed !== undefined);
    assert.equal(failed["module"], "keel.server");
    assert.equal(failed["service"], "orders");
    assert.equal(failed["action"], "broken");
    assert.equal(failed["trace_id"], server("orders/broken").spanContext().traceId);
    assert.equal(failed["span_id"], server("orders/broken").spanContext().spanId);
    assert.deepEqual((failed["err"] as Line)["message"], "bug");
  });
});

describe("logs: redaction", () => {
  it("never writes the values of secret fields, at any depth and in any spelling", async () => {
    const svc = defineService("svc").action("login", {
      input: z.null(),
      output: z.null(),
      handler: (_, ctx) => {
        ctx.log.info(
          {
            user: { name: "ann", password: "hunter2" },
            headers: { Authorization: "Bearer s3cr3t", accept: "json" },
            apiKey: "k-123",
            keys: [{ api_key: "k-456" }],
            "ACCESS-TOKEN": "tok-789",
            nested: { deeper: { credentials: { privateKey: "pk-000" } } },
          },
          "login",
        );
        throw new KeelError("UNAUTHENTICATED", "no", { details: { cookie: "sid=1" } });
      },
    });
    const { logger, raw, lines } = captured();
    await using c = cluster("logs-redact");
    const n = c.add("n", [svc], { logger });
    await c.start();
    capture(n.call(svc, "login", null));
    await c.env.advance(1);
    logger.error({ err: new KeelError("INTERNAL", "x", { details: { cookie: "sid=1" } }) }, "e");
    const text = raw.join("");
    for (const secret of SECRETS) assert.ok(!text.includes(secret), `${secret} was logged`);
    const login = lines().find((l) => l["msg"] === "login")!;
    assert.deepEqual(login["user"], { name: "ann", password: "[Redacted]" });
    assert.deepEqual(login["headers"], { Authorization: "[Redacted]", accept: "json" });
    assert.equal(login["apiKey"], "[Redacted]");
    assert.deepEqual(login["keys"], [{ api_key: "[Redacted]" }]);
    assert.equal(login["ACCESS-TOKEN"], "[Redacted]");
    assert.deepEqual(login["nested"], { deeper: { credentials: "[Redacted]" } });
  });

  it("takes its own list and censor; an empty list turns redaction off", () => {
    const custom = captured({ redact: [...DEFAULT_REDACT_KEYS, "ssn"], censor: "***" });
    custom.logger.warn({ ssn: "123", password: "p" }, "m");
    assert.deepEqual(custom.lines()[0], { level: 40, ssn: "***", password: "***", msg: "m" });
    const off = captured({ redact: [] });
    off.logger.warn({ password: "p" }, "m");
    assert.equal(off.lines()[0]?.["password"], "p");
  });

  it("redacts bindings of child loggers too", () => {
    const { logger, raw } = captured();
    logger.child({ token: "tok-789" }).warn({}, "m");
    assert.ok(!raw.join("").includes("tok-789"));
  });
});

describe("logs: levels per module", () => {
  it("a child's `module` binding picks the level of its longest dotted prefix", () => {
    const { logger, lines } = captured({
      level: "warn",
      levels: { keel: "error", "keel.calls": "debug", orders: "info" },
    });
    logger.child({ module: "keel.calls" }).debug({}, "calls debug");
    logger.child({ module: "keel.node" }).warn({}, "node warn");
    logger.child({ module: "keel.node" }).error({}, "node error");
    logger.child({ module: "orders" }).info({}, "orders info");
    logger.child({ module: "payments" }).info({}, "payments info");
    logger.child({ module: "payments" }).warn({}, "payments warn");
    logger.info({}, "root info");
    assert.deepEqual(
      lines().map((l) => l["msg"]),
      ["calls debug", "node error", "orders info", "payments warn"],
    );
  });

  it("in a node: keel.calls at debug shows failovers while the rest stays at warn", async () => {
    const svc = defineService("svc").action("get", {
      input: z.null(),
      output: z.string(),
      idempotent: true,
      handler: async (_, ctx) => {
        ctx.log.info({}, "handler info");
        await ctx.env.timers.sleep(1);
        // The node itself gave up on the request: the caller fails over to another.
        if (ctx.node === "r1") {
          throw new KeelError("UNAVAILABLE", "r1 gave up", { details: { node: ctx.node } });
        }
        return ctx.node;
      },
    });
    const { logger, lines } = captured({ level: "warn", levels: { "keel.calls": "debug" } });
    await using c = cluster("logs-levels");
    c.add("r1", [svc], { logger });
    c.add("r2", [svc], { logger });
    const caller = c.add("caller", [], { logger });
    await c.start();
    for (let i = 0; i < 4; i++) {
      capture(caller.call(svc, "get", null, { balancer: "round-robin" }));
      await c.env.advance(10);
    }
    const failovers = lines().filter((l) => l["msg"] === "failing over");
    assert.ok(failovers.length > 0, "the debug line of keel.calls was written");
    assert.deepEqual(
      { module: failovers[0]!["module"], node: failovers[0]!["node"], code: failovers[0]!["code"] },
      { module: "keel.calls", node: "caller", code: "UNAVAILABLE" },
    );
    assert.ok(!lines().some((l) => l["msg"] === "handler info"), "handlers stay at warn");
  });

  it("refuses an unknown level with CONFIGURATION", () => {
    assert.throws(
      () => createJsonLogger({ levels: { keel: "verbose" as "debug" } }),
      (err: unknown) => hasCode(err, "CONFIGURATION") && /verbose/.test(String(err)),
    );
  });
});
