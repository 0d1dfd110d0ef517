import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createRandom, createVirtualEnv } from "../src/env/index.ts";
import { hasCode, KeelError } from "../src/errors/index.ts";
import {
  type Backoff,
  backoffDelay,
  type GiveUpEvent,
  type RetryEvent,
  retry,
  retryBudget,
} from "../src/policies/index.ts";
import { capture, type Outcome } from "./support.ts";

const unavailable = (details?: Record<string, unknown>) =>
  new KeelError("UNAVAILABLE", "down", { noStack: true, ...(details ? { details } : {}) });

describe("backoff distributions", () => {
  const random = createRandom("backoff");

  it("constant and exponential are exact, and capped", () => {
    assert.equal(backoffDelay({ kind: "constant", delayMs: 40 }, 7, 0, random), 40);
    const exp: Backoff = { kind: "exponential", initialMs: 10, factor: 3, maxMs: 500 };
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((n) => backoffDelay(exp, n, 0, random)),
      [10, 30, 90, 270, 500],
    );
    const doubling: Backoff = { kind: "exponential", initialMs: 5 };
    assert.equal(backoffDelay(doubling, 3, 0, random), 40);
  });

  it("full jitter stays in [0, min(maxMs, initialMs * 2^n)] and spreads over it", () => {
    const b: Backoff = { kind: "full-jitter", initialMs: 10, maxMs: 300 };
    for (let n = 0; n < 8; n++) {
      const bound = Math.min(300, 10 * 2 ** n);
      const draws = Array.from({ length: 2000 }, () => backoffDelay(b, n, 0, random));
      assert.ok(
        draws.every((d) => d >= 0 && d <= bound),
        `retry ${n} out of [0, ${bound}]`,
      );
      const mean = draws.reduce((s, d) => s + d, 0) / draws.length;
      assert.ok(Math.abs(mean - bound / 2) < bound * 0.05, `retry ${n} mean ${mean}`);
      assert.ok(Math.min(...draws) < bound * 0.01 && Math.max(...draws) > bound * 0.99);
    }
  });

  it("decorrelated jitter stays in [initialMs, min(maxMs, previous * 3)]", () => {
    const b: Backoff = { kind: "decorrelated-jitter", initialMs: 20, maxMs: 1000 };
    let hitCap = 0;
    for (let chain = 0; chain < 500; chain++) {
      let previous = 0;
      for (let n = 0; n < 12; n++) {
        const d = backoffDelay(b, n, previous, random);
        const upper = Math.min(1000, (n === 0 ? 20 : previous) * 3);
        assert.ok(d >= 20 && d <= upper, `chain ${chain} retry ${n}: ${d} not in [20, ${upper}]`);
        if (d === 1000) hitCap++;
        previous = d;
      }
    }
    assert.ok(hitCap > 0, "long chains reach the cap");
  });
});

