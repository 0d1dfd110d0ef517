/**
 * The Moleculer peer of the in-process suites: a local broker (no transporter, no logger, metrics
 * and tracing off unless `options` says otherwise) hosting one service `svc` with the given
 * actions, each called with its params.
 * @module
 */
import { type BrokerOptions, type Context, ServiceBroker } from "moleculer";
import type { Stop } from "./harness.ts";

/** Starts the broker and pushes how to stop it onto `stops`. */
export async function startLocalBroker(
  options: BrokerOptions,
  actions: Readonly<Record<string, (x: number) => unknown>>,
  stops: Stop[],
): Promise<ServiceBroker> {
  const broker = new ServiceBroker({
    logger: false,
    transporter: null,
    metrics: false,
    tracing: false,
    ...options,
  });
  broker.createService({
    name: "svc",
    actions: Object.fromEntries(
      Object.entries(actions).map(([name, fn]) => [name, (ctx: Context<number>) => fn(ctx.params)]),
    ),
  });
  await broker.start();
  stops.push(() => broker.stop());
  return broker;
}
