import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createRealEnv, type RegistryEvent } from "@keel/core";
import { percentile, runLoad } from "./load.ts";
import { startNatsServer } from "./nats-server.ts";
import { echo, natsNode, stopAll } from "./support.ts";

describe("failure detection over NATS", { timeout: 60_000 }, () => {
  it("callers stop routing to a node whose connection dies without a goodbye, within 1 s", async () => {
    await using server = await startNatsServer({ jetstream: false });
    const env = createRealEnv();
    const r1 = natsNode(server.url, "r1", [echo], { env });
    const r2 = natsNode(server.url, "r2", [echo], { env });
    const caller = natsNode(server.url, "caller", [], { env });
    const nodes = [r1, r2, caller];
    try {
      for (const n of nodes) await n.node.start();
      await caller.node.waitForEndpoints(echo, 2, 5000);
      const events: Array<RegistryEvent & { at: number }> = [];
      caller.node.registry.onChange((e) => events.push({ ...e, at: performance.now() }));

      let cutAt = Number.NaN;
      const load = runLoad(caller.node, {
        calls: 3000,
        concurrency: 10,
        maxMs: 10_000,
        delayMs: 5,
        timeoutMs: 3000,
        // the load runs until r1 has been gone for a while
        stop: () => events.some((e) => e.kind === "node-down" && performance.now() - e.at > 300),
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Abrupt: the connection closes under the node, which says nothing (no leave frame).
      cutAt = performance.now();
      await r1.transport.connection().close();
      const records = await load;

      const down = events.find((e) => e.kind === "node-down" && e.node === "r1");
      assert.ok(down !== undefined && down.kind === "node-down", "r1 was declared down");
      assert.equal(down.reason, "failed");
      const detectionMs = down.at - cutAt;
      const failed = records.filter((r) => r.code !== undefined);
      const inFlightAtCut = records.filter((r) => r.start < cutAt && r.end > cutAt);
      const worst = Math.max(...inFlightAtCut.map((r) => r.end - cutAt));
      console.log(
        `failure detection over NATS: detected in ${detectionMs.toFixed(0)} ms; ${records.length} calls, ${failed.length} failed; calls in flight at the cut finished within ${worst.toFixed(0)} ms; p99 latency ${percentile(
          records.map((r) => r.end - r.start),
          99,
        ).toFixed(1)} ms`,
      );
      assert.deepEqual(failed, [], "no idempotent call failed");
      assert.ok(detectionMs < 1000, `detected after ${detectionMs.toFixed(0)} ms`);
      // nothing started after the detection went to r1
      assert.equal(records.filter((r) => r.start > down.at && r.node === "r1").length, 0);
      assert.ok(records.some((r) => r.start > down.at && r.node === "r2"));
      assert.equal(r1.transport.status, "disconnected");
    } finally {
      await stopAll(nodes);
    }
  });
});
