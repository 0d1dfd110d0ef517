import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkLinearizability,
  createHistory,
  describeLinearizability,
  HistoryError,
  type KvInput,
  type KvOutput,
  kvModel,
  type Operation,
  type RegisterInput,
  type RegisterOutput,
  type RegisterValue,
  registerModel,
} from "../src/index.ts";
import { assertValidLinearization, jumpingClock } from "./support.ts";

type RegisterOp = Operation<RegisterInput, RegisterOutput>;

const read: RegisterInput = { f: "read" };
const write = (value: RegisterValue): RegisterInput => ({ f: "write", value });
const cas = (from: RegisterValue | null, to: RegisterValue): RegisterInput => ({
  f: "cas",
  from,
  to,
});

/**
 * [process, input, call, return, result]: return `"info"` for an unknown outcome; result `"fail"`
 * for a failed operation, else the output (default `null`).
 */
type Spec = [number, RegisterInput, number, number | "info", (RegisterOutput | "fail")?];

function history(...specs: Spec[]): RegisterOp[] {
  return specs.map(([process, input, call, ret, result], id): RegisterOp => {
    if (ret === "info") {
      return { id, process, input, call, return: Number.POSITIVE_INFINITY, status: "info" };
    }
    if (result === "fail") return { id, process, input, call, return: ret, status: "fail" };
    return { id, process, input, call, return: ret, status: "ok", output: result ?? null };
  });
}

function check(ops: RegisterOp[]) {
  const result = checkLinearizability(registerModel, ops);
  if (result.result === "linearizable") {
    assertValidLinearization(registerModel, ops, result.partitions[0]?.linearization ?? []);
  }
  return result;
}

