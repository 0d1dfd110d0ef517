import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createRealEnv } from "@keel/core";
import type { NatsTransportStatus } from "../src/index.ts";
import { runLoad } from "./load.ts";
import { startNatsServer } from "./nats-server.ts";
import { echo, natsNode, stopAll, waitFor } from "./support.ts";

describe("a NATS server restart under load", { timeout: 60_000 }, () => {
  it("crashes nothing, fails calls with codes, and traffic resumes after reconnecting", async () => {
    await using server = await startNatsServer();
    const env = createRealEnv();
    const fast = { reconnect: { initialDelayMs: 100, maxDelayMs: 500, jitterMs: 50 } };
    const a = natsNode(server.url, "a", [echo], { env, transport: fast });
    const b = natsNode(server.url, "b", [], { env, transport: fast });
    const statuses: NatsTransportStatus[] = [];
    b.transport.onStatus((s) => statuses.push(s));
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on("unhandledRejection", onUnhandled);
    try {
      await a.node.start();
      await b.node.start();
      await b.node.waitForEndpoints(echo, 1, 5000);

      let restartedAt = Number.POSITIVE_INFINITY;
      let resumedAt = Number.POSITIVE_INFINITY;
      const load = runLoad(b.node, {
        calls: 20_000,
        concurrency: 5,
        maxMs: 15_000,
        delayMs: 2,
        timeoutMs: 500,
        pauseAfterFailureMs: 20,
        // run until calls have gone through for 500 ms after the restart
        stop: () => performance.now() - resumedAt > 500,
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const downAt = performance.now();
      // Down longer than the failure timeout (700 ms): both registries drop the peer, and re-sync.
      await server.restart(1000);
      restartedAt = performance.now();
      await waitFor(
        () => a.transport.status === "connected" && b.transport.status === "connected",
        10_000,
        "both transports to reconnect",
      );
      const reconnectedAt = performance.now();
      await b.node.waitForEndpoints(echo, 1, 5000);
      resumedAt = performance.now();
      const records = await load;

      const failures = records.filter((r) => r.code !== undefined);
      const codes = new Set(failures.map((r) => r.code));
      const okAfter = records.filter((r) => r.start > resumedAt && r.code === undefined).length;
      const okBefore = records.filter((r) => r.end < downAt && r.code === undefined).length;
      console.log(
        `server restart: ${records.length} calls (${okBefore} ok before, ${failures.length} failed with ${[...codes].join(", ") || "nothing"}, ${okAfter} ok after); reconnected ${(reconnectedAt - restartedAt).toFixed(0)} ms after the server was back, registry re-synced ${(resumedAt - reconnectedAt).toFixed(0)} ms later`,
      );
      for (const code of codes) {
        assert.ok(
          code === "UNAVAILABLE" || code === "DEADLINE_EXCEEDED",
          `a call failed with ${code}`,
        );
      }
      assert.ok(okBefore > 0, "calls went through before the restart");
      assert.ok(okAfter > 0, "calls go through after the restart");
      assert.deepEqual(unhandled, []);
      assert.equal(a.node.state, "ready");
      assert.equal(b.node.state, "ready");
      assert.ok(statuses.includes("reconnecting"), `statuses: ${statuses.join(", ")}`);
      assert.equal(statuses.at(-1), "connected");
      assert.ok(b.transport.stats.reconnects >= 1);
      assert.ok(
        b.transport.stats.droppedDisconnected > 0,
        "frames sent during the outage are dropped",
      );
    } finally {
      process.off("unhandledRejection", onUnhandled);
      await stopAll([a, b]);
    }
  });
});
