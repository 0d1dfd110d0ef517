import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { createVirtualEnv, type Env, type VirtualEnv } from "../src/index.ts";
import { type Scheduled, TimerQueue } from "../src/policies/timer-queue.ts";

interface Item extends Scheduled {
  readonly name: string;
  expiredAt: number[];
}

function item(name: string, deadline: number, clock: { now(): number }): Item {
  const self: Item = {
    name,
    at: deadline,
    slot: -1,
    expiredAt: [],
    fire() {
      self.expiredAt.push(clock.now());
    },
  };
  return self;
}

/** An Env over a virtual one that counts the timers the tracker creates and cancels. */
function countingEnv(inner: VirtualEnv): {
  env: Env;
  created: () => number;
  cleared: () => number;
} {
  let created = 0;
  let cleared = 0;
  const env: Env = {
    clock: inner.clock,
    random: inner.random,
    timers: {
      schedule(fn, ms) {
        created++;
        return inner.timers.schedule(fn, ms);
      },
      cancel(handle) {
        cleared++;
        inner.timers.cancel(handle);
      },
      sleep: (ms, signal) => inner.timers.sleep(ms, signal),
    },
  };
  return { env, created: () => created, cleared: () => cleared };
}

describe("TimerQueue", () => {
  it("fires the item it armed for even when the clock reads a hair early (no re-arm livelock)", () => {
    let now = 0;
    const pending: Array<() => void> = [];
    const delays: number[] = [];
    const env: Env = {
      // Reads one ulp short of the armed time when the timer fires, as a drifting clock can.
      clock: { now: () => now, wallNow: () => now },
      random: createVirtualEnv().random,
      timers: {
        schedule(fn, ms) {
          delays.push(ms);
          pending.push(fn);
          return { id: pending.length };
        },
        cancel() {},
        sleep: () => Promise.resolve(),
      },
    };
    const queue = new TimerQueue(env);
    const x = item("x", 16421.5, env.clock);
    queue.add(x);
    // The next double below 16421.5.
    now = 16421.5 - 2 ** -38;
    assert.ok(now < x.at);
    pending.shift()?.();
    assert.deepEqual(x.expiredAt, [now], "fired when its timer fired");
    assert.equal(delays.length, 1, "and armed no second timer");
  });

  it("expires items in deadline order, each at its deadline", async () => {
    const venv = createVirtualEnv();
    const tracker = new TimerQueue(venv);
    const order: string[] = [];
    const items = [50, 10, 30, 20, 40, 30].map((d, i) => {
      const x = item(`i${i}@${d}`, d, venv.clock);
      const fire = x.fire;
      x.fire = () => {
        order.push(x.name);
        fire();
      };
      return x;
    });
    for (const x of items) tracker.add(x);
    assert.equal(tracker.size, 6);
    await venv.advance(9);
    assert.deepEqual(order, []);
    await venv.advance(1);
    assert.deepEqual(order, ["i1@10"]);
    await venv.runAll();
    assert.deepEqual(order.slice(0, 2), ["i1@10", "i3@20"]);
    assert.deepEqual(new Set(order.slice(2, 4)), new Set(["i2@30", "i5@30"]));
    assert.deepEqual(order.slice(4), ["i4@40", "i0@50"]);
    for (const x of items) assert.deepEqual(x.expiredAt, [x.at], x.name);
    assert.equal(tracker.size, 0);
    for (const x of items) assert.equal(x.slot, -1);
  });

  it("expires an item added with a deadline already passed on the next turn", async () => {
    const venv = createVirtualEnv();
    const tracker = new TimerQueue(venv);
    await venv.advance(100);
    const late = item("late", 40, venv.clock);
    tracker.add(late);
    await venv.advance(0);
    assert.deepEqual(late.expiredAt, [100]);
  });

  it("never expires removed items, including the one the timer is armed for", async () => {
    const venv = createVirtualEnv();
    const tracker = new TimerQueue(venv);
    const items = [10, 20, 30, 40, 50].map((d) => item(`@${d}`, d, venv.clock));
    for (const x of items) tracker.add(x);
    tracker.remove(items[0]!); // the earliest: the armed timer's target
    tracker.remove(items[3]!);
    tracker.remove(items[3]!); // twice is harmless
    assert.equal(tracker.size, 3);
    await venv.runAll();
    assert.deepEqual(
      items.map((x) => x.expiredAt),
      [[], [20], [30], [], [50]],
    );
    tracker.remove(items[1]!); // after expiry: nothing happens
    assert.equal(tracker.size, 0);
  });

  it("an item removed and added again expires once, at its new deadline", async () => {
    const venv = createVirtualEnv();
    const tracker = new TimerQueue(venv);
    const x = item("x", 10, venv.clock);
    tracker.add(x);
    tracker.remove(x);
    x.at = 25;
    tracker.add(x);
    await venv.runAll();
    assert.deepEqual(x.expiredAt, [25]);
  });

  it("uses one env timer for many items with increasing deadlines", async () => {
    const venv = createVirtualEnv();
    const { env, created } = countingEnv(venv);
    const tracker = new TimerQueue(env);
    const items = Array.from({ length: 1_000 }, (_, i) => item(`${i}`, 1_000 + i, venv.clock));
    for (const x of items) tracker.add(x);
    assert.equal(created(), 1, "one timer armed for the earliest deadline");
    assert.equal(venv.pendingTimers, 1);
    await venv.runAll();
    // Re-armed once per distinct deadline as they pass, never once per item added.
    assert.ok(created() <= 1_001, `created ${created()} timers`);
    for (const x of items) assert.deepEqual(x.expiredAt, [x.at]);
  });

  it("needs one timer per distinct deadline when many items share deadlines", async () => {
    const venv = createVirtualEnv();
    const { env, created } = countingEnv(venv);
    const tracker = new TimerQueue(env);
    const items = Array.from({ length: 1_000 }, (_, i) =>
      item(`${i}`, 100 * (1 + (i % 10)), venv.clock),
    );
    for (const x of items) tracker.add(x);
    await venv.runAll();
    assert.ok(created() <= 10, `created ${created()} timers for 10 distinct deadlines`);
    for (const x of items) assert.deepEqual(x.expiredAt, [x.at]);
  });

  it("keeps at most one live env timer even when deadlines decrease", async () => {
    const venv = createVirtualEnv();
    const tracker = new TimerQueue(venv);
    const items: Item[] = [];
    for (let d = 500; d > 0; d -= 5) {
      const x = item(`${d}`, d, venv.clock);
      items.push(x);
      tracker.add(x);
      assert.equal(venv.pendingTimers, 1);
    }
    assert.equal(venv.nextTimerAt(), 5);
    await venv.runAll();
    for (const x of items) assert.deepEqual(x.expiredAt, [x.at]);
    assert.equal(venv.pendingTimers, 0);
  });

  it("dispose cancels the timer and keeps the items", async () => {
    const venv = createVirtualEnv();
    const tracker = new TimerQueue(venv);
    const x = item("x", 10, venv.clock);
    tracker.add(x);
    tracker.dispose();
    assert.equal(venv.pendingTimers, 0);
    await venv.advance(100);
    assert.deepEqual(x.expiredAt, []);
    assert.equal(tracker.size, 1);
  });

  it("expires exactly the items not removed, each at max(deadline, time added)", async () => {
    type Op =
      | { readonly kind: "add"; readonly offset: number }
      | { readonly kind: "remove"; readonly pick: number }
      | { readonly kind: "advance"; readonly ms: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          kind: fc.constant("add"),
          offset: fc.integer({ min: -20, max: 200 }),
        }),
      },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("remove"), pick: fc.nat() }) },
      {
        weight: 2,
        arbitrary: fc.record({ kind: fc.constant("advance"), ms: fc.integer({ min: 0, max: 60 }) }),
      },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 80 }), async (ops) => {
        const venv = createVirtualEnv();
        const tracker = new TimerQueue(venv);
        const added: Array<{ x: Item; addedAt: number; removedAt: number | undefined }> = [];
        for (const o of ops) {
          if (o.kind === "add") {
            const x = item(`${added.length}`, venv.clock.now() + o.offset, venv.clock);
            tracker.add(x);
            added.push({ x, addedAt: venv.clock.now(), removedAt: undefined });
          } else if (o.kind === "remove") {
            if (added.length === 0) continue;
            const entry = added[o.pick % added.length]!;
            tracker.remove(entry.x);
            entry.removedAt ??= venv.clock.now();
          } else {
            await venv.advance(o.ms);
          }
        }
        await venv.runAll();
        assert.equal(tracker.size, 0);
        for (const { x, addedAt, removedAt } of added) {
          const due = Math.max(x.at, addedAt);
          // Removed at the very moment it fell due, before its timer ran: either outcome is right.
          const removedFirst =
            removedAt !== undefined &&
            (removedAt < due || (removedAt === due && x.expiredAt.length === 0));
          if (removedFirst) {
            assert.deepEqual(
              x.expiredAt,
              [],
              `item ${x.name} was removed at ${removedAt} but expired`,
            );
          } else {
            assert.equal(
              x.expiredAt.length,
              1,
              `item ${x.name} expired ${x.expiredAt.length} times`,
            );
            assert.ok(x.expiredAt[0]! >= x.at, `item ${x.name} expired early`);
            assert.equal(x.expiredAt[0], due, `item ${x.name} expired late`);
          }
        }
      }),
      { seed: 42, numRuns: 300 },
    );
  });
});
