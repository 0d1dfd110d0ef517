import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ERROR_CODES,
  type ErrorCode,
  hasCode,
  isErrorCode,
  isKeelError,
  KeelError,
} from "../src/index.ts";

const CODES = Object.keys(ERROR_CODES) as ErrorCode[];

describe("KeelError", () => {
  it("carries code, message, details and cause, and is an Error", () => {
    const cause = new Error("disk full");
    const err = new KeelError("UNAVAILABLE", "no endpoint", {
      details: { service: "orders@1" },
      cause,
    });
    assert.ok(err instanceof Error);
    assert.ok(err instanceof KeelError);
    assert.equal(err.name, "KeelError");
    assert.equal(err.code, "UNAVAILABLE");
    assert.equal(err.message, "no endpoint");
    assert.deepEqual(err.details, { service: "orders@1" });
    assert.equal(err.cause, cause);
    assert.equal(err.remote, false);
    assert.equal(err.retryable, true);
    assert.match(String(err.stack), /no endpoint/);
  });

  it("has no cause or details unless given", () => {
    const err = new KeelError("INTERNAL", "boom");
    assert.equal("cause" in err, false);
    assert.equal(err.details, undefined);
  });

  it("takes its default retryability from ERROR_CODES, for every code", () => {
    assert.ok(CODES.length >= 16);
    for (const code of CODES) {
      assert.equal(new KeelError(code, "x").retryable, ERROR_CODES[code].retryable, code);
    }
    // The codes the design names as retryable elsewhere, and some that never are.
    for (const code of ["UNAVAILABLE", "OVERLOADED", "RATE_LIMITED", "CIRCUIT_OPEN"] as const) {
      assert.equal(new KeelError(code, "x").retryable, true, code);
    }
    for (const code of [
      "INVALID_ARGUMENT",
      "PROTOCOL",
      "CONFIGURATION",
      "DEADLINE_EXCEEDED",
    ] as const) {
      assert.equal(new KeelError(code, "x").retryable, false, code);
    }
  });

  it("lets options override retryability", () => {
    assert.equal(new KeelError("UNAVAILABLE", "x", { retryable: false }).retryable, false);
    assert.equal(new KeelError("INTERNAL", "x", { retryable: true }).retryable, true);
  });

  it("captures no stack frames with noStack", () => {
    const err = new KeelError("PROTOCOL", "bad frame", { noStack: true });
    assert.doesNotMatch(String(err.stack), /\n\s+at /);
    assert.match(String(new KeelError("PROTOCOL", "bad frame").stack), /\n\s+at /);
  });

  it("documents every code with a summary", () => {
    for (const code of CODES) {
      assert.equal(typeof ERROR_CODES[code].summary, "string");
      assert.ok(ERROR_CODES[code].summary.length > 10, code);
    }
  });
});

