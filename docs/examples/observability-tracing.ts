/**
 * Tracing: the OpenTelemetry SDK with an OTLP/HTTP exporter, and Keel nodes that use it.
 *
 * The exporter here sends to a stand-in collector this program starts on a free loopback port, so
 * the example runs anywhere and can check what arrived. In a deployment, the only change is the
 * exporter's `url`: your OpenTelemetry Collector, Jaeger (OTLP on :4318), Grafana Tempo, or a
 * vendor's OTLP endpoint (Datadog, New Relic, Honeycomb, ...).
 *
 * Run from the repository root: npx node docs/examples/observability-tracing.ts
 */
import { createServer } from "node:http";
import {
  createInProcessNetwork,
  createJsonLogger,
  createNode,
  createRealEnv,
  defineService,
} from "@keel/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { z } from "zod";

// A stand-in for a collector: accepts OTLP/HTTP JSON on /v1/traces and keeps the spans.
interface OtlpSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly name: string;
  readonly kind: number;
}
const received: OtlpSpan[] = [];
const collector = createServer((req, res) => {
  let body = "";
  req.setEncoding("utf8").on("data", (chunk: string) => {
    body += chunk;
  });
  req.on("end", () => {
    const { resourceSpans } = JSON.parse(body) as {
      resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
    };
    for (const r of resourceSpans) for (const s of r.scopeSpans) received.push(...s.spans);
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });
});
await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
const address = collector.address();
const port = typeof address === "object" && address !== null ? address.port : 0;

// 1. The application owns the SDK: a provider, a batching processor, an OTLP exporter.
//    In production: new OTLPTraceExporter({ url: "http://otel-collector:4318/v1/traces" }),
//    or no url at all and OTEL_EXPORTER_OTLP_ENDPOINT in the environment.
const provider = new NodeTracerProvider({
  spanProcessors: [
    new BatchSpanProcessor(new OTLPTraceExporter({ url: `http://127.0.0.1:${port}/v1/traces` })),
  ],
});
// register(): the global provider, an AsyncLocalStorage context manager, W3C propagation.
provider.register();

// 2. Services as usual. Nodes take the global provider; `tracerProvider` would pick another.
const stock = defineService("stock").action("reserve", {
  input: z.object({ sku: z.string() }),
  output: z.object({ reserved: z.boolean() }),
  handler: () => ({ reserved: true }),
});
const orders = defineService("orders").action("place", {
  input: z.object({ sku: z.string() }),
  output: z.object({ ok: z.boolean() }),
  handler: async ({ sku }, ctx) => {
    ctx.log.info({ sku }, "placing"); // this line carries trace_id and span_id
    const { reserved } = await ctx.call(stock, "reserve", { sku }); // a child of this span
    return { ok: reserved };
  },
});

const env = createRealEnv();
const network = createInProcessNetwork({ env });
const nodes = [
  createNode({ id: "stock-1", env, transport: network.transport("stock-1"), services: [stock] }),
  createNode({
    id: "orders-1",
    env,
    transport: network.transport("orders-1"),
    services: [orders],
    logger: createJsonLogger({
      level: "info",
      clock: env.clock,
      write: (line) => process.stdout.write(line),
    }),
  }),
  createNode({ id: "web-1", env, transport: network.transport("web-1") }),
];
for (const node of nodes) await node.start();
const web = nodes[2]!;
await web.waitForEndpoints(orders);
await nodes[1]!.waitForEndpoints(stock);

// 3. A call: web-1 → orders-1 → stock-1, one trace of four spans.
const result = await web.call(orders, "place", { sku: "tea" });
for (const node of nodes) await node.stop();

// 4. Flush and shut the SDK down before exiting, so the last batch is sent.
await provider.forceFlush();
await provider.shutdown();
await new Promise<void>((resolve) => collector.close(() => resolve()));

// What the collector got: one trace, each span the child of the one before.
const KIND = ["INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"];
const byId = new Map(received.map((s) => [s.spanId, s]));
const depth = (s: OtlpSpan): number => {
  const parent = s.parentSpanId === undefined ? undefined : byId.get(s.parentSpanId);
  return parent === undefined ? 0 : 1 + depth(parent);
};
for (const s of [...received].sort((a, b) => depth(a) - depth(b))) {
  // OTLP/JSON numbers span kinds from 1 (INTERNAL).
  console.log(`${"  ".repeat(depth(s))}${KIND[s.kind - 1]} ${s.name}`);
}
const traces = new Set(received.map((s) => s.traceId));
const depths = received.map(depth).sort().join(",");
if (!result.ok || traces.size !== 1 || depths !== "0,1,2,3")
  throw new Error(`observability-tracing: expected one trace of 4 nested spans, got ${depths}`);
