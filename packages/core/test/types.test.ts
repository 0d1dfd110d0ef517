/**
 * Type-level tests: `tsc -b` checks the `expectTypeOf` and `@ts-expect-error` lines; the runner
 * checks that the same calls behave at runtime as their types say.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { expectTypeOf } from "expect-type";
import { z } from "zod";
import {
  type ActionName,
  type CallOptions,
  type Client,
  type Context,
  createInProcessNetwork,
  createNode,
  createVirtualEnv,
  defineEvent,
  defineService,
  type EventContext,
  hasCode,
  type InputOf,
  type KeelNode,
  type OutputOf,
  type PayloadOf,
  silentLogger,
} from "../src/index.ts";

const orderCreated = defineEvent(
  "order.created",
  z.object({ orderId: z.string(), qty: z.string().transform((s) => Number.parseInt(s, 10)) }),
);

// Input and output schemas whose parsed types differ from what goes in.
const createInput = z.object({
  sku: z.string(),
  qty: z.string().transform((s) => Number.parseInt(s, 10)),
});
const orderOutput = z.object({ id: z.string(), total: z.number().transform((n) => n.toFixed(2)) });

/** What a caller sends to `create`. */
type CreateInput = { sku: string; qty: string };
/** What the `create` handler receives. */
type CreateParsed = { sku: string; qty: number };
/** What a caller gets back: the output schema's output. */
type Order = { id: string; total: string };

const seen: Array<{ orderId: string; qty: number }> = [];

const orders = defineService("orders", { version: 1 })
  .action("create", {
    input: createInput,
    output: orderOutput,
    handler: (input, ctx) => {
      expectTypeOf(input).toEqualTypeOf<CreateParsed>();
      expectTypeOf(ctx).toEqualTypeOf<Context>();
      ctx.emit(orderCreated, { orderId: `o-${input.sku}`, qty: String(input.qty) });
      // The handler returns the output schema's input: `total` is still a number here.
      return { id: `o-${input.sku}`, total: input.qty * 2.5 };
    },
  })
  .action("get", {
    input: z.object({ id: z.string() }),
    output: orderOutput,
    idempotent: true,
    handler: async ({ id }, ctx) => {
      expectTypeOf(ctx.signal).toEqualTypeOf<AbortSignal>();
      return { id, total: 1 };
    },
  })
  .on(orderCreated, (payload, ctx) => {
    expectTypeOf(payload).toEqualTypeOf<{ orderId: string; qty: number }>();
    expectTypeOf(ctx).toEqualTypeOf<EventContext>();
    seen.push(payload);
  });

type Orders = typeof orders;

function startNode(): { node: KeelNode; flush: () => Promise<void> } {
  const env = createVirtualEnv({ seed: "types" });
  const network = createInProcessNetwork({ env });
  const node = createNode({
    id: "t",
    env,
    transport: network.transport("t"),
    services: [orders],
    logger: silentLogger,
  });
  return { node, flush: () => env.flush() };
}

const isCode = (code: Parameters<typeof hasCode>[1]) => (err: unknown) => hasCode(err, code);