describe("retry", () => {
  it("retries retryable KeelErrors with the backoff, numbering attempts", async () => {
    const env = createVirtualEnv();
    const policy = retry({
      env,
      maxAttempts: 4,
      backoff: { kind: "constant", delayMs: 100 },
      maxDelayMs: 1000,
    });
    const seen: Array<[number, number]> = [];
    const retries: RetryEvent[] = [];
    policy.onRetry((e) => retries.push(e));
    const out = capture(
      policy.execute((ctx) => {
        seen.push([ctx.attempt, env.clock.now()]);
        if (ctx.attempt < 2) throw unavailable();
        return "ok";
      }),
    );
    await env.runAll();
    assert.equal(out.value, "ok");
    assert.deepEqual(seen, [
      [0, 0],
      [1, 100],
      [2, 200],
    ]);
    assert.deepEqual(
      retries.map((r) => [r.attempt, r.delayMs]),
      [
        [1, 100],
        [2, 100],
      ],
    );
  });

  it("does not retry non-retryable or foreign errors by default; retryOn decides otherwise", async () => {
    const env = createVirtualEnv();
    const backoff: Backoff = { kind: "constant", delayMs: 1 };
    const policy = retry({ env, maxAttempts: 5, backoff, maxDelayMs: 10 });
    const giveUps: GiveUpEvent[] = [];
    policy.onGiveUp((e) => giveUps.push(e));
    for (const error of [new KeelError("INVALID_ARGUMENT", "bad"), new Error("boom")]) {
      let calls = 0;
      const out = capture(
        policy.execute(() => {
          calls++;
          throw error;
        }),
      );
      await env.runAll();
      assert.equal(out.error, error);
      assert.equal(calls, 1);
    }
    assert.deepEqual(
      giveUps.map((g) => g.reason),
      ["not-retryable", "not-retryable"],
    );

    const custom = retry({ env, maxAttempts: 3, backoff, maxDelayMs: 10, retryOn: () => true });
    let calls = 0;
    const out = capture(
      custom.execute(() => {
        calls++;
        throw new Error("flaky");
      }),
    );
    await env.runAll();
    assert.equal(calls, 3);
    assert.equal((out.error as Error).message, "flaky");
  });

  it("gives up after maxAttempts with the last error", async () => {
    const env = createVirtualEnv();
    const policy = retry({
      env,
      maxAttempts: 3,
      backoff: { kind: "exponential", initialMs: 10 },
      maxDelayMs: 1000,
    });
    const giveUps: GiveUpEvent[] = [];
    policy.onGiveUp((e) => giveUps.push(e));
    const errors: KeelError[] = [];
    const out = capture(
      policy.execute((ctx) => {
        const e = new KeelError("UNAVAILABLE", `attempt ${ctx.attempt}`);
        errors.push(e);
        throw e;
      }),
    );
    await env.runAll();
    assert.equal(out.error, errors[2]);
    assert.equal(env.clock.now(), 30); // waits of 10 and 20
    assert.deepEqual(giveUps, [{ reason: "attempts", attempts: 3, error: errors[2] }]);
  });

  it("waits at least a server's retryAfterMs, and gives up when it exceeds maxDelayMs", async () => {
    const env = createVirtualEnv();
    const policy = retry({
      env,
      maxAttempts: 5,
      backoff: { kind: "constant", delayMs: 10 },
      maxDelayMs: 1000,
    });
    const times: number[] = [];
    const out = capture(
      policy.execute((ctx) => {
        times.push(env.clock.now());
        if (ctx.attempt === 0) throw unavailable({ retryAfterMs: 450 });
        if (ctx.attempt === 1) throw unavailable({ retryAfterMs: 5 }); // below the backoff
        return "ok";
      }),
    );
    await env.runAll();
    assert.equal(out.value, "ok");
    assert.deepEqual(times, [0, 450, 460]);

    const giveUps: GiveUpEvent[] = [];
    policy.onGiveUp((e) => giveUps.push(e));
    const tooLong = capture(
      policy.execute(() => {
        throw unavailable({ retryAfterMs: 5000 });
      }),
    );
    await env.flush();
    assert.ok(hasCode(tooLong.error, "UNAVAILABLE"));
    assert.equal(giveUps[0]?.reason, "delay");
  });

  it("never retries past the deadline: gives up at once with the last error", async () => {
    const env = createVirtualEnv();
    const policy = retry({
      env,
      maxAttempts: 10,
      backoff: { kind: "constant", delayMs: 100 },
      maxDelayMs: 1000,
    });
    const giveUps: GiveUpEvent[] = [];
    policy.onGiveUp((e) => giveUps.push(e));
    const times: number[] = [];
    const out = capture(
      policy.execute(
        (ctx) => {
          times.push(env.clock.now());
          assert.equal(ctx.deadline, 250);
          throw unavailable();
        },
        { deadline: 250 },
      ),
    );
    await env.runAll();
    assert.deepEqual(times, [0, 100, 200]);
    assert.ok(out.done && hasCode(out.error, "UNAVAILABLE"));
    assert.equal(giveUps[0]?.reason, "deadline");
    assert.equal(env.clock.now(), 200, "did not wait for a retry that could not happen");
  });

  it("stops retrying when the signal aborts, with CANCELLED, even mid-wait", async () => {
    const env = createVirtualEnv();
    const policy = retry({
      env,
      maxAttempts: 10,
      backoff: { kind: "constant", delayMs: 1000 },
      maxDelayMs: 1000,
    });
    const giveUps: GiveUpEvent[] = [];
    policy.onGiveUp((e) => giveUps.push(e));
    const controller = new AbortController();
    let calls = 0;
    const out = capture(
      policy.execute(
        () => {
          calls++;
          throw unavailable();
        },
        { signal: controller.signal },
      ),
    );
    await env.advance(500);
    controller.abort();
    await env.flush();
    assert.ok(hasCode(out.error, "CANCELLED"));
    assert.equal(env.clock.now(), 500);
    await env.runAll();
    assert.equal(calls, 1);
    assert.equal(giveUps[0]?.reason, "cancelled");

    // An attempt that fails because the call was aborted is not retried either.
    const c2 = new AbortController();
    const out2 = capture(
      policy.execute(
        () => {
          c2.abort(new KeelError("DEADLINE_EXCEEDED", "outer deadline"));
          throw unavailable();
        },
        { signal: c2.signal },
      ),
    );
    await env.flush();
    assert.ok(hasCode(out2.error, "DEADLINE_EXCEEDED"), "a KeelError reason is passed on");
  });

  it("exposes a low-level nextDelay for callers that run their own attempts", () => {
    const env = createVirtualEnv();
    const budget = retryBudget({ env, ratio: 0.5, minRetriesPerSecond: 0, windowMs: 1000 });
    const policy = retry({
      env,
      maxAttempts: 3,
      backoff: { kind: "constant", delayMs: 20 },
      maxDelayMs: 100,
      budget,
    });
    policy.begin();
    policy.begin();
    assert.equal(policy.nextDelay(unavailable(), 0, 0, 1000), 20);
    assert.equal(policy.nextDelay(unavailable(), 1, 20, 1000), "budget");
    policy.begin();
    policy.begin();
    assert.equal(policy.nextDelay(unavailable(), 1, 20, 1000), 20);
    assert.equal(policy.nextDelay(unavailable(), 2, 20, 1000), "attempts");
    assert.equal(policy.nextDelay(unavailable(), 0, 0, 15), "deadline");
    assert.equal(policy.nextDelay(new Error("x"), 0, 0), "not-retryable");
  });
});