describe("checkLinearizability on a register", () => {
  it("accepts the empty history", () => {
    assert.equal(check([]).result, "linearizable");
  });

  it("accepts a sequential history", () => {
    const ops = history(
      [1, read, 0, 1, null],
      [1, write(1), 2, 3],
      [2, read, 4, 5, 1],
      [2, cas(1, 2), 6, 7],
      [1, read, 8, 9, 2],
    );
    const result = check(ops);
    assert.equal(result.result, "linearizable");
    assert.deepEqual(
      result.partitions[0]?.linearization?.map((s) => s.operation.id),
      [0, 1, 2, 3, 4],
    );
  });

  it("accepts a concurrent history that needs reordering", () => {
    // write 1 is invoked first but must take effect after write 2, for the read to see 1.
    const ops = history([1, write(1), 0, 10], [2, write(2), 1, 3], [3, read, 4, 5, 1]);
    const result = check(ops);
    assert.equal(result.result, "linearizable");
    assert.deepEqual(
      result.partitions[0]?.linearization?.map((s) => s.operation.id),
      [1, 0, 2],
    );
  });

  it("rejects a stale read and explains it", () => {
    const ops = history([1, write(1), 0, 1], [1, write(2), 2, 3], [2, read, 4, 5, 1]);
    const result = check(ops);
    assert.equal(result.result, "not-linearizable");
    const counterexample = result.counterexample;
    assert.ok(counterexample !== undefined);
    assert.deepEqual(
      counterexample.prefix.map((s) => [s.operation.id, s.state]),
      [
        [0, 1],
        [1, 2],
      ],
    );
    assert.equal(counterexample.state, 2);
    assert.equal(counterexample.blocked.id, 2);
    assert.deepEqual(
      counterexample.candidates.map((c) => [c.operation.id, c.legal]),
      [[2, false]],
    );
    const text = describeLinearizability(registerModel, result);
    assert.match(text, /^not-linearizable/);
    assert.match(text, /#2 p2 read → 1 \[4, 5\] returned, but no order could place it \(state 2\)/);
    assert.match(text, /illegal in this state/);
  });

  it("rejects a read of a value that was never written, even as the first operation", () => {
    const result = check(history([1, read, 0, 1, 7]));
    assert.equal(result.result, "not-linearizable");
    assert.equal(result.counterexample?.prefix.length, 0);
    assert.match(describeLinearizability(registerModel, result), /no operation can go first/);
  });

  it("accepts overlapping reads that see old and new values in either order", () => {
    const ops = history([1, write(1), 0, 10], [2, read, 1, 2, null], [3, read, 3, 4, 1]);
    assert.equal(check(ops).result, "linearizable");
    // …but not a new value followed by the old one, once the first read returned.
    const flipped = history([1, write(1), 0, 10], [2, read, 1, 2, 1], [3, read, 3, 4, null]);
    assert.equal(check(flipped).result, "not-linearizable");
  });

  describe("compare-and-set", () => {
    it("ok only when the value matched", () => {
      assert.equal(
        check(history([1, write(1), 0, 1], [1, cas(1, 2), 2, 3], [1, read, 4, 5, 2])).result,
        "linearizable",
      );
      assert.equal(
        check(history([1, write(1), 0, 1], [1, cas(3, 4), 2, 3])).result,
        "not-linearizable",
      );
    });

    it("from absent", () => {
      assert.equal(
        check(history([1, cas(null, 5), 0, 1], [1, read, 2, 3, 5])).result,
        "linearizable",
      );
    });

    it("fail only when the value did not match, and leaves the state alone", () => {
      assert.equal(
        check(history([1, write(1), 0, 1], [1, cas(3, 4), 2, 3, "fail"], [1, read, 4, 5, 1]))
          .result,
        "linearizable",
      );
      assert.equal(
        check(history([1, write(1), 0, 1], [1, cas(1, 4), 2, 3, "fail"])).result,
        "not-linearizable",
      );
      assert.equal(
        check(history([1, write(1), 0, 1], [1, cas(3, 4), 2, 3, "fail"], [1, read, 4, 5, 4]))
          .result,
        "not-linearizable",
      );
    });

    it("a failed cas may be placed after a concurrent write that changed the value", () => {
      const ops = history([1, write(1), 0, 1], [2, cas(1, 2), 2, 5, "fail"], [3, write(3), 3, 4]);
      assert.equal(check(ops).result, "linearizable");
    });
  });

  describe("indeterminate operations", () => {
    it("may take effect after their invocation", () => {
      const ops = history([1, write(1), 0, 1], [2, write(2), 2, "info"], [3, read, 5, 6, 2]);
      assert.equal(check(ops).result, "linearizable");
    });

    it("may take effect long after the client gave up", () => {
      const ops = history(
        [1, write(1), 0, 1],
        [2, write(2), 2, "info"],
        [3, read, 5, 6, 1],
        [3, read, 7, 8, 2],
      );
      assert.equal(check(ops).result, "linearizable");
    });

    it("may never take effect", () => {
      const ops = history(
        [1, write(1), 0, 1],
        [2, write(2), 2, "info"],
        [2, cas(1, 3), 3, "info"],
        [3, read, 5, 6, 1],
        [3, read, 7, 8, 1],
      );
      const result = check(ops);
      assert.equal(result.result, "linearizable");
      const placed = result.partitions[0]?.linearization?.map((s) => s.operation.id) ?? [];
      assert.ok(!placed.includes(1) && !placed.includes(2), "the info operations are left out");
    });

    it("take effect at most once", () => {
      const ops = history(
        [1, write(1), 0, 1],
        [2, write(2), 2, "info"],
        [3, read, 5, 6, 2],
        [3, read, 7, 8, 1],
      );
      assert.equal(check(ops).result, "not-linearizable");
    });

    it("an info cas takes effect only if its value matched", () => {
      assert.equal(
        check(history([1, write(1), 0, 1], [2, cas(1, 2), 2, "info"], [3, read, 3, 4, 2])).result,
        "linearizable",
      );
      assert.equal(
        check(history([1, write(1), 0, 1], [2, cas(5, 2), 2, "info"], [3, read, 3, 4, 2])).result,
        "not-linearizable",
      );
    });

    it("a read with an unknown result constrains nothing", () => {
      const ops = history([1, write(1), 0, 1], [2, read, 2, "info"], [3, read, 3, 4, 1]);
      const result = check(ops);
      assert.equal(result.result, "linearizable");
      assert.equal(result.partitions[0]?.operations, 2, "the info read is dropped");
    });
  });

  it("checks what the recorder recorded", () => {
    const h = createHistory<RegisterInput, RegisterOutput>();
    const w = h.invoke("a", write(1));
    const r = h.invoke("b", read);
    h.ok(w, null);
    h.ok(r, 1);
    const lost = h.invoke("a", write(2));
    h.info(lost);
    const pending = h.invoke("c", cas(1, 3));
    const r2 = h.invoke("b", read);
    h.ok(r2, 3);
    assert.equal(pending, 3);
    const ops = h.operations();
    assert.deepEqual(
      ops.map((op) => [op.status, op.call, op.return]),
      [
        ["ok", 0, 2],
        ["ok", 1, 3],
        ["info", 4, Number.POSITIVE_INFINITY],
        ["info", 6, Number.POSITIVE_INFINITY],
        ["ok", 7, 8],
      ],
    );
    assert.equal(check(ops).result, "linearizable");
  });

  it("rejects operations whose return is before their call, or a definite one that never returned", () => {
    const backwards = history([1, write(1), 5, 4]);
    assert.throws(() => check(backwards), HistoryError);
    const never: RegisterOp[] = [
      {
        id: 0,
        process: 1,
        input: read,
        call: 0,
        return: Number.POSITIVE_INFINITY,
        status: "ok",
        output: null,
      },
    ];
    assert.throws(() => check(never), /needs a finite return/);
  });
});

describe("checkLinearizability on a key-value store", () => {
  const get = (key: string): KvInput => ({ f: "get", key });
  const put = (key: string, value: RegisterValue): KvInput => ({ f: "put", key, value });

  function kv(
    ...specs: Array<[number, KvInput, number, number, KvOutput?]>
  ): Operation<KvInput, KvOutput>[] {
    return specs.map(([process, input, call, ret, output], id) => ({
      id,
      process,
      input,
      call,
      return: ret,
      status: "ok",
      output: output ?? null,
    }));
  }

  it("checks each key on its own and names the key that is not linearizable", () => {
    const ops = kv(
      [1, put("a", 1), 0, 1],
      [2, put("b", 1), 0, 1],
      [1, put("a", 2), 2, 3],
      [2, put("b", 2), 2, 3],
      [3, get("a"), 4, 5, 2],
      [3, get("b"), 6, 7, 1],
      [4, get("c"), 6, 7, null],
    );
    const result = checkLinearizability(kvModel, ops);
    assert.equal(result.result, "not-linearizable");
    assert.deepEqual(
      result.partitions.map((p) => [p.key, p.result]),
      [
        ["a", "linearizable"],
        ["b", "not-linearizable"],
        ["c", "linearizable"],
      ],
    );
    assert.equal(result.counterexample?.partition, "b");
    assert.equal(result.counterexample?.blocked.id, 5);
    const text = describeLinearizability(kvModel, result);
    assert.match(text, /"b": not-linearizable/);
    assert.match(text, /partition "b" of kv/);
    assert.match(text, /get "b" → 1/);
  });

  it("keeps keys apart: a value written to one key is not seen on another", () => {
    const ops = kv([1, put("a", 1), 0, 1], [2, get("b"), 2, 3, 1]);
    assert.equal(checkLinearizability(kvModel, ops).result, "not-linearizable");
  });

  it("works unpartitioned too, with the whole store as the state", () => {
    const { partition: _, ...unpartitioned } = kvModel;
    const ops = kv([1, put("a", 1), 0, 1], [2, put("b", 2), 0, 1], [3, get("a"), 2, 3, 1]);
    const result = checkLinearizability(unpartitioned, ops);
    assert.equal(result.result, "linearizable");
    assert.deepEqual(result.partitions[0]?.linearization?.at(-1)?.state, { a: 1, b: 2 });
  });
});

describe("limits", () => {
  // Every write overlaps every other and a read of a value nobody wrote: deciding means trying
  // every subset of the writes before the read, 2^24 of them.
  const pathological = history(
    ...Array.from({ length: 24 }, (_, i): Spec => [i, write(i + 1), 0, 100]),
    [99, read, 1, 99, 1000],
  );

  it("gives up with unknown when the time limit passes on the injected clock", () => {
    const clock = jumpingClock(1_000);
    const result = checkLinearizability(registerModel, pathological, {
      clock,
      timeLimitMs: 5_000,
      checkEvery: 100,
    });
    assert.equal(result.result, "unknown");
    assert.equal(result.partitions[0]?.gaveUp, "time-limit");
    assert.equal(result.counterexample, undefined);
    // Read once for the deadline, then every 100 steps until it had jumped past it.
    assert.equal(clock.reads, 6);
    assert.equal(result.steps, 500);
    assert.match(describeLinearizability(registerModel, result), /gave up: time-limit/);
  });

  it("gives up with unknown after a step budget, the same on every machine", () => {
    const result = checkLinearizability(registerModel, pathological, { maxSteps: 10_000 });
    assert.equal(result.result, "unknown");
    assert.equal(result.partitions[0]?.gaveUp, "step-limit");
    assert.equal(result.steps, 10_000);
  });

  it("stops checking further partitions once the budget is spent", () => {
    const ops: Operation<KvInput, KvOutput>[] = pathological.map((op) => ({
      ...op,
      input:
        op.input.f === "write"
          ? { f: "put", key: "slow", value: op.input.value }
          : { f: "get", key: "slow" },
    }));
    ops.push({
      id: ops.length,
      process: 7,
      input: { f: "get", key: "fast" },
      call: 0,
      return: 1,
      status: "ok",
      output: null,
    });
    const result = checkLinearizability(kvModel, ops, { maxSteps: 1_000 });
    assert.equal(result.result, "unknown");
    assert.deepEqual(
      result.partitions.map((p) => [p.key, p.result, p.gaveUp]),
      [
        ["slow", "unknown", "step-limit"],
        ["fast", "unknown", "not-checked"],
      ],
    );
  });

  it("looks at the clock across many small partitions, not once per partition", () => {
    const ops: Operation<KvInput, KvOutput>[] = [];
    for (let k = 0; k < 50; k++) {
      const key = `k${k}`;
      ops.push(
        {
          id: ops.length,
          process: k,
          input: { f: "put", key, value: k },
          call: 0,
          return: 1,
          status: "ok",
          output: null,
        },
        {
          id: ops.length + 1,
          process: k,
          input: { f: "get", key },
          call: 2,
          return: 3,
          status: "ok",
          output: k,
        },
      );
    }
    const result = checkLinearizability(kvModel, ops, {
      clock: jumpingClock(1_000),
      timeLimitMs: 3_000,
      checkEvery: 5,
    });
    assert.equal(result.result, "unknown");
    const verdicts = result.partitions.map((p) => p.gaveUp ?? p.result);
    assert.deepEqual(verdicts.slice(0, 8), Array(7).fill("linearizable").concat("time-limit"));
    assert.ok(verdicts.slice(8).every((v) => v === "not-checked"));
  });

  it("needs a clock for a time limit", () => {
    assert.throws(
      () => checkLinearizability(registerModel, [], { timeLimitMs: 10 }),
      /timeLimitMs needs a clock/,
    );
  });
});
