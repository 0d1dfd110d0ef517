import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { createRandom, createVirtualEnv, type Random, type TimerHandle } from "../src/index.ts";

function draws(random: Random, count: number): number[] {
  return Array.from({ length: count }, () => random.next());
}

describe("createVirtualEnv timers", () => {
  it("starts at time 0 with the wall clock at wallStart", async () => {
    const env = createVirtualEnv({ wallStart: 1_000_000 });
    assert.equal(env.clock.now(), 0);
    assert.equal(env.clock.wallNow(), 1_000_000);
    await env.advance(250);
    assert.equal(env.clock.now(), 250);
    assert.equal(env.clock.wallNow(), 1_000_250);
  });

  it("fires timers in (time, insertion) order, each at its own virtual time", async () => {
    const env = createVirtualEnv();
    const fired: Array<[string, number]> = [];
    const at = (label: string, ms: number) =>
      env.timers.schedule(() => fired.push([label, env.clock.now()]), ms);
    at("c30", 30);
    at("a10", 10);
    at("d20", 20);
    at("b10", 10);
    at("e0", 0);
    at("f10", 10);
    at("neg", -5); // clamped to 0, after e0
    assert.equal(env.pendingTimers, 7);
    await env.runAll();
    assert.deepEqual(fired, [
      ["e0", 0],
      ["neg", 0],
      ["a10", 10],
      ["b10", 10],
      ["f10", 10],
      ["d20", 20],
      ["c30", 30],
    ]);
    assert.equal(env.pendingTimers, 0);
  });

  it("advance fires only due timers (inclusive) and ends at the target time", async () => {
    const env = createVirtualEnv();
    const fired: number[] = [];
    for (const ms of [5, 10, 15]) env.timers.schedule(() => fired.push(env.clock.now()), ms);
    await env.advance(10);
    assert.deepEqual(fired, [5, 10]);
    assert.equal(env.clock.now(), 10);
    assert.equal(env.pendingTimers, 1);
    assert.equal(env.nextTimerAt(), 15);
    await env.advance(4);
    assert.deepEqual(fired, [5, 10]);
    assert.equal(env.clock.now(), 14);
    await env.advance(1);
    assert.deepEqual(fired, [5, 10, 15]);
    assert.equal(env.clock.now(), 15);
    await env.advance(100);
    assert.equal(env.clock.now(), 115, "time moves even with no timers");
  });

  it("advance fires timers scheduled by timers when they fall due in the window", async () => {
    const env = createVirtualEnv();
    const fired: Array<[string, number]> = [];
    env.timers.schedule(() => {
      fired.push(["outer", env.clock.now()]);
      env.timers.schedule(() => fired.push(["inner", env.clock.now()]), 3);
      env.timers.schedule(() => fired.push(["late", env.clock.now()]), 50);
    }, 5);
    await env.advance(10);
    assert.deepEqual(fired, [
      ["outer", 5],
      ["inner", 8],
    ]);
    assert.equal(env.clock.now(), 10);
    assert.equal(env.nextTimerAt(), 55);
  });

  it("runNext jumps to the next timer and fires everything due then", async () => {
    const env = createVirtualEnv();
    const fired: Array<[string, number]> = [];
    env.timers.schedule(() => fired.push(["b", env.clock.now()]), 200);
    env.timers.schedule(() => fired.push(["a1", env.clock.now()]), 100);
    env.timers.schedule(() => fired.push(["a2", env.clock.now()]), 100);
    assert.equal(await env.runNext(), true);
    assert.equal(env.clock.now(), 100);
    assert.deepEqual(fired, [
      ["a1", 100],
      ["a2", 100],
    ]);
    assert.equal(await env.runNext(), true);
    assert.equal(env.clock.now(), 200);
    assert.equal(fired.length, 3);
    assert.equal(await env.runNext(), false);
    assert.equal(env.clock.now(), 200, "no timer: time stays");
  });

  it("runAll stops at its limit", async () => {
    const env = createVirtualEnv();
    const fired: number[] = [];
    const tick = () => {
      fired.push(env.clock.now());
      env.timers.schedule(tick, 10);
    };
    env.timers.schedule(tick, 10);
    await env.runAll(45);
    assert.deepEqual(fired, [10, 20, 30, 40]);
    assert.equal(env.nextTimerAt(), 50);
  });

  it("runAll without a limit stops after an hour of endless timers", async () => {
    const env = createVirtualEnv();
    let ticks = 0;
    const tick = () => {
      ticks++;
      env.timers.schedule(tick, 60_000);
    };
    env.timers.schedule(tick, 60_000);
    await env.runAll();
    assert.equal(ticks, 60);
    assert.equal(env.clock.now(), 3_600_000);
    assert.equal(env.pendingTimers, 1);
  });

  it("cancel cancels a timer; clearing twice or after firing does nothing", async () => {
    const env = createVirtualEnv();
    const fired: string[] = [];
    const a = env.timers.schedule(() => fired.push("a"), 10);
    const b = env.timers.schedule(() => fired.push("b"), 20);
    const c = env.timers.schedule(() => fired.push("c"), 30);
    env.timers.cancel(a);
    env.timers.cancel(a);
    assert.equal(env.pendingTimers, 2);
    assert.equal(env.nextTimerAt(), 20, "a cancelled timer is not the next one");
    await env.advance(20);
    assert.deepEqual(fired, ["b"]);
    env.timers.cancel(b); // already fired
    assert.equal(env.pendingTimers, 1);
    env.timers.cancel(c);
    assert.equal(env.pendingTimers, 0);
    assert.equal(env.nextTimerAt(), undefined);
    await env.runAll();
    assert.deepEqual(fired, ["b"]);
  });

  it("a timer can cancel a later timer due at the same time", async () => {
    const env = createVirtualEnv();
    const fired: string[] = [];
    const handles: TimerHandle[] = [];
    env.timers.schedule(() => {
      fired.push("first");
      for (const h of handles) env.timers.cancel(h);
    }, 10);
    handles.push(env.timers.schedule(() => fired.push("second"), 10));
    await env.advance(10);
    assert.deepEqual(fired, ["first"]);
    assert.equal(env.pendingTimers, 0);
  });

  it("sleep resolves at the right virtual time", async () => {
    const env = createVirtualEnv();
    let resolvedAt: number | undefined;
    const done = env.timers.sleep(250).then(() => {
      resolvedAt = env.clock.now();
    });
    await env.advance(249);
    assert.equal(resolvedAt, undefined);
    await env.advance(1);
    assert.equal(resolvedAt, 250);
    await done;
  });

  it("sleep rejects with the signal's reason on abort and clears its timer", async () => {
    const env = createVirtualEnv();
    const controller = new AbortController();
    const reason = new Error("stop");
    const slept = env.timers.sleep(1_000, controller.signal);
    const outcome = slept.then(
      () => "resolved",
      (err: unknown) => err,
    );
    await env.advance(100);
    assert.equal(env.pendingTimers, 1);
    controller.abort(reason);
    assert.equal(await outcome, reason);
    assert.equal(env.pendingTimers, 0);
    assert.equal(env.clock.now(), 100);
  });

  it("sleep on an already aborted signal rejects at once without a timer", async () => {
    const env = createVirtualEnv();
    const reason = { why: "already" };
    await assert.rejects(env.timers.sleep(10, AbortSignal.abort(reason)), (err) => err === reason);
    assert.equal(env.pendingTimers, 0);
  });

  it("an abort after sleep resolved changes nothing", async () => {
    const env = createVirtualEnv();
    const controller = new AbortController();
    const slept = env.timers.sleep(10, controller.signal);
    await env.advance(10);
    await slept;
    controller.abort(new Error("late"));
    assert.equal(env.pendingTimers, 0);
  });

  it("runs promise continuations between timers", async () => {
    const env = createVirtualEnv();
    const log: string[] = [];
    env.timers.schedule(() => {
      log.push("t1");
      void Promise.resolve()
        .then(() => log.push("micro1"))
        .then(() => log.push("micro2"));
    }, 10);
    env.timers.schedule(() => log.push("t2"), 10);
    await env.advance(10);
    assert.deepEqual(log, ["t1", "micro1", "micro2", "t2"]);
  });

  it("advance drains async loops that sleep again and again", async () => {
    const env = createVirtualEnv();
    const woke: number[] = [];
    const loop = async () => {
      for (let i = 0; i < 5; i++) {
        await env.timers.sleep(10);
        await Promise.resolve();
        woke.push(env.clock.now());
      }
    };
    const running = loop();
    await env.advance(50);
    assert.deepEqual(woke, [10, 20, 30, 40, 50]);
    await running;
  });

  it("flush runs pending continuations without moving time", async () => {
    const env = createVirtualEnv();
    let ran = false;
    void Promise.resolve()
      .then(() => undefined)
      .then(() => {
        ran = true;
      });
    await env.flush();
    assert.equal(ran, true);
    assert.equal(env.clock.now(), 0);
  });

  it("two envs with the same seed replay the same schedule and draws", async () => {
    const run = async () => {
      const env = createVirtualEnv({ seed: "replay" });
      const out: Array<[number, number]> = [];
      for (let i = 0; i < 20; i++) {
        const delay = env.random.int(100);
        env.timers.schedule(() => out.push([env.clock.now(), env.random.int(1000)]), delay);
      }
      await env.runAll();
      return out;
    };
    assert.deepEqual(await run(), await run());
  });
});

