import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { broadcastSubject, nodeSubject, subjectToken } from "../src/index.ts";

/** What NATS accepts as one subject token, and what `$SRV` accepts as a service id. */
const TOKEN = /^[-\w]+$/;

describe("subjects", () => {
  it("keeps plain ids and escapes the rest", () => {
    assert.equal(subjectToken("orders-1"), "orders-1");
    assert.equal(subjectToken("eu.west:7"), "eu_2Ewest_3A7");
    assert.equal(subjectToken("node_1"), "node_5F1");
    assert.equal(subjectToken("é"), "_C3_A9");
    assert.equal(subjectToken("a>*b c"), "a_3E_2Ab_20c");
    assert.throws(() => subjectToken(""), { code: "CONFIGURATION" });
    assert.throws(() => subjectToken("a\ud800"), { code: "CONFIGURATION" });
    assert.equal(nodeSubject("keel", "a.b"), "keel.node.a_2Eb");
    assert.equal(broadcastSubject("acme.prod"), "acme.prod.all");
  });

  it("maps every id to one safe token, and different ids to different tokens", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, unit: "grapheme" }),
        fc.string({ minLength: 1 }),
        (a, b) => {
          const ta = subjectToken(a);
          assert.match(ta, TOKEN);
          if (a !== b) assert.notEqual(ta, subjectToken(b));
        },
      ),
      { numRuns: 2000 },
    );
    // ids that differ only in the characters the mapping escapes
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("a", ".", ":", "_", "-", "_2E", "5F"), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.array(fc.constantFrom("a", ".", ":", "_", "-", "_2E", "5F"), {
          minLength: 1,
          maxLength: 8,
        }),
        (xs, ys) => {
          const a = xs.join("");
          const b = ys.join("");
          if (a !== b) assert.notEqual(subjectToken(a), subjectToken(b));
        },
      ),
      { numRuns: 2000 },
    );
  });
});
