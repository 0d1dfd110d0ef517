import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createRandom, defineService, isKeelError } from "@keel/core";
import { z } from "zod";
import {
  createSimulation,
  decodePlan,
  describeStep,
  drawPlan,
  encodePlan,
  FAULT_KINDS,
  type FaultKind,
  type FaultStep,
  type Simulation,
} from "../src/index.ts";
import { echoCluster, tryHit } from "./sim-support.ts";

const NODES = ["n1", "n2", "n3", "n4", "n5"];

describe("drawPlan", () => {
  it("is deterministic per seed, and seeds differ", () => {
    const draw = (seed: number) => drawPlan(createRandom(seed), NODES, 20_000);
    const plans = new Set<string>();
    for (let seed = 1; seed <= 20; seed++) {
      const a = draw(seed);
      assert.deepEqual(draw(seed), a);
      plans.add(JSON.stringify(a.plan));
      for (const step of a.plan) {
        assert.ok(step.at >= 0 && step.at < 20_000, `step at ${step.at}`);
        assert.ok(a.profile.kinds.includes(step.kind));
        if ("durationMs" in step) assert.ok(step.durationMs >= 50 && step.durationMs <= 1500);
      }
      for (let i = 1; i < a.plan.length; i++) {
        assert.ok((a.plan[i] as FaultStep).at >= (a.plan[i - 1] as FaultStep).at, "sorted by time");
      }
    }
    assert.equal(plans.size, 20);
  });

  it("draws only the kinds asked for", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const kinds: FaultKind[] = ["pause", "clock-jump"];
      const { plan, profile } = drawPlan(createRandom(seed), NODES, 20_000, { kinds });
      assert.ok(profile.kinds.length > 0 && profile.kinds.every((k) => kinds.includes(k)));
      assert.ok(plan.every((s) => kinds.includes(s.kind)));
    }
  });

  it("never crashes or pauses a protected node, and aims node faults only at targets", () => {
    let aimed = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const { plan } = drawPlan(createRandom(seed), NODES, 20_000, {
        protect: ["n1"],
        targets: ["n1", "n2", "n3"],
        ratePerSecond: 3,
      });
      for (const step of plan) {
        if (step.kind === "crash" || step.kind === "pause") {
          assert.ok(["n2", "n3"].includes(step.node), `${describeStep(step)}`);
          aimed++;
        }
        if (step.kind === "isolate" || step.kind === "clock-jump" || step.kind === "clock-drift") {
          assert.ok(["n1", "n2", "n3"].includes(step.node), `${describeStep(step)}`);
        }
      }
    }
    assert.ok(aimed > 10, `${aimed} crashes and pauses drawn`);
  });

  it("draws nothing that would hurt a node when every node is protected", () => {
    for (let seed = 1; seed <= 10; seed++) {
      const { plan } = drawPlan(createRandom(seed), NODES, 20_000, {
        kinds: ["crash", "pause"],
        protect: NODES,
      });
      assert.deepEqual(plan, []);
    }
  });

  it("with swarm off, uses every kind at the given rate", () => {
    const { plan, profile } = drawPlan(createRandom(1), NODES, 200_000, {
      swarm: false,
      ratePerSecond: 1,
    });
    assert.deepEqual(profile.kinds, FAULT_KINDS);
    assert.equal(profile.ratePerSecond, 1);
    assert.deepEqual(new Set(plan.map((s) => s.kind)), new Set(FAULT_KINDS));
    // A Poisson process of rate 1/s over 200 s: 200 ± a few standard deviations (~14).
    assert.ok(plan.length > 140 && plan.length < 260, `${plan.length} faults`);
  });

  it("with swarm on, seeds explore different mixes of kinds", () => {
    const mixes = new Set<string>();
    for (let seed = 1; seed <= 30; seed++) {
      const { profile } = drawPlan(createRandom(seed), NODES, 10_000);
      assert.ok(profile.kinds.length >= 1);
      mixes.add(profile.kinds.join(","));
    }
    assert.ok(mixes.size >= 10, `${mixes.size} mixes`);
  });

  it("draws link probabilities that print cleanly, in range", () => {
    const { plan } = drawPlan(createRandom(4), NODES, 60_000, { kinds: ["link"], swarm: false });
    assert.ok(plan.length > 20);
    for (const step of plan) {
      if (step.kind !== "link") continue;
      for (const [p, max] of [
        [step.drop ?? 0, 0.3],
        [step.duplicate ?? 0, 0.2],
      ] as const) {
        assert.ok(p >= 0 && p <= max);
        assert.match(String(p), /^0(\.\d{1,3})?$/, describeStep(step));
      }
    }
  });

  it("splits a partition into two non-empty sides covering every node", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const { plan } = drawPlan(createRandom(seed), NODES, 10_000, { kinds: ["partition"] });
      for (const step of plan) {
        if (step.kind !== "partition") continue;
        assert.ok(step.a.length > 0 && step.b.length > 0);
        assert.deepEqual([...step.a, ...step.b].sort(), [...NODES].sort());
      }
    }
  });

  it("rejects an unknown kind", () => {
    assert.throws(
      () => drawPlan(createRandom(1), NODES, 1000, { kinds: ["meteor" as FaultKind] }),
      /unknown fault kind 'meteor'/,
    );
  });

  it("rejects options that would loop forever or break a clock, with a clear CONFIGURATION error", () => {
    const bad: Array<[number, Parameters<typeof drawPlan>[3], RegExp]> = [
      [10_000, { ratePerSecond: Number.NaN }, /'ratePerSecond'/],
      [10_000, { ratePerSecond: -1 }, /'ratePerSecond'/],
      [10_000, { maxDurationMs: Number.NaN }, /'maxDurationMs'/],
      [10_000, { maxClockJumpMs: -5 }, /'maxClockJumpMs'/],
      [10_000, { maxDriftPpm: 1_000_000 }, /'maxDriftPpm'/],
      [Number.POSITIVE_INFINITY, {}, /safety phase/],
      [Number.NaN, {}, /safety phase/],
    ];
    for (const [safetyMs, options, message] of bad) {
      assert.throws(
        () => drawPlan(createRandom(1), NODES, safetyMs, options),
        (err: unknown) =>
          isKeelError(err) && err.code === "CONFIGURATION" && message.test(err.message),
        JSON.stringify(options),
      );
    }
  });

  it("never draws a drift that would stop or reverse a clock", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const { plan } = drawPlan(createRandom(seed), NODES, 20_000, {
        kinds: ["clock-drift"],
        maxDriftPpm: 999_999,
        ratePerSecond: 5,
      });
      for (const step of plan)
        if (step.kind === "clock-drift") assert.ok(step.driftPpm > -1_000_000);
    }
  });

  it("draws an empty plan for no nodes, no kinds or no rate", () => {
    assert.deepEqual(drawPlan(createRandom(1), [], 10_000).plan, []);
    assert.deepEqual(drawPlan(createRandom(1), NODES, 10_000, { kinds: [] }).plan, []);
    assert.deepEqual(drawPlan(createRandom(1), NODES, 10_000, { ratePerSecond: 0 }).plan, []);
  });
});

