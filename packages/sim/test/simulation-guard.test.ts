import assert from "node:assert/strict";
import crypto, { randomInt, randomUUID } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { describe, it } from "node:test";
import timers from "node:timers";
import timersPromises, { setTimeout as sleepPromise } from "node:timers/promises";
import { defineService } from "@keel/core";
import { z } from "zod";
import { createSimulation, NondeterminismError } from "../src/index.ts";

/** Every global the guard patches, as found before any simulation ran. */
function snapshot() {
  return {
    Date: globalThis.Date,
    dateNow: Date.now,
    performanceNow: performance.now,
    setTimeout: globalThis.setTimeout,
    setInterval: globalThis.setInterval,
    setImmediate: globalThis.setImmediate,
    mathRandom: Math.random,
    globalRandomUUID: globalThis.crypto.randomUUID,
    getRandomValues: globalThis.crypto.getRandomValues,
    cryptoRandomUUID: crypto.randomUUID,
    namedRandomUUID: randomUUID,
    randomBytes: crypto.randomBytes,
    randomInt: crypto.randomInt,
    namedRandomInt: randomInt,
    randomFillSync: crypto.randomFillSync,
    timersSetTimeout: timers.setTimeout,
    timersSetInterval: timers.setInterval,
    timersSetImmediate: timers.setImmediate,
    promisesSetTimeout: timersPromises.setTimeout,
    namedPromisesSetTimeout: sleepPromise,
    schedulerWait: timersPromises.scheduler.wait,
    uptime: process.uptime,
    abortTimeout: AbortSignal.timeout,
    hrtime: process.hrtime,
    hrtimeBigint: process.hrtime.bigint,
    socketConnect: net.Socket.prototype.connect,
    serverListen: net.Server.prototype.listen,
    httpRequest: http.request,
    fetch: globalThis.fetch,
  };
}

const ORIGINAL = snapshot();

function assertRestored(): void {
  const now = snapshot();
  for (const [key, value] of Object.entries(ORIGINAL)) {
    assert.equal(now[key as keyof typeof now], value, `${key} is restored`);
  }
  // And they work.
  assert.ok(Date.now() > 0);
  assert.ok(new Date().getFullYear() >= 2026);
  assert.equal(typeof randomUUID(), "string");
  assert.equal(typeof process.hrtime.bigint(), "bigint");
  assert.ok(process.uptime() > 0);
}

/** Starts a promise-returning touch without leaving a floating promise (it throws before one exists). */
const start = (fn: () => Promise<unknown>) => () => {
  fn().catch(() => undefined);
};

/** The traps: what is touched, and the name the error must give. */
const TRAPS: ReadonlyArray<readonly [string, () => unknown, string?]> = [
  ["Date.now()", () => Date.now()],
  ["new Date()", () => new Date()],
  ["Date()", () => (Date as unknown as () => string)()],
  ["performance.now()", () => performance.now()],
  ["setTimeout()", () => setTimeout(() => {}, 1)],
  ["setInterval()", () => setInterval(() => {}, 1)],
  ["setImmediate()", () => setImmediate(() => {})],
  ["Math.random()", () => Math.random()],
  ["crypto.randomUUID()", () => globalThis.crypto.randomUUID(), "global crypto"],
  ["crypto.randomUUID()", () => crypto.randomUUID(), "node:crypto default import"],
  ["crypto.randomUUID()", () => randomUUID(), "named import from node:crypto"],
  ["crypto.getRandomValues()", () => globalThis.crypto.getRandomValues(new Uint8Array(4))],
  ["crypto.randomBytes()", () => crypto.randomBytes(4)],
  ["crypto.randomInt()", () => crypto.randomInt(10)],
  ["crypto.randomInt()", () => randomInt(10), "named import"],
  ["crypto.randomFillSync()", () => crypto.randomFillSync(new Uint8Array(4))],
  ["setTimeout() (node:timers)", () => timers.setTimeout(() => {}, 1)],
  ["setInterval() (node:timers)", () => timers.setInterval(() => {}, 1)],
  ["setImmediate() (node:timers)", () => timers.setImmediate(() => {})],
  ["setTimeout() (node:timers/promises)", start(() => sleepPromise(1)), "named import"],
  ["setImmediate() (node:timers/promises)", start(() => timersPromises.setImmediate())],
  ["scheduler.wait() (node:timers/promises)", start(() => timersPromises.scheduler.wait(1))],
  ["process.uptime()", () => process.uptime()],
  ["AbortSignal.timeout()", () => AbortSignal.timeout(10)],
  ["process.hrtime()", () => process.hrtime()],
  ["process.hrtime.bigint()", () => process.hrtime.bigint()],
  ["a real socket (net.Socket.connect)", () => net.connect({ host: "127.0.0.1", port: 9 })],
  ["a real server (net.Server.listen)", () => net.createServer().listen(0, "127.0.0.1")],
  ["a real HTTP request (http.request)", () => http.request("http://127.0.0.1:9/")],
  ["a real HTTP request (fetch)", () => fetch("http://127.0.0.1:9/")],
];

