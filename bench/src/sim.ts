import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { createRealEnv } from "@keel/core";
import { checkLinearizability, parseJepsenLog, registerModel } from "@keel/sim";
import type { BenchCase, MeasuredCase, Measurement, PreparedSuite } from "./harness.ts";

const here = dirname(fileURLToPath(import.meta.url));
/** The Jepsen etcd corpus in shared/, beside the repository. */
const CORPUS = resolve(here, "../../../shared/corpus/jepsen-etcd");

/**
 * Runs a simulator case in a fresh worker thread. The harness forces a full GC before each
 * measurement; after one, Node's own process.nextTick (the simulator's handoff, once per event)
 * was seen to run at half speed for the rest of the process (1.4M events/s fell to 0.77M), which
 * `keel sim` runs, with no forced GC, do not meet. A worker per measurement measures what they do.
 */
function inWorker(name: "micro" | "shop") {
  return (seconds: number, maxOps: number): Promise<Measurement> =>
    new Promise((resolvePromise, reject) => {
      const worker = new Worker(new URL("./sim-cases.ts", import.meta.url), {
        workerData: { name, seconds, maxOps },
      });
      worker.once("message", (m: Measurement) => resolvePromise(m));
      worker.once("error", reject);
      worker.once("exit", (code) => {
        if (code !== 0) reject(new Error(`the ${name} worker exited with ${code}`));
      });
    });
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
      measure: inWorker("micro"),
    },
    {
      id: "shop-seeds",
      label: "simulator: shop scenario, one seed = 7 nodes, ~21 s virtual (ops = seeds)",
      measure: inWorker("shop"),
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