describe("encodePlan and decodePlan", () => {
  it("round-trip every kind of step", () => {
    const plan: FaultStep[] = [
      { at: 0, kind: "partition", a: ["a"], b: ["b", "c"], durationMs: 100 },
      { at: 1.5, kind: "partition", a: ["a"], b: ["b"], oneWay: true, durationMs: 100 },
      { at: 2, kind: "isolate", node: "a", durationMs: 50 },
      {
        at: 3,
        kind: "link",
        from: "a",
        to: "b",
        drop: 0.5,
        duplicate: 0.1,
        delayMs: 20,
        reorder: true,
        durationMs: 70,
      },
      { at: 4, kind: "crash", node: "b", durationMs: 300 },
      { at: 5, kind: "pause", node: "c", durationMs: 400 },
      { at: 6, kind: "clock-jump", node: "a", deltaMs: -3000 },
      { at: 7, kind: "clock-drift", node: "a", driftPpm: 1000, durationMs: 10 },
    ];
    const text = encodePlan(plan);
    assert.match(text, /^[A-Za-z0-9_-]+$/, "safe on a command line");
    assert.deepEqual(decodePlan(text), plan);
    assert.deepEqual(decodePlan(encodePlan([])), []);
    const drawn = drawPlan(createRandom(3), NODES, 30_000, { swarm: false }).plan;
    assert.deepEqual(decodePlan(encodePlan(drawn)), drawn);
  });

  const enc = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

  it("rejects text that is not a plan, with a clear INVALID_ARGUMENT error", () => {
    const cases: Array<[string, RegExp]> = [
      ["", /not base64url-encoded JSON/],
      ["not a plan!", /not base64url-encoded JSON/],
      [Buffer.from("{oops").toString("base64url"), /not base64url-encoded JSON/],
      [enc({ at: 0, kind: "crash" }), /must be a JSON array/],
      [enc([null]), /step 0 has an unknown kind/],
      [
        enc([
          { at: 0, kind: "crash", node: "a", durationMs: 1 },
          { at: 1, kind: "meteor" },
        ]),
        /step 1 has an unknown kind/,
      ],
      [enc([{ kind: "clock-jump", node: "a", deltaMs: 1 }]), /step 0 needs a time 'at' >= 0/],
      [
        enc([{ at: -1, kind: "clock-jump", node: "a", deltaMs: 1 }]),
        /step 0 needs a time 'at' >= 0/,
      ],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => decodePlan(text),
        (err: unknown) =>
          isKeelError(err) && err.code === "INVALID_ARGUMENT" && message.test(err.message),
        text,
      );
    }
  });

  it("rejects steps whose fields are missing or out of range, naming the step and field", () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ at: 0, kind: "crash", durationMs: 10 }, /step 0 .*'node'/],
      [{ at: 0, kind: "pause", node: 7, durationMs: 10 }, /step 0 .*'node'/],
      [{ at: 0, kind: "crash", node: "a" }, /step 0 .*'durationMs'/],
      [{ at: 0, kind: "isolate", node: "a", durationMs: -5 }, /step 0 .*'durationMs'/],
      [{ at: 0, kind: "partition", a: ["a"], durationMs: 5 }, /step 0 .*'b'/],
      [{ at: 0, kind: "partition", a: "a", b: ["b"], durationMs: 5 }, /step 0 .*'a'/],
      [{ at: 0, kind: "link", drop: 1.5, durationMs: 5 }, /step 0 .*'drop'/],
      [{ at: 0, kind: "link", delayMs: -1, durationMs: 5 }, /step 0 .*'delayMs'/],
      [{ at: 0, kind: "clock-jump", node: "a" }, /step 0 .*'deltaMs'/],
      [{ at: 0, kind: "clock-drift", node: "a", durationMs: 5 }, /step 0 .*'driftPpm'/],
      [
        { at: 0, kind: "clock-drift", node: "a", driftPpm: -1e6, durationMs: 5 },
        /step 0 .*'driftPpm'/,
      ],
    ];
    for (const [step, message] of cases) {
      assert.throws(
        () => decodePlan(enc([step])),
        (err: unknown) =>
          isKeelError(err) && err.code === "INVALID_ARGUMENT" && message.test(err.message),
        JSON.stringify(step),
      );
    }
    // `at` written as 1e400 parses to Infinity.
    assert.throws(
      () =>
        decodePlan(
          Buffer.from('[{"at":1e400,"kind":"clock-jump","node":"a","deltaMs":1}]').toString(
            "base64url",
          ),
        ),
      /step 0 needs a time 'at' >= 0/,
    );
  });
});

