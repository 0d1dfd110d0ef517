import {
  type AnyService,
  createInProcessNetwork,
  createNode,
  createRealEnv,
  defineService,
  type InProcessNetwork,
  type KeelNode,
  type LocalCallSpans,
  type Metrics,
  type StandardSchemaV1,
  silentLogger,
} from "@keel/core";
import { createPrometheusMetrics } from "@keel/prometheus";
import {
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { z } from "zod";
import {
  type BenchCase,
  overhead,
  type PreparedSuite,
  prepareCases,
  ratio,
  type Stop,
} from "./harness.ts";
import { startLocalBroker } from "./moleculer.ts";

const INPUT = 42;

/** The trivial handler every case runs. */
const echo = (x: number): number => x;

/** A Standard Schema that returns its input: keel's call path without a validator's cost. */
const passthrough: StandardSchemaV1<number, number> = {
  "~standard": { version: 1, vendor: "bench", validate: (v) => ({ value: v as number }) },
};

const zodService = defineService("bench").action("echo", {
  input: z.number(),
  output: z.number(),
  handler: echo,
});
/** The same handler written as an async function: every call then goes through a promise. */
const echoAsync = async (x: number): Promise<number> => x;
const asyncService = defineService("bench").action("echo", {
  input: z.number(),
  output: z.number(),
  handler: echoAsync,
});
const plainService = defineService("bench").action("echo", {
  input: passthrough,
  output: passthrough,
  handler: echo,
});

/** An exporter that drops what it is given: the SDK's whole cost, and no I/O. */
const noopExporter: SpanExporter = {
  export: (_spans, done) => done({ code: 0 }),
  shutdown: () => Promise.resolve(),
};

/** Starts the keel nodes and the Moleculer broker; pushes how to stop each onto `stops`. */
async function startCases(stops: Stop[]): Promise<BenchCase[]> {
  const env = createRealEnv();
  const startNode = async (
    network: InProcessNetwork,
    id: string,
    services: AnyService[],
    tracerProvider?: BasicTracerProvider,
    metrics?: Metrics,
    localCallSpans?: LocalCallSpans,
  ) => {
    const node: KeelNode = createNode({
      id,
      env,
      transport: network.transport(id),
      services,
      logger: silentLogger,
      ...(tracerProvider === undefined ? {} : { tracerProvider }),
      ...(metrics === undefined ? {} : { metrics }),
      ...(localCallSpans === undefined ? {} : { localCallSpans }),
    });
    await node.start();
    stops.push(() => node.stop());
    return node;
  };
  // Each same-node variant gets a network of its own: a second `bench@1` endpoint on the same
  // network would make the balancer send some of the calls over the transport.
  const sameZod = await startNode(createInProcessNetwork({ env }), "same-zod", [zodService]);
  const samePlain = await startNode(createInProcessNetwork({ env }), "same-plain", [plainService]);
  const sameAsync = await startNode(createInProcessNetwork({ env }), "same-async", [asyncService]);
  // Tracing on: the OpenTelemetry SDK, every span sampled and batched to an exporter that drops it.
  const provider = new BasicTracerProvider({
    sampler: new AlwaysOnSampler(),
    spanProcessors: [new BatchSpanProcessor(noopExporter)],
  });
  stops.push(() => provider.shutdown());
  const sameTraced = await startNode(
    createInProcessNetwork({ env }),
    "same-traced",
    [plainService],
    provider,
  );
  // Breakdown: the same call traced as a remote one is, with a CLIENT and a SERVER span.
  const sameTraced2 = await startNode(
    createInProcessNetwork({ env }),
    "same-traced-2",
    [plainService],
    provider,
    undefined,
    "client-server",
  );
  // Metrics on: @keel/prometheus records client and server series of every call.
  const metrics = createPrometheusMetrics();
  stops.push(async () => metrics.close());
  const sameMetered = await startNode(
    createInProcessNetwork({ env }),
    "same-metered",
    [plainService],
    undefined,
    metrics,
  );
  const pair = createInProcessNetwork({ env });
  await startNode(pair, "a", [zodService]);
  const b = await startNode(pair, "b", []);
  await b.waitForEndpoints(zodService);

  const broker = await startLocalBroker({}, { echo, echoAsync }, stops);
  // Moleculer's built-in tracer on, every span sampled, no exporter.
  const tracedBroker = await startLocalBroker(
    { tracing: { enabled: true, exporter: [], sampling: { rate: 1 } } },
    { echo },
    stops,
  );

  return [
    {
      id: "baseline",
      label: "await echo(x): the same handler as a plain function",
      op: () => echo(INPUT),
    },
    {
      id: "keel-zod",
      label:
        'keel same-node node.call(svc, "echo", x); zod 4 z.number() as input and output schema',
      op: () => sameZod.call(zodService, "echo", INPUT),
    },
    {
      id: "keel-pass",
      label: 'keel same-node node.call(svc, "echo", x); passthrough Standard Schema (no validator)',
      op: () => samePlain.call(plainService, "echo", INPUT),
    },
    {
      id: "keel-async",
      label: "keel same-node call to an async handler; zod 4 schemas",
      op: () => sameAsync.call(asyncService, "echo", INPUT),
    },
    {
      id: "moleculer-async",
      label: 'Moleculer 0.14 local broker.call("svc.echoAsync", x) to an async handler',
      op: () => broker.call<number, number>("svc.echoAsync", INPUT),
    },
    {
      id: "keel-2node",
      label: "keel node B calls the service on node A: in-process network, JSON codec, zod schemas",
      op: () => b.call(zodService, "echo", INPUT),
    },
    {
      id: "moleculer",
      label:
        'Moleculer 0.14 local broker.call("svc.echo", x): no transporter, logger/metrics/tracing off',
      op: () => broker.call<number, number>("svc.echo", INPUT),
    },
    {
      id: "keel-traced",
      label:
        "keel-pass with tracing on: OpenTelemetry SDK, always sampled, batched to a no-op exporter",
      op: () => sameTraced.call(plainService, "echo", INPUT),
    },
    {
      id: "keel-traced-2",
      label: "keel-traced with localCallSpans: 'client-server' (a CLIENT and a SERVER span)",
      op: () => sameTraced2.call(plainService, "echo", INPUT),
    },
    {
      id: "keel-metrics",
      label:
        "keel-pass with metrics on: @keel/prometheus, client and server counters and histograms",
      op: () => sameMetered.call(plainService, "echo", INPUT),
    },
    {
      id: "moleculer-traced",
      label: "moleculer with its built-in tracer on: every span sampled, no exporter",
      op: () => tracedBroker.call<number, number>("svc.echo", INPUT),
    },
  ];
}

/**
 * The core suite: the cost of one call through keel (same node, two nodes) and through
 * Moleculer 0.14's local broker, next to a plain awaited function call.
 */
export async function prepare(): Promise<PreparedSuite> {
  const { cases, teardown } = await prepareCases(startCases, INPUT);
  return {
    suite: {
      name: "core",
      description:
        "one call to a trivial handler: plain function, keel same-node and two-node, Moleculer local",
      reference: "baseline",
      cases,
      comparisons: [
        ratio("throughput keel-zod / moleculer (> 1: keel faster)", "keel-zod", "moleculer", 2),
        ratio("throughput keel-pass / moleculer (> 1: keel faster)", "keel-pass", "moleculer", 2),
        ratio(
          "throughput keel-async / moleculer-async (async handlers)",
          "keel-async",
          "moleculer-async",
        ),
        ratio("throughput keel-2node / moleculer", "keel-2node", "moleculer"),
        overhead("keel-zod overhead over baseline", "keel-zod", "baseline"),
        overhead("keel-pass overhead over baseline", "keel-pass", "baseline"),
        overhead("zod validation, input + output (keel-zod - keel-pass)", "keel-zod", "keel-pass"),
        overhead("keel-2node overhead over baseline", "keel-2node", "baseline"),
        overhead("moleculer overhead over baseline", "moleculer", "baseline"),
        ratio(
          "throughput keel-traced / moleculer-traced (tracing on; > 1: keel faster)",
          "keel-traced",
          "moleculer-traced",
          1,
        ),
        overhead("tracing on, keel (keel-traced - keel-pass)", "keel-traced", "keel-pass"),
        overhead("tracing on, two spans (keel-traced-2 - keel-pass)", "keel-traced-2", "keel-pass"),
        {
          label: "metrics on, keel (keel-metrics - keel-pass)",
          kind: "overhead-ns",
          of: "keel-metrics",
          over: "keel-pass",
          target: 500,
        },
        overhead(
          "tracing on, moleculer (moleculer-traced - moleculer)",
          "moleculer-traced",
          "moleculer",
        ),
      ],
      notes: [
        "Moleculer's action has no params schema, so it validates nothing: keel-pass is the like-for-like comparison, keel-zod what a typed keel service costs.",
        "Each same-node variant runs on a network of its own, so the balancer has exactly one (local) endpoint.",
        "Every case awaits its operation: the baseline is the cost of the loop and of one awaited call.",
        "keel-traced records one INTERNAL span per call (a call only its own node serves), as Moleculer's tracer records one span per local call; keel-traced-2 records a CLIENT and a SERVER span, as for a remote call.",
        "keel-metrics records both sides of each call (the node calls itself): two counters, two histograms, two in-flight gauges and two clock reads.",
      ],
    },
    teardown,
  };
}
