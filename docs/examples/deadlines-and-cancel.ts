/**
 * Deadlines and cancellation across hops, on virtual time.
 *
 * - A call's remaining budget travels with it; each hop spends some and passes on the rest.
 * - When the deadline passes, the caller gets DEADLINE_EXCEEDED and the callee's ctx.signal fires.
 * - Aborting a call's signal cancels the callee, and the callee's own downstream calls.
 *
 * Run from the repository root: npx node docs/examples/deadlines-and-cancel.ts
 */
import {
  type Context,
  createInProcessNetwork,
  createNode,
  createVirtualEnv,
  defineService,
  hasCode,
  isKeelError,
  silentLogger,
} from "@keel/core";
import { z } from "zod";

const env = createVirtualEnv({ seed: 7 });
// Every frame takes exactly 10 ms of virtual time on the wire.
const network = createInProcessNetwork({ env, faults: { latency: { kind: "fixed", ms: 10 } } });

/** What the handlers saw, for the checks at the end. */
const seen: string[] = [];
const note = (line: string) => {
  seen.push(line);
  console.log(`  [t=${env.clock.now()}] ${line}`);
};

/** The code of a KeelError, or a description of anything else. */
const codeOf = (err: unknown): string => (isKeelError(err) ? err.code : String(err));

/** Reports when a handler's ctx.signal fires, and why (its reason is a KeelError). */
function watch(ctx: Context, who: string): void {
  ctx.signal.addEventListener("abort", () => {
    note(`${who}: ctx.signal aborted with ${codeOf(ctx.signal.reason)}`);
  });
}

/** Records when a promise settles (in virtual time) and how, without ever rejecting. */
async function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown; at: number }> {
  try {
    const value = await promise;
    return { value, at: env.clock.now() };
  } catch (error) {
    return { error, at: env.clock.now() };
  }
}

const db = defineService("db").action("query", {
  input: z.object({ workMs: z.number() }),
  output: z.object({ rows: z.number() }),
  handler: async ({ workMs }, ctx) => {
    note(`db.query: ${ctx.remainingMs()} ms left on arrival`);
    watch(ctx, "db.query");
    // Pass ctx.signal down: the sleep (your I/O) stops as soon as the call is abandoned.
    await ctx.env.timers.sleep(workMs, ctx.signal);
    return { rows: 3 };
  },
});

const api = defineService("api").action("report", {
  input: z.object({ prepareMs: z.number(), queryMs: z.number() }),
  output: z.object({ rows: z.number() }),
  handler: async ({ prepareMs, queryMs }, ctx) => {
    note(`api.report: ${ctx.remainingMs()} ms left on arrival`);
    watch(ctx, "api.report");
    await ctx.env.timers.sleep(prepareMs, ctx.signal);
    // ctx.call inherits what is left of this request's deadline (and its cancellation).
    return ctx.call(db, "query", { workMs: queryMs });
  },
});

const opts = { env, logger: silentLogger };
const nodes = [
  createNode({ ...opts, id: "client", transport: network.transport("client") }),
  createNode({ ...opts, id: "api-1", transport: network.transport("api-1"), services: [api] }),
  createNode({ ...opts, id: "db-1", transport: network.transport("db-1"), services: [db] }),
];
const [client] = nodes;
if (client === undefined) throw new Error("unreachable");
for (const n of nodes) await n.start();
await env.advance(50); // let announcements cross the 10 ms links
console.log("client sees:", client.registry.nodes().sort().join(", "));

// --- 1. The budget travels: 300 ms at the client, minus 50 ms spent in api.report. ---------
console.log("\n1. a 300 ms budget across two hops");
let t0 = env.clock.now();
const ok = settle(client.call(api, "report", { prepareMs: 50, queryMs: 20 }, { timeoutMs: 300 }));
await env.advance(200);
const first = await ok;
const result = first.value;
const firstMs = first.at - t0;
console.log(`  -> ${result?.rows} rows after ${firstMs} ms (virtual)`);

// --- 2. The deadline passes: the caller stops waiting and the callees are told. ------------
console.log("\n2. a 100 ms budget for 150 ms of work");
t0 = env.clock.now();
const late = settle(
  client.call(api, "report", { prepareMs: 20, queryMs: 150 }, { timeoutMs: 100 }),
);
await env.advance(300);
const second = await late;
const lateErr = second.error;
const secondMs = second.at - t0;
console.log(`  -> caller got ${codeOf(lateErr)} after ${secondMs} ms`);

// --- 3. Cancel: abort the signal and the whole call tree stops. -----------------------------
console.log("\n3. cancel after 60 ms");
const controller = new AbortController();
t0 = env.clock.now();
const cancelled = settle(
  client.call(api, "report", { prepareMs: 20, queryMs: 1_000 }, { signal: controller.signal }),
);
await env.advance(60);
controller.abort();
const third = await cancelled;
const cancelErr = third.error;
const thirdMs = third.at - t0;
console.log(`  -> caller got ${codeOf(cancelErr)} after ${thirdMs} ms`);
await env.advance(100); // the cancel frame reaches api-1, which cancels its call to db-1

for (const n of nodes) await n.stop();

// --- Checks: exit non-zero if any of this did not hold. --------------------------------------
const expect = (line: string) => {
  if (!seen.includes(line)) throw new Error(`expected to see: ${line}\nsaw:\n${seen.join("\n")}`);
};
// 10 ms wire + 50 ms prepare + 10 + 20 ms query + 10 + 10 ms back: 110 ms of virtual time.
if (result?.rows !== 3 || firstMs !== 110) throw new Error("call 1 failed");
if (secondMs !== 100 || thirdMs !== 60) throw new Error("the caller did not stop waiting on time");
expect("api.report: 300 ms left on arrival");
expect("db.query: 250 ms left on arrival"); // 300 - 50 ms of prepare work (wire time is not deducted)
expect("db.query: ctx.signal aborted with DEADLINE_EXCEEDED");
expect("db.query: ctx.signal aborted with CANCELLED");
expect("api.report: ctx.signal aborted with CANCELLED");
if (!hasCode(lateErr, "DEADLINE_EXCEEDED") || !hasCode(cancelErr, "CANCELLED")) {
  throw new Error("wrong errors");
}
console.log("\nok");