/** Runs `body` in a world of nodes a, b (serving echo) and client. */
async function withCluster(
  seed: number,
  body: (
    sim: Simulation,
    hit: (input: string, from?: string) => Promise<string>,
    log: string[],
  ) => Promise<void>,
): Promise<Simulation> {
  const sim = createSimulation({ seed });
  const log: string[] = [];
  await sim.run(async () => {
    const { echo, client } = await echoCluster(sim, log);
    const hit = (input: string) => tryHit(client, echo, input);
    await body(sim, hit, log);
  });
  assert.deepEqual(
    sim.failures.map((f) => f.name),
    [],
    "no guard violation",
  );
  return sim;
}

/** A service pinned to one node, to aim calls at it. */
const only = (id: string, log: string[]) =>
  defineService(`only-${id}`).action("hit", {
    input: z.string(),
    output: z.string(),
    handler: (input) => {
      log.push(`${id}:${input}`);
      return input;
    },
  });

/**
 * Nodes a and b, each serving its own `only` service, and a client that knows both; `call` reports
 * `ok` or `error`, never retrying.
 */
async function pinnedCluster(sim: Simulation, log: string[]) {
  const sa = only("a", log);
  const sb = only("b", log);
  await sim.addNode("a", { services: [sa] });
  await sim.addNode("b", { services: [sb] });
  const client = (await sim.addNode("client")).node;
  await client.waitForEndpoints(sa, 1);
  await client.waitForEndpoints(sb, 1);
  const call = (svc: typeof sa, x: string) =>
    client.call(svc, "hit", x, { timeoutMs: 200, retry: false }).then(
      () => "ok",
      () => "error",
    );
  return { sa, sb, call };
}

