/**
 * Events: `emit` reaches one node of each subscribing service, `broadcast` reaches every
 * subscriber on every node, and in core delivery is at most once (no ack, no redelivery).
 *
 * Run from the repository root: npx node docs/examples/events.ts
 */
import {
  createInProcessNetwork,
  createNode,
  createVirtualEnv,
  defineEvent,
  defineService,
  hasCode,
  silentLogger,
} from "@keel/core";
import { z } from "zod";

const env = createVirtualEnv({ seed: 3 });
const network = createInProcessNetwork({ env, faults: { latency: { kind: "fixed", ms: 2 } } });

// A typed event: a name and the schema of its payload.
const orderPlaced = defineEvent(
  "order.placed",
  z.object({ orderId: z.string(), total: z.number() }),
);

/** Which node of which service received which order. */
const received: string[] = [];

// Two services subscribe to the same event. Each handler gets the parsed, typed payload.
const mailer = defineService("mailer").on(orderPlaced, ({ orderId }, ctx) => {
  received.push(`mailer@${ctx.node}:${orderId}`);
});
const audit = defineService("audit").on(orderPlaced, ({ orderId, total }, ctx) => {
  received.push(`audit@${ctx.node}:${orderId}`);
  if (total < 0) throw new Error("negative total"); // logged by the node; the emitter never sees it
});

// An action can emit too, through its context.
const orders = defineService("orders").action("place", {
  input: z.object({ orderId: z.string(), total: z.number() }),
  output: z.object({ accepted: z.boolean() }),
  handler: (order, ctx) => {
    ctx.emit(orderPlaced, order);
    return { accepted: true };
  },
});

const opts = { env, logger: silentLogger };
const shop = createNode({
  ...opts,
  id: "shop",
  transport: network.transport("shop"),
  services: [orders],
});
const mail1 = createNode({
  ...opts,
  id: "mail-1",
  transport: network.transport("mail-1"),
  services: [mailer],
});
const mail2 = createNode({
  ...opts,
  id: "mail-2",
  transport: network.transport("mail-2"),
  services: [mailer],
});
const audit1 = createNode({
  ...opts,
  id: "audit-1",
  transport: network.transport("audit-1"),
  services: [audit],
});
const all = [shop, mail1, mail2, audit1];
for (const n of all) await n.start();
await env.advance(20); // discovery: subscribers are learned from announcements

const count = (prefix: string) => received.filter((r) => r.startsWith(prefix)).length;

// --- 1. emit: every subscribing service gets each event once, on one of its nodes. ----------
for (let i = 1; i <= 4; i++) shop.emit(orderPlaced, { orderId: `o${i}`, total: 10 * i });
await env.advance(10);
console.log("1. emit x4:     ", received.join(" "));
if (count("audit@") !== 4 || count("mailer@") !== 4)
  throw new Error("emit: each service gets each event once");
if (count("mailer@mail-1") !== 2 || count("mailer@mail-2") !== 2)
  throw new Error("emit: spread over mailer nodes");

// --- 2. broadcast: every node of every subscribing service gets it. --------------------------
received.length = 0;
shop.broadcast(orderPlaced, { orderId: "b1", total: 1 });
await env.advance(10);
console.log("2. broadcast x1:", received.sort().join(" "));
if (received.length !== 3) throw new Error("broadcast: all three subscriber nodes");

// --- 3. from a handler: ctx.emit inside orders.place. ----------------------------------------
received.length = 0;
const placed = shop.call(orders, "place", { orderId: "h1", total: 5 });
await env.advance(10);
console.log("3. ctx.emit:    ", (await placed).accepted, received.sort().join(" "));
if (count("audit@") !== 1 || count("mailer@") !== 1) throw new Error("ctx.emit");

// --- 4. At most once: a subscriber cut off from the network simply misses events. -----------
received.length = 0;
network.isolate("audit-1");
shop.emit(orderPlaced, { orderId: "lost", total: 1 });
await env.advance(10);
network.heal();
await env.advance(10);
console.log(
  "4. audit-1 isolated:",
  received.join(" "),
  `| frames blocked: ${network.stats.blocked}`,
);
if (count("audit@") !== 0) throw new Error("an isolated subscriber cannot receive the event");
if (count("mailer@") !== 1) throw new Error("other services still get it");

// --- 5. A payload that fails the event's schema is refused at the emitter, with the path. ----
let refused: unknown;
try {
  shop.emit(orderPlaced, { orderId: "bad", total: Number.NaN });
} catch (err) {
  refused = err;
}
if (!hasCode(refused, "INVALID_ARGUMENT")) throw new Error("expected INVALID_ARGUMENT");
console.log(`5. invalid payload: ${refused.code}: ${refused.message}`);

for (const n of all) await n.stop();
console.log(
  "\nok: emitted",
  shop.stats.eventsEmitted,
  "| delivered per node:",
  all.map((n) => `${n.id}=${n.stats.eventsDelivered}`).join(" "),
);
