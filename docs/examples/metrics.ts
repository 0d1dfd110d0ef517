/**
 * Metrics and health: nodes record Keel's metrics into @keel/prometheus, in the application's own
 * prom-client registry next to its metrics; an admin server serves them at /metrics with the
 * health probes, and the numbers match the workload. The nodes run on virtual time; the admin
 * server is a real HTTP server on a free loopback port.
 *
 * Run from the repository root: npx node docs/examples/metrics.ts
 */
import {
  createInProcessNetwork,
  createNode,
  createVirtualEnv,
  defineService,
  KeelError,
  silentLogger,
  startAdminServer,
} from "@keel/core";
import { createPrometheusMetrics } from "@keel/prometheus";
import { Counter, Registry } from "prom-client";
import { z } from "zod";

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
}

const orders = defineService("orders").action("place", {
  input: z.object({ sku: z.string() }),
  output: z.object({ id: z.string() }),
  handler: async ({ sku }, ctx) => {
    await ctx.env.timers.sleep(3); // 3 ms of virtual time
    if (sku === "gone") throw new KeelError("FAILED_PRECONDITION", "out of stock");
    return { id: `o-${sku}` };
  },
});

const env = createVirtualEnv({ seed: 1 });
const network = createInProcessNetwork({ env });
// The application's prom-client registry, with a metric of its own.
const registry = new Registry();
const jobs = new Counter({ name: "app_jobs_total", help: "Jobs run.", registers: [registry] });
jobs.inc();
// One set of Keel metrics for the process, in that registry, with prom-client's default metrics
// (off by default on a registry you pass); each node's series carry its id as the `node` label.
const metrics = createPrometheusMetrics({ registry, defaultMetrics: true });
const node = (id: string, services = [orders]) =>
  createNode({
    id,
    env,
    transport: network.transport(id),
    services,
    metrics,
    logger: silentLogger,
  });
const server = node("orders-1");
const client = node("web-1", []);
await server.start();
await client.start();
await env.advance(200); // one heartbeat: both registries know the cluster

await using admin = await startAdminServer(server, { port: 0, metrics });
const url = `http://127.0.0.1:${admin.port}`;
check((await fetch(`${url}/health/ready`)).status === 200, "ready");

const calls = ["a", "b", "c", "gone"].map((sku) =>
  client.call(orders, "place", { sku }).catch((e: unknown) => e),
);
await env.advance(5);
await Promise.all(calls);

const res = await fetch(`${url}/metrics`);
const text = await res.text();
check(res.headers.get("content-type") === metrics.contentType, "Prometheus content type");
const line = (prefix: string) => text.split("\n").find((l) => l.startsWith(prefix));
const ok =
  'keel_client_requests_total{node="web-1",service="orders@1",action="place",outcome="ok"}';
const refused =
  'keel_server_requests_total{node="orders-1",service="orders@1",action="place",outcome="FAILED_PRECONDITION"}';
const seconds =
  'keel_server_request_duration_seconds_sum{node="orders-1",service="orders@1",action="place",outcome="ok"}';
console.log(line(ok));
console.log(line(refused));
console.log(line(seconds));
check(line(ok) === `${ok} 3`, "three calls succeeded");
check(line(refused) === `${refused} 1`, "one was refused by the handler");
const sum = Number(line(seconds)?.split(" ")[1]);
check(Math.abs(sum - 0.009) < 1e-9, "3 x 3 ms on the node's clock");
check(line("app_jobs_total ") === "app_jobs_total 1", "the application's metric, same registry");
check(line("nodejs_eventloop_lag_p99_seconds ") !== undefined, "prom-client's default metrics");

// Draining: the readiness probe turns 503 at once, so a load balancer stops sending traffic,
// while the request in flight finishes.
const last = client.call(orders, "place", { sku: "d" });
await env.advance(1);
const stopping = server.stop();
const ready = await fetch(`${url}/health/ready`);
console.log("during drain:", ready.status, await ready.text());
check(ready.status === 503 && (await fetch(`${url}/health/live`)).ok, "live, not ready");
await env.advance(10);
check((await last).id === "o-d", "the request in flight was answered");
await stopping;
await client.stop();
metrics.close();