describe("retry budget", () => {
  it("allows max(ratio * first attempts, floor) retries per window, and slides", async () => {
    const env = createVirtualEnv();
    const budget = retryBudget({ env, ratio: 0.1, minRetriesPerSecond: 2, windowMs: 1000 });
    // The floor: 2 retries in a 1 s window with no traffic.
    assert.equal(budget.available, 2);
    assert.ok(budget.tryWithdraw() && budget.tryWithdraw());
    assert.equal(budget.tryWithdraw(), false);
    for (let i = 0; i < 50; i++) budget.deposit();
    // 50 first attempts earn 5 retries; 2 were taken.
    assert.ok(Math.abs(budget.available - 3) < 1e-9);
    let granted = 0;
    while (budget.tryWithdraw()) granted++;
    assert.equal(granted, 3);
    await env.advance(1000); // the whole window slid out
    assert.equal(budget.available, 2);
  });

  it("keeps attempts within 1.1x first attempts during a sustained outage", async (t) => {
    const env = createVirtualEnv({ seed: "outage" });
    const budget = retryBudget({ env, ratio: 0.1, minRetriesPerSecond: 1, windowMs: 10_000 });
    const policy = retry({
      env,
      maxAttempts: 5,
      backoff: { kind: "full-jitter", initialMs: 50, maxMs: 2000 },
      maxDelayMs: 2000,
      budget,
    });
    const reasons = new Map<string, number>();
    policy.onGiveUp((e) => reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1));
    let attempts = 0;
    const down = () => {
      attempts++;
      throw unavailable();
    };
    const requests = 10_000;
    const outcomes: Array<Outcome<unknown>> = [];
    // 10 000 requests over 60 s of virtual time: 10 every 60 ms.
    for (let i = 0; i < requests; i += 10) {
      for (let k = 0; k < 10; k++) outcomes.push(capture(policy.execute(down)));
      await env.advance(60);
    }
    await env.advance(10_000);
    assert.ok(outcomes.every((o) => o.done && hasCode(o.error, "UNAVAILABLE")));
    const ratio = attempts / requests;
    t.diagnostic(
      `outage: ${attempts} attempts for ${requests} requests = ${ratio.toFixed(4)}x ` +
        `(give-ups: ${JSON.stringify(Object.fromEntries(reasons))})`,
    );
    assert.ok(ratio <= 1.1, `ratio ${ratio}`);
    assert.ok(ratio > 1.05, "the budget still allows retries");

    // Without the budget the same outage multiplies the load by maxAttempts.
    const unbudgeted = retry({
      env,
      maxAttempts: 5,
      backoff: { kind: "full-jitter", initialMs: 50, maxMs: 2000 },
      maxDelayMs: 2000,
    });
    attempts = 0;
    for (let i = 0; i < 100; i++) capture(unbudgeted.execute(down));
    await env.advance(60_000);
    t.diagnostic(`without a budget: ${attempts / 100}x`);
    assert.equal(attempts, 500);
  });
});
