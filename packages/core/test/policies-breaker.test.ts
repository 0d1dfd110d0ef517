import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createVirtualEnv, type VirtualEnv } from "../src/env/index.ts";
import { hasCode, KeelError } from "../src/errors/index.ts";
import {
  type BreakerPolicy,
  type BreakerStateChange,
  type CircuitBreaker,
  type CircuitBreakerOptions,
  circuitBreaker,
} from "../src/policies/index.ts";

const fail = () => {
  throw new KeelError("UNAVAILABLE", "down", { noStack: true });
};
const ok = () => "ok";

/** Runs `fn` through the breaker and returns what happened, without throwing. */
async function call(b: CircuitBreaker, fn: () => unknown): Promise<unknown> {
  try {
    return await b.execute(fn);
  } catch (error) {
    return error;
  }
}

/** A function that succeeds after `ms` of virtual time. */
const slow = (env: VirtualEnv, ms: number) => () => env.timers.sleep(ms).then(() => "late");

function make(
  env: VirtualEnv,
  policy: BreakerPolicy,
  more: Partial<CircuitBreakerOptions> = {},
): CircuitBreaker {
  return circuitBreaker({
    env,
    policy,
    halfOpenAfterMs: 1000,
    halfOpen: { probes: 2, successThreshold: 2 },
    ...more,
  });
}

