/**
 * `keel sim` end to end, as a child process from the repository root: the shop scenario passes,
 * its buggy variant fails with a replay command that fails the same way, shrinking leaves fewer
 * faults, the number of worker threads changes nothing but the timing, the determinism check and
 * the guard catch what they should, and bad usage exits 2.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { SimSummary } from "../src/sim.ts";
import { killAll, KEEL_MAIN as MAIN, type Result, runCli, spawnProgram } from "./support.ts";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const SHOP = "examples/shop/src/simulation.ts";
const FIXTURE = "packages/cli/test/fixtures/scenarios.ts";
/** Seeds 1..6 of the buggy shop: 5 and 6 double-charge, the others pass (measured). */
const BUGGY_FAILING = [5, 6];

/** Runs `keel <args>` from the repository root; killed if it outlives `timeoutMs`. */
const keel = (args: readonly string[], timeoutMs = 20_000) => runCli(args, timeoutMs, ROOT);

/** Runs a program from the repository root; killed if it outlives `timeoutMs`. */
const run = (program: string, args: readonly string[], timeoutMs = 20_000) =>
  spawnProgram(program, args, timeoutMs, ROOT).done;

/** The arguments of a printed replay command (`npx keel sim …`), for {@link keel}. */
function replayArgs(command: string): string[] {
  const words = command.trim().split(/\s+/);
  assert.deepEqual(words.slice(0, 3), ["npx", "keel", "sim"], command);
  return words.slice(2);
}

function summary(r: Result): SimSummary {
  return JSON.parse(r.stdout) as SimSummary;
}