describe("fault steps apply and undo", () => {
  it("partition: calls across it fail, then succeed once healed", async () => {
    await withCluster(1, async (sim, hit) => {
      const undo = sim.inject({
        at: 0,
        kind: "partition",
        a: ["client"],
        b: ["a", "b"],
        durationMs: 1,
      });
      assert.match(await hit("x"), /^error /);
      undo();
      await sim.sleep(2000);
      assert.match(await hit("y"), /^ok /);
      assert.ok(sim.timeline.some((e) => e.text.startsWith("healed: partition [client]")));
    });
  });

  it("one-way partition blocks one direction only", async () => {
    const sim = createSimulation({ seed: 2 });
    const log: string[] = [];
    await sim.run(async () => {
      const { sa, call } = await pinnedCluster(sim, log);
      // a -/-> client: the request arrives and is served, the reply is lost.
      let undo = sim.inject({
        at: 0,
        kind: "partition",
        a: ["a"],
        b: ["client"],
        oneWay: true,
        durationMs: 1,
      });
      assert.equal(await call(sa, "1"), "error");
      assert.deepEqual(log, ["a:1"]);
      undo();
      // client -/-> a: the request never arrives.
      undo = sim.inject({
        at: 0,
        kind: "partition",
        a: ["client"],
        b: ["a"],
        oneWay: true,
        durationMs: 1,
      });
      assert.equal(await call(sa, "2"), "error");
      assert.deepEqual(log, ["a:1"]);
      undo();
      assert.equal(await call(sa, "3"), "ok");
      assert.deepEqual(log, ["a:1", "a:3"]);
    });
  });

  it("isolate cuts one node off; the others still talk", async () => {
    const sim = createSimulation({ seed: 3 });
    const log: string[] = [];
    await sim.run(async () => {
      const { sa, sb, call } = await pinnedCluster(sim, log);
      const undo = sim.inject({ at: 0, kind: "isolate", node: "a", durationMs: 1 });
      assert.equal(await call(sa, "1"), "error");
      assert.equal(await call(sb, "2"), "ok");
      undo();
      await sim.sleep(2000);
      assert.equal(await call(sa, "3"), "ok");
      assert.deepEqual(log, ["b:2", "a:3"]);
    });
  });

  it("link drop=1 blocks, scoped to one receiver; undo restores it", async () => {
    const sim = createSimulation({ seed: 4 });
    const log: string[] = [];
    await sim.run(async () => {
      const { sa, sb, call } = await pinnedCluster(sim, log);
      let undo = sim.inject({ at: 0, kind: "link", to: "a", drop: 1, durationMs: 1 });
      assert.equal(await call(sa, "1"), "error");
      assert.equal(await call(sb, "2"), "ok");
      undo();
      assert.equal(await call(sa, "3"), "ok");
      undo = sim.inject({ at: 0, kind: "link", drop: 1, durationMs: 1 });
      assert.equal(await call(sb, "4"), "error");
      undo();
      await sim.sleep(2000);
      assert.equal(await call(sb, "5"), "ok");
      assert.deepEqual(log, ["b:2", "a:3", "b:5"]);
    });
  });

  it("link delay slows calls and duplicate duplicates frames; both end with the step", async () => {
    const sim = createSimulation({ seed: 5 });
    await sim.run(async () => {
      const { echo, client } = await echoCluster(sim);
      const timed = async () => {
        const t0 = sim.now;
        assert.match(await tryHit(client, echo, "x", 5000), /^ok /);
        return sim.now - t0;
      };
      let slow = 0;
      const undo = sim.inject({ at: 0, kind: "link", delayMs: 400, duplicate: 1, durationMs: 1 });
      const dupBefore = sim.network.stats.duplicated;
      for (let i = 0; i < 10; i++) slow = Math.max(slow, await timed());
      assert.ok(sim.network.stats.duplicated - dupBefore >= 20, "every frame was duplicated");
      undo();
      // Frames sent under the delay are still in flight, and an in-order link lets none overtake.
      await sim.sleep(500);
      let fast = 0;
      const dupAfter = sim.network.stats.duplicated;
      for (let i = 0; i < 10; i++) fast = Math.max(fast, await timed());
      assert.ok(slow > 100, `slowest call under delay took ${slow} ms`);
      assert.ok(fast <= 2, `slowest call after took ${fast} ms`);
      assert.equal(sim.network.stats.duplicated, dupAfter);
    });
  });

  it("crash, then restart after its duration (scheduled)", async () => {
    await withCluster(6, async (sim) => {
      const start = sim.now;
      sim.schedule([{ at: 100, kind: "crash", node: "a", durationMs: 500 }], start);
      await sim.sleep(99);
      assert.equal(sim.node("a").status, "up");
      await sim.sleep(2);
      assert.equal(sim.node("a").status, "crashed");
      await sim.sleep(498);
      assert.equal(sim.node("a").status, "crashed");
      await sim.sleep(2);
      assert.equal(sim.node("a").status, "up");
      assert.equal(sim.node("a").life, 2);
      assert.deepEqual(
        sim.timeline
          .filter((e) => /crash a|restart a/.test(e.text))
          .map((e) => [e.atMs - start, e.text]),
        [
          [100, "crash a"],
          [600, "restart a (life 2)"],
        ],
      );
    });
  });

  it("pause, then resume after its duration", async () => {
    await withCluster(7, async (sim, hit) => {
      sim.schedule([{ at: 10, kind: "pause", node: "a", durationMs: 200 }]);
      await sim.sleep(11);
      assert.equal(sim.node("a").status, "paused");
      await sim.sleep(200);
      assert.equal(sim.node("a").status, "up");
      assert.match(await hit("after"), /^ok /);
    });
  });

  it("clock-jump moves a node's wall clock only", async () => {
    await withCluster(8, async (sim) => {
      const { clock } = sim.node("a");
      const wall = clock.wallNow();
      const mono = clock.now();
      const undo = sim.inject({ at: 0, kind: "clock-jump", node: "a", deltaMs: -5000 });
      assert.equal(clock.wallNow(), wall - 5000);
      assert.equal(clock.now(), mono);
      undo();
      assert.equal(
        clock.wallNow(),
        wall - 5000,
        "a jump is not undone: clocks are stepped, not restored",
      );
    });
  });

  it("clock-drift changes the rate for its duration, then restores the node's own drift", async () => {
    const sim = createSimulation({ seed: 9 });
    await sim.run(async () => {
      const n = await sim.addNode("a", {}, { driftPpm: 1000 });
      sim.schedule([{ at: 0, kind: "clock-drift", node: "a", driftPpm: 200_000, durationMs: 100 }]);
      await sim.sleep(50);
      assert.ok(Math.abs(n.clock.driftPpm - 200_000) < 1e-6, `drift ${n.clock.driftPpm}`);
      const t = n.clock.now();
      await sim.sleep(10);
      assert.ok(Math.abs(n.clock.now() - t - 12) < 1e-9);
      await sim.sleep(100);
      assert.ok(Math.abs(n.clock.driftPpm - 1000) < 1e-6, `drift ${n.clock.driftPpm}`);
    });
  });

  it("a step naming an unknown node fails with a clear error", async () => {
    const sim = createSimulation({ seed: 10 });
    await sim.run(async () => {
      await sim.addNode("a");
      assert.throws(
        () => sim.inject({ at: 0, kind: "crash", node: "ghost", durationMs: 5 }),
        /no node 'ghost'/,
      );
    });
  });
});

