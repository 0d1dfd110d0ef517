import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkDeterminism,
  decodePlan,
  describeShrink,
  describeStep,
  type FaultStep,
  formatTimeline,
  type RunReport,
  runScenario,
  shrink,
} from "@keel/sim";
import shop, { buggy } from "../src/simulation.ts";

/** Seeds CI runs on every change (about 60 ms each on a 2-core machine). */
const CI_SEEDS = 30;

const summary = (r: RunReport) =>
  `seed ${r.seed}: ${r.failures.map((f) => `${f.name}: ${f.detail.split("\n")[0]}`).join("; ")} (replay: ${r.replayArgs.join(" ")})`;

/** What the timeline says when a step starts. */
const started = (step: FaultStep) =>
  step.kind === "crash"
    ? `crash ${step.node}`
    : step.kind === "pause"
      ? `pause ${step.node}`
      : describeStep(step);

describe("shop simulation", () => {
  it(`passes every invariant on seeds 1..${CI_SEEDS}`, async () => {
    const missed = new Map<string, number>();
    let faults = 0;
    let events = 0;
    for (let seed = 1; seed <= CI_SEEDS; seed++) {
      const report = await runScenario(shop, { seed });
      assert.ok(report.ok, summary(report));
      faults += report.plan.length;
      events += report.events;
      for (const name of report.sometimesMissed) missed.set(name, (missed.get(name) ?? 0) + 1);
    }
    assert.ok(faults > CI_SEEDS * 3, `${faults} faults drawn`);
    assert.ok(events > CI_SEEDS * 1000, `${events} events`);
    // Coverage: across the seeds, every situation the scenario names was reached somewhere.
    for (const [name, count] of missed) {
      assert.ok(count < CI_SEEDS, `'${name}' never held in any seed`);
    }
    assert.equal(missed.get("orders were placed") ?? 0, 0, "every seed places orders");
  });

  it("catches the non-idempotent payments handler within 300 seeds, and shrinks it to a short story", async () => {
    let failing: RunReport | undefined;
    for (let seed = 1; seed <= 300 && failing === undefined; seed++) {
      const report = await runScenario(buggy, { seed });
      if (!report.ok) failing = report;
    }
    assert.ok(failing !== undefined, "the buggy shop failed no seed in 1..300");
    assert.equal(failing.failures[0]?.name, "no double charge", summary(failing));
    assert.ok(failing.plan.length > 0);

    // The correct shop survives the very same seed: the bug, not the faults, is to blame.
    const correct = await runScenario(shop, { seed: failing.seed });
    assert.ok(correct.ok, summary(correct));

    const result = await shrink(buggy, failing);
    const { shrunk } = result;
    assert.equal(result.target, "no double charge");
    assert.ok(
      shrunk.failures.some((f) => f.name === "no double charge"),
      "the shrunk run fails the same way",
    );
    assert.ok(shrunk.plan.length <= 2, describeShrink(result));
    assert.ok(shrunk.plan.length <= failing.plan.length);
    assert.ok(shrunk.ops < failing.ops, `${shrunk.ops} operations, from ${failing.ops}`);

    const timeline = formatTimeline(shrunk);
    for (const step of shrunk.plan) assert.ok(timeline.includes(started(step)), timeline);
    assert.match(timeline, /FAILED no double charge: order o_\w+ charged 2 times/);
    assert.match(describeShrink(result), /^seed \d+ fails 'no double charge': shrunk from/);

    // And the shrunk run's replay flags reproduce it exactly.
    const args = shrunk.replayArgs;
    const plan = args.indexOf("--plan");
    const ops = args.indexOf("--ops");
    assert.ok(plan > 0 && ops > 0);
    const replay = await runScenario(buggy, {
      seed: Number(args[1]),
      plan: decodePlan(args[plan + 1] as string),
      ops: Number(args[ops + 1]),
      ...(args.includes("--ties") ? { ties: "fifo" as const } : {}),
    });
    assert.equal(replay.hash, shrunk.hash);
    assert.deepEqual(
      replay.failures.map((f) => f.name),
      shrunk.failures.map((f) => f.name),
    );
  });

  it("passes seed 455, where a drifting clock's rounding once livelocked a node's timers", async () => {
    // The client's clock drifted and was restored; later a deadline timer fired a hair before the
    // client's clock read its time, re-armed for ~1e-12 ms, and fired again at the same virtual
    // instant until the 50M-event cap.
    const report = await runScenario(shop, { seed: 455 });
    assert.ok(report.ok, summary(report));
    assert.ok(report.events < 100_000, `${report.events} events`);
  });

  it("replays a seed exactly (determinism self-check)", async () => {
    const result = await checkDeterminism(shop, { seed: 3 });
    assert.equal(result.deterministic, true, JSON.stringify(result.divergence));
    assert.ok(result.report.ok);
    assert.ok(result.events > 1000);
    assert.equal(result.report.trace?.hashes.length, result.events);
  });
});
