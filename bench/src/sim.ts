import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRealEnv } from "@keel/core";
import { checkLinearizability, parseJepsenLog, registerModel } from "@keel/sim";
import type { BenchCase, PreparedSuite } from "./harness.ts";

const here = dirname(fileURLToPath(import.meta.url));
/** The Jepsen etcd corpus in shared/, beside the repository. */
const CORPUS = resolve(here, "../../../shared/corpus/jepsen-etcd");

/**
 * The simulation suite: for now, the linearizability checker on the real Jepsen etcd corpus
 * (68 histories with known verdicts). Its peer, Porcupine (Go), is not runnable on this machine
 * kind; its published figure on this VM is about 0.69 s for a corpus half again as large.
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

  const cases: BenchCase[] = [
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
  ];
  return {
    suite: {
      name: "sim",
      description: "simulation: the linearizability checker on the Jepsen etcd corpus",
      reference: "check-corpus",
      cases,
      comparisons: [],
      notes: [
        "ns/op of check-corpus is the time to check the whole corpus once; target < 0.5 s (500,000,000 ns).",
        "Porcupine (Go) takes about 0.69 s on this VM for the full 102-history corpus (shared/research/perf-anchors.md); it cannot run here, so it is not in the same run.",
      ],
    },
    teardown: () => Promise.resolve(),
  };
}