describe("circuit breaker", () => {
  it("opens on a failure-rate spike, refuses with retryAfterMs, half-opens, closes on probes", async () => {
    const env = createVirtualEnv();
    const b = make(env, {
      kind: "count-window",
      size: 10,
      failureRateThreshold: 0.5,
      minimumCalls: 5,
    });
    const changes: string[] = [];
    b.onStateChange(({ from, to }: BreakerStateChange) => changes.push(`${from.kind}>${to.kind}`));

    for (let i = 0; i < 6; i++) assert.equal(await call(b, ok), "ok");
    for (let i = 0; i < 4; i++) await call(b, fail);
    assert.equal(b.state.kind, "closed", "4 failures in 10 calls: 40 %");
    await call(b, fail); // the oldest success leaves the window: 5 in 10
    assert.deepEqual(b.state, { kind: "open", until: 1000 });
    assert.equal(b.isOpen(), true);

    await env.advance(400);
    let ran = false;
    const refused = await call(b, () => {
      ran = true;
    });
    assert.equal(ran, false);
    assert.ok(hasCode(refused, "CIRCUIT_OPEN"));
    assert.equal(refused.retryable, true);
    assert.equal(refused.details?.["retryAfterMs"], 600);

    await env.advance(600);
    assert.equal(b.isOpen(), false, "due for probes");
    assert.deepEqual(b.state, { kind: "half-open", inFlight: 0, successes: 0 });
    // Two probes at once; a third call is refused while they run.
    const p1 = b.execute(slow(env, 10));
    const p2 = b.execute(slow(env, 20));
    assert.equal(b.isOpen(), true);
    const third = await call(b, ok);
    assert.ok(hasCode(third, "CIRCUIT_OPEN"));
    assert.equal(third.details?.["state"], "half-open");
    await env.advance(10);
    assert.deepEqual(b.state, { kind: "half-open", inFlight: 1, successes: 1 });
    await env.advance(10);
    assert.deepEqual(await Promise.all([p1, p2]), ["late", "late"]);
    assert.deepEqual(b.state, { kind: "closed" });
    assert.deepEqual(changes, ["closed>open", "open>half-open", "half-open>closed"]);
  });

  it("re-opens on a failed probe", async () => {
    const env = createVirtualEnv();
    const b = make(env, { kind: "consecutive", threshold: 2 });
    await call(b, fail);
    await call(b, fail);
    assert.equal(b.state.kind, "open");
    await env.advance(1000);
    await call(b, ok); // one probe success of the two needed
    assert.deepEqual(b.state, { kind: "half-open", inFlight: 0, successes: 1 });
    await call(b, fail);
    assert.deepEqual(b.state, { kind: "open", until: 2000 });
    await env.advance(999);
    assert.ok(hasCode(await call(b, ok), "CIRCUIT_OPEN"));
  });

  it("counts consecutive failures only", async () => {
    const env = createVirtualEnv();
    const b = make(env, { kind: "consecutive", threshold: 3 });
    for (const f of [fail, fail, ok, fail, fail]) await call(b, f);
    assert.equal(b.state.kind, "closed");
    await call(b, fail);
    assert.equal(b.state.kind, "open");
  });

  it("opens on slow calls alone, even when they succeed", async () => {
    const env = createVirtualEnv();
    const b = make(
      env,
      { kind: "count-window", size: 10, failureRateThreshold: 0.5, minimumCalls: 5 },
      { slowCall: { durationMs: 100, rateThreshold: 0.6 } },
    );
    const run = async (ms: number) => {
      const p = b.execute(slow(env, ms));
      await env.advance(ms);
      return p;
    };
    for (const ms of [150, 10, 10, 150, 10]) assert.equal(await run(ms), "late");
    assert.equal(b.state.kind, "closed", "2 slow in 5");
    await run(100); // durationMs itself is slow: 3 in 6
    await run(150); // 4 in 7: 57 %
    assert.equal(b.state.kind, "closed");
    await run(150); // 5 in 8: 62.5 % >= 60 %
    assert.equal(b.state.kind, "open");
  });

  it("count window honours minimumCalls", async () => {
    const env = createVirtualEnv();
    const b = make(env, {
      kind: "count-window",
      size: 20,
      failureRateThreshold: 0.5,
      minimumCalls: 8,
    });
    for (let i = 0; i < 7; i++) await call(b, fail);
    assert.equal(b.state.kind, "closed", "100 % failures but only 7 calls");
    await call(b, fail);
    assert.equal(b.state.kind, "open");
  });

  it("time window honours minimumCalls and forgets old calls", async () => {
    const env = createVirtualEnv();
    const b = make(env, {
      kind: "time-window",
      windowMs: 1000,
      buckets: 10,
      failureRateThreshold: 0.5,
      minimumCalls: 4,
    });
    for (let i = 0; i < 3; i++) await call(b, fail);
    assert.equal(b.state.kind, "closed", "100 % failures but only 3 calls");
    await env.advance(1000);
    for (let i = 0; i < 3; i++) await call(b, fail);
    assert.equal(b.state.kind, "closed", "the first three slid out of the window");
    await env.advance(500);
    await call(b, ok);
    assert.equal(b.state.kind, "open", "3 failures in 4 calls within the window");
  });

  it("ignores CANCELLED and local refusals; caller mistakes count as successes", async () => {
    const env = createVirtualEnv();
    const b = make(env, { kind: "consecutive", threshold: 2 });
    const localShed = new KeelError("OVERLOADED", "full", { details: { refusedBy: "bulkhead" } });
    const remoteShed = KeelError.fromWire(localShed.toWire());
    assert.equal(b.classify(new KeelError("CANCELLED", "gone")), "ignore");
    assert.equal(b.classify(localShed), "ignore");
    assert.equal(b.classify(remoteShed), "failure", "a server's own bulkhead shed the call");
    assert.equal(b.classify(new KeelError("INVALID_ARGUMENT", "bad")), "success");
    assert.equal(b.classify(new Error("bug")), "failure");
    const custom = make(env, { kind: "consecutive", threshold: 2 }, { isFailure: () => false });
    assert.equal(custom.classify(new Error("bug")), "success");
    assert.equal(custom.classify(localShed), "ignore");
  });

  it("drops outcomes of calls permitted before the last change of state", () => {
    const env = createVirtualEnv();
    const b = make(env, { kind: "consecutive", threshold: 1 });
    const early = b.tryAcquire();
    assert.equal(typeof early, "number");
    const other = b.tryAcquire() as number;
    b.record(other, "failure");
    assert.equal(b.state.kind, "open");
    b.reset();
    b.record(early as number, "failure"); // from before the reset: ignored
    assert.equal(b.state.kind, "closed");
  });

  it("isolate() holds it open until reset()", async () => {
    const env = createVirtualEnv();
    const b = make(env, { kind: "consecutive", threshold: 5 });
    const changes: string[] = [];
    b.onStateChange(({ to }) => changes.push(to.kind));
    b.isolate();
    await env.advance(1_000_000);
    const refused = await call(b, ok);
    assert.ok(hasCode(refused, "CIRCUIT_OPEN"));
    assert.equal(refused.details?.["state"], "isolated");
    assert.equal(refused.details?.["retryAfterMs"], undefined);
    assert.equal(b.isOpen(), true);
    b.reset();
    assert.equal(await call(b, ok), "ok");
    assert.deepEqual(changes, ["isolated", "closed"]);
  });

  it("exports and hydrates its state (round trip, across processes with other clocks)", async () => {
    const policies: BreakerPolicy[] = [
      { kind: "consecutive", threshold: 4 },
      { kind: "count-window", size: 8, failureRateThreshold: 0.5, minimumCalls: 4 },
      {
        kind: "time-window",
        windowMs: 1000,
        buckets: 4,
        failureRateThreshold: 0.5,
        minimumCalls: 6,
      },
    ];
    for (const policy of policies) {
      const envA = createVirtualEnv();
      const a = make(envA, policy);
      await call(a, fail);
      await envA.advance(260);
      for (const f of [ok, ok, ok, fail]) await call(a, f);
      await envA.advance(30);
      assert.equal(a.state.kind, "closed", policy.kind);
      const saved = JSON.parse(JSON.stringify(a));

      const envB = createVirtualEnv();
      await envB.advance(123_456); // another process: another monotonic origin
      const b = make(envB, policy, { initialState: saved });
      assert.deepEqual(b.toJSON(), a.toJSON(), policy.kind);
      // Same record, same future.
      for (const [env, br] of [
        [envA, a],
        [envB, b],
      ] as const) {
        await env.advance(100);
        for (let i = 0; i < 3; i++) await call(br, fail);
      }
      assert.equal(b.state.kind, a.state.kind, policy.kind);
      assert.equal(a.state.kind, "open", policy.kind);
      assert.deepEqual(b.toJSON(), a.toJSON());
    }

    const env = createVirtualEnv();
    const policy: BreakerPolicy = { kind: "consecutive", threshold: 1 };
    const open = make(env, policy);
    await call(open, fail);
    await env.advance(250);
    const restored = make(createVirtualEnv(), policy, { initialState: open.toJSON() });
    assert.deepEqual(restored.state, { kind: "open", until: 750 });
    const isolated = make(env, policy);
    isolated.isolate();
    assert.equal(make(env, policy, { initialState: isolated.toJSON() }).state.kind, "isolated");
    const half = make(env, policy, {
      initialState: { version: 1, state: { kind: "half-open", successes: 1 } },
    });
    assert.deepEqual(half.state, { kind: "half-open", inFlight: 0, successes: 1 });

    assert.throws(
      () =>
        make(env, policy, {
          initialState: JSON.parse(
            '{"version":1,"state":{"kind":"closed","window":{"kind":"count-window","outcomes":[]}}}',
          ),
        }),
      (e) => hasCode(e, "CONFIGURATION"),
    );
  });
});
