import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createInProcessNetwork, createNode, createVirtualEnv, defineService } from "@keel/core";
import { z } from "zod";
import { createCliLogger, parseLogLevels, pinoRedactPaths } from "../src/log.ts";
import { UsageError } from "../src/usage.ts";

const env = createVirtualEnv({ seed: "cli-log" });

function capture(json: boolean, spec = "info") {
  const lines: string[] = [];
  const logger = createCliLogger({
    json,
    clock: env.clock,
    ...parseLogLevels(spec),
    write: (l) => lines.push(l),
  });
  return { logger, lines };
}

describe("keel's logger (pino)", () => {
  it("writes pino's JSON lines with pid and hostname, and redacts secret fields with pino's redact", () => {
    const { logger, lines } = capture(true);
    logger.child({ node: "n1" }).info(
      {
        password: "hunter2",
        headers: { Authorization: "Bearer s3cr3t" },
        user: { profile: { api_key: "k-1" } },
        keep: "visible",
      },
      "hello",
    );
    assert.equal(lines.length, 1);
    const text = lines[0]!;
    for (const secret of ["hunter2", "Bearer s3cr3t", "k-1"]) assert.ok(!text.includes(secret));
    const line = JSON.parse(text) as Record<string, unknown>;
    assert.equal(line["level"], 30);
    assert.equal(line["time"], env.clock.wallNow());
    assert.equal(typeof line["pid"], "number");
    assert.equal(typeof line["hostname"], "string");
    assert.equal(line["node"], "n1");
    assert.equal(line["password"], "[Redacted]");
    assert.deepEqual(line["headers"], { Authorization: "[Redacted]" });
    assert.equal(line["keep"], "visible");
    assert.equal(line["msg"], "hello");
  });

  it("gives a child with a `module` binding that module's level", () => {
    const { logger, lines } = capture(true, "warn,keel.calls=debug,orders=info");
    const node = logger.child({ node: "n1" });
    node.child({ module: "keel.calls" }).debug({}, "calls debug");
    node.child({ module: "keel.server" }).info({}, "server info");
    node.child({ module: "orders", action: "place" }).info({}, "orders info");
    node.info({}, "node info");
    node.warn({}, "node warn");
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { msg: string }).msg),
      ["calls debug", "orders info", "node warn"],
    );
  });

  it("renders the same lines as text without --json", () => {
    const { logger, lines } = capture(false);
    logger.warn({ node: "n1", token: "tok", note: "two words" }, "careful");
    assert.equal(
      lines[0],
      `${new Date(env.clock.wallNow()).toISOString()} WARN careful node=n1 token=[Redacted] note="two words"\n`,
    );
  });

  it("parses --log-level and refuses unknown levels", () => {
    assert.deepEqual(parseLogLevels("debug"), { level: "debug", levels: {} });
    assert.deepEqual(parseLogLevels("keel.calls=debug, warn ,orders=trace"), {
      level: "warn",
      levels: { "keel.calls": "debug", orders: "trace" },
    });
    assert.throws(() => parseLogLevels("info,keel=loud"), UsageError);
  });

  it("makes redact paths for each spelling, up to three levels deep", () => {
    const paths = pinoRedactPaths(["apiKey"]);
    for (const p of ["apiKey", "apikey", "ApiKey", "api_key", "API_KEY", "*.*.*.api_key"])
      assert.ok(paths.includes(p), p);
  });

  it("serves as a node's logger: handler lines carry node, service and action", async () => {
    const { logger, lines } = capture(true);
    const svc = defineService("svc").action("go", {
      input: z.null(),
      output: z.null(),
      handler: (_, ctx) => {
        ctx.log.info({ secret: "s" }, "in handler");
        return null;
      },
    });
    const net = createInProcessNetwork({ env });
    const node = createNode({
      id: "n1",
      env,
      transport: net.transport("n1"),
      services: [svc],
      logger,
    });
    await node.start();
    await node.call(svc, "go", null);
    const stopping = node.stop({ graceMs: 0 });
    await env.advance(10);
    await stopping;
    const line = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l["msg"] === "in handler");
    assert.deepEqual(
      {
        node: line?.["node"],
        service: line?.["service"],
        action: line?.["action"],
        secret: line?.["secret"],
      },
      { node: "n1", service: "svc", action: "go", secret: "[Redacted]" },
    );
  });
});