describe("types inferred from a service definition", () => {
  it("derives inputs and outputs from the schemas", () => {
    expectTypeOf<ActionName<Orders>>().toEqualTypeOf<"create" | "get">();
    expectTypeOf<InputOf<Orders, "create">>().toEqualTypeOf<CreateInput>();
    expectTypeOf<OutputOf<Orders, "create">>().toEqualTypeOf<Order>();
    expectTypeOf<InputOf<Orders, "get">>().toEqualTypeOf<{ id: string }>();
    expectTypeOf<OutputOf<Orders, "get">>().toEqualTypeOf<Order>();
    expectTypeOf<PayloadOf<typeof orderCreated>>().toEqualTypeOf<{
      orderId: string;
      qty: string;
    }>();
    expectTypeOf(orders.name).toEqualTypeOf<"orders">();
    expectTypeOf(orderCreated.name).toEqualTypeOf<"order.created">();
    assert.deepEqual(Object.keys(orders.actions).sort(), ["create", "get"]);
    assert.equal(orders.key, "orders@1");
  });

  it("types the Context a handler receives", () => {
    expectTypeOf<Context["signal"]>().toEqualTypeOf<AbortSignal>();
    expectTypeOf<Context["deadline"]>().toEqualTypeOf<number>();
    expectTypeOf<Context["remainingMs"]>().toEqualTypeOf<() => number>();
    expectTypeOf<Context["idempotencyKey"]>().toEqualTypeOf<string | undefined>();
    expectTypeOf<Context["meta"]>().toEqualTypeOf<Readonly<Record<string, string>>>();
    expectTypeOf<Context>().toHaveProperty("call");
    expectTypeOf<Context>().toHaveProperty("emit");
  });

  it("types node.call and the client, and they behave as typed", async () => {
    const { node, flush } = startNode();
    await node.start();
    try {
      const created = await node.call(orders, "create", { sku: "a", qty: "2" });
      expectTypeOf(created).toEqualTypeOf<Order>();
      expectTypeOf(node.call(orders, "get", { id: "x" })).toEqualTypeOf<Promise<Order>>();
      assert.deepEqual(created, { id: "o-a", total: "5.00" });
      await flush();
      assert.deepEqual(seen, [{ orderId: "o-a", qty: 2 }], "the subscriber got the parsed payload");

      const client = node.client(orders);
      expectTypeOf(client).toEqualTypeOf<Client<Orders>>();
      expectTypeOf<keyof typeof client>().toEqualTypeOf<"create" | "get">();
      expectTypeOf(client.create).toEqualTypeOf<
        (input: CreateInput, options?: CallOptions) => Promise<Order>
      >();
      expectTypeOf(client.get).parameter(0).toEqualTypeOf<{ id: string }>();
      assert.deepEqual(Object.keys(client).sort(), ["create", "get"]);
      assert.deepEqual(await client.get({ id: "g1" }), { id: "g1", total: "1.00" });

      await assert.rejects(
        // @ts-expect-error -- there is no action "cancel"
        node.call(orders, "cancel", { id: "x" }),
        isCode("NOT_FOUND"),
      );
      await assert.rejects(
        // @ts-expect-error -- qty is a string on the wire (the schema's input), not a number
        node.call(orders, "create", { sku: "a", qty: 2 }),
        isCode("INVALID_ARGUMENT"),
      );
      await assert.rejects(
        // @ts-expect-error -- sku is missing
        client.create({ qty: "1" }),
        isCode("INVALID_ARGUMENT"),
      );
      // @ts-expect-error -- the client has no method "cancel"
      assert.equal(client.cancel, undefined);
      assert.throws(
        // @ts-expect-error -- the payload needs orderId and qty as strings
        () => node.emit(orderCreated, { orderId: 1, qty: "1" }),
        isCode("INVALID_ARGUMENT"),
      );
      assert.throws(
        // @ts-expect-error -- emit takes the schema's input: qty is a string
        () => node.broadcast(orderCreated, { orderId: "o", qty: 3 }),
        isCode("INVALID_ARGUMENT"),
      );
    } finally {
      await node.stop();
    }
  });

  it("makes a duplicate action name a type error and a CONFIGURATION error", () => {
    const schema = z.object({ n: z.number() });
    const config = { input: schema, output: schema, handler: (x: { n: number }) => x };
    const base = defineService("dup").action("a", config);
    // The name parameter turns into a readable message type once the name is taken.
    type Taken = Parameters<typeof base.action<"a", typeof schema, typeof schema>>[0];
    type Fresh = Parameters<typeof base.action<"b", typeof schema, typeof schema>>[0];
    expectTypeOf<Taken>().toEqualTypeOf<"action 'a' is already defined">();
    expectTypeOf<Fresh>().toEqualTypeOf<"b">();
    assert.throws(
      // @ts-expect-error -- action 'a' is already defined
      () => base.action("a", config),
      isCode("CONFIGURATION"),
    );
    const grown = base.action("b", config);
    expectTypeOf<ActionName<typeof grown>>().toEqualTypeOf<"a" | "b">();
    assert.deepEqual(Object.keys(grown.actions), ["a", "b"]);
    assert.deepEqual(Object.keys(base.actions), ["a"], "definitions are immutable");
  });

  it("checks handler results against the output schema's input type", () => {
    const out = z.object({ total: z.number().transform((n) => n.toFixed(2)) });
    const ok = defineService("results").action("x", {
      input: z.object({}),
      output: out,
      handler: () => ({ total: 1 }),
    });
    expectTypeOf<OutputOf<typeof ok, "x">>().toEqualTypeOf<{ total: string }>();
    defineService("results").action("x", {
      input: z.object({}),
      output: out,
      // @ts-expect-error -- the handler returns the schema's input, where total is a number
      handler: () => ({ total: "1.00" }),
    });
    assert.equal(ok.actions.x.idempotent, false);
  });
});
