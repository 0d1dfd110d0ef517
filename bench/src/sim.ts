import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRealEnv } from "@keel/core";
import shop from "@keel/example-shop/simulation";
import {
  checkLinearizability,
  createSimulation,
  parseJepsenLog,
  registerModel,
  runScenario,
} from "@keel/sim";
import type { BenchCase, MeasuredCase, Measurement, PreparedSuite } from "./harness.ts";

const here = dirname(fileURLToPath(import.meta.url));
/** The Jepsen etcd corpus in shared/, beside the repository. */
const CORPUS = resolve(here, "../../../shared/corpus/jepsen-etcd");

/** Micro workload: 100 tasks, each sleeping a random 1–10 ms in a loop; one event per sleep. */
async function microEvents(seconds: number, maxOps: number): Promise<Measurement> {
  const clock = createRealEnv().clock;
  const batch = Math.min(maxOps, 200_000);
  let events = 0;
  let elapsedMs = 0;
  let seed = 1;
  while (elapsedMs < seconds * 1000 && events < maxOps) {
    const sim = createSimulation({ seed: seed++ });
    const random = sim.random("micro");
    const t0 = clock.now();
    await sim.run(async () => {
      const task = async () => {
        for (let i = 0; i < batch / 100; i++) await sim.env.timers.sleep(1 + random.int(10));
      };
      await Promise.all(Array.from({ length: 100 }, task));
    });
    elapsedMs += clock.now() - t0;
    events += sim.events;
  }
  return { ops: events, elapsedMs, metrics: { "events/s": (events / elapsedMs) * 1000 } };
}

/** The shop scenario (7 nodes, drawn faults, 20 s safety + liveness): seeds in a row. */
async function shopSeeds(seconds: number, maxOps: number): Promise<Measurement> {
  const clock = createRealEnv().clock;
  let seeds = 0;
  let virtualMs = 0;
  let events = 0;
  let failures = 0;
  const t0 = clock.now();
  while (clock.now() - t0 < seconds * 1000 && seeds < maxOps) {
    const report = await runScenario(shop, { seed: 1000 + seeds });
    seeds++;
    virtualMs += report.virtualMs;
    events += report.events;
    if (!report.ok) failures++;
  }
  const elapsedMs = clock.now() - t0;
  if (failures > 0) throw new Error(`${failures} shop seeds failed their invariants`);
  return {
    ops: seeds,
    elapsedMs,
    metrics: {
      "sim/real": virtualMs / elapsedMs,
      "events/s": (events / elapsedMs) * 1000,
      "virtual s/seed": virtualMs / seeds / 1000,
    },
  };
}

/**
 * The simulation suite: the simulator's event rate on a micro workload, how much faster than real
 * time it runs the shop scenario, and the linearizability checker on the real Jepsen etcd corpus
 * (68 histories with known verdicts). Porcupine (Go), the checker's peer, is not runnable on this
 * machine kind; its published figure on this VM is about 0.69 s for a corpus half again as large.
 */
export async function prepare(): Promise<PreparedSuite> {
  let files: string[];
  try {
    files = readdirSync(CORPUS).filter((f) => f.endsWith(".log"));
  } catch {
    throw new Error(
      `the Jepsen corpus is missing at ${CORPUS} (shared/ must sit beside the repository)`,
    );
  }
  const verdicts = JSON.parse(readFileSync(join(CORPUS, "verdicts.json"), "utf8")) as Record<
    string,
    string
  >;
  const texts = files.map((f) => readFileSync(join(CORPUS, f), "utf8"));
  const histories = texts.map((t) => parseJepsenLog(t).operations);
  const clock = createRealEnv().clock;

  const checkAll = () => {
    let wrong = 0;
    for (let i = 0; i < histories.length; i++) {
      const { result } = checkLinearizability(registerModel, histories[i]!, {
        clock,
        timeLimitMs: 10_000,
      });
      if (result !== verdicts[files[i]!]) wrong++;
    }
    if (wrong > 0) throw new Error(`${wrong} verdicts disagree with verdicts.json`);
    return wrong;
  };
  checkAll(); // a verdict that disagrees fails the benchmark before any figure is printed

  const cases: Array<BenchCase | MeasuredCase> = [
    {
      id: "check-corpus",
      label: `check all ${files.length} etcd histories (register model), verdicts asserted`,
      op: checkAll,
      batch: 1,
    },
    {
      id: "parse-corpus",
      label: `parse all ${files.length} Jepsen logs`,
      op: () => texts.reduce((n, t) => n + parseJepsenLog(t).operations.length, 0),
      batch: 1,
    },
    {
      id: "micro-events",
      label: "simulator: 100 tasks sleeping 1-10 ms (ops = events)",
      measure: microEvents,
    },
    {
      id: "shop-seeds",
      label: "simulator: shop scenario, one seed = 7 nodes, ~21 s virtual (ops = seeds)",
      measure: shopSeeds,
    },
  ];
  return {
    suite: {
      name: "sim",
      description:
        "simulation: events/s on a micro workload, shop scenario vs real time, linearizability checker on the Jepsen etcd corpus",
      reference: "check-corpus",
      cases,
      comparisons: [],
      notes: [
        "ns/op of check-corpus is the time to check the whole corpus once; target < 0.5 s (500,000,000 ns).",
        "micro-events: target >= 1,000,000 events/s. shop-seeds: sim/real is virtual ms per real ms over whole seeds (setup, 20 s of faults, liveness, checks); target >= 1000.",
        "Porcupine (Go) takes about 0.69 s on this VM for the full 102-history corpus (shared/research/perf-anchors.md); it cannot run here, so it is not in the same run.",
      ],
    },
    teardown: () => Promise.resolve(),
  };
}