describe("keel sim", { timeout: 120_000 }, () => {
  after(killAll);

  it("passes the shop scenario on a few seeds, exit 0", async () => {
    const r = await keel(["sim", SHOP, "--seeds", "4", "--jobs", "1"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /^keel sim: shop \(examples\/shop\/src\/simulation\.ts, export default\)/,
    );
    assert.match(r.stdout, /^4 seeds: 4 passed, 0 failed$/m);
    assert.match(
      r.stdout,
      /^virtual time [\d.]+ s in [\d.]+ s real on 1 thread \(.*x real time\), [\d,]+ events \([\d,]+ events\/s\)$/m,
    );
    // Not a terminal: no progress display.
    assert.equal(r.stderr, "");
  });

  it("finds the buggy shop's double charge; the printed replay fails the same way, exactly", async () => {
    const r = await keel(["sim", SHOP, "--scenario", "buggy", "--seeds", "6", "--json"]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const s = summary(r);
    assert.deepEqual(s.failed, BUGGY_FAILING);
    assert.equal(s.passed, 4);
    const failing = s.runs.find((run) => !run.ok);
    assert.ok(failing !== undefined);
    assert.equal(failing.failures[0]?.name, "no double charge");
    assert.equal(failing.replay, `npx keel sim ${SHOP} --scenario buggy --seed ${failing.seed}`);

    const again = await keel([...replayArgs(failing.replay), "--json"]);
    assert.equal(again.code, 1, again.stdout + again.stderr);
    const replayed = summary(again).runs[0];
    assert.equal(replayed?.failures[0]?.name, failing.failures[0]?.name);
    assert.equal(replayed?.failures[0]?.detail, failing.failures[0]?.detail);
    assert.equal(replayed?.hash, failing.hash, "the replay is the same run, event for event");
    assert.equal(replayed?.events, failing.events);
  });

  it("--shrink prints a shorter plan, its timeline and a replay that still fails", async () => {
    const seed = String(BUGGY_FAILING[0]);
    const r = await keel(["sim", SHOP, "--scenario", "buggy", "--seed", seed, "--shrink"]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const sizes =
      /shrunk from (\d+) faults? and (\d+) operations? to (\d+) faults? and (\d+) operations?/.exec(
        r.stdout,
      );
    assert.ok(sizes !== null, r.stdout);
    const [, faultsBefore, opsBefore, faultsAfter, opsAfter] = sizes.map(Number);
    assert.ok(faultsAfter! < faultsBefore!, `fewer faults: ${sizes[0]}`);
    assert.ok(opsAfter! <= opsBefore!);
    assert.match(r.stdout, /^timeline of the shrunk run:$/m);
    assert.match(r.stdout, /^ +[\d.]+ s {2}FAILED no double charge: /m);
    const line = /replay the shrunk run: (.+)$/m.exec(r.stdout)?.[1];
    assert.ok(line !== undefined, r.stdout);
    assert.match(line, / --plan [\w-]+ /);

    const again = await keel([...replayArgs(line), "--json"]);
    assert.equal(again.code, 1, again.stdout + again.stderr);
    const run = summary(again).runs[0];
    assert.equal(run?.failures[0]?.name, "no double charge");
    assert.equal(run?.faults, faultsAfter);
  });

  it("gives the same results on 2 worker threads as on 1", async () => {
    const args = ["sim", SHOP, "--scenario", "buggy", "--seeds", "6"];
    const [one, two] = [await keel([...args, "--jobs", "1"]), await keel([...args, "--jobs", "2"])];
    assert.equal(one.code, 1, one.stderr);
    assert.equal(two.code, 1, two.stderr);
    const withoutTiming = (text: string) => text.trimEnd().split("\n").slice(0, -1).join("\n");
    assert.equal(withoutTiming(two.stdout), withoutTiming(one.stdout));
    assert.match(one.stdout, /on 1 thread /);
    assert.match(two.stdout, /on 2 threads /);
    const [a, b] = [
      await keel([...args, "--jobs", "1", "--json"]),
      await keel([...args, "--jobs", "2", "--json"]),
    ];
    assert.deepEqual(summary(b).runs, summary(a).runs);
  });

  it("--check-determinism passes the shop and reports where a leaky scenario diverged", async () => {
    const ok = await keel(["sim", SHOP, "--seeds", "2", "--check-determinism"]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /every seed ran twice with identical events and random draws/);
    const leaky = await keel([
      "sim",
      FIXTURE,
      "--scenario",
      "leaky",
      "--seed",
      "1",
      "--check-determinism",
    ]);
    assert.equal(leaky.code, 1, leaky.stdout + leaky.stderr);
    assert.match(
      leaky.stdout,
      /^NONDETERMINISTIC seed 1: the runs diverged at event \d+: first '.+', then '.+'$/m,
    );
    assert.match(leaky.stdout, /1 of 1 seeds diverged/);
  });

  it("the guard fails a run that reads the real clock, naming the line; --no-guard lets it pass", async () => {
    const r = await keel(["sim", FIXTURE, "--scenario", "clocky", "--seed", "1"]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /FAIL seed 1: determinism guard .*Date\.now\(\) was called during a simulation/,
    );
    assert.match(r.stdout, /at Object\.workload \(.*fixtures\/scenarios\.ts:\d+:\d+\)/);
    const off = await keel([
      "sim",
      FIXTURE,
      "--scenario",
      "clocky",
      "--seed",
      "1",
      "--no-guard",
      "--json",
    ]);
    assert.equal(off.code, 0, off.stdout + off.stderr);
    assert.match(summary(off).runs[0]?.replay ?? "", / --no-guard$/);
  });

  it("reports `sometimes` assertions that never held in any seed", async () => {
    const r = await keel(["sim", FIXTURE, "--seeds", "3"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^sometimes, never held in any seed: never happens$/m);
  });

  it("writes a --json summary larger than a pipe's buffer whole", async () => {
    // Through `| cat`: a kernel pipe (64 KiB), not the larger socket pair spawn() would give.
    const shell = `"$0" "$@" | cat`;
    const args = ["sim", FIXTURE, "--seeds", "400", "--jobs", "1", "--json"];
    const r = await run("/bin/sh", ["-c", shell, process.execPath, MAIN, ...args]);
    assert.ok(r.stdout.length > 65_536, `${r.stdout.length} bytes`);
    assert.equal(summary(r).runs.length, 400);
  });

  it("is listed in the help, with its options", async () => {
    const help = await keel(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /sim \[options\] <module>/);
    const simHelp = await keel(["sim", "--help"]);
    assert.equal(simHelp.code, 0);
    for (const flag of [
      "--seeds",
      "--seed",
      "--jobs",
      "--shrink",
      "--plan",
      "--check-determinism",
      "--json",
    ]) {
      assert.ok(simHelp.stdout.includes(flag), `sim --help mentions ${flag}`);
    }
  });

  it("bad usage exits 2 with a message that says why", async () => {
    const cases: ReadonlyArray<readonly [readonly string[], RegExp]> = [
      [["sim"], /missing required argument 'module'/],
      [["sim", "does-not-exist.ts"], /cannot find module 'does-not-exist\.ts'/],
      [
        ["sim", SHOP, "--scenario", "nope"],
        /has no export 'nope' \(scenario exports: buggy, default\)/,
      ],
      [["sim", FIXTURE, "--scenario", "notAScenario"], /export 'notAScenario' is not a scenario/],
      [["sim", "examples/shop/src/services.ts"], /exports no scenario/],
      [["sim", SHOP, "--seed", "1", "--seeds", "3"], /cannot be used with/],
      [["sim", SHOP, "--seeds", "0"], /--seeds must be a positive integer/],
      [["sim", SHOP, "--seed", "x"], /--seed must be an integer >= 0/],
      [["sim", SHOP, "--ties", "lifo"], /Allowed choices are random, fifo/],
      [["sim", SHOP, "--seed", "1", "--plan", "bm90IGEgcGxhbg"], /--plan: the fault plan/],
      [["sim", SHOP, "--jobs", "-1"], /--jobs/],
    ];
    for (const [args, why] of cases) {
      const r = await keel(args);
      assert.equal(r.code, 2, `keel ${args.join(" ")}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, why, `keel ${args.join(" ")}`);
    }
  });
});
