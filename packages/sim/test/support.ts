import assert from "node:assert/strict";
import type { LinearizedOperation, Model, Operation } from "../src/index.ts";

/**
 * Checks a witness independently of the search: every definite operation appears once, the order
 * respects real time, and replaying it through the model is legal and gives the recorded states.
 */
export function assertValidLinearization<S, I, O>(
  model: Model<S, I, O>,
  operations: readonly Operation<I, O>[],
  linearization: readonly LinearizedOperation<S, I, O>[],
): void {
  const placed = new Set(linearization.map((step) => step.operation.id));
  assert.equal(placed.size, linearization.length, "no operation is placed twice");
  for (const op of operations) {
    if (op.status === "info") continue;
    if (model.irrelevant?.(op.input, op) === true) continue;
    assert.ok(placed.has(op.id), `operation ${op.id} is in the linearization`);
  }
  for (let i = 0; i < linearization.length; i++) {
    for (let j = i + 1; j < linearization.length; j++) {
      const a = linearization[i]!.operation;
      const b = linearization[j]!.operation;
      assert.ok(!(b.return < a.call), `#${b.id} returned before #${a.id} was called`);
    }
  }
  let state = model.init();
  for (const step of linearization) {
    const result = model.step(state, step.operation.input, step.operation);
    assert.ok(result.ok, `#${step.operation.id} is legal where it is placed`);
    state = result.state;
    assert.ok((model.equal ?? Object.is)(state, step.state), "recorded state matches the replay");
  }
}

/** A clock that jumps `stride` milliseconds every time it is read. */
export function jumpingClock(stride: number): { now(): number; reads: number } {
  let t = 0;
  const clock = {
    reads: 0,
    now() {
      clock.reads++;
      t += stride;
      return t;
    },
  };
  return clock;
}
