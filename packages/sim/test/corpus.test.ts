/**
 * Real Jepsen histories of etcd (published with Porcupine), with the verdicts Porcupine and Knossos
 * give: the checker must agree on every one of them.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { createRealEnv } from "@keel/core";
import {
  checkLinearizability,
  describeLinearizability,
  parseJepsenLog,
  registerModel,
} from "../src/index.ts";
import { assertValidLinearization } from "./support.ts";

const repoRoot = path.resolve(import.meta.dirname, "..", "..", "..");
const corpus = path.resolve(repoRoot, "../shared/corpus/jepsen-etcd");
const TIME_LIMIT_MS = 10_000;

function loadCorpus(): { files: string[]; verdicts: Record<string, string> } {
  assert.ok(
    existsSync(corpus),
    `the Jepsen etcd corpus is missing: expected it at ${corpus} (the shared/ folder beside the repository)`,
  );
  const files = readdirSync(corpus)
    .filter((f) => /^etcd_.*\.log$/.test(f))
    .sort();
  const verdicts = JSON.parse(readFileSync(path.join(corpus, "verdicts.json"), "utf8")) as Record<
    string,
    string
  >;
  return { files, verdicts };
}

describe("jepsen etcd corpus", () => {
  it("gives every history the verdict Porcupine and Knossos give", (t) => {
    const { files, verdicts } = loadCorpus();
    assert.equal(files.length, 68, "68 histories in the corpus");
    const clock = createRealEnv().clock;
    const disagreements: string[] = [];
    let checking = 0;
    let steps = 0;
    let linearizable = 0;
    for (const file of files) {
      const expected = verdicts[file];
      assert.ok(expected !== undefined, `${file} has a verdict in verdicts.json`);
      const { operations } = parseJepsenLog(readFileSync(path.join(corpus, file), "utf8"));
      const start = clock.now();
      const result = checkLinearizability(registerModel, operations, {
        clock,
        timeLimitMs: TIME_LIMIT_MS,
      });
      checking += clock.now() - start;
      steps += result.steps;
      if (result.result !== expected) {
        disagreements.push(`${file}: expected ${expected}, got ${result.result}`);
        continue;
      }
      const [partition] = result.partitions;
      if (result.result === "linearizable") {
        linearizable++;
        assert.ok(partition?.linearization !== undefined, `${file}: a witness`);
        assertValidLinearization(registerModel, operations, partition.linearization);
      } else {
        const counterexample = result.counterexample;
        assert.ok(counterexample !== undefined, `${file}: a counterexample`);
        assert.ok(counterexample.candidates.length > 0, `${file}: candidates to explain`);
        assert.match(describeLinearizability(registerModel, result), /no order could place it/);
      }
    }
    assert.deepEqual(disagreements, [], "verdicts disagree");
    assert.equal(linearizable, 14, "14 linearizable, 54 not");
    t.diagnostic(
      `checked ${files.length} histories in ${checking.toFixed(1)} ms (${steps} search steps)`,
    );
  });

  it("explains a violation with the longest prefix and the operation that broke it", () => {
    loadCorpus();
    const { operations } = parseJepsenLog(readFileSync(path.join(corpus, "etcd_000.log"), "utf8"));
    const result = checkLinearizability(registerModel, operations);
    assert.equal(result.result, "not-linearizable");
    const text = describeLinearizability(registerModel, result);
    assert.match(text, /longest linearizable prefix \(\d+ operations\)/);
    assert.match(text, /read → \d+ \[\d+, \d+\] returned, but no order could place it/);
  });
});
