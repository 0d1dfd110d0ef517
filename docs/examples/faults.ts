/**
 * Faults on the in-process network: latency, a partition (and failure detection), a crash with
 * failover of an idempotent action, a restart recognised at once, a graceful stop that loses
 * nothing, a drain cut short by its grace period, and links that reorder frames. All on virtual
 * time.
 *
 * Run from the repository root: npx node docs/examples/faults.ts
 */
import {
  type AnyService,
  type Context,
  createInProcessNetwork,
  createNode,
  createVirtualEnv,
  defineService,
  isKeelError,
  type KeelNode,
  type RegistryEvent,
  silentLogger,
} from "@keel/core";
import { z } from "zod";

const env = createVirtualEnv({ seed: 11 });
// Every link: 1 to 5 ms per frame, drawn from the seeded random stream. Links keep their frames
// in order (as a TCP connection does) unless a link's faults say `reorder: true`.
const network = createInProcessNetwork({
  env,
  faults: { latency: { kind: "uniform", min: 1, max: 5 } },
});

/** Nodes that started handling a request, in order. */
const started: string[] = [];
const work = async (ctx: Context) => {
  started.push(ctx.node);
  await ctx.env.timers.sleep(100, ctx.signal); // 100 ms of work that stops if the call is abandoned
  return { node: ctx.node };
};

const inventory = defineService("inventory")
  .action("reserve", {
    input: z.object({ sku: z.string(), qty: z.number().int().positive() }),
    output: z.object({ node: z.string() }),
    idempotent: true, // safe to run twice: may fail over after an ambiguous failure
    handler: (_in, ctx) => work(ctx),
  })
  .action("charge", {
    input: z.object({ orderId: z.string() }),
    output: z.object({ node: z.string() }),
    // not idempotent: never re-sent once the node that had it may have run it
    handler: (_in, ctx) => work(ctx),
  });

const nodes = new Map<string, KeelNode>();
const boot = async (id: string, services: readonly AnyService[] = [inventory]) => {
  const n = createNode({
    id,
    env,
    logger: silentLogger,
    transport: network.transport(id),
    services,
  });
  nodes.set(id, n);
  await n.start();
  return n;
};
const client = await boot("client", []);
for (const id of ["inv-1", "inv-2", "inv-3"]) await boot(id);
await env.advance(50);

/** What the client's registry reported, for the checks below. */
const changes: RegistryEvent[] = [];
client.registry.onChange((e) => changes.push(e));

type Outcome<T> = ({ ok: true; value: T } | { ok: false; error: unknown }) & { ms: number };
/** Runs `promise` while advancing virtual time in 5 ms steps; returns the outcome and the time it took. */
async function drive<T>(promise: Promise<T>, maxMs = 5_000): Promise<Outcome<T>> {
  const t0 = env.clock.now();
  let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  void promise.then(
    (value) => {
      outcome = { ok: true, value };
    },
    (error: unknown) => {
      outcome = { ok: false, error };
    },
  );
  await env.flush();
  while (outcome === undefined && env.clock.now() - t0 < maxMs) await env.advance(5);
  if (outcome === undefined) throw new Error("did not settle");
  return { ...outcome, ms: env.clock.now() - t0 };
}
const describe = (r: Outcome<unknown>) =>
  r.ok
    ? `ok ${JSON.stringify(r.value)} after ~${r.ms} ms`
    : `${isKeelError(r.error) ? `${r.error.code}: ${r.error.message}` : String(r.error)} after ~${r.ms} ms`;
const check = (cond: boolean, what: string) => {
  if (!cond) throw new Error(`faults.ts: ${what}`);
};
const failed = (r: Outcome<unknown>, code: string, message: string) =>
  !r.ok && isKeelError(r.error) && r.error.code === code && r.error.message === message;

// --- 1. Latency: 100 ms of work plus two 1-5 ms hops. -----------------------------------------
const r1 = await drive(client.call(inventory, "reserve", { sku: "a", qty: 1 }));
console.log("1. with latency:        ", describe(r1));
check(r1.ok && r1.ms >= 100 && r1.ms <= 115, "latency");

// --- 2. Partition: calls time out; after ~1 s the peers are dropped; healing rediscovers. ---
network.partition(["client"], ["inv-1", "inv-2", "inv-3"]);
const r2 = await drive(client.call(inventory, "reserve", { sku: "a", qty: 1 }, { timeoutMs: 300 }));
console.log("2. partitioned:         ", describe(r2));
check(
  !r2.ok && isKeelError(r2.error) && r2.error.code === "DEADLINE_EXCEEDED",
  "partition -> deadline",
);
await env.advance(1_000); // > failure timeout (700 ms) + heartbeat interval (200 ms)
console.log("   client now knows:    ", client.registry.nodes().join(", "));
const r2b = await drive(client.call(inventory, "reserve", { sku: "a", qty: 1 }));
console.log("   call now:            ", describe(r2b));
check(
  failed(r2b, "UNAVAILABLE", "no endpoint for inventory@1") && r2b.ms === 0,
  "fast UNAVAILABLE",
);
network.heal();
await env.advance(500); // heartbeats from strangers trigger announcements: rediscovered
console.log("   healed, client knows:", client.registry.nodes().sort().join(", "));
check(client.registry.endpoints("inventory", 1).length === 3, "rediscovery after heal");

// --- 3. Crash while serving an idempotent action: fail over after detection. -----------------
started.length = 0;
const reserve = client.call(inventory, "reserve", { sku: "b", qty: 2 });
await env.advance(20);
const victim = started[0]!;
nodes.get(victim)?.crash(); // the process dies: no reply, no leave frame
const r3 = await drive(reserve);
console.log(
  `3. ${victim} crashed (reserve):`,
  describe(r3),
  `| failovers: ${client.stats.failovers}`,
);
check(r3.ok && r3.ms > 600 && client.stats.failovers === 1, "idempotent failover");

