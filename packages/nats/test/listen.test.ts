import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "@keel/core";
import { createNatsTransport } from "../src/index.ts";
import { type NatsServer, startNatsServer } from "./nats-server.ts";
import { waitFor } from "./support.ts";

describe("NATS transport: frames handed to a listener", { timeout: 30_000 }, () => {
  let server: NatsServer;
  before(async () => {
    server = await startNatsServer();
  });
  after(async () => {
    await server?.[Symbol.asyncDispose]();
  });
  /** The transports of two nodes, connected to the suite's server. */
  const connected = async (a: string, b: string) => {
    const t = createNatsTransport({ nodeId: a, servers: server.url, logger: silentLogger });
    const peer = createNatsTransport({ nodeId: b, servers: server.url, logger: silentLogger });
    await t.connect();
    await peer.connect();
    return [t, peer] as const;
  };

  it("delivers frames in order as they arrive, its own on a microtask, and ends when closed", async () => {
    const [t, peer] = await connected("l1", "l2");
    const got: number[] = [];
    const ended = t.listen((frame, from) => {
      assert.equal(from, undefined, "the sender is in the envelope, not the transport");
      got.push(frame[0]!);
    });
    try {
      for (let i = 1; i <= 5; i++) peer.send("l1", new Uint8Array([i]));
      await waitFor(() => got.length === 5, 3000, "five frames");
      assert.deepEqual(got, [1, 2, 3, 4, 5]);
      t.send("l1", new Uint8Array([9]));
      assert.equal(got.length, 5, "a frame to itself is not delivered from inside send()");
      await null;
      assert.deepEqual(got.at(-1), 9);
    } finally {
      await t.close();
      await peer.close();
    }
    await ended;
  });

  it("a listener that throws loses that frame only: the connection keeps reading", async () => {
    const [t, peer] = await connected("t1", "t2");
    const got: number[] = [];
    const ended = t.listen((frame) => {
      if (frame[0] === 1) throw new Error("listener bug");
      got.push(frame[0]!);
    });
    try {
      await null; // direct delivery from here on
      peer.send("t1", new Uint8Array([1]));
      peer.send("t1", new Uint8Array([2]));
      await waitFor(() => got.length === 1, 3000, "the frame after the throw");
      peer.send("t1", new Uint8Array([3]));
      await waitFor(() => got.length === 2, 3000, "a later frame");
      assert.deepEqual(got, [2, 3]);
      assert.equal(t.status, "connected");
    } finally {
      await t.close();
      await peer.close();
    }
    await ended;
  });
});
