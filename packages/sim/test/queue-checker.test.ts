import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkQueue,
  type Delivery,
  describeQueueCheck,
  type QueueHistory,
  type SentMessage,
} from "../src/index.ts";

const sent = (id: string, producer = "p", acked = true): SentMessage => ({ id, producer, acked });
const got = (consumer: string, ...ids: string[]): Delivery[] => ids.map((id) => ({ id, consumer }));

describe("checkQueue", () => {
  it("passes a history where every acked message arrives once, in order", () => {
    const history: QueueHistory = {
      sends: [sent("a1", "a"), sent("b1", "b"), sent("a2", "a"), sent("b2", "b")],
      deliveries: [...got("c1", "a1", "b1"), ...got("c2", "a2", "b2")],
    };
    const result = checkQueue(history, { guarantee: "exactly-once", fifo: true });
    assert.equal(result.ok, true);
    assert.deepEqual(result.stats, { sent: 4, acked: 4, deliveries: 4, delivered: 4 });
    assert.match(describeQueueCheck(result), /^ok \(4 sent, 4 acked, 4 deliveries of 4 messages\)/);
  });

  it("reports acked messages never delivered as lost, but not unacked ones", () => {
    const history: QueueHistory = {
      sends: [sent("m1"), sent("m2"), sent("m3", "p", false)],
      deliveries: got("c", "m1"),
    };
    const result = checkQueue(history, { guarantee: "at-least-once" });
    assert.equal(result.ok, false);
    assert.deepEqual(result.violations, ["lost"]);
    assert.deepEqual(result.lost, [{ id: "m2", producer: "p" }]);
    assert.match(describeQueueCheck(result), /violated: lost[\s\S]*lost \(1\):\n {4}m2 from p/);
  });

  it("allows an unacked message to arrive", () => {
    const history: QueueHistory = { sends: [sent("m1", "p", false)], deliveries: got("c", "m1") };
    assert.equal(checkQueue(history, { guarantee: "exactly-once" }).ok, true);
  });

  it("tolerates duplicates at least once, not exactly once", () => {
    const history: QueueHistory = {
      sends: [sent("m1"), sent("m2")],
      deliveries: [...got("c1", "m1", "m2"), ...got("c2", "m1")],
    };
    const atLeast = checkQueue(history, { guarantee: "at-least-once" });
    assert.equal(atLeast.ok, true);
    assert.deepEqual(atLeast.duplicated, [{ id: "m1", count: 2 }], "reported all the same");
    const exactly = checkQueue(history, { guarantee: "exactly-once" });
    assert.equal(exactly.ok, false);
    assert.deepEqual(exactly.violations, ["duplicated"]);
    assert.match(describeQueueCheck(exactly), /m1 ×2/);
  });

  it("finds per-producer reordering when FIFO is claimed", () => {
    const history: QueueHistory = {
      sends: [sent("a1", "a"), sent("b1", "b"), sent("a2", "a"), sent("a3", "a")],
      // b1 between a-messages is fine (different producers); a1 after a2 is not.
      deliveries: got("c", "a2", "b1", "a1", "a3"),
    };
    const unordered = checkQueue(history, { guarantee: "exactly-once" });
    assert.equal(unordered.ok, true, "ordering is not judged without fifo");
    const fifo = checkQueue(history, { guarantee: "exactly-once", fifo: true });
    assert.equal(fifo.ok, false);
    assert.deepEqual(fifo.reordered, [{ consumer: "c", producer: "a", id: "a1", after: "a2" }]);
    assert.match(describeQueueCheck(fifo), /c got a1 after a2 \(both from a\)/);
  });

  it("judges order per consumer, and ignores redeliveries for order", () => {
    const history: QueueHistory = {
      sends: [sent("m1"), sent("m2"), sent("m3")],
      deliveries: [...got("c1", "m2"), ...got("c2", "m1", "m3"), ...got("c1", "m3", "m2")],
    };
    const result = checkQueue(history, { guarantee: "at-least-once", fifo: true });
    assert.equal(result.ok, true);
    assert.deepEqual(result.reordered, []);
    assert.deepEqual(result.duplicated, [
      { id: "m2", count: 2 },
      { id: "m3", count: 2 },
    ]);
  });

  it("reports messages nobody sent", () => {
    const history: QueueHistory = { sends: [], deliveries: got("c", "ghost") };
    const result = checkQueue(history, { guarantee: "at-least-once" });
    assert.deepEqual(result.violations, ["unexpected"]);
    assert.deepEqual(result.unexpected, [{ id: "ghost", consumer: "c" }]);
  });

  it("in broadcast mode, every consumer is due every message", () => {
    const history: QueueHistory = {
      sends: [sent("m1"), sent("m2")],
      deliveries: [...got("billing", "m1", "m2"), ...got("audit", "m1", "m1")],
    };
    const result = checkQueue(history, {
      guarantee: "exactly-once",
      consumers: "broadcast",
      expectedConsumers: ["billing", "audit", "mail"],
    });
    assert.deepEqual(result.violations, ["lost", "duplicated"]);
    assert.deepEqual(result.lost, [
      { id: "m1", producer: "p", consumer: "mail" },
      { id: "m2", producer: "p", consumer: "audit" },
      { id: "m2", producer: "p", consumer: "mail" },
    ]);
    assert.deepEqual(result.duplicated, [{ id: "m1", count: 2, consumer: "audit" }]);
    const shared = checkQueue(history, { guarantee: "at-least-once" });
    assert.equal(shared.ok, true, "shared: each message reached some consumer");
  });

  it("refuses two sends with the same id", () => {
    assert.throws(
      () =>
        checkQueue(
          { sends: [sent("x"), sent("x")], deliveries: [] },
          { guarantee: "at-least-once" },
        ),
      /"x" sent twice/,
    );
  });

  it("truncates long lists in the description", () => {
    const sends = Array.from({ length: 15 }, (_, i) => sent(`m${i}`));
    const text = describeQueueCheck(
      checkQueue({ sends, deliveries: [] }, { guarantee: "at-least-once" }),
      3,
    );
    assert.match(text, /lost \(15\):/);
    assert.match(text, /… and 12 more/);
  });
});
