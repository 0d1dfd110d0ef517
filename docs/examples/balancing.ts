/**
 * Balancing: weighted versions for a canary, consistent hashing by key, and the default
 * power-of-two-choices steering calls away from a slow node. On virtual time with a fixed seed,
 * so every run prints the same numbers.
 *
 * Run from the repository root: npx node docs/examples/balancing.ts
 */
import {
  createInProcessNetwork,
  createNode,
  createVirtualEnv,
  defineService,
  type KeelNode,
  silentLogger,
} from "@keel/core";
import { z } from "zod";

const env = createVirtualEnv({ seed: 42 });
const network = createInProcessNetwork({ env });

const quoteIn = z.object({ sku: z.string() });
const quoteOut = z.object({ price: z.number(), version: z.number(), node: z.string() });

// Two versions of one service: `pricing@1` and `pricing@2` route separately.
const pricingV1 = defineService("pricing", { version: 1 }).action("quote", {
  input: quoteIn,
  output: quoteOut,
  handler: (_in, ctx) => ({ price: 100, version: 1, node: ctx.node }),
});
const pricingV2 = defineService("pricing", { version: 2 }).action("quote", {
  input: quoteIn,
  output: quoteOut,
  handler: (_in, ctx) => ({ price: 95, version: 2, node: ctx.node }),
});

// A stateful service where the same key should keep reaching the same node.
const carts = defineService("carts").action("add", {
  input: z.object({ userId: z.string(), sku: z.string() }),
  output: z.object({ node: z.string() }),
  handler: (_in, ctx) => ({ node: ctx.node }),
});

const opts = { env, logger: silentLogger };
const node = (id: string, services: Parameters<typeof createNode>[0]["services"] = []): KeelNode =>
  createNode({ ...opts, id, transport: network.transport(id), services });

const app = node("app");
const servers = [
  node("price-1", [pricingV1]),
  node("price-2", [pricingV1]),
  node("price-3", [pricingV2]), // the canary
  node("cart-a", [carts]),
  node("cart-b", [carts]),
  node("cart-c", [carts]),
];
for (const n of [app, ...servers]) await n.start();
await app.waitForEndpoints(carts, 3);
console.log("pricing versions known to app:", app.registry.versions("pricing"));

// --- 1. Canary: 10 % of calls to version 2, the rest to version 1. ---------------------------
// The client is typed by pricingV1; `versions` may route a call to any version with endpoints.
const pricing = app.client(pricingV1, { versions: { 1: 90, 2: 10 } });
const byVersion = new Map<number, number>();
for (let i = 0; i < 1_000; i++) {
  const { version } = await pricing.quote({ sku: `sku-${i}` });
  byVersion.set(version, (byVersion.get(version) ?? 0) + 1);
}
const v2 = byVersion.get(2) ?? 0;
console.log(`1. canary {1: 90, 2: 10}: v1=${byVersion.get(1) ?? 0} v2=${v2} of 1000`);
if (v2 < 60 || v2 > 140) throw new Error(`canary share off: ${v2}`);

// --- 2. Consistent hash: the same key reaches the same node. ---------------------------------
const owner = new Map<string, string>();
const users = Array.from({ length: 12 }, (_, i) => `user-${i}`);
for (const userId of users) {
  const first = await app.call(
    carts,
    "add",
    { userId, sku: "a" },
    { balancer: "consistent-hash", hashKey: userId },
  );
  const again = await app.call(
    carts,
    "add",
    { userId, sku: "b" },
    { balancer: "consistent-hash", hashKey: userId },
  );
  if (first.node !== again.node) throw new Error(`${userId} moved without a membership change`);
  owner.set(userId, first.node);
}
const show = (m: Map<string, string>) =>
  users.map((u) => `${u.slice(5)}→${m.get(u)?.slice(5)}`).join(" ");
console.log("2. owners:                ", show(owner));

// When a node leaves, only the keys it owned move (rendezvous hashing).
await servers[5]?.stop(); // cart-c leaves gracefully
await env.flush();
const after = new Map<string, string>();
for (const userId of users) {
  const { node: n } = await app.call(
    carts,
    "add",
    { userId, sku: "c" },
    { balancer: "consistent-hash", hashKey: userId },
  );
  after.set(userId, n);
}
console.log("   after cart-c leaves:   ", show(after));
const moved = users.filter((u) => owner.get(u) !== after.get(u));
if (moved.some((u) => owner.get(u) !== "cart-c"))
  throw new Error("a key moved that cart-c did not own");
if (moved.length === 0) throw new Error("expected cart-c to own some keys");
console.log(`   moved: ${moved.length} keys, all previously on cart-c`);

// --- 3. p2c (the default) prefers the endpoint with lower latency x in-flight. --------------
network.setLink("app", "price-2", { latency: { kind: "fixed", ms: 40 } }); // price-2 is slow
network.setLink("app", "price-1", { latency: { kind: "fixed", ms: 2 } });
const served = new Map<string, number>();
for (let i = 0; i < 50; i++) {
  const pending = app.call(pricingV1, "quote", { sku: "x" });
  await env.advance(50);
  const { node: n } = await pending;
  served.set(n, (served.get(n) ?? 0) + 1);
}
console.log(
  `3. p2c with price-2 slow:  price-1=${served.get("price-1") ?? 0} price-2=${served.get("price-2") ?? 0}`,
);
if ((served.get("price-2") ?? 0) > 5) throw new Error("p2c kept choosing the slow node");

for (const n of [app, ...servers]) await n.stop();
console.log("\nok");
