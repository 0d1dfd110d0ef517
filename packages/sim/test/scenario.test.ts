import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isKeelError } from "@keel/core";
import {
  checkDeterminism,
  decodePlan,
  defineScenario,
  describeShrink,
  describeStep,
  type FaultStep,
  formatTimeline,
  type RunOptions,
  type RunReport,
  runScenario,
  type Scenario,
  shrink,
} from "../src/index.ts";
import { echoCluster, tryHit } from "./sim-support.ts";

/** The smallest valid scenario, to vary one field at a time. */
const base = {
  name: "base",
  safetyMs: 1000,
  faults: false as const,
  setup: async () => undefined,
  workload: async () => {},
};

/** Parses `keel sim` replay flags back into run options. */
function parseReplay(args: readonly string[]): RunOptions {
  const out: { seed?: number; plan?: FaultStep[]; ops?: number; ties?: "fifo" | "random" } = {};
  for (let i = 0; i < args.length; i += 2) {
    const value = args[i + 1] as string;
    switch (args[i]) {
      case "--seed":
        out.seed = Number(value);
        break;
      case "--plan":
        out.plan = decodePlan(value);
        break;
      case "--ops":
        out.ops = Number(value);
        break;
      case "--ties":
        assert.equal(value, "fifo");
        out.ties = "fifo";
        break;
      default:
        assert.fail(`unknown flag ${args[i]}`);
    }
  }
  assert.ok(out.seed !== undefined, "--seed is always there");
  return { ...out, seed: out.seed };
}

const names = (r: RunReport) => r.failures.map((f) => f.name);

describe("defineScenario", () => {
  it("returns a valid scenario as is", () => {
    const s = defineScenario(base);
    assert.equal(s, base);
  });

  it("rejects a bad definition at once, with a CONFIGURATION error that says what is wrong", () => {
    const cases: Array<[object, RegExp]> = [
      [{ name: "" }, /needs a name/],
      [{ name: undefined }, /needs a name/],
      [{ safetyMs: 0 }, /'safetyMs' must be > 0/],
      [{ safetyMs: -5 }, /'safetyMs' must be > 0/],
      [{ safetyMs: Number.NaN }, /'safetyMs' must be > 0/],
      [{ safetyMs: Number.POSITIVE_INFINITY }, /'safetyMs'/],
      [{ livenessMs: 0 }, /'livenessMs' must be > 0/],
      [{ livenessMs: Number.POSITIVE_INFINITY }, /'livenessMs'/],
      [{ ops: -1 }, /'ops' must be an integer >= 0/],
      [{ ops: 1.5 }, /'ops' must be an integer >= 0/],
      [{ setup: undefined }, /setup\(\) and workload\(\)/],
      [{ workload: "no" }, /setup\(\) and workload\(\)/],
    ];
    for (const [change, message] of cases) {
      assert.throws(
        () => defineScenario({ ...base, ...change } as Scenario<undefined>),
        (err: unknown) =>
          isKeelError(err) && err.code === "CONFIGURATION" && message.test(err.message),
        JSON.stringify(change),
      );
    }
  });
});

