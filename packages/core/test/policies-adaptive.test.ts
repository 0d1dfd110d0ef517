import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createVirtualEnv } from "../src/env/index.ts";
import { hasCode, isKeelError, KeelError } from "../src/errors/index.ts";
import {
  type AdaptiveAlgorithm,
  type AdaptivePermit,
  adaptiveLimit,
} from "../src/policies/index.ts";
import { percentile } from "./support.ts";

interface Result {
  readonly p50: number;
  readonly p99: number;
  readonly shedRate: number;
  /** Completed calls per second. */
  readonly goodput: number;
  readonly finalLimit: number;
}

const BASE_MS = 100;
const CAPACITY = 50; // calls at once before latency grows

/**
 * A server whose latency grows with concurrency (`BASE_MS * max(1, inFlight / CAPACITY)`), offered
 * 3x the load it can serve (1.5 calls/ms against 0.5), on virtual time in 1 ms steps. Latencies of
 * the second half (after the limit settled) are measured.
 */
async function overload(
  algorithm: AdaptiveAlgorithm | undefined,
  {
    seconds = 10,
    baseAt = (_now: number): number => BASE_MS,
  }: { seconds?: number; baseAt?: (now: number) => number } = {},
): Promise<Result> {
  const env = createVirtualEnv({ seed: "overload" });
  const limiter = algorithm === undefined ? undefined : adaptiveLimit({ env, algorithm });
  const due = new Map<number, Array<{ permit: AdaptivePermit | undefined; latency: number }>>();
  let inFlight = 0;
  let shed = 0;
  let offered = 0;
  let completed = 0;
  const latencies: number[] = [];
  const measureFrom = (seconds * 1000) / 2;
  for (let now = 0; now < seconds * 1000; now++) {
    for (const done of due.get(now) ?? []) {
      inFlight--;
      done.permit?.release("success", done.latency);
      if (now >= measureFrom) {
        latencies.push(done.latency);
        completed++;
      }
    }
    due.delete(now);
    const arrivals = 1 + (env.random.next() < 0.5 ? 1 : 0);
    for (let k = 0; k < arrivals; k++) {
      if (now >= measureFrom) offered++;
      let permit: AdaptivePermit | undefined;
      if (limiter !== undefined) {
        const p = limiter.acquire();
        if (isKeelError(p)) {
          assert.ok(hasCode(p, "OVERLOADED") && p.retryable);
          if (now >= measureFrom) shed++;
          continue;
        }
        permit = p;
      }
      inFlight++;
      const latency = baseAt(now) * Math.max(1, inFlight / CAPACITY);
      const at = now + Math.ceil(latency);
      const list = due.get(at) ?? [];
      list.push({ permit, latency });
      due.set(at, list);
    }
    // The limiter is given each RTT, so its clock only has to keep up roughly; moving it every
    // 50 ms instead of every 1 ms keeps the test fast.
    if (now % 50 === 49) await env.advance(50);
  }
  return {
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    shedRate: shed / offered,
    goodput: completed / (seconds / 2),
    finalLimit: limiter?.limit ?? Number.POSITIVE_INFINITY,
  };
}

