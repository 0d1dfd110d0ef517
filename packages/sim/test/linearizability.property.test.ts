/**
 * Properties: a history produced by a real sequential register, with each operation taking effect
 * somewhere inside its interval, is always linearizable; make one read return a value nobody wrote
 * and it no longer is.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  checkLinearizability,
  createHistory,
  type KvInput,
  type KvOutput,
  kvModel,
  type Operation,
  type RegisterInput,
  type RegisterOutput,
  type RegisterValue,
  registerModel,
} from "../src/index.ts";
import { assertValidLinearization } from "./support.ts";

interface Action {
  readonly process: number;
  readonly kind: number;
  readonly key: number;
  readonly value: number;
  readonly roll: number;
}

const action = fc.record({
  process: fc.nat(3),
  kind: fc.nat(2),
  key: fc.nat(1),
  value: fc.nat(4),
  roll: fc.nat(99),
});

interface Pending {
  readonly id: number;
  readonly input: KvInput;
  applied: boolean;
  matched: boolean;
  output: KvOutput;
}

/**
 * Runs clients against one real store. Each action moves one process a step: invoke, then apply
 * (the linearization point), then complete. Some operations crash before or after applying
 * (`info`); some are still pending at the end.
 */
function simulate(actions: readonly Action[], keys: number): Operation<KvInput, KvOutput>[] {
  const store = new Map<string, RegisterValue>();
  const history = createHistory<KvInput, KvOutput>();
  const pending = new Map<number, Pending>();
  for (const { process, kind, key: k, value, roll } of actions) {
    const current = pending.get(process);
    const key = `k${k % keys}`;
    if (current === undefined) {
      const input: KvInput =
        kind === 0
          ? { f: "get", key }
          : kind === 1
            ? { f: "put", key, value }
            : { f: "cas", key, from: value, to: (value + 1 + (roll % 4)) % 5 };
      const id = history.invoke(process, input);
      pending.set(process, { id, input, applied: false, matched: false, output: null });
    } else if (roll < 8) {
      history.info(current.id); // a crash or a timeout, before or after taking effect
      pending.delete(process);
    } else if (!current.applied) {
      const { input } = current;
      const before = store.get(input.key) ?? null;
      if (input.f === "get") current.output = before;
      else if (input.f === "put") store.set(input.key, input.value);
      else if (before === input.from) {
        store.set(input.key, input.to);
        current.matched = true;
      }
      current.applied = true;
    } else {
      if (current.input.f === "cas" && !current.matched) history.fail(current.id);
      else history.ok(current.id, current.output);
      pending.delete(process);
    }
  }
  return history.operations();
}

function toRegister(op: Operation<KvInput, KvOutput>): Operation<RegisterInput, RegisterOutput> {
  const { input } = op;
  const register: RegisterInput =
    input.f === "get"
      ? { f: "read" }
      : input.f === "put"
        ? { f: "write", value: input.value }
        : { f: "cas", from: input.from, to: input.to };
  return { ...op, input: register };
}

/** The same history with one successful read now returning 99, a value never written. */
function corruptOneRead<I extends { f: string }, O>(
  ops: readonly Operation<I, O>[],
  pick: number,
  bad: O,
): { ops: Operation<I, O>[]; corrupted: Operation<I, O> } | undefined {
  const reads = ops.filter(
    (op) => op.status === "ok" && (op.input.f === "read" || op.input.f === "get"),
  );
  const target = reads[pick % Math.max(1, reads.length)];
  if (target === undefined) return undefined;
  const corrupted = { ...target, status: "ok" as const, output: bad };
  return { ops: ops.map((op) => (op === target ? corrupted : op)), corrupted };
}

describe("linearizability properties", () => {
  it("histories of a real register are linearizable; a read of an unwritten value is not", () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 100, size: "max" }), fc.nat(), (actions, pick) => {
        const ops = simulate(actions, 1).map(toRegister);
        const result = checkLinearizability(registerModel, ops);
        assert.equal(result.result, "linearizable");
        assertValidLinearization(registerModel, ops, result.partitions[0]?.linearization ?? []);

        const bad = corruptOneRead(ops, pick, 99);
        if (bad === undefined) return;
        const broken = checkLinearizability(registerModel, bad.ops);
        assert.equal(broken.result, "not-linearizable");
        assert.ok(broken.counterexample !== undefined);
      }),
      { numRuns: 300 },
    );
  });

  it("in a key-value store, the corrupted read's key is the one named", () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 120, size: "max" }), fc.nat(), (actions, pick) => {
        const ops = simulate(actions, 2);
        const result = checkLinearizability(kvModel, ops);
        assert.equal(result.result, "linearizable");
        for (const partition of result.partitions) {
          const own = ops.filter((op) => op.input.key === partition.key);
          assertValidLinearization(kvModel, own, partition.linearization ?? []);
        }

        const bad = corruptOneRead(ops, pick, 99);
        if (bad === undefined) return;
        const broken = checkLinearizability(kvModel, bad.ops);
        assert.equal(broken.result, "not-linearizable");
        assert.deepEqual(
          broken.partitions.filter((p) => p.result !== "linearizable").map((p) => p.key),
          [bad.corrupted.input.key],
        );
      }),
      { numRuns: 200 },
    );
  });
});
