import { defineService, type KeelNode } from "@keel/core";
import { z } from "zod";
import type { Simulation } from "../src/index.ts";

/** A service that logs which node served each request, after an optional sleep on the node's timers. */
export function echoService(log: string[] = [], sleepMs = 0) {
  return defineService("echo").action("hit", {
    input: z.string(),
    output: z.string(),
    idempotent: true,
    handler: async (input, ctx) => {
      log.push(`${ctx.node}:${input}`);
      if (sleepMs > 0) await ctx.env.timers.sleep(sleepMs);
      return `${ctx.node}:${input}`;
    },
  });
}

/** Calls echo.hit and reports `ok` or the error's code, never throwing. */
export async function tryHit(
  client: KeelNode,
  service: ReturnType<typeof echoService>,
  input: string,
  timeoutMs = 200,
): Promise<string> {
  try {
    return `ok ${await client.call(service, "hit", input, { timeoutMs, retry: false })}`;
  } catch (err) {
    return `error ${(err as { code?: string }).code ?? String(err)}`;
  }
}

/** Nodes `a` and `b` serving echo, and a `client` that knows both; ready to call. */
export async function echoCluster(sim: Simulation, log: string[] = [], sleepMs = 0) {
  const echo = echoService(log, sleepMs);
  await sim.addNode("a", { services: [echo] });
  await sim.addNode("b", { services: [echo] });
  const client = (await sim.addNode("client")).node;
  await client.waitForEndpoints(echo, 2);
  return { echo, client };
}