describe("runScenario", () => {
  it("runs setup, safety, liveness and check in order, with the run's facts", async () => {
    const log: string[] = [];
    const scenario = defineScenario({
      name: "phases",
      safetyMs: 500,
      livenessMs: 1000,
      ops: 7,
      faults: false,
      async setup(sim, run) {
        log.push(`setup ${run.phase} at ${sim.now}`);
        return { polls: 0 };
      },
      async workload(sim, _state, run) {
        log.push(`workload ${run.phase} ops=${run.ops} at ${sim.now}`);
        while (!run.stopping) await sim.sleep(100);
        log.push(`workload stops in ${run.phase} at ${sim.now}`);
      },
      converged(sim, state, run) {
        state.polls++;
        log.push(`converged? ${run.phase} at ${sim.now}`);
        return state.polls >= 3;
      },
      check(sim, state, run) {
        log.push(`check ${run.phase} after ${state.polls} polls at ${sim.now}`);
      },
    });
    const report = await runScenario(scenario, { seed: 1 });
    assert.ok(report.ok, JSON.stringify(report.failures));
    assert.deepEqual(log, [
      "setup setup at 0",
      "workload safety ops=7 at 0",
      "converged? liveness at 500",
      "workload stops in liveness at 500",
      "converged? liveness at 550",
      "converged? liveness at 600",
      "check check after 3 polls at 600",
    ]);
    assert.equal(report.ops, 7);
    assert.deepEqual(report.plan, []);
    assert.equal(report.profile, undefined);
    assert.deepEqual(report.replayArgs, ["--seed", "1"]);
  });

  it("fails 'liveness' when the system never converges", async () => {
    const report = await runScenario(
      defineScenario({ ...base, livenessMs: 400, converged: () => false }),
      { seed: 1 },
    );
    assert.deepEqual(names(report), ["liveness"]);
    assert.match(report.failures[0]?.detail ?? "", /did not converge within 400 ms/);
    assert.ok(report.virtualMs >= 1400 && report.virtualMs < 1500, `${report.virtualMs}`);
  });

  it("fails 'liveness' when the workload ignores `stopping`", async () => {
    const report = await runScenario(
      defineScenario({
        ...base,
        livenessMs: 300,
        async workload(sim) {
          for (let i = 0; i < 1000; i++) await sim.sleep(100);
        },
      }),
      { seed: 1 },
    );
    assert.deepEqual(names(report), ["liveness"]);
    assert.match(report.failures[0]?.detail ?? "", /workload was still running/);
  });

  it("ends promptly, failing only 'liveness', when the workload never stops", async () => {
    const report = await runScenario(
      defineScenario({
        ...base,
        livenessMs: 300,
        async workload(sim) {
          for (;;) await sim.sleep(10);
        },
      }),
      { seed: 1 },
    );
    assert.deepEqual(names(report), ["liveness"]);
    assert.ok(report.events < 1000, `${report.events} events`);
  });

  it("fails 'workload threw' with the error's stack", async () => {
    const report = await runScenario(
      defineScenario({
        ...base,
        async workload(sim) {
          await sim.sleep(10);
          throw new Error("shopper fell over");
        },
      }),
      { seed: 1 },
    );
    assert.deepEqual(names(report), ["workload threw"]);
    assert.match(report.failures[0]?.detail ?? "", /shopper fell over[\s\S]*scenario\.test\.ts/);
    assert.equal(report.failures[0]?.atMs, 10);
  });

  it("fails 'scenario threw' when setup throws, and 'stuck' when it deadlocks; it never throws", async () => {
    const threw = await runScenario(
      defineScenario({
        ...base,
        setup: async () => {
          throw new Error("no cluster");
        },
      }),
      { seed: 1 },
    );
    assert.deepEqual(names(threw), ["scenario threw"]);
    assert.match(threw.failures[0]?.detail ?? "", /no cluster/);
    const stuck = await runScenario(
      defineScenario({ ...base, setup: () => new Promise<undefined>(() => {}) }),
      { seed: 1 },
    );
    assert.deepEqual(names(stuck), ["stuck"]);
    assert.match(stuck.failures[0]?.detail ?? "", /deadlock/);
  });

  it("reports a guard violation as the run's first failure", async () => {
    const report = await runScenario(
      defineScenario({
        ...base,
        async workload(sim) {
          sim.always(true, "fine");
          try {
            Math.random();
          } catch {}
        },
      }),
      { seed: 1 },
    );
    assert.deepEqual(names(report), ["determinism guard"]);
    assert.match(report.failures[0]?.detail ?? "", /Math\.random\(\)/);
  });

  it("reports `sometimes` that never held, and not those that did", async () => {
    const report = await runScenario(
      defineScenario({
        ...base,
        async workload(sim) {
          for (let i = 0; i < 5; i++) {
            sim.sometimes(i === 3, "reached three");
            sim.sometimes(i > 10, "reached eleven");
            await sim.sleep(10);
          }
        },
        check(sim) {
          sim.sometimes(false, "never in check");
        },
      }),
      { seed: 1 },
    );
    assert.ok(report.ok, "a missed `sometimes` is a coverage signal, not a failure");
    assert.deepEqual([...report.sometimesMissed].sort(), ["never in check", "reached eleven"]);
  });

  it("counts repeated failures of one `always` once, with the first time and detail", async () => {
    const report = await runScenario(
      defineScenario({
        ...base,
        async workload(sim) {
          for (let i = 0; i < 4; i++) {
            await sim.sleep(100);
            sim.always(i < 2, "small", () => `i was ${i}`);
          }
        },
      }),
      { seed: 1 },
    );
    assert.deepEqual(report.failures, [{ name: "small", detail: "i was 2", atMs: 300, count: 2 }]);
    assert.ok(formatTimeline(report).includes("FAILED small: i was 2"));
  });

  it("takes the same path whether started from a promise or from a timer callback", async () => {
    const scenario = echoScenario();
    const direct = await runScenario(scenario, { seed: 5 });
    const fromTimer = await new Promise<RunReport>((resolve, reject) => {
      setTimeout(() => {
        runScenario(scenario, { seed: 5 }).then(resolve, reject);
      }, 0);
    });
    assert.equal(fromTimer.hash, direct.hash);
    assert.equal(fromTimer.events, direct.events);
  });
});