describe("overlapping faults", () => {
  it("ending one partition keeps an overlapping one in force", async () => {
    await withCluster(11, async (sim, hit) => {
      const p1 = sim.inject({
        at: 0,
        kind: "partition",
        a: ["client"],
        b: ["a", "b"],
        durationMs: 1,
      });
      const p2 = sim.inject({ at: 0, kind: "isolate", node: "client", durationMs: 1 });
      p1();
      assert.match(await hit("1"), /^error /, "the isolation still holds");
      p2();
      await sim.sleep(2000);
      assert.match(await hit("2"), /^ok /);
      p1();
      assert.match(await hit("3"), /^ok /, "undoing twice changes nothing");
    });
  });

  it("ending one degraded link keeps an overlapping one in force", async () => {
    await withCluster(12, async (sim, hit) => {
      const l1 = sim.inject({ at: 0, kind: "link", drop: 1, durationMs: 1 });
      const l2 = sim.inject({ at: 0, kind: "link", to: "client", drop: 1, durationMs: 1 });
      l1();
      assert.match(await hit("1"), /^error /);
      l2();
      await sim.sleep(2000);
      assert.match(await hit("2"), /^ok /);
    });
  });

  it("scheduled overlapping partitions: the network heals only when the last one ends", async () => {
    await withCluster(13, async (sim, hit) => {
      const t0 = sim.now;
      sim.schedule(
        [
          { at: 0, kind: "partition", a: ["client"], b: ["a", "b"], durationMs: 300 },
          { at: 100, kind: "partition", a: ["a", "b"], b: ["client"], durationMs: 600 },
        ],
        t0,
      );
      await sim.sleep(400);
      assert.match(await hit("during"), /^error /);
      await sim.sleep(700 - (sim.now - t0) + 1500);
      assert.match(await hit("after"), /^ok /);
    });
  });

  it("a cancelled schedule injects nothing more, and undoes nothing either", async () => {
    await withCluster(14, async (sim) => {
      const plan = sim.schedule([
        { at: 10, kind: "pause", node: "b", durationMs: 50 },
        { at: 500, kind: "crash", node: "a", durationMs: 50 },
      ]);
      await sim.sleep(20);
      plan.cancel();
      await sim.sleep(1000);
      assert.equal(sim.node("a").status, "up", "the crash never came");
      assert.equal(sim.node("b").status, "paused", "the pause's undo was cancelled too");
      sim.resume("b");
    });
  });
});

describe("healAll", () => {
  it("ends every fault at once", async () => {
    const sim = await withCluster(15, async (sim, hit) => {
      sim.inject({ at: 0, kind: "partition", a: ["client"], b: ["a"], durationMs: 1 });
      sim.inject({ at: 0, kind: "isolate", node: "b", durationMs: 1 });
      sim.inject({ at: 0, kind: "link", drop: 1, durationMs: 1 });
      sim.inject({ at: 0, kind: "clock-drift", node: "a", driftPpm: 100_000, durationMs: 1 });
      sim.inject({ at: 0, kind: "pause", node: "b", durationMs: 1 });
      sim.inject({ at: 0, kind: "crash", node: "a", durationMs: 1 });
      assert.match(await hit("1"), /^error /);
      await sim.healAll();
      assert.equal(sim.node("a").status, "up");
      assert.equal(sim.node("b").status, "up");
      assert.equal(sim.node("a").clock.driftPpm, 0);
      await sim.sleep(2000);
      const results = [await hit("2"), await hit("3"), await hit("4")];
      assert.ok(
        results.every((r) => r.startsWith("ok ")),
        results.join(),
      );
    });
    assert.ok(sim.timeline.some((e) => e.text === "heal everything"));
  });
});