describe("adaptive concurrency limit", () => {
  it("keeps p99 latency bounded at 3x capacity and sheds the rest with OVERLOADED", async (t) => {
    const unlimited = await overload(undefined);
    const gradient = await overload({ kind: "gradient", initial: 10, min: 2, max: 1000 });
    const aimd = await overload({
      kind: "aimd",
      initial: 10,
      min: 2,
      max: 1000,
      backoffRatio: 0.9,
      timeoutMs: 1.5 * BASE_MS,
    });
    const show = (name: string, r: Result) =>
      t.diagnostic(
        `${name}: p50 ${r.p50.toFixed(0)} ms, p99 ${r.p99.toFixed(0)} ms (base ${BASE_MS}), ` +
          `shed ${(r.shedRate * 100).toFixed(1)} %, goodput ${r.goodput.toFixed(0)}/s ` +
          `(capacity ${(CAPACITY * 1000) / BASE_MS}/s), limit ${r.finalLimit}`,
      );
    show("no limit", unlimited);
    show("gradient", gradient);
    show("aimd", aimd);
    assert.ok(unlimited.p99 > 10 * BASE_MS, "without a limit, queueing grows without bound");
    for (const r of [gradient, aimd]) {
      assert.ok(r.p99 <= 2 * BASE_MS, `p99 ${r.p99}`);
      assert.ok(r.shedRate > 0.6 && r.shedRate < 0.7, `shed ${r.shedRate}: about 2/3 at 3x`);
      assert.ok(r.goodput >= 0.95 * ((CAPACITY * 1000) / BASE_MS), "the server stays busy");
    }
  });

  it("gradient re-learns the no-load RTT when the dependency slows down for good", async (t) => {
    // From t = 2 s the server is 3x slower at every concurrency; its capacity is unchanged.
    const slower = { seconds: 20, baseAt: (now: number) => (now < 2000 ? BASE_MS : 3 * BASE_MS) };
    const gradient = (longWindow: number): AdaptiveAlgorithm => ({
      kind: "gradient",
      initial: 10,
      min: 2,
      max: 1000,
      longWindow,
    });
    const probing = await overload(gradient(5), slower);
    const stuck = await overload(gradient(1_000_000), slower);
    t.diagnostic(
      `after a 3x slowdown: limit ${probing.finalLimit} with probes every 5 windows, ` +
        `${stuck.finalLimit} without (goodput ${probing.goodput.toFixed(0)}/s vs ` +
        `${stuck.goodput.toFixed(0)}/s, capacity ${((CAPACITY * 1000) / (3 * BASE_MS)).toFixed(0)}/s)`,
    );
    assert.ok(stuck.finalLimit < CAPACITY / 4, "a stale minRtt starves the server");
    assert.ok(probing.finalLimit >= 3 * stuck.finalLimit, "the probe re-measured minRtt");
    assert.ok(probing.goodput >= 3 * stuck.goodput);
    assert.ok(probing.p99 <= 2 * 3 * BASE_MS);
  });

  it("aimd: +1 per window while the limit is in use, x backoffRatio after a drop, within bounds", () => {
    const env = createVirtualEnv();
    const limiter = adaptiveLimit({
      env,
      algorithm: { kind: "aimd", initial: 4, min: 2, max: 6, backoffRatio: 0.5 },
    });
    const changes: string[] = [];
    limiter.onLimitChange(({ from, to }) => changes.push(`${from}>${to}`));
    /** One window of 10 samples, `busy` calls in flight each time. */
    const window = (busy: number, outcome: (i: number) => "success" | "dropped" | "ignore") => {
      for (let i = 0; i < 10; ) {
        const permits: AdaptivePermit[] = [];
        for (let k = 0; k < busy; k++) permits.push(limiter.acquire() as AdaptivePermit);
        for (const p of permits) {
          const o = outcome(i);
          p.release(o, 10);
          if (o !== "ignore") i++;
        }
      }
    };
    const full = [1, 2, 3, 4].map(() => limiter.acquire() as AdaptivePermit);
    assert.ok(hasCode(limiter.acquire(), "OVERLOADED"), "never queues");
    for (const p of full) p.release("ignore");
    full[0]!.release("success", 1); // a second release is ignored
    assert.equal(limiter.inFlight, 0);
    window(1, () => "success");
    assert.equal(limiter.limit, 4, "1 in flight of 4: demand, not the limit, held calls back");
    window(2, () => "success");
    assert.equal(limiter.limit, 5);
    window(3, () => "success");
    window(3, () => "success");
    window(3, () => "success");
    assert.equal(limiter.limit, 6, "not above max");
    window(2, (i) => (i === 3 ? "dropped" : "success"));
    assert.equal(limiter.limit, 3);
    window(2, (i) => (i === 0 ? "dropped" : "success"));
    assert.equal(limiter.limit, 2, "not below min");
    assert.deepEqual(changes, ["4>5", "5>6", "6>3", "3>2"]);
  });

  it("execute counts timeouts and downstream sheds as drops", async () => {
    const env = createVirtualEnv();
    const limiter = adaptiveLimit({
      env,
      algorithm: { kind: "aimd", initial: 8, min: 1, max: 10, backoffRatio: 0.5 },
    });
    const run = async (error: Error) => {
      for (let i = 0; i < 10; i++) {
        await limiter.execute(() => Promise.reject(error)).catch(() => undefined);
      }
    };
    await run(new Error("a bug says nothing about capacity"));
    assert.equal(limiter.limit, 8);
    await run(new KeelError("DEADLINE_EXCEEDED", "slow"));
    assert.equal(limiter.limit, 4);
  });
});
