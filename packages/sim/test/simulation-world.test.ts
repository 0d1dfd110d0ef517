import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Env, KeelError } from "@keel/core";
import { createSimulation, type NodeLife, SimulationStuckError } from "../src/index.ts";
import { echoService, tryHit } from "./sim-support.ts";

/** The order in which ten timers set for the same instant fire. */
async function sameTimeOrder(seed: number, ties: "random" | "fifo"): Promise<number[]> {
  const sim = createSimulation({ seed, ties, guard: false });
  const order: number[] = [];
  await sim.run(async () => {
    for (let i = 0; i < 10; i++) sim.env.timers.schedule(() => order.push(i), 100);
    await sim.sleep(200);
  });
  return order;
}

describe("the world's handoff", () => {
  it("lets a long chain of awaits finish before the next event fires", async () => {
    const sim = createSimulation({ seed: 1 });
    const log: string[] = [];
    const chain = async (name: string, depth: number) => {
      await sim.sleep(10);
      for (let i = 0; i < depth; i++) {
        await null;
        await Promise.resolve(i);
      }
      // A nested async function and a promise settled from a promise job: still microtasks.
      await (async () => {
        await new Promise<void>((resolve) => {
          void Promise.resolve().then(resolve);
        });
      })();
      log.push(`${name} done at ${sim.now}`);
    };
    await sim.run(async () => {
      const a = chain("a", 5000);
      // Due 1 ms after the chain wakes: it must not fire in the middle of the chain.
      sim.env.timers.schedule(() => log.push(`timer at ${sim.now}`), 11);
      // Due at the very same instant as the chain's wake-up, scheduled after it.
      sim.env.timers.schedule(() => log.push(`tie at ${sim.now}`), 10);
      await a;
      await sim.sleep(5);
    });
    assert.deepEqual(log, ["a done at 10", "tie at 10", "timer at 11"]);
  });

  it("shows a woken task the event's time, on the world and on a node's clock", async () => {
    const sim = createSimulation({ seed: 2 });
    const seen: Array<[number, number, number]> = [];
    await sim.run(async () => {
      let env: Env | undefined;
      await sim.addNode("n", (life) => {
        env = life.env;
        return {};
      });
      const nodeEnv = env as Env;
      const start = sim.now;
      const start0 = nodeEnv.clock.now();
      for (const delay of [0, 3, 7.5, 1000]) {
        const before = sim.now;
        await nodeEnv.timers.sleep(delay);
        for (let i = 0; i < 50; i++) await null;
        seen.push([sim.now - before, nodeEnv.clock.now() - start0 - (sim.now - start), delay]);
      }
    });
    for (const [elapsed, clockError, delay] of seen) {
      assert.equal(elapsed, delay, `a ${delay} ms sleep wakes exactly ${delay} ms later`);
      assert.equal(clockError, 0, "the node's perfect clock agrees with world time");
    }
  });
});

