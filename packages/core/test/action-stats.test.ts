import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import { defineService, KeelError } from "../src/index.ts";
import { capture, cluster } from "./support.ts";

const work = defineService("work")
  .action("slow", {
    input: z.object({ ms: z.number() }),
    output: z.object({}),
    handler: async ({ ms }, ctx) => {
      await ctx.env.timers.sleep(ms, ctx.signal);
      return {};
    },
  })
  .action("boom", {
    input: z.object({}),
    output: z.object({}),
    handler: () => {
      throw new KeelError("FAILED_PRECONDITION", "not today");
    },
  });

describe("node.actionStats", () => {
  it("counts requests, errors and processing time per action, from the first ask", async () => {
    await using c = cluster();
    const server = c.add("server", [work]);
    const caller = c.add("caller");
    await c.start();
    // Before anyone asks, nothing is counted.
    await assert.rejects(server.call(work, "boom", {}), /not today/);
    const first = server.actionStats();
    assert.deepEqual(
      first.map((s) => [s.service, s.action, s.requests, s.errors]),
      [
        ["work@1", "slow", 0, 0],
        ["work@1", "boom", 0, 0],
      ],
    );

    const remote = capture(caller.call(work, "slow", { ms: 40 }));
    const local = capture(server.call(work, "slow", { ms: 10 }));
    await c.env.advance(50);
    assert.ok(remote.done && local.done && remote.error === undefined && local.error === undefined);
    await assert.rejects(caller.call(work, "boom", {}), /not today/);
    await assert.rejects(caller.call(work, "slow", { ms: "x" } as unknown as { ms: number }));

    const stats = new Map(server.actionStats().map((s) => [s.action, s]));
    assert.equal(stats.get("slow")?.requests, 3);
    assert.equal(stats.get("slow")?.errors, 1);
    assert.match(stats.get("slow")?.lastError ?? "", /^INVALID_ARGUMENT: /);
    // Virtual time: 40 ms remote + 10 ms local (the refused call took no time).
    assert.equal(stats.get("slow")?.processingMs, 50);
    assert.equal(stats.get("boom")?.requests, 1);
    assert.equal(stats.get("boom")?.errors, 1);
    assert.equal(stats.get("boom")?.lastError, "FAILED_PRECONDITION: not today");
    // The caller hosts nothing: nothing to count.
    assert.deepEqual(caller.actionStats(), []);
  });
});