describe("toWire / fromWire", () => {
  it("toWire has code, message, retryable and details only: no stack, no cause", () => {
    const err = new KeelError("OVERLOADED", "shed", {
      details: { limit: 10 },
      cause: new Error("secret internal cause"),
    });
    const wire = err.toWire();
    assert.deepEqual(wire, {
      code: "OVERLOADED",
      message: "shed",
      retryable: true,
      details: { limit: 10 },
    });
    const text = JSON.stringify(wire);
    assert.doesNotMatch(text, /secret internal cause/);
    assert.doesNotMatch(text, /\bat /);
    assert.doesNotMatch(text, /stack/);
    assert.deepEqual(Object.keys(new KeelError("INTERNAL", "x").toWire()).sort(), [
      "code",
      "message",
      "retryable",
    ]);
  });

  it("round-trips every code, marking the copy remote", () => {
    for (const code of CODES) {
      for (const retryable of [true, false]) {
        const original = new KeelError(code, `failed with ${code}`, {
          retryable,
          details: { n: 1, s: "x" },
        });
        const copy = KeelError.fromWire(JSON.parse(JSON.stringify(original.toWire())));
        assert.ok(copy instanceof KeelError);
        assert.equal(copy.code, code);
        assert.equal(copy.message, original.message);
        assert.equal(copy.retryable, retryable);
        assert.deepEqual(copy.details, { n: 1, s: "x" });
        assert.equal(copy.remote, true);
        assert.equal(original.remote, false);
        assert.deepEqual(copy.toWire(), original.toWire());
      }
    }
  });

  it("remote errors carry no local stack frames", () => {
    const copy = KeelError.fromWire({ code: "INTERNAL", message: "x", retryable: false });
    assert.doesNotMatch(String(copy.stack), /\n\s+at /);
  });

  it("uses the code's default retryability when the wire omits it", () => {
    assert.equal(
      KeelError.fromWire({ code: "RATE_LIMITED", message: "slow down" }).retryable,
      true,
    );
    assert.equal(KeelError.fromWire({ code: "NOT_FOUND", message: "nope" }).retryable, false);
  });

  it("turns an unknown code into PROTOCOL, keeping the message in details", () => {
    const err = KeelError.fromWire({ code: "TEAPOT", message: "short and stout", retryable: true });
    assert.equal(err.code, "PROTOCOL");
    assert.match(err.message, /TEAPOT/);
    assert.deepEqual(err.details, { message: "short and stout" });
    assert.equal(err.retryable, false);
    for (const code of ["toString", "constructor", "__proto__", "hasOwnProperty", 42, null]) {
      assert.equal(KeelError.fromWire({ code, message: "m" }).code, "PROTOCOL", String(code));
    }
  });

  it("turns a malformed error into PROTOCOL", () => {
    for (const wire of [null, undefined, "UNAVAILABLE", 42, true]) {
      const err = KeelError.fromWire(wire);
      assert.equal(err.code, "PROTOCOL");
      assert.ok(isKeelError(err));
    }
  });

  it("tolerates ill-typed optional fields", () => {
    const err = KeelError.fromWire({
      code: "UNAVAILABLE",
      message: 5,
      retryable: "yes",
      details: "nope",
    });
    assert.equal(err.code, "UNAVAILABLE");
    assert.equal(err.message, "");
    assert.equal(err.retryable, true);
    assert.equal(err.details, undefined);
  });

  it("does not let a remote error claim to be local", () => {
    const copy = KeelError.fromWire({
      code: "INTERNAL",
      message: "x",
      retryable: false,
      remote: false,
    });
    assert.equal(copy.remote, true);
  });
});

describe("isKeelError / hasCode / isErrorCode", () => {
  it("recognises KeelErrors and nothing else", () => {
    assert.equal(isKeelError(new KeelError("INTERNAL", "x")), true);
    assert.equal(isKeelError(KeelError.fromWire({ code: "INTERNAL", message: "x" })), true);
    for (const v of [
      new Error("x"),
      { code: "INTERNAL", message: "x" },
      null,
      undefined,
      "KeelError",
      0,
    ]) {
      assert.equal(isKeelError(v), false, String(v));
    }
  });

  it("recognises an error from a duplicate copy of the package by its brand", () => {
    // Another copy of @keel/core has its own class, but the same global symbol.
    class ForeignKeelError extends Error {
      readonly code = "CIRCUIT_OPEN";
      readonly retryable = true;
    }
    const foreign = new ForeignKeelError("open");
    Object.defineProperty(foreign, Symbol.for("keel.error"), { value: true });
    assert.equal(foreign instanceof KeelError, false);
    assert.equal(isKeelError(foreign), true);
    assert.equal(hasCode(foreign, "CIRCUIT_OPEN"), true);
    assert.equal(hasCode(foreign, "UNAVAILABLE"), false);

    const plain = {
      [Symbol.for("keel.error")]: true,
      code: "OVERLOADED",
      message: "m",
      retryable: true,
    };
    assert.equal(isKeelError(plain), true);
    assert.equal(hasCode(plain, "OVERLOADED"), true);

    // A look-alike without the brand is not one.
    assert.equal(isKeelError({ code: "OVERLOADED", message: "m", retryable: true }), false);
    assert.equal(isKeelError({ [Symbol("keel.error")]: true, code: "OVERLOADED" }), false);
  });

  it("hasCode checks the code", () => {
    const err = new KeelError("DEADLINE_EXCEEDED", "late");
    assert.equal(hasCode(err, "DEADLINE_EXCEEDED"), true);
    assert.equal(hasCode(err, "CANCELLED"), false);
    assert.equal(hasCode(new Error("late"), "DEADLINE_EXCEEDED"), false);
    assert.equal(hasCode(undefined, "DEADLINE_EXCEEDED"), false);
  });

  it("isErrorCode accepts exactly the catalogue's own keys", () => {
    for (const code of CODES) assert.equal(isErrorCode(code), true, code);
    for (const v of [
      "toString",
      "constructor",
      "__proto__",
      "valueOf",
      "unavailable",
      "",
      1,
      null,
      undefined,
    ]) {
      assert.equal(isErrorCode(v), false, String(v));
    }
  });
});
