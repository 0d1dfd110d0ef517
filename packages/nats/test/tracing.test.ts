import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { defineEvent, defineService } from "@keel/core";
import { SpanKind } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { z } from "zod";
import { type NatsServer, startNatsServer } from "./nats-server.ts";
import { echo, natsNode, stopAll, waitFor } from "./support.ts";

/** One node's own tracer provider and exporter, as a separate process would have. */
function processTracing() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  return { exporter, provider };
}

const shipped = defineEvent("order.shipped", z.object({ id: z.string() }));

/** Calls echo on another node, then emits an event: two hops out of one handler. */
const front = defineService("front").action("go", {
  input: z.object({ text: z.string() }),
  output: z.object({ text: z.string(), node: z.string() }),
  handler: async ({ text }, ctx) => {
    const out = await ctx.call(echo, "say", { text }, { timeoutMs: 2000 });
    ctx.emit(shipped, { id: text });
    return out;
  },
});

describe("tracing over NATS", { timeout: 60_000 }, () => {
  let server: NatsServer;
  before(async () => {
    server = await startNatsServer();
  });
  after(async () => {
    await server?.[Symbol.asyncDispose]();
  });

  it("carries the trace context between nodes on separate NATS connections: one trace, three nodes", async () => {
    const delivered: string[] = [];
    const audit = defineService("audit").on(shipped, ({ id }) => {
      delivered.push(id);
    });
    const t = { cli: processTracing(), front: processTracing(), back: processTracing() };
    const cli = natsNode(server.url, "cli", [], { node: { tracerProvider: t.cli.provider } });
    const mid = natsNode(server.url, "front", [front], {
      node: { tracerProvider: t.front.provider },
    });
    const back = natsNode(server.url, "back", [echo, audit], {
      node: { tracerProvider: t.back.provider },
    });
    const nodes = [cli, mid, back];
    try {
      for (const n of nodes) await n.node.start();
      await cli.node.waitForEndpoints(front, 1, 5000);
      await mid.node.waitForEndpoints(echo, 1, 5000);
      // front learned echo and audit's subscription from the same announcement of back.

      const out = await cli.node.call(front, "go", { text: "hi" }, { timeoutMs: 5000 });
      assert.deepEqual(out, { text: "hi", node: "back" });
      await waitFor(() => delivered.length === 1, 5000, "the event delivery");
      await waitFor(
        () => t.back.exporter.getFinishedSpans().some((s) => s.kind === SpanKind.CONSUMER),
        5000,
        "the consumer span",
      );

      const only = (spans: ReadableSpan[], kind: SpanKind, name: string) => {
        const found = spans.filter((s) => s.kind === kind && s.name === name);
        assert.equal(found.length, 1, `${SpanKind[kind]} ${name}`);
        return found[0]!;
      };
      const cliSpans = t.cli.exporter.getFinishedSpans();
      const frontSpans = t.front.exporter.getFinishedSpans();
      const backSpans = t.back.exporter.getFinishedSpans();
      const call = only(cliSpans, SpanKind.CLIENT, "front/go");
      const serve = only(frontSpans, SpanKind.SERVER, "front/go");
      const callEcho = only(frontSpans, SpanKind.CLIENT, "echo/say");
      const produce = only(frontSpans, SpanKind.PRODUCER, "send order.shipped");
      const serveEcho = only(backSpans, SpanKind.SERVER, "echo/say");
      const consume = only(backSpans, SpanKind.CONSUMER, "process order.shipped");

      const traceId = call.spanContext().traceId;
      for (const s of [serve, callEcho, produce, serveEcho, consume])
        assert.equal(s.spanContext().traceId, traceId, `${s.name} is in the trace`);
      assert.equal(serve.parentSpanContext?.spanId, call.spanContext().spanId);
      assert.equal(serve.parentSpanContext?.isRemote, true, "the parent came over the wire");
      assert.equal(callEcho.parentSpanContext?.spanId, serve.spanContext().spanId);
      assert.equal(serveEcho.parentSpanContext?.spanId, callEcho.spanContext().spanId);
      assert.equal(produce.parentSpanContext?.spanId, serve.spanContext().spanId);
      assert.equal(consume.links[0]?.context.spanId, produce.spanContext().spanId);
      assert.equal(serveEcho.attributes["client.address"], "front");
      assert.equal(callEcho.attributes["server.address"], "back");
    } finally {
      await stopAll(nodes);
    }
  });
});
