/**
 * Simulation: a replicated register as a scenario, run over seeds, checked for linearizability;
 * a broken variant (asynchronous replication) is caught, replayed exactly and shrunk.
 *
 * Run from the repository root: npx node docs/examples/simulation.ts
 * The module is also a scenario module for the CLI:
 *   npx keel sim docs/examples/simulation.ts --seeds 50
 *   npx keel sim docs/examples/simulation.ts --scenario broken --seeds 50 --shrink
 */
import assert from "node:assert/strict";
import { defineEvent, defineService, type KeelNode } from "@keel/core";
import {
  checkDeterminism,
  checkLinearizability,
  defineScenario,
  describeLinearizability,
  describeShrink,
  formatTimeline,
  type HistoryRecorder,
  type RegisterInput,
  type RegisterOutput,
  type RunReport,
  registerModel,
  runScenario,
  type Scenario,
  shrink,
} from "@keel/sim";
import { z } from "zod";

/** A value changed on one replica (the broken variant copies it to the others). */
const changed = defineEvent("register.changed", z.object({ value: z.number().nullable() }));

/** A register service over `cell`: read the value, write a new one. */
function registerService(cell: { value: number | null }, replicate: boolean) {
  return defineService("register")
    .action("read", {
      input: z.object({}),
      output: z.object({ value: z.number().nullable() }),
      idempotent: true,
      handler: () => ({ value: cell.value }),
    })
    .action("write", {
      input: z.object({ value: z.number() }),
      output: z.object({}),
      handler: ({ value }, ctx) => {
        cell.value = value;
        // The bug: answer now and copy the value to the other replicas later. A read on another
        // replica before the copy lands returns the old value after the write has returned.
        if (replicate) ctx.broadcast(changed, { value });
        return {};
      },
    })
    .on(changed, ({ value }) => {
      cell.value = value;
    });
}

interface State {
  readonly client: KeelNode;
  readonly service: ReturnType<typeof registerService>;
  readonly history: HistoryRecorder<RegisterInput, RegisterOutput>;
}

/** The scenario: two replicas, a client with three processes, faults drawn per seed. */
function registerScenario(broken: boolean): Scenario<State> {
  return defineScenario<State>({
    name: broken ? "register (async replication)" : "register",
    safetyMs: 3000,
    livenessMs: 1000,
    ops: 60,
    // Faults on the replicas only: the client's node is the test's own.
    faults: { protect: ["client"], ratePerSecond: 2, maxDurationMs: 600 },
    async setup(sim) {
      // Correct: both replicas use one database. Broken: each process keeps its own copy, which a
      // crash loses (the options function runs again at each restart, as a new process would).
      const shared = { value: null };
      for (const id of ["replica-1", "replica-2"]) {
        await sim.addNode(id, () => ({
          services: [registerService(broken ? { value: null } : shared, broken)],
        }));
      }
      const service = registerService(shared, false);
      const client = (await sim.addNode("client")).node;
      await client.waitForEndpoints(service, 2);
      return { client, service, history: sim.history() };
    },
    async workload(sim, { client, service, history }, run) {
      const random = sim.random("workload");
      let next = 0;
      const process = async (p: number) => {
        while (!run.stopping && next < run.ops) {
          const write = random.next() < 0.5;
          const value = ++next;
          await sim.operation(
            history,
            p,
            write ? { f: "write", value } : { f: "read" },
            async () => {
              if (!write) return (await client.call(service, "read", {}, { timeoutMs: 300 })).value;
              await client.call(service, "write", { value }, { timeoutMs: 300 });
              return null;
            },
          );
          await sim.sleep(random.int(40));
        }
      };
      await Promise.all([process(1), process(2), process(3)]);
    },
    check(sim, { history }) {
      const result = checkLinearizability(registerModel, history.operations(), {
        maxSteps: 1_000_000,
      });
      sim.always(result.result !== "not-linearizable", "linearizable", () =>
        describeLinearizability(registerModel, result),
      );
      sim.sometimes(
        history.operations().some((op) => op.status === "info"),
        "an operation's outcome is unknown",
      );
    },
  });
}

/** The register as it should be. */
export default registerScenario(false);
/** The register with asynchronous replication. */
export const broken = registerScenario(true);

if (import.meta.main) {
  // 1. The correct register holds on every seed, under crashes, pauses, partitions and skew.
  for (let seed = 1; seed <= 20; seed++) {
    const report = await runScenario(registerScenario(false), { seed });
    assert.ok(report.ok, `seed ${seed}: ${report.failures[0]?.detail}`);
  }

  // 2. The broken one fails within a few seeds; the report says how to replay it.
  let failing: RunReport | undefined;
  for (let seed = 1; seed <= 50 && failing === undefined; seed++) {
    const report = await runScenario(broken, { seed });
    if (!report.ok) failing = report;
  }
  assert.ok(failing !== undefined, "the broken register fails within 50 seeds");
  assert.equal(failing.failures[0]?.name, "linearizable");
  console.log(`seed ${failing.seed} fails:\n${failing.failures[0]?.detail}\n`);
  console.log(
    `replay: npx keel sim docs/examples/simulation.ts --scenario broken ${failing.replayArgs.join(" ")}\n`,
  );

  // 3. The same seed is the same run: every event and every random draw.
  const again = await runScenario(broken, { seed: failing.seed });
  assert.equal(again.hash, failing.hash);
  assert.deepEqual(again.failures, failing.failures);

  // 4. Shrinking keeps the failure and drops the faults and operations it does not need.
  const small = await shrink(broken, failing, { maxRuns: 100 });
  assert.ok(small.shrunk.plan.length <= failing.plan.length);
  assert.ok(small.shrunk.failures.some((f) => f.name === "linearizable"));
  console.log(describeShrink(small));
  console.log(formatTimeline(small.shrunk));

  // 5. The self-check: run a seed twice and compare event by event.
  const determinism = await checkDeterminism(broken, { seed: failing.seed });
  assert.ok(determinism.deterministic, JSON.stringify(determinism.divergence));
}
