import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { checkFaults, createRandom, hasCode, type Latency, type LinkFaults } from "../src/index.ts";
import { drawLatency } from "../src/transport/faults.ts";

const isConfiguration = (err: unknown) => hasCode(err, "CONFIGURATION");

function sample(latency: Latency, count: number, seed: number | string = 1): number[] {
  const random = createRandom(seed);
  return Array.from({ length: count }, () => drawLatency(latency, random));
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const stddev = (xs: readonly number[]) => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / xs.length);
};

describe("checkFaults", () => {
  it("accepts valid fault models and returns them unchanged", () => {
    const valid: LinkFaults[] = [
      {},
      { drop: 0, duplicate: 0 },
      { drop: 1, duplicate: 1 },
      { drop: 0.25 },
      { latency: { kind: "fixed", ms: 0 } },
      { latency: { kind: "uniform", min: 5, max: 5 } },
      { latency: { kind: "uniform", min: 0, max: 100 } },
      { latency: { kind: "exponential", mean: 20 } },
      { latency: { kind: "normal", mean: 10, stddev: 0 } },
    ];
    for (const faults of valid) assert.equal(checkFaults(faults), faults);
  });

  it("refuses drop and duplicate outside [0, 1]", () => {
    for (const p of [-0.01, 1.01, 2, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => checkFaults({ drop: p }), isConfiguration, `drop ${p}`);
      assert.throws(() => checkFaults({ duplicate: p }), isConfiguration, `duplicate ${p}`);
    }
  });

  it("refuses negative or non-finite latency", () => {
    const bad: Latency[] = [
      { kind: "fixed", ms: -1 },
      { kind: "fixed", ms: Number.NaN },
      { kind: "fixed", ms: Number.POSITIVE_INFINITY },
      { kind: "uniform", min: -5, max: 10 },
      { kind: "uniform", min: 0, max: Number.POSITIVE_INFINITY },
      { kind: "exponential", mean: -1 },
      { kind: "normal", mean: -10, stddev: 1 },
      { kind: "normal", mean: 10, stddev: -1 },
    ];
    for (const latency of bad) {
      assert.throws(() => checkFaults({ latency }), isConfiguration, JSON.stringify(latency));
    }
  });

  it("refuses a uniform latency whose max is below its min", () => {
    assert.throws(
      () => checkFaults({ latency: { kind: "uniform", min: 10, max: 5 } }),
      isConfiguration,
    );
  });

  it("refuses an unknown latency kind", () => {
    const latency = JSON.parse('{"kind": "pareto", "alpha": 2}') as Latency;
    assert.throws(() => checkFaults({ latency }), isConfiguration);
  });
});

describe("drawLatency", () => {
  it("is 0 without a latency model", () => {
    assert.equal(drawLatency(undefined, createRandom(1)), 0);
  });

  it("fixed: exactly the given value", () => {
    for (const ms of [0, 1, 12.5, 1_000]) {
      for (const x of sample({ kind: "fixed", ms }, 100)) assert.equal(x, ms);
    }
  });

  it("uniform: within bounds, covering both ends, mean in the middle", () => {
    const xs = sample({ kind: "uniform", min: 10, max: 30 }, 10_000, "uniform");
    for (const x of xs) assert.ok(x >= 10 && x <= 30, `${x}`);
    assert.ok(xs.some((x) => x < 11));
    assert.ok(xs.some((x) => x > 29));
    assert.ok(Math.abs(mean(xs) - 20) < 0.5, `mean ${mean(xs)}`);
    for (const x of sample({ kind: "uniform", min: 7, max: 7 }, 100)) assert.equal(x, 7);
  });

  it("exponential: never negative, mean within 10 % over 10000 draws", () => {
    for (const seed of [1, 2, "exp"]) {
      const xs = sample({ kind: "exponential", mean: 50 }, 10_000, seed);
      for (const x of xs) assert.ok(Number.isFinite(x) && x >= 0, `${x}`);
      assert.ok(Math.abs(mean(xs) - 50) < 5, `mean ${mean(xs)} for seed ${seed}`);
      // Memoryless tail: about e^-1 of draws exceed the mean.
      const above = xs.filter((x) => x > 50).length / xs.length;
      assert.ok(Math.abs(above - Math.exp(-1)) < 0.03, `share above the mean ${above}`);
    }
  });

  it("normal: never negative, even when the mean is small next to the spread", () => {
    const xs = sample({ kind: "normal", mean: 1, stddev: 10 }, 10_000, "clamp");
    for (const x of xs) assert.ok(Number.isFinite(x) && x >= 0, `${x}`);
    assert.ok(xs.filter((x) => x === 0).length > 3_000, "about half are clamped to 0");
  });

  it("normal: mean and spread as configured when far from 0", () => {
    const xs = sample({ kind: "normal", mean: 100, stddev: 10 }, 10_000, "normal");
    assert.ok(Math.abs(mean(xs) - 100) < 1, `mean ${mean(xs)}`);
    assert.ok(Math.abs(stddev(xs) - 10) < 1, `stddev ${stddev(xs)}`);
    const within1 = xs.filter((x) => Math.abs(x - 100) <= 10).length / xs.length;
    assert.ok(Math.abs(within1 - 0.6827) < 0.03, `share within one stddev ${within1}`);
  });

  it("replays the same draws from the same seed", () => {
    const latency: Latency = { kind: "exponential", mean: 5 };
    assert.deepEqual(sample(latency, 200, "replay"), sample(latency, 200, "replay"));
    assert.notDeepEqual(sample(latency, 200, "replay"), sample(latency, 200, "other"));
  });
});
