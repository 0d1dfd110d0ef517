import {
  type AnyService,
  createInProcessNetwork,
  createNode,
  createRealEnv,
  defineService,
  type InProcessNetwork,
  type KeelNode,
  type StandardSchemaV1,
  silentLogger,
} from "@keel/core";
import { type Context, ServiceBroker } from "moleculer";
import { z } from "zod";
import {
  type BenchCase,
  type Comparison,
  type PreparedSuite,
  prepareCases,
  type Stop,
} from "./harness.ts";

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

/** Starts the keel nodes and the Moleculer broker; pushes how to stop each onto `stops`. */
async function startCases(stops: Stop[]): Promise<BenchCase[]> {
  const env = createRealEnv();
  const startNode = async (network: InProcessNetwork, id: string, services: AnyService[]) => {
    const node: KeelNode = createNode({
      id,
      env,
      transport: network.transport(id),
      services,
      logger: silentLogger,
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
  const pair = createInProcessNetwork({ env });
  await startNode(pair, "a", [zodService]);
  const b = await startNode(pair, "b", []);
  await b.waitForEndpoints(zodService);

  const broker = new ServiceBroker({
    logger: false,
    transporter: null,
    metrics: false,
    tracing: false,
  });
  broker.createService({
    name: "svc",
    actions: {
      echo(ctx: Context<number>) {
        return echo(ctx.params);
      },
      echoAsync(ctx: Context<number>) {
        return echoAsync(ctx.params);
      },
    },
  });
  await broker.start();
  stops.push(() => broker.stop());

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
  ];
}

const ratio = (label: string, of: string, over: string, target?: number): Comparison => ({
  label,
  kind: "throughput-ratio",
  of,
  over,
  ...(target === undefined ? {} : { target }),
});

const overhead = (label: string, of: string, over: string): Comparison => ({
  label,
  kind: "overhead-ns",
  of,
  over,
});

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
      ],
      notes: [
        "Moleculer's action has no params schema, so it validates nothing: keel-pass is the like-for-like comparison, keel-zod what a typed keel service costs.",
        "Each same-node variant runs on a network of its own, so the balancer has exactly one (local) endpoint.",
        "Every case awaits its operation: the baseline is the cost of the loop and of one awaited call.",
      ],
    },
    teardown,
  };
}