describe("same-time ties", () => {
  it("random ties differ across seeds and replay per seed", async () => {
    const orders = new Set<string>();
    for (let seed = 1; seed <= 8; seed++) {
      const first = await sameTimeOrder(seed, "random");
      const again = await sameTimeOrder(seed, "random");
      assert.deepEqual(again, first, `seed ${seed} replays its order`);
      assert.deepEqual(
        [...first].sort((x, y) => x - y),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      );
      orders.add(first.join(","));
    }
    assert.ok(orders.size >= 6, `8 seeds gave ${orders.size} distinct orders`);
    assert.ok(!orders.has("0,1,2,3,4,5,6,7,8,9") || orders.size > 1);
  });

  it("fifo ties are insertion order, whatever the seed", async () => {
    for (const seed of [1, 2, 3]) {
      assert.deepEqual(await sameTimeOrder(seed, "fifo"), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
  });

  it("ties never reorder events of different times", async () => {
    const sim = createSimulation({ seed: 9, ties: "random" });
    const order: number[] = [];
    await sim.run(async () => {
      for (const t of [50, 10, 40, 20, 30, 10.5, 0])
        sim.env.timers.schedule(() => order.push(t), t);
      await sim.sleep(100);
    });
    assert.deepEqual(order, [0, 10, 10.5, 20, 30, 40, 50]);
  });
});

describe("frame order", () => {
  it("an in-order link delivers frames in send order, even when they come due at one instant", async () => {
    for (let seed = 1; seed <= 10; seed++) {
      const sim = createSimulation({ seed, ties: "random", guard: false });
      const got: number[] = [];
      await sim.run(async () => {
        const x = sim.network.transport("x");
        const y = sim.network.transport("y");
        await x.connect();
        await y.connect();
        const reader = (async () => {
          for await (const f of y) {
            got.push(f.frame[0] as number);
            if (got.length === 30) break;
          }
        })();
        // Latencies are drawn per frame; a frame that drew less waits for the one before it, so
        // several frames share a due time.
        for (let i = 0; i < 30; i++) {
          x.send("y", new Uint8Array([i]));
          if (i % 10 === 9) await sim.sleep(0.3);
        }
        await reader;
      });
      assert.deepEqual(got, [...Array(30).keys()], `seed ${seed}`);
    }
  });
});

describe("pause and resume", () => {
  it("holds a paused node's timers and releases them on resume, at the resume time", async () => {
    const sim = createSimulation({ seed: 3 });
    const fired: Array<[string, number]> = [];
    await sim.run(async () => {
      let env: Env | undefined;
      await sim.addNode("n", (life) => {
        env = life.env;
        return {};
      });
      const t0 = sim.now;
      const timers = (env as Env).timers;
      for (const t of [10, 20, 30]) timers.schedule(() => fired.push([`t${t}`, sim.now - t0]), t);
      sim.env.timers.schedule(() => sim.pause("n"), 5);
      sim.env.timers.schedule(() => sim.resume("n"), 50);
      await sim.sleep(100);
    });
    assert.deepEqual(fired, [
      ["t10", 50],
      ["t20", 50],
      ["t30", 50],
    ]);
  });

  it("holds inbound frames for a paused node and serves them in order on resume", async () => {
    const sim = createSimulation({ seed: 5 });
    const log: string[] = [];
    const results: string[] = [];
    await sim.run(async () => {
      const echo = echoService(log);
      await sim.addNode("a", { services: [echo] });
      const client = (await sim.addNode("client")).node;
      await client.waitForEndpoints(echo, 1);
      sim.pause("a");
      const pausedAt = sim.now;
      const calls = ["1", "2", "3"].map(async (x, i) => {
        await sim.sleep(i);
        results.push(await tryHit(client, echo, x, 5000));
      });
      // Shorter than the failure detector's 700 ms, so the client still waits for `a`.
      await sim.sleep(300);
      assert.deepEqual(log, [], "a paused node serves nothing");
      assert.equal(sim.node("a").status, "paused");
      sim.resume("a");
      await Promise.all(calls);
      assert.ok(sim.now - pausedAt < 400, "served promptly after resume");
    });
    assert.deepEqual(log, ["a:1", "a:2", "a:3"]);
    assert.deepEqual(results, ["ok a:1", "ok a:2", "ok a:3"]);
  });
});

describe("crash and restart", () => {
  it("drops a crashed process's timers: a handler's sleep never resumes", async () => {
    const sim = createSimulation({ seed: 6 });
    const log: string[] = [];
    let outcome = "";
    const echo = echoService(log, 100);
    await sim.run(async () => {
      await sim.addNode("a", { services: [echo] });
      const client = (await sim.addNode("client")).node;
      await client.waitForEndpoints(echo, 1);
      const call = tryHit(client, echo, "x", 500).then((r) => {
        outcome = r;
      });
      await sim.sleep(50);
      assert.deepEqual(log, ["a:x"], "the handler started");
      sim.crash("a");
      await call;
      await sim.sleep(1000);
    });
    assert.match(outcome, /^error /);
    assert.deepEqual(log, ["a:x"]);
    assert.ok(
      sim.timeline.some((e) => e.text === "crash a"),
      "the crash is in the timeline",
    );
  });

  it("restarts a crashed node as a new life with a new random stream", async () => {
    const draws = async (seed: number) => {
      const sim = createSimulation({ seed });
      const lives: NodeLife[] = [];
      const out: Array<{ life: number; draw: number }> = [];
      await sim.run(async () => {
        await sim.addNode("a", (life) => {
          lives.push(life);
          return {};
        });
        out.push({ life: 1, draw: (lives[0] as NodeLife).env.random.next() });
        sim.crash("a");
        assert.equal(sim.node("a").status, "crashed");
        await sim.sleep(10);
        await sim.restart("a");
        assert.equal(sim.node("a").status, "up");
        assert.equal(sim.node("a").life, 2);
        out.push({ life: 2, draw: (lives[1] as NodeLife).env.random.next() });
      });
      assert.deepEqual(
        lives.map((l) => l.life),
        [1, 2],
      );
      assert.notEqual(lives[0]?.env, lives[1]?.env, "a new Env per life");
      return out;
    };
    const first = await draws(11);
    assert.notEqual(first[0]?.draw, first[1]?.draw, "the new life draws from a new stream");
    assert.deepEqual(await draws(11), first, "and the same seed gives the same streams");
  });

  it("serves again after a restart, and old-life timers stay dead", async () => {
    const sim = createSimulation({ seed: 7 });
    const log: string[] = [];
    const fired: string[] = [];
    const echo = echoService(log);
    await sim.run(async () => {
      await sim.addNode("a", (life) => {
        life.env.timers.schedule(() => fired.push(`life ${life.life}`), 100);
        return { services: [echo] };
      });
      const client = (await sim.addNode("client")).node;
      await client.waitForEndpoints(echo, 1);
      sim.crash("a");
      await sim.restart("a");
      await sim.sleep(5000);
      assert.equal(await tryHit(client, echo, "after", 2000), "ok a:after");
    });
    assert.deepEqual(fired, ["life 2"]);
  });
});

describe("node clocks", () => {
  it("skew moves wall time only; a jump moves wall time and monotonic time never goes back", async () => {
    const sim = createSimulation({ seed: 8, wallStart: 1_000_000 });
    await sim.run(async () => {
      const n = await sim.addNode("n", {}, { skewMs: 250 });
      const clock = n.clock;
      await sim.sleep(100);
      assert.equal(clock.now(), 100);
      assert.equal(clock.wallNow(), 1_000_000 + 100 + 250);
      const mono = clock.now();
      clock.jump(-10_000);
      assert.equal(clock.now(), mono, "a jump does not move monotonic time");
      assert.equal(clock.wallNow(), 1_000_000 + 100 + 250 - 10_000);
      clock.jump(5_000);
      assert.equal(clock.wallNow(), 1_000_000 + 100 + 250 - 5_000);
      assert.equal(clock.skewMs, 250 - 5_000);
      await sim.sleep(1);
      assert.ok(clock.now() > mono);
    });
  });

  it("a node whose clock runs 50% fast fires its 1000 ms timer at world ~667 ms", async () => {
    const sim = createSimulation({ seed: 9 });
    let firedAt = -1;
    let nodeTimeAtFire = -1;
    await sim.run(async () => {
      let env: Env | undefined;
      await sim.addNode(
        "fast",
        (life) => {
          env = life.env;
          return {};
        },
        { driftPpm: 500_000 },
      );
      const e = env as Env;
      const t0 = sim.now;
      const c0 = e.clock.now();
      e.timers.schedule(() => {
        firedAt = sim.now - t0;
        nodeTimeAtFire = e.clock.now() - c0;
      }, 1000);
      await sim.sleep(2000);
    });
    assert.ok(Math.abs(firedAt - 2000 / 3) < 1e-6, `fired at world ${firedAt} ms`);
    assert.ok(Math.abs(nodeTimeAtFire - 1000) < 1e-6, `the node's clock read ${nodeTimeAtFire}`);
  });

  it("changing the drift keeps monotonic time continuous", async () => {
    const sim = createSimulation({ seed: 10 });
    await sim.run(async () => {
      const { clock } = await sim.addNode("n", {}, { driftPpm: 0 });
      await sim.sleep(100);
      const a = clock.now();
      clock.setDrift(1_000_000);
      assert.equal(clock.now(), a, "no jump when the rate changes");
      await sim.sleep(50);
      assert.equal(clock.now(), a + 100, "then runs at twice world speed");
      clock.setDrift(-500_000);
      const b = clock.now();
      await sim.sleep(100);
      assert.equal(clock.now(), b + 50, "and at half speed");
      assert.equal(clock.driftPpm, -500_000);
    });
  });

  it("draws per-node clocks from the seed when asked", async () => {
    const settings = async (seed: number) => {
      const sim = createSimulation({
        seed,
        clocks: { random: { maxSkewMs: 1000, maxDriftPpm: 1000 } },
      });
      const out: Array<[number, number]> = [];
      await sim.run(async () => {
        for (const id of ["a", "b", "c"]) {
          const n = await sim.addNode(id);
          out.push([n.clock.skewMs, n.clock.driftPpm]);
        }
      });
      return out;
    };
    const one = await settings(1);
    assert.deepEqual(await settings(1), one);
    assert.notDeepEqual(await settings(2), one);
    for (const [skew, drift] of one) {
      assert.ok(Math.abs(skew) <= 1000 && Math.abs(drift) <= 1000 + 1e-6);
    }
    assert.ok(new Set(one.map(([s]) => s)).size > 1, "nodes get different skews");
  });
});

describe("run", () => {
  it("returns main's value and rethrows main's own error", async () => {
    const sim = createSimulation({ seed: 1 });
    assert.equal(
      await sim.run(async () => {
        await sim.sleep(10);
        return 42;
      }),
      42,
    );
    const boom = new Error("boom");
    await assert.rejects(
      sim.run(async () => {
        await sim.sleep(10);
        throw boom;
      }),
      (err) => err === boom,
    );
    assert.equal(sim.now, 20, "time carries on across runs");
    assert.equal(await sim.run(async () => "no events"), "no events");
  });

  it("throws SimulationStuckError('idle') on a deadlock", async () => {
    const sim = createSimulation({ seed: 1 });
    await assert.rejects(
      sim.run(async () => {
        await sim.sleep(30);
        await new Promise<void>(() => {});
      }),
      (err: unknown) =>
        err instanceof SimulationStuckError &&
        err.reason === "idle" &&
        /at 30 ms/.test(err.message) &&
        /deadlock/.test(err.message),
    );
  });

  it("throws SimulationStuckError('time-limit') and stops the clock at the limit", async () => {
    const sim = createSimulation({ seed: 1 });
    let ticks = 0;
    await assert.rejects(
      sim.run(
        async () => {
          for (;;) {
            await sim.sleep(7);
            ticks++;
          }
        },
        { timeMs: 1000 },
      ),
      (err: unknown) => err instanceof SimulationStuckError && err.reason === "time-limit",
    );
    assert.equal(sim.now, 1000);
    assert.equal(ticks, Math.floor(1000 / 7));
  });

  it("throws SimulationStuckError('event-limit') after that many events", async () => {
    const sim = createSimulation({ seed: 1 });
    await assert.rejects(
      sim.run(
        async () => {
          for (;;) await sim.sleep(1);
        },
        { events: 25 },
      ),
      (err: unknown) => err instanceof SimulationStuckError && err.reason === "event-limit",
    );
    assert.equal(sim.events, 25);
  });
});

describe("determinism of a whole world", () => {
  it("the same seed gives the same hash, event count and results; another seed does not", async () => {
    const once = async (seed: number) => {
      const sim = createSimulation({ seed });
      const log: string[] = [];
      const results = await sim.run(async () => {
        const echo = echoService(log, 3);
        await sim.addNode("a", { services: [echo] });
        await sim.addNode("b", { services: [echo] });
        const client = (await sim.addNode("client")).node;
        await client.waitForEndpoints(echo, 2);
        const out: string[] = [];
        for (let i = 0; i < 20; i++) out.push(await tryHit(client, echo, String(i), 1000));
        return out;
      });
      return { hash: sim.hash, events: sim.events, now: sim.now, log, results };
    };
    const a = await once(21);
    assert.deepEqual(await once(21), a);
    assert.ok(a.results.every((r) => r.startsWith("ok ")));
    assert.notEqual((await once(22)).hash, a.hash);
  });
});

describe("operations and histories", () => {
  it("records ok, fail for a definite error, and info for an unknown outcome; never throws", async () => {
    const sim = createSimulation({ seed: 1 });
    const history = sim.history<string, string>();
    await sim.run(async () => {
      await sim.sleep(10);
      const ok = await sim.operation(history, 1, "a", async () => {
        await sim.sleep(5);
        return "done";
      });
      assert.deepEqual(ok, { ok: true, output: "done" });
      const definite = new KeelError("INVALID_ARGUMENT", "bad");
      const failed = await sim.operation(history, 2, "b", async () => {
        throw definite;
      });
      assert.deepEqual(failed, { ok: false, error: definite });
      await sim.operation(history, 3, "c", async () => {
        await sim.sleep(7);
        throw new KeelError("DEADLINE_EXCEEDED", "slow");
      });
      await sim.operation(history, 4, "d", async () => {
        throw new Error("not a KeelError");
      });
    });
    const ops = history.operations();
    assert.deepEqual(
      ops.map((o) => [o.process, o.input, o.status, o.call, o.return]),
      [
        [1, "a", "ok", 10, 15],
        [2, "b", "fail", 15, 15],
        // An unknown outcome may take effect at any later time.
        [3, "c", "info", 15, Number.POSITIVE_INFINITY],
        [4, "d", "info", 22, Number.POSITIVE_INFINITY],
      ],
    );
  });
});

describe("the simulation's API", () => {
  it("refuses a duplicate node id and an unknown one, and ignores transitions that do not apply", async () => {
    const sim = createSimulation({ seed: 1 });
    await sim.run(async () => {
      await sim.addNode("a");
      await assert.rejects(sim.addNode("a"), /node 'a' is already in the simulation/);
      assert.throws(() => sim.node("ghost"), /no node 'ghost' in the simulation/);
      assert.throws(
        () => sim.crash("ghost"),
        (err: unknown) => err instanceof KeelError && err.code === "CONFIGURATION",
      );
      sim.resume("a");
      await sim.restart("a");
      assert.equal(sim.node("a").life, 1, "restarting a live node does nothing");
      sim.crash("a");
      sim.crash("a");
      sim.pause("a");
      assert.equal(sim.node("a").status, "crashed");
      assert.deepEqual(
        sim.timeline.map((e) => e.text),
        ["crash a"],
      );
      assert.deepEqual(
        sim.nodes().map((n) => n.id),
        ["a"],
      );
    });
  });

  it("refuses a second guarded run while one is in progress, with a clear error", async () => {
    const outer = createSimulation({ seed: 1 });
    await outer.run(async () => {
      const inner = createSimulation({ seed: 2 });
      await assert.rejects(
        inner.run(async () => 1),
        /a simulation guard is already active/,
      );
    });
  });

  it("runs unguarded worlds concurrently, each exactly as it runs alone", async () => {
    const once = async (seed: number) => {
      const sim = createSimulation({ seed, guard: false });
      const out = await sim.run(async () => {
        const echo = echoService([], 3);
        await sim.addNode("a", { services: [echo] });
        await sim.addNode("b", { services: [echo] });
        const client = (await sim.addNode("client")).node;
        await client.waitForEndpoints(echo, 2);
        const r: string[] = [];
        for (let i = 0; i < 20; i++) r.push(await tryHit(client, echo, String(i), 1000));
        sim.crash("a");
        for (let i = 0; i < 10; i++) r.push(await tryHit(client, echo, String(i), 1000));
        return r;
      });
      return { hash: sim.hash, events: sim.events, out };
    };
    const alone = [await once(1), await once(2)];
    assert.deepEqual(await Promise.all([once(1), once(2)]), alone);
  });
});