/** A scenario with real nodes, calls and drawn faults of every kind. */
function echoScenario(): Scenario<Awaited<ReturnType<typeof echoCluster>>> {
  return defineScenario({
    name: "echo",
    safetyMs: 3000,
    livenessMs: 3000,
    ops: 40,
    faults: { protect: ["client"], ratePerSecond: 3, maxDurationMs: 500 },
    setup: (sim) => echoCluster(sim),
    async workload(sim, { echo, client }, run) {
      for (let i = 0; i < run.ops && !run.stopping; i++) {
        const r = await tryHit(client, echo, String(i), 300);
        sim.sometimes(r.startsWith("error"), "a call failed");
        await sim.sleep(50);
      }
    },
  });
}

describe("checkDeterminism", () => {
  it("passes for a clean scenario, with the same hash as a plain run", async () => {
    const scenario = echoScenario();
    for (const seed of [1, 2, 3]) {
      const result = await checkDeterminism(scenario, { seed });
      assert.equal(result.deterministic, true, JSON.stringify(result.divergence));
      assert.ok(result.events > 200, `${result.events} events`);
      assert.ok(result.report.plan.length > 0, "faults were drawn");
      const plain = await runScenario(scenario, { seed });
      assert.equal(plain.hash, result.hash);
      assert.equal(plain.events, result.events);
    }
  });

  it("detects state leaking across runs and names the first diverging event", async () => {
    let leaked = 0;
    const scenario = defineScenario({
      ...base,
      name: "leaky",
      async workload(sim) {
        const n = leaked++;
        // Run 1: the 100 ms timer fires before the other; run 2: after it.
        await Promise.all([sim.sleep(100), sim.sleep(n === 0 ? 150 : 50)]);
      },
    });
    const result = await checkDeterminism(scenario, { seed: 1 });
    assert.equal(result.deterministic, false);
    const d = result.divergence;
    assert.ok(d !== undefined);
    assert.match(d.first, /^timer t=100$/);
    assert.match(d.second, /^timer t=50$/);
    assert.equal(result.report.trace?.labels[d.index], d.first);
  });

  it("detects a leak that only changes when an event fires", async () => {
    let leaked = 0;
    const scenario = defineScenario({
      ...base,
      name: "leaky timing",
      async workload(sim) {
        await sim.sleep(leaked++ === 0 ? 100 : 101);
      },
    });
    const result = await checkDeterminism(scenario, { seed: 1 });
    assert.equal(result.deterministic, false);
    assert.match(result.divergence?.first ?? "", /t=100$/);
    assert.match(result.divergence?.second ?? "", /t=101$/);
  });

  it("detects a leak that only changes random draws", async () => {
    let leaked = 0;
    const scenario = defineScenario({
      ...base,
      name: "leaky draws",
      async workload(sim) {
        const random = sim.random("w");
        await sim.sleep(10);
        for (let i = 0; i <= leaked; i++) random.next();
        leaked++;
        await sim.sleep(10);
      },
    });
    const result = await checkDeterminism(scenario, { seed: 1 });
    assert.equal(result.deterministic, false);
    assert.match(result.divergence?.first ?? "", /t=20/, "the event after the extra draw");
  });
});

