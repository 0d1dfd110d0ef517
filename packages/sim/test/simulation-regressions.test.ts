/**
 * Regressions: bugs the independent test suite found in the world and the simulation (held events
 * out of order, clocks that stop, timers a hair early, tick chains, healing drift, steps reused).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Env, isKeelError } from "@keel/core";
import { createSimulation, type FaultStep } from "../src/index.ts";

const configuration = (err: unknown) => isKeelError(err) && err.code === "CONFIGURATION";

describe("regression: world.ts", () => {
  it("releases a paused node's timers in the order they came due, not the order they were set", async () => {
    const sim = createSimulation({ seed: 4 });
    const fired: string[] = [];
    await sim.run(async () => {
      let env: Env | undefined;
      await sim.addNode("n", (life) => {
        env = life.env;
        return {};
      });
      const timers = (env as Env).timers;
      // Set in the order late, early: they come due early, late.
      timers.schedule(() => fired.push("late"), 30);
      timers.schedule(() => fired.push("early"), 10);
      sim.pause("n");
      await sim.sleep(50);
      sim.resume("n");
      await sim.sleep(10);
    });
    assert.deepEqual(fired, ["early", "late"]);
  });

  it("refuses a clock drift that stops or reverses a node's clock", async () => {
    const sim = createSimulation({ seed: 1 });
    await sim.run(async () => {
      await assert.rejects(sim.addNode("stopped", {}, { driftPpm: -1_000_000 }), configuration);
      await assert.rejects(sim.addNode("backwards", {}, { driftPpm: -2_000_000 }), configuration);
      const n = await sim.addNode("ok");
      assert.throws(() => n.clock.setDrift(-1_500_000), configuration);
    });
  });
});

describe("regression: world.ts NodeClock rounding", () => {
  it("a node's timer fires only once the node's clock has reached its time", async () => {
    const sim = createSimulation({ seed: 1 });
    let early = 0;
    let total = 0;
    const examples: string[] = [];
    await sim.run(async () => {
      let env: Env | undefined;
      const n = await sim.addNode("n", (life) => {
        env = life.env;
        return {};
      });
      const e = env as Env;
      const random = sim.random("x");
      await sim.sleep(10_000.123);
      n.clock.setDrift(-119_161);
      await sim.sleep(796.3);
      n.clock.setDrift(0);
      for (let i = 0; i < 2000; i++) {
        const target = e.clock.now() + random.next() * 3000;
        await new Promise<void>((resolve) =>
          e.timers.schedule(() => {
            total++;
            const now = e.clock.now();
            if (now < target) {
              early++;
              if (examples.length < 3) examples.push(`${now} < ${target}`);
            }
            resolve();
          }, target - e.clock.now()),
        );
      }
    });
    // Today: 1 of 2000 fires one ulp early (1048572.970293003 < 1048572.9702930031); a component
    // that re-arms for the rest asks for a delay too small to move world time (shop seed 455
    // livelocked in core's TimerQueue this way, now guarded there).
    assert.equal(early, 0, `${early} of ${total} fired early: ${examples.join(", ")}`);
  });
});

describe("regression: world.ts handoff", () => {
  it("a chain mixing process.nextTick and promises finishes before the next event", async () => {
    const sim = createSimulation({ seed: 1, guard: false });
    const log: string[] = [];
    await sim.run(async () => {
      const chain = async () => {
        for (let i = 0; i < 5; i++) {
          await new Promise<void>((r) => process.nextTick(r));
          await null;
        }
        log.push(`chain done at ${sim.now}`);
      };
      sim.env.timers.schedule(() => void chain(), 10);
      sim.env.timers.schedule(() => log.push(`next event at ${sim.now}`), 11);
      await sim.sleep(20);
    });
    // Today: [ 'next event at 11', 'chain done at 20' ]: the chain sees time jump under it.
    assert.deepEqual(log, ["chain done at 10", "next event at 11"]);
  });
});

describe("regression: worlds running at once", () => {
  it("neither starves the other, and process.nextTick is left as it was", async () => {
    const original = process.nextTick;
    const a = createSimulation({ seed: 1, guard: false });
    const b = createSimulation({ seed: 2, guard: false });
    let bWhenADone = -1;
    const runA = a
      .run(() => a.sleep(10))
      .then(() => {
        bWhenADone = b.now;
      });
    const runB = b.run(async () => {
      for (let i = 0; i < 100; i++) await b.sleep(10);
    });
    await runA;
    await runB;
    // A needs one event, B a hundred: A is done long before B (each world's own handoff ticks
    // once counted as the other's, so a world waited until the other had finished).
    assert.ok(bWhenADone >= 0 && bWhenADone < 1000, `B was at ${bWhenADone} ms when A finished`);
    assert.equal(process.nextTick, original);
  });
});

describe("regression: simulation.ts", () => {
  it("healAll restores a node's configured drift instead of zeroing it", async () => {
    const sim = createSimulation({ seed: 1 });
    await sim.run(async () => {
      const n = await sim.addNode("a", {}, { driftPpm: 300 });
      sim.inject({ at: 0, kind: "clock-drift", node: "a", driftPpm: 100_000, durationMs: 1 });
      await sim.healAll();
      assert.ok(
        Math.abs(n.clock.driftPpm - 300) < 1e-6,
        `drift after healAll: ${n.clock.driftPpm}`,
      );
    });
  });

  it("the same step object scheduled twice is two windows, each undone on its own", async () => {
    const sim = createSimulation({ seed: 1 });
    await sim.run(async () => {
      await sim.addNode("a");
      await sim.addNode("b");
      const step: FaultStep = { at: 0, kind: "partition", a: ["a"], b: ["b"], durationMs: 300 };
      const t0 = sim.now;
      sim.schedule([step], t0);
      sim.schedule([step], t0 + 100);
      await sim.sleep(350);
      await sim.sleep(100);
      const healed = sim.timeline.filter((e) => e.text.startsWith("healed:"));
      assert.deepEqual(
        healed.map((e) => Math.round(e.atMs - t0)),
        [300, 400],
      );
    });
  });
});
