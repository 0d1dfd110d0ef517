import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type BalancerName, createRandom, type Endpoint, hasCode } from "../src/index.ts";
import {
  type BalancerState,
  checkVersionWeights,
  pick,
  pickVersion,
} from "../src/runtime/balancer.ts";

function endpoint(
  node: string,
  stats: Partial<Pick<Endpoint, "ewma" | "inflight" | "local">> = {},
): Endpoint {
  return {
    node,
    service: "orders",
    version: 1,
    local: stats.local ?? false,
    inflight: stats.inflight ?? 0,
    ewma: stats.ewma ?? 0,
  };
}

function state(seed: number | string = 1): BalancerState {
  return { random: createRandom(seed), cursors: new Map() };
}

function tally(picks: Array<Endpoint | undefined>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of picks) {
    const k = e?.node ?? "none";
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}

const isConfiguration = (err: unknown) => hasCode(err, "CONFIGURATION");

describe("pick: p2c", () => {
  it("always takes the lower (ewma+1)*(inflight+1) of two", () => {
    const st = state();
    const fast = endpoint("fast", { ewma: 1, inflight: 0 });
    const slow = endpoint("slow", { ewma: 100, inflight: 5 });
    for (let i = 0; i < 200; i++)
      assert.equal(pick("p2c", "k", [slow, fast], st, undefined, undefined), fast);
  });

  it("scores by the product of latency and load, not their sum", () => {
    const st = state();
    // product: a = 1*10 = 10, b = 6*2 = 12 → a; a sum would say a = 9, b = 6 → b.
    const a = endpoint("a", { ewma: 0, inflight: 9 });
    const b = endpoint("b", { ewma: 5, inflight: 1 });
    for (let i = 0; i < 100; i++)
      assert.equal(pick("p2c", "k", [a, b], st, undefined, undefined), a);
  });

  it("never picks the worst of three and picks the best about 2/3 of the time", () => {
    const st = state("p2c-3");
    const best = endpoint("best", { ewma: 1 });
    const mid = endpoint("mid", { ewma: 10 });
    const worst = endpoint("worst", { ewma: 100 });
    const counts = tally(
      Array.from({ length: 3_000 }, () =>
        pick("p2c", "k", [worst, mid, best], st, undefined, undefined),
      ),
    );
    assert.equal(counts.get("worst"), undefined);
    const bestShare = (counts.get("best") ?? 0) / 3_000;
    assert.ok(bestShare > 0.62 && bestShare < 0.72, `best share ${bestShare}`);
  });

  it("spreads evenly among equal endpoints", () => {
    const st = state("p2c-even");
    const list = ["a", "b", "c", "d"].map((n) => endpoint(n));
    const counts = tally(
      Array.from({ length: 4_000 }, () => pick("p2c", "k", list, st, undefined, undefined)),
    );
    for (const n of ["a", "b", "c", "d"]) {
      const c = counts.get(n) ?? 0;
      assert.ok(c > 850 && c < 1_150, `${n}: ${c}`);
    }
  });

  it("never picks excluded nodes", () => {
    const st = state("p2c-exclude");
    const list = ["a", "b", "c", "d"].map((n) => endpoint(n, { ewma: n === "a" ? 0 : 50 }));
    const exclude = new Set(["a", "c"]);
    const counts = tally(
      Array.from({ length: 1_000 }, () => pick("p2c", "k", list, st, exclude, undefined)),
    );
    assert.deepEqual([...counts.keys()].sort(), ["b", "d"]);
  });

  it("returns undefined when nothing is usable", () => {
    const st = state();
    assert.equal(pick("p2c", "k", [], st, undefined, undefined), undefined);
    const list = [endpoint("a"), endpoint("b")];
    assert.equal(pick("p2c", "k", list, st, new Set(["a", "b"]), undefined), undefined);
    assert.equal(pick("p2c", "k", list, st, new Set(["a"]), undefined)?.node, "b");
  });

  it("replays the same picks from the same seed", () => {
    const list = ["a", "b", "c", "d", "e"].map((n) => endpoint(n));
    const run = () => {
      const st = state("replay");
      return Array.from(
        { length: 100 },
        () => pick("p2c", "k", list, st, undefined, undefined)?.node,
      );
    };
    assert.deepEqual(run(), run());
  });
});