describe("createRandom", () => {
  it("gives the same sequence for the same seed", () => {
    assert.deepEqual(draws(createRandom(42), 100), draws(createRandom(42), 100));
    assert.deepEqual(draws(createRandom("node-a"), 100), draws(createRandom("node-a"), 100));
    const a = createRandom(7);
    const b = createRandom(7);
    for (let i = 0; i < 50; i++) {
      assert.equal(a.int(1000), b.int(1000));
      assert.equal(a.id(), b.id());
      assert.equal(a.hex(8), b.hex(8));
    }
  });

  it("gives different sequences for different seeds", () => {
    const seen = new Set<string>();
    for (const seed of [0, 1, 2, 3, "1a", "a", "b", "node-1", "node-2"]) {
      seen.add(JSON.stringify(draws(createRandom(seed), 4)));
    }
    assert.equal(seen.size, 9);
    fc.assert(
      fc.property(fc.integer(), fc.integer(), (x, y) => {
        fc.pre(x !== y);
        assert.notDeepEqual(draws(createRandom(x), 3), draws(createRandom(y), 3));
      }),
      { seed: 1, numRuns: 300 },
    );
  });

  it("split(label) depends on the seed and label, not on the parent's position", () => {
    const expected = draws(createRandom(7).split("network"), 50);
    const parent = createRandom(7);
    const before = parent.split("network");
    draws(parent, 1_000);
    parent.id();
    const after = parent.split("network");
    assert.deepEqual(draws(before, 50), expected);
    assert.deepEqual(draws(after, 50), expected);
  });

  it("split streams are independent of the parent and of each other", () => {
    const parent = createRandom(7);
    const fresh = draws(createRandom(7), 20);
    const a = parent.split("a");
    const b = parent.split("b");
    assert.deepEqual(draws(parent, 20), fresh, "splitting does not advance the parent");
    const da = draws(a, 20);
    const db = draws(b, 20);
    assert.notDeepEqual(da, db);
    assert.notDeepEqual(da, fresh);
    assert.deepEqual(draws(createRandom(7).split("a"), 20), da);
    assert.notDeepEqual(draws(createRandom(8).split("a"), 20), da, "the parent seed matters");
    assert.notDeepEqual(draws(a.split("a"), 20), da, "nested splits differ from their parent");
  });

  it("next() is in [0, 1) and int(n) is an integer in [0, n)", () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 2 ** 31 }), (seed, n) => {
        const r = createRandom(seed);
        for (let i = 0; i < 50; i++) {
          const x = r.next();
          assert.ok(x >= 0 && x < 1, `next() = ${x}`);
          const k = r.int(n);
          assert.ok(Number.isInteger(k) && k >= 0 && k < n, `int(${n}) = ${k}`);
        }
      }),
      { seed: 2, numRuns: 300 },
    );
    const r = createRandom(3);
    for (let i = 0; i < 100; i++) assert.equal(r.int(1), 0);
  });

  it("id() is 32 lowercase hex characters and does not repeat", () => {
    const r = createRandom("ids");
    const ids = new Set<string>();
    for (let i = 0; i < 2_000; i++) {
      const id = r.id();
      assert.match(id, /^[0-9a-f]{32}$/);
      ids.add(id);
    }
    assert.equal(ids.size, 2_000);
  });

  it("hex(bytes) has 2 characters per byte", () => {
    const r = createRandom("hex");
    for (let bytes = 1; bytes <= 20; bytes++) {
      assert.match(r.hex(bytes), new RegExp(`^[0-9a-f]{${bytes * 2}}$`));
    }
  });

  it("is roughly uniform (chi-square over 10 buckets, loose bound)", () => {
    const buckets = 10;
    const samples = 100_000;
    for (const seed of [1, "uniform", 123456789]) {
      const r = createRandom(seed);
      const counts = new Array<number>(buckets).fill(0);
      const intCounts = new Array<number>(buckets).fill(0);
      for (let i = 0; i < samples; i++) {
        const b = Math.floor(r.next() * buckets);
        counts[b] = counts[b]! + 1;
        const k = r.int(buckets);
        intCounts[k] = intCounts[k]! + 1;
      }
      const expected = samples / buckets;
      const chi = (cs: number[]) => cs.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
      // 9 degrees of freedom: 27.9 is the 99.9th percentile; 40 leaves room yet catches bias.
      assert.ok(chi(counts) < 40, `next() chi-square ${chi(counts)} for seed ${seed}`);
      assert.ok(chi(intCounts) < 40, `int() chi-square ${chi(intCounts)} for seed ${seed}`);
    }
  });

  it("hex digits are roughly uniform", () => {
    const r = createRandom("hex-uniform");
    const counts = new Map<string, number>();
    for (let i = 0; i < 5_000; i++) {
      for (const ch of r.id()) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    }
    assert.equal(counts.size, 16);
    const expected = (5_000 * 32) / 16;
    for (const [ch, c] of counts) {
      assert.ok(Math.abs(c - expected) / expected < 0.05, `digit ${ch}: ${c} vs ${expected}`);
    }
  });
});
