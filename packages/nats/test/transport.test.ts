import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  createRealEnv,
  defineService,
  type Envelope,
  type InboundFrame,
  isKeelError,
  silentLogger,
} from "@keel/core";
import { msgpackCodec } from "@keel/core/msgpack";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Packr } from "msgpackr";
import { z } from "zod";
import { createNatsTransport, type NatsTransportStatus } from "../src/index.ts";
import { type NatsServer, startNatsServer } from "./nats-server.ts";
import { echo, type NatsNode, natsNode, paid, stopAll, waitFor } from "./support.ts";

const packr = new Packr({ useRecords: false });

/** A free loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address !== null && typeof address === "object");
  return address.port;
}

describe("NATS transport: two Keel nodes on a private server", { timeout: 60_000 }, () => {
  let server: NatsServer;
  before(async () => {
    server = await startNatsServer();
  });
  after(async () => {
    await server?.[Symbol.asyncDispose]();
  });

  it("discovers, calls with types, and carries emit and broadcast events", async () => {
    const got: Array<{ node: string; orderId: string; from: string }> = [];
    const ledger = (id: string) =>
      defineService("ledger").on(paid, ({ orderId }, ctx) => {
        got.push({ node: id, orderId, from: ctx.from });
      });
    const a = natsNode(server.url, "a.eu:1", [echo, ledger("a.eu:1")]);
    const b = natsNode(server.url, "b", [ledger("b")]);
    const nodes = [a, b];
    try {
      await a.node.start();
      await b.node.start();
      await b.node.waitForEndpoints(echo, 1, 5000);
      assert.deepEqual(b.node.registry.nodes().sort(), ["a.eu:1", "b"]);

      const reply = await b.node.call(echo, "say", { text: "hello" }, { timeoutMs: 2000 });
      assert.deepEqual(reply, { text: "hello", node: "a.eu:1" });
      const client = b.node.client(echo, { timeoutMs: 2000 });
      assert.equal((await client.say({ text: "typed" })).text, "typed");

      const failed = await client.fail({}).catch((e: unknown) => e);
      assert.ok(isKeelError(failed), "a handler error arrives as a KeelError");
      assert.equal(failed.code, "INTERNAL");

      // broadcast: every subscriber on every node, the emitter's own included
      b.node.broadcast(paid, { orderId: "o-1" });
      await waitFor(() => got.filter((g) => g.orderId === "o-1").length === 2, 3000, "broadcast");
      assert.deepEqual(
        got
          .filter((g) => g.orderId === "o-1")
          .map((g) => g.node)
          .sort(),
        ["a.eu:1", "b"],
      );
      // emit: one node of the subscribing service
      b.node.emit(paid, { orderId: "o-2" });
      await waitFor(() => got.some((g) => g.orderId === "o-2"), 3000, "emit");
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(got.filter((g) => g.orderId === "o-2").length, 1);

      assert.equal(a.transport.nodeSubject, "keel.node.a_2Eeu_3A1");
      assert.equal(a.transport.status, "connected");
      assert.ok(a.transport.stats.framesReceived > 0 && b.transport.stats.framesSent > 0);
      assert.equal(a.transport.stats.droppedDisconnected, 0);
    } finally {
      await stopAll(nodes);
    }
  });

  it("answers malformed frames from a plain NATS client with PROTOCOL and keeps serving", async () => {
    const a = natsNode(server.url, "a", [echo]);
    const b = natsNode(server.url, "b");
    let raw: NatsConnection | undefined;
    try {
      await a.node.start();
      await b.node.start();
      await b.node.waitForEndpoints(echo, 1, 5000);
      raw = await connect({ servers: server.url });
      const answers: Envelope[] = [];
      const garbage: Uint8Array[] = [];
      raw.subscribe("keel.node.intruder", {
        callback: (_err, msg) => {
          try {
            answers.push(msgpackCodec.decode(msg.data, 1 << 20));
          } catch {
            garbage.push(msg.data);
          }
        },
      });
      await raw.flush();
      const before = a.node.stats.protocolErrors;
      // not MessagePack at all: refused and counted; nobody to answer (no readable `from`)
      raw.publish(a.transport.nodeSubject, new Uint8Array([0xc1, 0xff, 0x00, 0x13]));
      // an event without a name: a perr goes back to the sender it names
      raw.publish(a.transport.nodeSubject, packr.pack({ v: 1, k: "evt", from: "intruder" }));
      // a request without a service: answered by id with a PROTOCOL error
      raw.publish(
        a.transport.nodeSubject,
        packr.pack({ v: 1, k: "req", from: "intruder", id: "r1" }),
      );
      await waitFor(() => answers.length >= 2, 3000, "answers to the malformed frames");
      assert.equal(garbage.length, 0);
      const perr = answers.find((f) => f.k === "perr");
      assert.ok(perr !== undefined && perr.k === "perr");
      assert.equal(perr.err.code, "PROTOCOL");
      assert.equal(perr.from, "a");
      const res = answers.find((f) => f.k === "res");
      assert.ok(res !== undefined && res.k === "res" && !res.ok);
      assert.equal(res.id, "r1");
      assert.equal(res.err.code, "PROTOCOL");
      assert.equal(a.node.stats.protocolErrors - before, 3);

      // the node is undisturbed
      const reply = await b.node.call(echo, "say", { text: "still here" }, { timeoutMs: 2000 });
      assert.equal(reply.node, "a");
      assert.equal(a.node.state, "ready");
    } finally {
      await raw?.close();
      await stopAll([a, b]);
    }
  });

  it("never hands a node its own broadcasts, and delivers frames it sends to itself", async () => {
    const t = createNatsTransport({ nodeId: "solo", servers: server.url, logger: silentLogger });
    const other = createNatsTransport({
      nodeId: "other",
      servers: server.url,
      logger: silentLogger,
    });
    await t.connect();
    await other.connect();
    const received: InboundFrame[] = [];
    const otherReceived: InboundFrame[] = [];
    const loop = (async () => {
      for await (const f of t) received.push(f);
    })();
    const otherLoop = (async () => {
      for await (const f of other) otherReceived.push(f);
    })();
    try {
      t.broadcast(new Uint8Array([1]));
      t.send("solo", new Uint8Array([2]));
      t.send("other", new Uint8Array([3]));
      await waitFor(() => otherReceived.length === 2, 3000, "the other node's frames");
      await t.connection().flush();
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(
        received.map((f) => [...f.frame]),
        [[2]],
      );
      assert.deepEqual(otherReceived.map((f) => [...f.frame]).sort(), [[1], [3]]);
      assert.equal(
        received[0]?.from,
        undefined,
        "the sender is in the envelope, not the transport",
      );
    } finally {
      await t.close();
      await other.close();
      await loop;
      await otherLoop;
    }
  });

  it("close() drains, ends the iteration, reports disconnected, and later frames are dropped", async () => {
    const t = createNatsTransport({ nodeId: "closing", servers: server.url, logger: silentLogger });
    const statuses: NatsTransportStatus[] = [];
    const listener = t.onStatus((s) => statuses.push(s));
    assert.equal(t.status, "disconnected");
    assert.throws(() => t.connection(), { code: "FAILED_PRECONDITION" });
    await t.connect();
    await assert.rejects(t.connect(), { code: "FAILED_PRECONDITION" });
    assert.equal(t.status, "connected");
    assert.equal(t.maxPayload, 1024 * 1024);
    let ended = false;
    const loop = (async () => {
      for await (const _ of t) {
        // nothing arrives
      }
      ended = true;
    })();
    await t.close();
    await loop;
    assert.ok(ended);
    assert.equal(t.status, "disconnected");
    assert.deepEqual(statuses, ["connected", "disconnected"]);
    t.send("anyone", new Uint8Array([1]));
    t.broadcast(new Uint8Array([1]));
    assert.equal(t.stats.droppedDisconnected, 2);
    await t.close(); // twice is fine
    // and it can connect again afterwards
    await t.connect();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(t.status, "connected");
    await t.close();
    assert.deepEqual(statuses, ["connected", "disconnected", "connected", "disconnected"]);
    listener[Symbol.dispose]();
  });

  it("sends a burst of frames of any size to several subjects intact, counted by the connection too", async () => {
    const t = createNatsTransport({ nodeId: "burst", servers: server.url, logger: silentLogger });
    await t.connect();
    const watcher = await connect({ servers: server.url });
    try {
      const got: Array<{ subject: string; data: number[] }> = [];
      watcher.subscribe(`${t.broadcastSubject.split(".")[0]}.>`, {
        callback: (_err, msg) => {
          got.push({ subject: msg.subject, data: [...msg.data] });
        },
      });
      await watcher.flush();
      // Sizes across every decimal length of the size field, and an empty frame.
      const sizes = [0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10_000, 100_000];
      const sent: Array<{ subject: string; data: number[] }> = [];
      for (const [i, size] of sizes.entries()) {
        const data = Array.from({ length: size }, (_, j) => (i * 31 + j) & 0xff);
        if (i % 3 === 2) {
          t.broadcast(new Uint8Array(data));
          sent.push({ subject: t.broadcastSubject, data });
        } else {
          const to = i % 3 === 0 ? "peer-a" : "peer-b";
          t.send(to, new Uint8Array(data));
          sent.push({ subject: `${t.broadcastSubject.split(".")[0]}.node.${to}`, data });
        }
      }
      await waitFor(() => got.length === sizes.length, 3000, "the burst");
      assert.deepEqual(got, sent);
      const bytes = sizes.reduce((a, b) => a + b, 0);
      assert.equal(t.stats.framesSent, sizes.length);
      assert.equal(t.stats.bytesSent, bytes);
      const own = t.connection().stats();
      assert.equal(own.outMsgs, sizes.length);
      assert.equal(own.outBytes, bytes);
    } finally {
      await watcher.close();
      await t.close();
    }
  });

  it("refuses frames over the server's max_payload: dropped and counted, never thrown", async () => {
    await using small = await startNatsServer({ config: "max_payload: 4096\n", jetstream: false });
    const t = createNatsTransport({ nodeId: "big", servers: small.url, logger: silentLogger });
    await t.connect();
    try {
      assert.equal(t.maxPayload, 4096);
      t.send("x", new Uint8Array(5000));
      t.broadcast(new Uint8Array(4097));
      t.send("x", new Uint8Array(4096));
      await new Promise((resolve) => setImmediate(resolve)); // frames leave in batches, on a tick
      assert.equal(t.stats.droppedOversized, 2);
      assert.equal(t.stats.framesSent, 1);
    } finally {
      await t.close();
    }
  });

  it("fails to start with a coded error when no server answers", async () => {
    const port = await closedPort();
    const n = natsNode(`nats://127.0.0.1:${port}`, "lonely", [], {
      transport: { connectTimeoutMs: 1000 },
    });
    const err = await n.node.start().catch((e: unknown) => e);
    assert.ok(isKeelError(err), `expected a KeelError, got ${String(err)}`);
    assert.equal(err.code, "UNAVAILABLE");
    assert.equal(n.node.state, "created");
    assert.equal(n.transport.status, "disconnected");
  });

  it("checks its options", () => {
    assert.throws(() => createNatsTransport({ nodeId: "" }), { code: "CONFIGURATION" });
    assert.throws(() => createNatsTransport({ nodeId: "a", cluster: "bad prefix" }), {
      code: "CONFIGURATION",
    });
    assert.throws(() => createNatsTransport({ nodeId: "a", cluster: "a..b" }), {
      code: "CONFIGURATION",
    });
    assert.throws(() => createNatsTransport({ nodeId: "a", reconnect: { initialDelayMs: -1 } }), {
      code: "CONFIGURATION",
    });
    const t = createNatsTransport({ nodeId: "a", cluster: "acme.prod" });
    assert.equal(t.nodeSubject, "acme.prod.node.a");
    assert.equal(t.broadcastSubject, "acme.prod.all");
  });

  it("keeps clusters with different prefixes apart on one server", async () => {
    const env = createRealEnv();
    const hello = defineService("hello").action("hi", {
      input: z.object({}),
      output: z.object({ node: z.string() }),
      handler: (_, ctx) => ({ node: ctx.node }),
    });
    const nodes: NatsNode[] = [
      natsNode(server.url, "s", [hello], { env, transport: { cluster: "blue" } }),
      natsNode(server.url, "s", [hello], { env, transport: { cluster: "green" } }),
      natsNode(server.url, "c", [], { env, transport: { cluster: "blue" } }),
    ];
    try {
      for (const n of nodes) await n.node.start();
      const caller = nodes[2]!.node;
      await caller.waitForEndpoints(hello, 1, 5000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(caller.registry.nodes().sort(), ["c", "s"]);
      assert.equal((await caller.call(hello, "hi", {}, { timeoutMs: 2000 })).node, "s");
    } finally {
      await stopAll(nodes);
    }
  });
});