describe("pick: round-robin", () => {
  it("cycles through the endpoints in order", () => {
    const st = state();
    const list = ["a", "b", "c"].map((n) => endpoint(n));
    const picks = Array.from(
      { length: 7 },
      () => pick("round-robin", "orders@1", list, st, undefined, undefined)?.node,
    );
    assert.deepEqual(picks, ["a", "b", "c", "a", "b", "c", "a"]);
  });

  it("keeps one cursor per routing key", () => {
    const st = state();
    const list = ["a", "b", "c"].map((n) => endpoint(n));
    const rr = (key: string) => pick("round-robin", key, list, st, undefined, undefined)?.node;
    assert.deepEqual([rr("x"), rr("x"), rr("y"), rr("x"), rr("y")], ["a", "b", "a", "c", "b"]);
  });

  it("never picks excluded nodes", () => {
    const st = state();
    const list = ["a", "b", "c", "d"].map((n) => endpoint(n));
    const exclude = new Set(["b"]);
    const picks = Array.from(
      { length: 30 },
      () => pick("round-robin", "k", list, st, exclude, undefined)?.node,
    );
    assert.ok(!picks.includes("b"));
    assert.deepEqual(new Set(picks), new Set(["a", "c", "d"]));
  });
});

describe("pick: consistent-hash", () => {
  const nodes = ["n1", "n2", "n3", "n4", "n5"];
  const keys = Array.from({ length: 1_000 }, (_, i) => `customer-${i}`);
  const route = (list: readonly Endpoint[], key: string) =>
    pick("consistent-hash", "k", list, state(), undefined, key)?.node;

  it("sends the same key to the same node, whatever the list order", () => {
    const list = nodes.map((n) => endpoint(n));
    const reversed = [...list].reverse();
    for (const key of keys.slice(0, 200)) {
      const first = route(list, key);
      assert.equal(route(list, key), first);
      assert.equal(route(reversed, key), first);
    }
  });

  it("spreads keys over every node", () => {
    const list = nodes.map((n) => endpoint(n));
    const counts = new Map<string | undefined, number>();
    for (const k of keys) counts.set(route(list, k), (counts.get(route(list, k)) ?? 0) + 1);
    for (const n of nodes) {
      const c = counts.get(n) ?? 0;
      assert.ok(c > 120 && c < 280, `${n}: ${c} of 1000 keys`);
    }
  });

  it("moves only the keys of a node that leaves", () => {
    const list = nodes.map((n) => endpoint(n));
    const before = new Map(keys.map((k) => [k, route(list, k)]));
    const without = list.filter((e) => e.node !== "n3");
    let moved = 0;
    for (const k of keys) {
      const now = route(without, k);
      if (before.get(k) === "n3") {
        assert.notEqual(now, "n3");
        moved++;
      } else {
        assert.equal(now, before.get(k), `key ${k} moved though its node stayed`);
      }
    }
    assert.ok(moved > 0, "some keys lived on n3");
  });

  it("moves keys only to a node that joins", () => {
    const list = nodes.map((n) => endpoint(n));
    const before = new Map(keys.map((k) => [k, route(list, k)]));
    const grown = [...list, endpoint("n6")];
    let gained = 0;
    for (const k of keys) {
      const now = route(grown, k);
      if (now === "n6") gained++;
      else assert.equal(now, before.get(k));
    }
    assert.ok(gained > 100 && gained < 250, `n6 took ${gained} keys`);
  });

  it("skips excluded nodes the same way as removed ones", () => {
    const list = nodes.map((n) => endpoint(n));
    const without = list.filter((e) => e.node !== "n2");
    for (const k of keys.slice(0, 300)) {
      assert.equal(
        pick("consistent-hash", "k", list, state(), new Set(["n2"]), k)?.node,
        route(without, k),
      );
    }
  });

  it("throws CONFIGURATION without a hashKey", () => {
    const list = nodes.map((n) => endpoint(n));
    assert.throws(
      () => pick("consistent-hash", "k", list, state(), undefined, undefined),
      isConfiguration,
    );
  });
});