/**
 * Fails iff node x is down when operation 5 runs (operation i runs at (i + 1) × 100 ms into the
 * safety phase), so the one essential fault is a crash of x over 600 ms.
 */
const crashOverOp5 = (faults: Exclude<Scenario["faults"], undefined>) =>
  defineScenario({
    name: "crash over op 5",
    safetyMs: 3000,
    ops: 20,
    faults,
    async setup(sim) {
      for (const id of ["x", "y", "z"]) await sim.addNode(id);
    },
    async workload(sim, _state, run) {
      for (let i = 0; i < run.ops && !run.stopping; i++) {
        await sim.sleep(100);
        if (i === 5) sim.always(sim.node("x").status !== "crashed", "op 5 saw x down");
      }
    },
  });

const NOISY_PLAN: FaultStep[] = [
  { at: 0, kind: "link", drop: 0.2, delayMs: 5, durationMs: 2000 },
  { at: 50, kind: "clock-jump", node: "x", deltaMs: 4000 },
  { at: 100, kind: "crash", node: "y", durationMs: 2000 },
  { at: 200, kind: "pause", node: "z", durationMs: 500 },
  { at: 300, kind: "partition", a: ["x"], b: ["y", "z"], durationMs: 1000 },
  { at: 450, kind: "crash", node: "x", durationMs: 300 },
  { at: 500, kind: "clock-drift", node: "z", driftPpm: 100_000, durationMs: 800 },
  { at: 900, kind: "isolate", node: "z", durationMs: 300 },
  { at: 1500, kind: "crash", node: "x", durationMs: 200 },
];

describe("replay", () => {
  it("the printed flags of a drawn run reproduce its failure and hash", async () => {
    const scenario = crashOverOp5({
      kinds: ["crash", "pause", "clock-jump", "isolate"],
      ratePerSecond: 2,
    });
    let failing: RunReport | undefined;
    for (let seed = 1; seed <= 200 && failing === undefined; seed++) {
      const r = await runScenario(scenario, { seed });
      if (!r.ok) failing = r;
    }
    assert.ok(failing !== undefined, "some seed crashes x over op 5");
    assert.deepEqual(names(failing), ["op 5 saw x down"]);
    assert.deepEqual(failing.replayArgs, ["--seed", String(failing.seed)]);
    const again = await runScenario(scenario, parseReplay(failing.replayArgs));
    assert.deepEqual(names(again), names(failing));
    assert.equal(again.hash, failing.hash);
    assert.deepEqual(again.timeline, failing.timeline);
    // The same plan given explicitly takes the same path (only the nemesis's draws are missing).
    const explicit = await runScenario(scenario, { seed: failing.seed, plan: failing.plan });
    assert.deepEqual(explicit.timeline, failing.timeline);
  });

  it("the printed flags of a shrunk run (--plan, --ops, --ties) reproduce it", async () => {
    const scenario = crashOverOp5(false);
    const failing = await runScenario(scenario, { seed: 7, plan: NOISY_PLAN });
    assert.deepEqual(names(failing), ["op 5 saw x down"]);
    const { shrunk } = await shrink(scenario, failing);
    const args = shrunk.replayArgs;
    assert.equal(args[0], "--seed");
    assert.ok(args.includes("--plan") && args.includes("--ops") && args.includes("--ties"));
    const again = await runScenario(scenario, parseReplay(args));
    assert.deepEqual(names(again), names(shrunk));
    assert.equal(again.hash, shrunk.hash);
    assert.deepEqual(again.plan, shrunk.plan);
    assert.equal(again.ops, shrunk.ops);
  });
});

