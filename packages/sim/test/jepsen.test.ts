import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JepsenParseError, parseJepsenLog } from "../src/index.ts";

const line = (process: number | string, type: string, f: string, value: string) =>
  `INFO  jepsen.util - ${process}\t:${type}\t:${f}\t${value}`;

function parseError(text: string): JepsenParseError {
  try {
    parseJepsenLog(text);
  } catch (error) {
    assert.ok(error instanceof JepsenParseError, `a JepsenParseError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected a JepsenParseError");
}

describe("parseJepsenLog", () => {
  it("pairs invocations with completions, timed by line number", () => {
    const { operations, events } = parseJepsenLog(
      [
        line(0, "invoke", "write", "3"),
        line(1, "invoke", "read", "nil"),
        line(0, "ok", "write", "3"),
        line(1, "ok", "read", "3"),
        line(2, "invoke", "cas", "[3 4]"),
        line(2, "fail", "cas", "[3 4]"),
        line(3, "invoke", "read", "nil"),
        line(3, "ok", "read", "nil"),
      ].join("\n"),
    );
    assert.equal(events.length, 8);
    assert.deepEqual(operations, [
      {
        id: 0,
        process: 0,
        input: { f: "write", value: 3 },
        call: 1,
        return: 3,
        status: "ok",
        output: null,
      },
      { id: 1, process: 1, input: { f: "read" }, call: 2, return: 4, status: "ok", output: 3 },
      {
        id: 2,
        process: 2,
        input: { f: "cas", from: 3, to: 4 },
        call: 5,
        return: 6,
        status: "fail",
      },
      { id: 3, process: 3, input: { f: "read" }, call: 7, return: 8, status: "ok", output: null },
    ]);
  });

  it("makes timeouts, info and never-completed invocations indeterminate", () => {
    const { operations } = parseJepsenLog(
      [
        line(0, "invoke", "write", "1"),
        line(0, "info", "write", ":timed-out"),
        line(1, "invoke", "read", "nil"),
        line(1, "fail", "read", ":timed-out"),
        line(5, "invoke", "cas", "[1 2]"),
      ].join("\n"),
    );
    assert.deepEqual(
      operations.map((op) => [op.process, op.status, op.return]),
      [
        [0, "info", Number.POSITIVE_INFINITY],
        [1, "info", Number.POSITIVE_INFINITY],
        [5, "info", Number.POSITIVE_INFINITY],
      ],
    );
  });

  it("ignores lines that are not client events", () => {
    const { operations } = parseJepsenLog(
      [
        "2017-03-09 12:00:00,000{GMT}\tINFO\t[jepsen worker 0] jepsen.core: Worker 0 starting",
        "INFO  jepsen.util - :nemesis\t:info\t:start\tnil",
        "INFO  jepsen.util - something else entirely",
        "",
        line(0, "invoke", "read", "nil"),
        "   ",
        line(0, "ok", "read", "nil"),
      ].join("\r\n"),
    );
    assert.equal(operations.length, 1);
    assert.equal(operations[0]?.call, 5);
    assert.equal(operations[0]?.return, 7);
  });

  it("names the line of a malformed event", () => {
    const ok = line(0, "invoke", "read", "nil");
    const cases: Array<[string, RegExp]> = [
      [line(1, "invoke", "write", "nil"), /line 2: write needs a number, got nil/],
      [line(1, "invoke", "cas", "3"), /line 2: cas needs \[from to\], got 3/],
      [line(1, "invoke", "incr", "1"), /line 2: unknown function :incr/],
      [line(1, "invoke", "write", "{:a 1}"), /line 2: cannot read the value/],
      [line(1, "finished", "write", "1"), /line 2: unknown event type :finished/],
      [line(1, "ok", "write", "1"), /line 2: process 1 completes :write but invoked nothing/],
      [
        line(0, "ok", "write", "1"),
        /line 2: process 0 completes :write but invoked :read on line 1/,
      ],
      [
        line(0, "invoke", "read", "nil"),
        /line 2: process 0 invokes while its operation from line 1/,
      ],
      [line(0, "ok", "read", "[1 2]"), /line 2: a read returns nil or a number, got \[1 2\]/],
      ["INFO  jepsen.util - 1\t:invoke", /line 2: malformed event/],
      ["INFO  jepsen.util - 1\t:invoke\t:read", /line 2: event :invoke :read has no value/],
    ];
    for (const [bad, message] of cases) {
      const error = parseError(`${ok}\n${bad}\n`);
      assert.equal(error.line, 2);
      assert.match(error.message, message);
    }
  });
});
