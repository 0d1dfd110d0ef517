/**
 * Quickstart: two nodes on the in-process network, a typed call and a typed client.
 *
 * Run from the repository root: npx node docs/examples/quickstart.ts
 */
import { createInProcessNetwork, createNode, createRealEnv, defineService } from "@keel/core";
import { z } from "zod";

// 1. A service definition is the contract: names, schemas and handlers in one place.
const greeter = defineService("greeter", { version: 1 })
  .action("hello", {
    input: z.object({ name: z.string().min(1) }),
    output: z.object({ message: z.string(), servedBy: z.string() }),
    idempotent: true,
    handler: ({ name }, ctx) => ({ message: `Hello, ${name}!`, servedBy: ctx.node }),
  })
  .action("add", {
    input: z.object({ a: z.number(), b: z.number() }),
    output: z.number(),
    handler: ({ a, b }) => a + b,
  });

// 2. One Env (clock, timers, randomness) and one network for every node in this process.
//    The real Env is what production uses; tests use createVirtualEnv() instead.
const env = createRealEnv();
const network = createInProcessNetwork({ env });

// 3. Node "server" hosts the service; node "app" hosts nothing and only calls.
const server = createNode({
  id: "server",
  env,
  transport: network.transport("server"),
  services: [greeter],
});
const app = createNode({ id: "app", env, transport: network.transport("app") });
await server.start();
await app.start();

// Discovery is asynchronous: wait until "app" has heard of a ready greeter@1.
await app.waitForEndpoints(greeter);
console.log("app knows nodes:", app.registry.nodes().sort().join(", "));

// 4. A typed call: the action name, the input and the result all come from the definition.
//    (`app.call(greeter, "helo", ...)` or `{ name: 42 }` would not compile.)
const reply = await app.call(greeter, "hello", { name: "Ada" });
console.log("call   ->", reply.message, `(served by ${reply.servedBy})`);

// 5. A typed client: one method per action, with default call options.
const client = app.client(greeter, { timeoutMs: 2_000 });
const sum = await client.add({ a: 2, b: 3 });
console.log("client -> 2 + 3 =", sum);

if (reply.message !== "Hello, Ada!" || reply.servedBy !== "server" || sum !== 5) {
  throw new Error("quickstart: unexpected result");
}

// 6. Graceful stop: drain in-flight work, tell the cluster, close the transport.
await app.stop();
await server.stop();
console.log("stopped:", app.state, server.state);
