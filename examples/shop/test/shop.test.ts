import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createVirtualEnv, silentLogger, type VirtualEnv } from "@keel/core";
import { runShop, type ShopReport } from "../src/shop.ts";

/** Runs the shop on virtual time: seconds of traffic in a fraction of a real second. */
async function drive(env: VirtualEnv, run: Promise<ShopReport>): Promise<ShopReport> {
  let report: ShopReport | undefined;
  let failure: unknown;
  run.then(
    (r) => {
      report = r;
    },
    (e: unknown) => {
      failure = e;
    },
  );
  for (let i = 0; i < 5_000_000 && report === undefined && failure === undefined; i++) {
    if (!(await env.runNext())) await env.flush();
  }
  if (failure !== undefined) throw failure;
  assert.ok(report !== undefined, "the shop did not finish");
  return report;
}

describe("shop example", () => {
  it("survives a payments crash with every invariant intact", async () => {
    const env = createVirtualEnv({ seed: 42 });
    const report = await drive(env, runShop({ env, durationMs: 4000, logger: silentLogger }));
    assert.ok(report.placed > 500, `placed ${report.placed}`);
    assert.ok(report.paid > 0 && report.rejected > 0);
    for (const inv of report.invariants) assert.ok(inv.ok, `${inv.name}: ${inv.detail}`);
    assert.equal(report.failed, 0, JSON.stringify(report.failuresByCode));
    const crash = report.timeline.find((t) => t.what.startsWith("crashed payments-1"));
    const detected = report.timeline.find((t) => t.what.includes("stopped routing to payments-1"));
    assert.ok(crash !== undefined && detected !== undefined);
    assert.ok(
      detected.atMs - crash.atMs <= 1000,
      `detected after ${detected.atMs - crash.atMs} ms`,
    );
    assert.ok(report.timeline.some((t) => t.what === "gateway sees payments-1 again"));
  });

  it("catches a payments handler that ignores idempotency keys", async () => {
    // The double charge needs the crash to land between a charge and its reply: not every seed
    // does that, but the invariant check must catch the ones that do.
    const caught: number[] = [];
    for (let seed = 1; seed <= 30 && caught.length === 0; seed++) {
      const env = createVirtualEnv({ seed });
      const report = await drive(
        env,
        runShop({ env, durationMs: 1500, buggyPayments: true, logger: silentLogger }),
      );
      const doubles = report.invariants.find((i) => i.name === "no double charge");
      if (doubles?.ok === false) caught.push(seed);
    }
    assert.ok(caught.length > 0, "no seed in 1..30 exposed the double charge");
  });

  it("replays exactly from a seed", async () => {
    const once = async () => {
      const env = createVirtualEnv({ seed: 7 });
      return drive(env, runShop({ env, durationMs: 1500, logger: silentLogger }));
    };
    const [a, b] = [await once(), await once()];
    assert.deepEqual(a, b);
  });
});