// --- 4. The same with a non-idempotent action: the caller is told, nothing runs twice. -------
await boot(victim); // a restarted process: a new node under the same id
await env.advance(50);
started.length = 0;
const charge = client.call(inventory, "charge", { orderId: "o-1" }, { balancer: "round-robin" });
await env.advance(20);
const victim2 = started[0]!;
nodes.get(victim2)?.crash();
const r4 = await drive(charge);
console.log(`4. ${victim2} crashed (charge): `, describe(r4));
check(failed(r4, "UNAVAILABLE", `node '${victim2}' failed before replying`), "no failover");
check(started.length === 1, "charge ran once");

// ...and when the process comes back at once, its first announce gives it away: the calls
// pending to its earlier life fail now, not after the failure timeout.
await boot(victim2);
await env.advance(50);
started.length = 0;
changes.length = 0;
const charge2 = client.call(inventory, "charge", { orderId: "o-2" }, { balancer: "round-robin" });
await env.advance(20);
const victim3 = started[0]!;
nodes.get(victim3)?.crash();
await boot(victim3); // restarted under the same id, with a new incarnation
const r4b = await drive(charge2);
console.log(`   ${victim3} restarted (charge):`, describe(r4b));
check(failed(r4b, "UNAVAILABLE", `node '${victim3}' restarted before replying`), "restart");
check(r4b.ms <= 10, "a restart is recognised at once");
check(
  changes.some((e) => e.kind === "node-down" && e.node === victim3 && e.reason === "restarted"),
  "registry reports the restart",
);

// --- 5. Graceful stop: in-flight work finishes, nothing is lost, new calls go elsewhere. -----
// On the same random-latency links: they keep order, so the leave never overtakes a reply.
await env.advance(50);
started.length = 0;
const inflight = client.call(inventory, "charge", { orderId: "o-3" });
await env.advance(20);
const leaving = nodes.get(started[0]!)!;
const stopped = leaving.stop(); // draining: refuses new work, finishes what it has
const r5 = await drive(inflight);
await stopped;
const r5b = await drive(client.call(inventory, "charge", { orderId: "o-4" }));
console.log(`5. ${leaving.id} stopped (charge):`, describe(r5), "| next call:", describe(r5b));
check(r5.ok && r5b.ok && r5b.value.node !== leaving.id, "graceful stop");
await boot(leaving.id);
await env.advance(50);

// --- 6. A drain cut short: work still running when the grace period ends is answered -------
// UNAVAILABLE by the stopping node itself. An idempotent call then fails over; others fail.
started.length = 0;
const key = { balancer: "consistent-hash", hashKey: "order-o-5" } as const; // both on one node
const cutReserve = client.call(inventory, "reserve", { sku: "c", qty: 1 }, key);
const cutCharge = client.call(inventory, "charge", { orderId: "o-5" }, key);
await env.advance(20);
const cut = nodes.get(started[0]!)!;
const failoversBefore = client.stats.failovers;
void cut.stop({ graceMs: 30 }); // 30 ms of grace for 100 ms of work
const [r6a, r6b] = await Promise.all([drive(cutReserve), drive(cutCharge)]);
console.log(`6. ${cut.id} stopped, 30 ms grace:`);
console.log(
  "   reserve:",
  describe(r6a),
  `| failovers: ${client.stats.failovers - failoversBefore}`,
);
console.log("   charge: ", describe(r6b));
check(r6a.ok && r6a.value.node !== cut.id, "the idempotent call failed over");
check(client.stats.failovers - failoversBefore === 1, "one failover");
check(
  failed(r6b, "UNAVAILABLE", `node '${cut.id}' stopped before the request finished`),
  "the non-idempotent call is told",
);

// --- 7. Links that reorder: `reorder: true` lets frames overtake each other. A stopping node --
// replies, then sends `leave`; here the leave often arrives first. The caller drops the node at
// once but gives its last replies the failure timeout to land, so every call still completes.
const ledger = defineService("ledger").action("post", {
  input: z.object({ entry: z.number() }),
  output: z.object({ entry: z.number() }),
  handler: async (entry, ctx) => {
    await ctx.env.timers.sleep(20, ctx.signal);
    return entry;
  },
});
let overtaken = 0;
let rounds = 0;
// Run stops until the leave has overtaken a reply three times (bounded: each stop is a coin toss).
for (let i = 1; i <= 64 && overtaken < 3; i++) {
  rounds = i;
  const id = `ledger-${i}`;
  network.setLink(id, "client", { latency: { kind: "uniform", min: 1, max: 80 }, reorder: true });
  const n = await boot(id, [ledger]);
  await env.advance(200); // discovered
  let replied = false;
  const post = client.call(ledger, "post", { entry: i });
  void post.then(() => {
    replied = true;
  });
  const off = client.registry.onChange((e) => {
    if (e.kind === "node-down" && e.node === id && !replied) overtaken++;
  });
  await env.advance(10); // the request is running on the ledger node
  const stopping = n.stop(); // waits for the handler, replies, then leaves
  const r = await drive(post);
  await stopping;
  await env.advance(1_000);
  off();
  check(r.ok && r.value.entry === i, `post ${i} completed`);
}
console.log(`7. reorder: true: the leave overtook the reply in ${overtaken} of ${rounds} stops;`);
console.log(`   all ${rounds} calls completed`);
check(overtaken > 0, "some leave overtook its reply");

console.log(`\nnetwork: ${JSON.stringify(network.stats)}`);
for (const n of nodes.values()) await n.stop();
console.log("ok");