describe("formatTimeline", () => {
  it("cuts a long story at the limit but always keeps the failures", async () => {
    const report = await runScenario(
      defineScenario({
        ...base,
        async workload(sim) {
          for (let i = 0; i < 60; i++) {
            sim.note(`step ${i}`);
            await sim.sleep(1);
          }
          sim.fail("late failure", "after 60 lines");
          sim.note("epilogue");
        },
      }),
      { seed: 1 },
    );
    const text = formatTimeline(report, { limit: 10 });
    const lines = text.split("\n");
    assert.equal(lines.length, 12);
    assert.match(lines[0] ?? "", /^\s+0\.000 s {2}step 0$/);
    assert.match(lines[9] ?? "", /step 9$/);
    assert.equal(lines[10]?.trim(), "… 52 more lines");
    assert.match(lines[11] ?? "", /^\s+0\.060 s {2}FAILED late failure: after 60 lines$/);
    assert.equal(formatTimeline(report).split("\n").length, 42);
  });
});

describe("shrink", () => {
  it("reduces a noisy plan to the one essential fault and the fewest operations", async () => {
    const scenario = crashOverOp5(false);
    const failing = await runScenario(scenario, { seed: 3, plan: NOISY_PLAN });
    assert.deepEqual(names(failing), ["op 5 saw x down"]);
    const runs: boolean[] = [];
    const result = await shrink(scenario, failing, { onRun: (_n, ok) => runs.push(ok) });
    const { shrunk } = result;
    assert.equal(result.target, "op 5 saw x down");
    assert.equal(result.original, failing);
    assert.equal(result.runs, runs.length);
    assert.deepEqual(names(shrunk), ["op 5 saw x down"]);
    assert.equal(shrunk.plan.length, 1, describeShrink(result));
    const [step] = shrunk.plan;
    assert.ok(step?.kind === "crash" && step.node === "x" && step.at === 450);
    assert.ok(step.at + step.durationMs > 600, "still covers op 5");
    assert.equal(shrunk.ops, 6, "operations 0..5 are all it needs");
    assert.equal(shrunk.ties, "fifo");
    const text = describeShrink(result);
    assert.match(text, /shrunk from 9 faults and 20 operations to 1 fault and 6 operations/);
    assert.ok(text.includes(describeStep(step)));
    const timeline = formatTimeline(shrunk);
    assert.match(timeline, /crash x/);
    assert.match(timeline, /FAILED op 5 saw x down/);
  });

  it("shrinks a drawn plan too", async () => {
    const scenario = crashOverOp5({ kinds: ["crash", "pause", "clock-jump"], ratePerSecond: 3 });
    let failing: RunReport | undefined;
    for (let seed = 1; seed <= 200 && failing === undefined; seed++) {
      const r = await runScenario(scenario, { seed });
      if (!r.ok && r.plan.length >= 3) failing = r;
    }
    assert.ok(failing !== undefined);
    const { shrunk } = await shrink(scenario, failing);
    assert.equal(shrunk.plan.length, 1);
    assert.ok(shrunk.plan[0]?.kind === "crash" && shrunk.plan[0].node === "x");
    assert.equal(shrunk.ops, 6);
  });

  it("keeps to its run budget and refuses a passing run", async () => {
    const scenario = crashOverOp5(false);
    const failing = await runScenario(scenario, { seed: 3, plan: NOISY_PLAN });
    const result = await shrink(scenario, failing, { maxRuns: 4 });
    assert.ok(result.runs <= 4);
    assert.deepEqual(names(result.shrunk), ["op 5 saw x down"]);
    const passing = await runScenario(scenario, { seed: 3, plan: [] });
    assert.ok(passing.ok);
    await assert.rejects(shrink(scenario, passing), /shrink needs a failing run/);
  });
});