describe("guard mode", () => {
  for (const [label, touch, via] of TRAPS) {
    it(`traps ${label}${via === undefined ? "" : ` (${via})`} with a NondeterminismError naming it`, async () => {
      const sim = createSimulation({ seed: 1 });
      let caught: unknown;
      await sim.run(async () => {
        await sim.sleep(5);
        try {
          touch();
        } catch (err) {
          caught = err;
        }
      });
      assert.ok(caught instanceof NondeterminismError, `${label} threw ${String(caught)}`);
      assert.equal(caught.touched, label);
      assert.match(caught.message, /during a simulation: use the Env/);
      assert.ok(
        caught.stack?.includes("simulation-guard.test.ts"),
        "the stack names the culprit's file",
      );
      const failure = sim.failures.find((f) => f.name === "determinism guard");
      assert.ok(failure !== undefined, "recorded although the caller swallowed it");
      assert.ok(failure.detail.includes(label));
      assertRestored();
    });
  }

  it("records a violation inside a handler whose error became a reply", async () => {
    const svc = defineService("clocky").action("stamp", {
      input: z.null(),
      output: z.number(),
      handler: () => Date.now(),
    });
    const sim = createSimulation({ seed: 2 });
    let outcome = "";
    await sim.run(async () => {
      await sim.addNode("server", { services: [svc] });
      const client = (await sim.addNode("client")).node;
      await client.waitForEndpoints(svc, 1);
      try {
        await client.call(svc, "stamp", null, { timeoutMs: 500 });
        outcome = "ok";
      } catch (err) {
        outcome = `error ${(err as { code?: string }).code}`;
      }
    });
    assert.match(outcome, /^error /, "the caller saw an error reply");
    const [first] = sim.failures;
    assert.equal(first?.name, "determinism guard");
    assert.match(first?.detail ?? "", /Date\.now\(\)/);
    assert.match(first?.detail ?? "", /simulation-guard\.test\.ts/, "with the handler's frame");
    assertRestored();
  });

  it("counts every violation", async () => {
    const sim = createSimulation({ seed: 3 });
    await sim.run(async () => {
      for (let i = 0; i < 3; i++) {
        try {
          Math.random();
        } catch {}
      }
    });
    assert.equal(sim.failures[0]?.count, 3);
  });

  it("restores every global after main throws, and after a stuck run", async () => {
    const sim = createSimulation({ seed: 4 });
    await assert.rejects(
      sim.run(async () => {
        await sim.sleep(1);
        throw new Error("main failed");
      }),
      /main failed/,
    );
    assertRestored();
    await assert.rejects(
      sim.run(() => new Promise<void>(() => {})),
      { name: "SimulationStuckError" },
    );
    assertRestored();
    await assert.rejects(
      sim.run(() => {
        throw new Error("synchronous");
      }),
      /synchronous/,
    );
    assertRestored();
  });

  it("leaves dates from a value, Date.UTC, Date.parse and instanceof working", async () => {
    const sim = createSimulation({ seed: 5 });
    const before = new Date(86_400_000);
    await sim.run(async () => {
      assert.equal(new Date(0).toISOString(), "1970-01-01T00:00:00.000Z");
      assert.equal(new Date(2026, 0, 2).getFullYear(), 2026);
      assert.equal(Date.UTC(2026, 0, 1), 1_767_225_600_000);
      assert.equal(Date.parse("1970-01-02T00:00:00Z"), 86_400_000);
      assert.ok(new Date(1) instanceof Date);
      assert.ok(before instanceof Date, "a date made before the run is still a Date");
    });
    assert.deepEqual(sim.failures, []);
  });

  it("is off with guard: false", async () => {
    const sim = createSimulation({ seed: 6, guard: false });
    await sim.run(async () => {
      assert.ok(Date.now() > 0);
      assert.ok(Math.random() < 1);
      assert.equal(typeof randomUUID(), "string");
      assert.equal(typeof performance.now(), "number");
    });
    assert.deepEqual(sim.failures, []);
  });

  it("does not trap the simulation's own machinery: a busy world runs clean", async () => {
    const svc = defineService("busy").action("work", {
      input: z.number(),
      output: z.number(),
      idempotent: true,
      handler: async (n, ctx) => {
        await ctx.env.timers.sleep(1 + ctx.env.random.next());
        return n + ctx.env.random.int(10) + ctx.env.clock.wallNow() * 0;
      },
    });
    const sim = createSimulation({ seed: 7 });
    await sim.run(async () => {
      for (const id of ["a", "b", "c"]) await sim.addNode(id, { services: [svc] });
      const client = (await sim.addNode("client")).node;
      await client.waitForEndpoints(svc, 3);
      for (let i = 0; i < 30; i++) await client.call(svc, "work", i, { timeoutMs: 1000 });
      sim.crash("b");
      await sim.sleep(2000);
      await sim.restart("b");
      sim.pause("c");
      await sim.sleep(100);
      sim.resume("c");
      await sim.sleep(2000);
    });
    assert.deepEqual(sim.failures, []);
  });
});
