import {
  type AnyService,
  createNode,
  createRealEnv,
  defineEvent,
  defineService,
  type Env,
  type KeelNode,
  type NodeOptions,
  silentLogger,
} from "@keel/core";
import { msgpackCodec } from "@keel/core/msgpack";
import { z } from "zod";
import {
  createNatsTransport,
  type NatsTransport,
  type NatsTransportOptions,
} from "../src/index.ts";

/** A payment was taken; subscribers log it. */
export const paid = defineEvent("order.paid", z.object({ orderId: z.string() }));

/** An idempotent service that says which node answered. */
export const echo = defineService("echo", { version: 1 })
  .action("say", {
    input: z.object({ text: z.string(), delayMs: z.number().optional() }),
    output: z.object({ text: z.string(), node: z.string() }),
    idempotent: true,
    description: "Echoes the text back",
    handler: async ({ text, delayMs }, ctx) => {
      if (delayMs !== undefined && delayMs > 0) await ctx.env.timers.sleep(delayMs, ctx.signal);
      return { text, node: ctx.node };
    },
  })
  .action("fail", {
    input: z.object({}),
    output: z.object({}),
    handler: () => {
      throw new Error("boom");
    },
  });

/** A node on its own NATS connection, with the transport at hand. */
export interface NatsNode {
  readonly node: KeelNode;
  readonly transport: NatsTransport;
}

/** Creates (not starts) a node on a NATS transport with MessagePack and a real Env. */
export function natsNode(
  url: string,
  id: string,
  services: readonly AnyService[] = [],
  options: {
    readonly node?: Partial<NodeOptions>;
    readonly transport?: Partial<NatsTransportOptions>;
    readonly env?: Env;
  } = {},
): NatsNode {
  const env = options.env ?? createRealEnv();
  const transport = createNatsTransport({
    nodeId: id,
    servers: url,
    env,
    logger: silentLogger,
    ...options.transport,
  });
  const node = createNode({
    id,
    env,
    transport,
    codec: msgpackCodec,
    services,
    logger: silentLogger,
    ...options.node,
  });
  return { node, transport };
}

/** Polls `condition` every 10 ms until it holds; fails after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  timeoutMs: number,
  what = "condition",
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Stops nodes at the end of a test, ignoring ones already stopped. */
export async function stopAll(nodes: readonly NatsNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.node.stop({ graceMs: 0 })));
}
