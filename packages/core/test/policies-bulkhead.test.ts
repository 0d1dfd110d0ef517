import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createVirtualEnv } from "../src/env/index.ts";
import { hasCode } from "../src/errors/index.ts";
import { bulkhead, type ShedEvent } from "../src/policies/index.ts";
import { capture } from "./support.ts";

describe("bulkhead", () => {
  it("runs maxConcurrent, queues maxQueue in order, refuses the rest at once with OVERLOADED", async () => {
    const env = createVirtualEnv();
    const pool = bulkhead({ env, maxConcurrent: 2, maxQueue: 2 });
    const sheds: ShedEvent[] = [];
    pool.onShed((e) => sheds.push(e));
    const started: Array<[number, number]> = [];
    const job = (id: number) => () => {
      started.push([id, env.clock.now()]);
      return env.timers.sleep(100).then(() => id);
    };
    const outs = [0, 1, 2, 3, 4].map((id) => capture(pool.execute(job(id))));
    await env.flush();
    assert.deepEqual([pool.active, pool.queued], [2, 2]);
    assert.ok(hasCode(outs[4]!.error, "OVERLOADED"));
    assert.equal(outs[4]!.error.retryable, true);
    assert.equal(outs[4]!.error.details?.["refusedBy"], "bulkhead");
    assert.deepEqual(sheds, [{ active: 2, queued: 2 }]);
    await env.runAll();
    assert.deepEqual(
      outs.slice(0, 4).map((o) => o.value),
      [0, 1, 2, 3],
    );
    assert.deepEqual(started, [
      [0, 0],
      [1, 0],
      [2, 100],
      [3, 100],
    ]);
    assert.deepEqual([pool.active, pool.queued], [0, 0]);
  });

  it("an aborted waiter leaves the queue at once and never runs", async () => {
    const env = createVirtualEnv();
    const pool = bulkhead({ env, maxConcurrent: 1, maxQueue: 5 });
    const ran: string[] = [];
    const job = (id: string) => () => {
      ran.push(id);
      return env.timers.sleep(100);
    };
    capture(pool.execute(job("a")));
    const controller = new AbortController();
    const b = capture(pool.execute(job("b"), { signal: controller.signal }));
    const c = capture(pool.execute(job("c")));
    await env.advance(10);
    assert.equal(pool.queued, 2);
    controller.abort();
    await env.flush();
    assert.ok(hasCode(b.error, "CANCELLED"), "rejected at once, not when a slot frees");
    assert.equal(pool.queued, 1);
    await env.runAll();
    assert.deepEqual(ran, ["a", "c"]);
    assert.equal(c.done, true);

    // Already aborted: refused without queueing.
    const gone = AbortSignal.abort();
    capture(pool.execute(job("d")));
    await assert.rejects(pool.execute(job("e"), { signal: gone }), (e) => hasCode(e, "CANCELLED"));
    await env.runAll();
    assert.deepEqual(ran, ["a", "c", "d"]);
  });

  it("a waiter aborted after being handed a slot, before running, never runs", async () => {
    const env = createVirtualEnv();
    const pool = bulkhead({ env, maxConcurrent: 1, maxQueue: 1 });
    assert.equal(pool.tryAcquire(), true);
    const controller = new AbortController();
    let ran = false;
    const out = capture(
      pool.execute(
        () => {
          ran = true;
        },
        { signal: controller.signal },
      ),
    );
    await env.flush();
    pool.release(); // hands the slot to the waiter...
    controller.abort(); // ...which is cancelled before its continuation runs
    await env.flush();
    assert.equal(ran, false);
    assert.ok(hasCode(out.error, "CANCELLED"));
    assert.deepEqual([pool.active, pool.queued], [0, 0], "the slot came back");
  });

  it("queued waiters respect their deadline", async () => {
    const env = createVirtualEnv();
    const pool = bulkhead({ env, maxConcurrent: 1, maxQueue: 3 });
    let ran = 0;
    capture(pool.execute(() => env.timers.sleep(100)));
    const late = capture(pool.execute(() => ran++, { deadline: 30 }));
    const fine = capture(pool.execute(() => ran++, { deadline: 500 }));
    await env.advance(30);
    assert.ok(hasCode(late.error, "DEADLINE_EXCEEDED"));
    assert.equal(pool.queued, 1);
    await env.runAll();
    assert.equal(ran, 1);
    assert.equal(fine.value, 0);
  });
});

describe("bulkhead release", () => {
  it("ignores a release when no slot is held, so a double release cannot over-admit", async () => {
    const env = createVirtualEnv();
    const b = bulkhead({ env, maxConcurrent: 1, maxQueue: 1 });
    assert.equal(b.tryAcquire(), true);
    b.release();
    b.release(); // extra
    assert.equal(b.tryAcquire(), true);
    let waiterRan = false;
    void b.acquire().then(() => {
      waiterRan = true;
    });
    await env.flush();
    assert.equal(waiterRan, false, "the one slot is held: the waiter waits");
  });
});
