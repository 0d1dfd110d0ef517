import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createHistory, HistoryError, operationsFromEvents } from "../src/index.ts";

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof HistoryError);
    return error.reason;
  }
  assert.fail("expected a HistoryError");
}

describe("createHistory", () => {
  it("records events and pairs them into operations", () => {
    const h = createHistory<string, number>();
    const a = h.invoke(1, "a", 10);
    const b = h.invoke(2, "b", 11);
    h.ok(a, 42, 12);
    h.fail(b, 13);
    const c = h.invoke(1, "c", 14);
    h.info(c, 15);
    h.invoke(2, "d", 16);
    assert.deepEqual(
      h.events().map((e) => [e.type, e.id, e.process, e.at]),
      [
        ["invoke", 0, 1, 10],
        ["invoke", 1, 2, 11],
        ["ok", 0, 1, 12],
        ["fail", 1, 2, 13],
        ["invoke", 2, 1, 14],
        ["info", 2, 1, 15],
        ["invoke", 3, 2, 16],
      ],
    );
    assert.deepEqual(h.operations(), [
      { id: 0, process: 1, input: "a", call: 10, return: 12, status: "ok", output: 42 },
      { id: 1, process: 2, input: "b", call: 11, return: 13, status: "fail" },
      { id: 2, process: 1, input: "c", call: 14, return: Number.POSITIVE_INFINITY, status: "info" },
      { id: 3, process: 2, input: "d", call: 16, return: Number.POSITIVE_INFINITY, status: "info" },
    ]);
  });

  it("uses the event index when no time is given", () => {
    const h = createHistory<string, null>();
    const a = h.invoke("p", "x");
    h.ok(a, null);
    assert.deepEqual(
      h.operations().map((op) => [op.call, op.return]),
      [[0, 1]],
    );
  });

  it("refuses what cannot happen", () => {
    const h = createHistory<string, null>();
    const a = h.invoke("p", "x", 5);
    assert.equal(
      reason(() => h.invoke("p", "y", 6)),
      "process-busy",
    );
    assert.equal(
      reason(() => h.ok(7, null, 6)),
      "unknown-operation",
    );
    assert.equal(
      reason(() => h.ok(a, null, 4)),
      "time-went-backwards",
    );
    h.ok(a, null, 6);
    assert.equal(
      reason(() => h.fail(a, 7)),
      "already-completed",
    );
  });

  it("operationsFromEvents refuses a completion without an invocation", () => {
    assert.equal(
      reason(() => operationsFromEvents([{ type: "ok", id: 0, process: 1, output: 1, at: 0 }])),
      "unknown-operation",
    );
  });
});
