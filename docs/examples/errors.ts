/**
 * Errors: every failure is a KeelError with a code, a retryable flag and JSON-safe details.
 * Shows CONFIGURATION, FAILED_PRECONDITION, INVALID_ARGUMENT (with the path), NOT_FOUND,
 * UNAVAILABLE (and why a handler's error never says "not processed"), INTERNAL (with the
 * request id the server logged) and PROTOCOL, as a caller on another node sees them.
 *
 * Run from the repository root: npx node docs/examples/errors.ts
 */
import {
  createInProcessNetwork,
  createJsonLogger,
  createNode,
  createVirtualEnv,
  defineService,
  type ErrorCode,
  isKeelError,
  KeelError,
  silentLogger,
} from "@keel/core";
import { z } from "zod";

const env = createVirtualEnv({ seed: 5 });
const network = createInProcessNetwork({ env });

/** Awaits `promise` and returns the KeelError it rejects with; throws if it resolves. */
async function failure(promise: Promise<unknown>): Promise<KeelError> {
  try {
    await promise;
  } catch (err) {
    if (isKeelError(err)) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}
function expectCode(err: KeelError, code: ErrorCode, label: string): void {
  const details = err.details === undefined ? "" : ` details=${JSON.stringify(err.details)}`;
  console.log(
    `${label}\n   ${err.code} (retryable: ${err.retryable}, remote: ${err.remote}): ${err.message}${details}`,
  );
  if (err.code !== code) throw new Error(`${label}: expected ${code}, got ${err.code}`);
}

// --- CONFIGURATION: bad definitions fail at once, at definition time. ------------------------
try {
  defineService("order service"); // spaces are not allowed in service names
  throw new Error("expected CONFIGURATION");
} catch (err) {
  if (!isKeelError(err)) throw err;
  expectCode(err, "CONFIGURATION", "1. defineService('order service')");
}
try {
  // Node options are checked by createNode, the default balancer included.
  createNode({ id: "x", env, transport: network.transport("x"), balancer: "fastest" as "p2c" });
  throw new Error("expected CONFIGURATION");
} catch (err) {
  if (!isKeelError(err)) throw err;
  expectCode(err, "CONFIGURATION", "   createNode({ balancer: 'fastest' })");
}

const orderIn = z.object({
  customer: z.string().min(1),
  items: z.array(z.object({ sku: z.string(), qty: z.number().int().positive() })).min(1),
});
const known = new Set(["o-1"]);

// The server's definition of orders@1.
const orders = defineService("orders", { version: 1 })
  .action("create", {
    input: orderIn,
    output: z.object({ orderId: z.string() }),
    handler: () => ({ orderId: "o-2" }),
  })
  .action("get", {
    input: z.object({ orderId: z.string() }),
    output: z.object({ orderId: z.string(), status: z.string() }),
    handler: ({ orderId }) => {
      // Handlers signal domain failures with a KeelError; it reaches the caller as is.
      if (!known.has(orderId))
        throw new KeelError("NOT_FOUND", `order ${orderId} not found`, { details: { orderId } });
      return { orderId, status: "paid" };
    },
  })
  .action("total", {
    input: z.object({ orderId: z.string() }),
    output: z.object({ cents: z.number() }),
    handler: ({ orderId }) => {
      const lines = new Map<string, number[]>().get(orderId); // a bug: the lines were never loaded
      // Any exception that is not a KeelError becomes INTERNAL; its details stay on the server.
      return { cents: lines!.reduce((sum, cents) => sum + cents, 0) };
    },
  })
  .action("status", {
    input: z.object({ orderId: z.string() }),
    output: z.object({ status: z.enum(["open", "paid"]) }),
    // A bug of another kind: a result the output schema rejects (also INTERNAL).
    handler: () => ({ status: "shipped" as "paid" }),
  });

// A newer client build of orders@1 that also knows an action this server does not have.
const ordersNewer = orders.action("cancel", {
  input: z.object({ orderId: z.string() }),
  output: z.object({ cancelled: z.boolean() }),
  handler: () => ({ cancelled: true }),
});
const billing = defineService("billing").action("refund", {
  input: z.object({ orderId: z.string() }),
  output: z.object({ ok: z.boolean() }),
  handler: () => ({ ok: true }),
});
// Hosted on two nodes; its handler has a side effect, then calls billing, which nobody hosts.
let refundsStarted = 0;
const returns = defineService("returns").action("accept", {
  input: z.object({ orderId: z.string() }),
  output: z.object({ ok: z.boolean() }),
  handler: async ({ orderId }, ctx) => {
    refundsStarted++; // e.g. the returned parcel is booked in
    return ctx.call(billing, "refund", { orderId }); // UNAVAILABLE, notProcessed: not caught
  },
});

// The server logs what it hides from callers; capture its log lines to show that.
const serverLog: string[] = [];
const server = createNode({
  id: "server",
  env,
  transport: network.transport("server"),
  services: [orders],
  logger: createJsonLogger({ level: "warn", write: (line) => serverLog.push(line) }),
});
const app = createNode({
  id: "app",
  env,
  transport: network.transport("app"),
  logger: silentLogger,
});
const desks = ["desk-1", "desk-2"].map((id) =>
  createNode({
    id,
    env,
    transport: network.transport(id),
    services: [returns],
    logger: silentLogger,
  }),
);
for (const n of [server, app, ...desks]) await n.start();
await app.waitForEndpoints(orders);
await app.waitForEndpoints(returns, 2);

// --- FAILED_PRECONDITION: a node starts once. --------------------------------------------------
expectCode(await failure(server.start()), "FAILED_PRECONDITION", "2. start() a running node");

// --- INVALID_ARGUMENT: the input failed the action's schema; details.issues has each path. --
const bad = await failure(
  app.call(orders, "create", {
    customer: "ada",
    items: [
      { sku: "a", qty: 1 },
      { sku: "b", qty: 0 },
    ],
  }),
);
expectCode(bad, "INVALID_ARGUMENT", "3. create with qty 0 in the second item");
const issues = bad.details?.["issues"] as Array<{ path: string; message: string }> | undefined;
if (issues?.[0]?.path !== "items.1.qty") throw new Error("expected the path items.1.qty");

// --- NOT_FOUND: thrown by a handler, or an action the serving node does not have. ------------
expectCode(
  await failure(app.call(orders, "get", { orderId: "o-9" })),
  "NOT_FOUND",
  "4. get an unknown order",
);
expectCode(
  await failure(app.call(ordersNewer, "cancel", { orderId: "o-1" })),
  "NOT_FOUND",
  "5. call an action the server's orders@1 lacks",
);

// --- UNAVAILABLE: no node hosts the service (retryable; nothing was processed). --------------
const unavailable = await failure(app.call(billing, "refund", { orderId: "o-1" }));
expectCode(unavailable, "UNAVAILABLE", "6. call a service nobody hosts");
if (unavailable.details?.["notProcessed"] !== true || !unavailable.retryable)
  throw new Error("notProcessed");

// ...but a handler that ran never replies "not processed": its node strips the flag from the
// downstream error, so the caller does not run the (non-idempotent) handler again elsewhere.
const forwarded = await failure(app.call(returns, "accept", { orderId: "o-1" }));
expectCode(forwarded, "UNAVAILABLE", "7. a handler lets a downstream 'no endpoint' escape");
console.log(`   handler runs: ${refundsStarted}, failovers: ${app.stats.failovers}`);
if (forwarded.details?.["notProcessed"] !== undefined || refundsStarted !== 1)
  throw new Error("a handler's error must not say notProcessed");
if (app.stats.failovers !== 0) throw new Error("no failover after a handler ran");

// --- INTERNAL: the handler threw; the caller gets a code, a short message and the request id. -
/** The server's "handler failed" log line for a request id. */
function logged(requestId: unknown): {
  msg?: string;
  requestId?: string;
  err?: { message?: string };
} {
  for (const line of serverLog) {
    const entry = JSON.parse(line) as {
      msg?: string;
      requestId?: string;
      err?: { message?: string };
    };
    if (entry.msg === "handler failed" && entry.requestId === requestId) return entry;
  }
  throw new Error(`no "handler failed" line for request ${String(requestId)}`);
}
const internal = await failure(app.call(orders, "total", { orderId: "o-1" }));
expectCode(internal, "INTERNAL", "8. a handler bug");
const line = logged(internal.details?.["requestId"]);
console.log(
  `   the server logged "${line.msg}" for request ${line.requestId}: ${line.err?.message}`,
);
if (internal.cause !== undefined || !internal.remote)
  throw new Error("remote errors carry no cause");

// A result that fails the output schema: INTERNAL too, with the issues, logged the same way.
const output = await failure(app.call(orders, "status", { orderId: "o-1" }));
expectCode(output, "INTERNAL", "9. a result the output schema rejects");
console.log(`   logged as "${logged(output.details?.["requestId"]).msg}" as well`);
if (!Array.isArray(output.details?.["issues"])) throw new Error("output issues");

// --- PROTOCOL: a frame over the size limit is refused before it is sent. --------------------
const big = "x".repeat(2 * 1024 * 1024); // 2 MiB: over the default 1 MiB frame limit
const tooBig = await failure(app.call(orders, "get", { orderId: big }));
expectCode(tooBig, "PROTOCOL", "10. a 2 MiB request");

// ...and garbage on the wire is refused, counted and answered, without hurting the node.
network.inject("app", "server", new TextEncoder().encode("{not json"));
network.inject(
  "app",
  "server",
  new TextEncoder().encode(JSON.stringify({ v: 2, k: "req", id: "r1", from: "app" })),
);
await env.flush();
// The server answered both: a PROTOCOL reply for request r1, a "perr" frame for the other.
console.log(
  `11. two malformed frames injected: server.stats.protocolErrors = ${server.stats.protocolErrors}, app.stats.protocolErrors = ${app.stats.protocolErrors}`,
);
const stillOk = await app.call(orders, "get", { orderId: "o-1" });
console.log(`    the server still serves: ${JSON.stringify(stillOk)}`);
if (
  server.stats.protocolErrors !== 2 ||
  app.stats.protocolErrors !== 1 ||
  stillOk.status !== "paid"
)
  throw new Error("PROTOCOL handling");

// --- Handling errors: branch on the code. -----------------------------------------------------
function advice(err: unknown): string {
  if (!isKeelError(err)) return "not from Keel: rethrow";
  switch (err.code) {
    case "INVALID_ARGUMENT":
      return "fix the input (see details.issues)";
    case "NOT_FOUND":
      return "report it to the user";
    case "INTERNAL":
      return `report a bug (request ${String(err.details?.["requestId"])})`;
    default:
      return err.retryable ? "retry later, with backoff" : "give up and report";
  }
}
console.log(`12. advice: ${advice(bad)} | ${advice(unavailable)} | ${advice(internal)}`);

for (const n of [app, ...desks, server]) await n.stop();
console.log("\nok");
