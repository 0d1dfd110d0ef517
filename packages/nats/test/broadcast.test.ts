import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { defineService } from "@keel/core";
import { msgpackCodec } from "@keel/core/msgpack";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type NatsServer, startNatsServer } from "./nats-server.ts";
import { echo, natsNode, paid, stopAll, waitFor } from "./support.ts";

describe("broadcast events over NATS", { timeout: 30_000 }, () => {
  let server: NatsServer;
  let wire: NatsConnection;

  before(async () => {
    server = await startNatsServer({ jetstream: false });
    wire = await connect({ servers: server.url });
  });
  after(async () => {
    await wire?.close();
    await server?.[Symbol.asyncDispose]();
  });

  it("publishes one message for a broadcast, whatever the number of subscribing nodes", async () => {
    const got: string[] = [];
    const ledger = (id: string) =>
      defineService("ledger").on(paid, ({ orderId }) => {
        got.push(`${id} ${orderId}`);
      });
    const emitter = natsNode(server.url, "emitter", [ledger("emitter")]);
    const subscribers = ["s1", "s2", "s3"].map((id) => natsNode(server.url, id, [ledger(id)]));
    const bystander = natsNode(server.url, "bystander", [echo]);
    const nodes = [emitter, ...subscribers, bystander];
    // Every event frame on the cluster's subjects, as a plain NATS client sees them.
    const seen: string[] = [];
    wire.subscribe("keel.>", {
      callback: (err, msg) => {
        if (err !== null) return;
        const frame = msgpackCodec.decode(msg.data, 1 << 20);
        if (frame.k === "evt") seen.push(msg.subject);
      },
    });
    await wire.flush();
    try {
      for (const n of nodes) await n.node.start();
      await waitFor(
        () => emitter.node.registry.nodes().length === nodes.length,
        5000,
        "every node known to the emitter",
      );

      emitter.node.broadcast(paid, { orderId: "o-1" });
      await waitFor(() => got.length === 4, 3000, "four deliveries");
      // The emitter's own copy is local; every other node gets the one publish on keel.all.
      assert.deepEqual(got.sort(), ["emitter o-1", "s1 o-1", "s2 o-1", "s3 o-1"]);
      await wire.flush();
      await new Promise((resolve) => setTimeout(resolve, 100)); // nothing more is on the way
      assert.deepEqual(seen, ["keel.all"]);
      assert.equal(got.length, 4, "the bystander, subscribed to nothing, delivered nothing");

      // emit still goes to one node of the subscribing service, on that node's subject.
      emitter.node.emit(paid, { orderId: "o-2" });
      await waitFor(() => got.some((g) => g.endsWith("o-2")), 3000, "emit");
      await wire.flush();
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(got.filter((g) => g.endsWith("o-2")).length, 1);
    } finally {
      await stopAll(nodes);
    }
  });
});