describe("pick: prefer-local and unknown strategies", () => {
  it("prefers the local endpoint, and falls back to p2c without one", () => {
    const st = state();
    const list = [
      endpoint("r1", { ewma: 0 }),
      endpoint("me", { local: true, ewma: 500 }),
      endpoint("r2"),
    ];
    for (let i = 0; i < 50; i++)
      assert.equal(pick("prefer-local", "k", list, st, undefined, undefined)?.node, "me");
    const remote = [endpoint("r1", { ewma: 0 }), endpoint("r2", { ewma: 100 })];
    for (let i = 0; i < 50; i++)
      assert.equal(pick("prefer-local", "k", remote, st, undefined, undefined)?.node, "r1");
    const noLocal = new Set(["me"]);
    for (let i = 0; i < 50; i++)
      assert.notEqual(pick("prefer-local", "k", list, st, noLocal, undefined)?.node, "me");
  });

  it("throws CONFIGURATION for an unknown strategy", () => {
    const bogus = "random" as string as BalancerName;
    assert.throws(
      () => pick(bogus, "k", [endpoint("a"), endpoint("b")], state(), undefined, undefined),
      isConfiguration,
    );
  });
});

describe("pickVersion", () => {
  it("routes about 5 % to a 5-weighted canary (20000 draws, within 1 point)", () => {
    for (const seed of [1, 2, "canary"]) {
      const random = createRandom(seed);
      let canary = 0;
      for (let i = 0; i < 20_000; i++) {
        const v = pickVersion({ 1: 95, 2: 5 }, () => true, random);
        assert.ok(v === 1 || v === 2, `version ${v}`);
        if (v === 2) canary++;
      }
      const share = canary / 20_000;
      assert.ok(share > 0.04 && share < 0.06, `canary share ${share} for seed ${seed}`);
    }
  });

  it("skips versions without endpoints and versions of weight 0", () => {
    const random = createRandom(3);
    for (let i = 0; i < 500; i++) {
      assert.equal(
        pickVersion({ 1: 95, 2: 5 }, (v) => v !== 1, random),
        2,
      );
      assert.equal(
        pickVersion({ 1: 95, 2: 5 }, (v) => v !== 2, random),
        1,
      );
      assert.equal(
        pickVersion({ 1: 0, 2: 5, 3: 0 }, () => true, random),
        2,
      );
    }
    assert.equal(
      pickVersion({ 1: 95, 2: 5 }, () => false, random),
      undefined,
    );
    assert.equal(
      pickVersion({ 1: 0 }, () => true, random),
      undefined,
    );
  });

  it("shares by weight among the available versions", () => {
    const random = createRandom("three");
    const counts = new Map<number | undefined, number>();
    for (let i = 0; i < 10_000; i++) {
      const v = pickVersion({ 1: 1, 2: 2, 3: 7 }, (x) => x !== 4, random);
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    const share = (v: number) => (counts.get(v) ?? 0) / 10_000;
    assert.ok(Math.abs(share(1) - 0.1) < 0.015, `v1 ${share(1)}`);
    assert.ok(Math.abs(share(2) - 0.2) < 0.015, `v2 ${share(2)}`);
    assert.ok(Math.abs(share(3) - 0.7) < 0.015, `v3 ${share(3)}`);
  });
});

describe("checkVersionWeights", () => {
  it("accepts positive integer versions with finite weights >= 0", () => {
    checkVersionWeights({ 1: 95, 2: 5 });
    checkVersionWeights({ 3: 0, 4: 1 });
    checkVersionWeights({ 1: 0.5 });
  });

  it("refuses invalid weights with CONFIGURATION", () => {
    const bad: Array<Readonly<Record<number, number>>> = [
      {},
      { 0: 1 },
      { [-1]: 1 },
      { 1.5: 1 },
      { 1: -1 },
      { 1: Number.NaN },
      { 1: Number.POSITIVE_INFINITY },
      { 1: 95, 2: -5 },
    ];
    for (const weights of bad) {
      assert.throws(() => checkVersionWeights(weights), isConfiguration, JSON.stringify(weights));
    }
    const named = JSON.parse('{"v2": 5}') as Record<number, number>;
    assert.throws(() => checkVersionWeights(named), isConfiguration);
  });
});

describe("pick: consistent-hash without a hashKey", () => {
  it("throws CONFIGURATION whatever the number of endpoints", () => {
    const ep = { node: "a", service: "kv", version: 1, local: true, inflight: 0, ewma: 0 };
    const state = { random: createRandom(1), cursors: new Map<string, number>() };
    assert.throws(
      () => pick("consistent-hash", "kv@1", [ep], state, undefined, undefined),
      (err) => hasCode(err, "CONFIGURATION"),
    );
  });

  it("refuses weights that can never pick a version", () => {
    assert.throws(
      () => checkVersionWeights({ 1: 0, 2: 0 }),
      (err) => hasCode(err, "CONFIGURATION"),
    );
  });
});
