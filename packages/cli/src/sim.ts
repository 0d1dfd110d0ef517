import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { decodePlan, type FaultStep, type TieBreak } from "@keel/sim";
import {
  type DeterminismResult,
  type LoadedScenario,
  loadScenario,
  performTask,
  type SeedResult,
  type ShrinkProgress,
  type ShrinkSummary,
  type Task,
  type TaskChoices,
  type TaskResult,
} from "./sim-tasks.ts";
import type { WorkerMessage, WorkerSetup } from "./sim-worker.ts";
import { EXIT, UsageError } from "./usage.ts";

/** Options of `keel sim`, as parsed. */
export interface SimOptions {
  /** The scenario's export name (default: the default export, or the only scenario). */
  readonly scenario?: string;
  /** How many seeds (default 100). */
  readonly seeds?: number;
  /** First seed of the range (default 1). */
  readonly first?: number;
  /** Run exactly this seed. */
  readonly seed?: number;
  /** An encoded fault plan (from a replay command). */
  readonly plan?: string;
  readonly ops?: number;
  readonly ties?: TieBreak;
  /** Worker threads (default: the CPUs, at most one per seed). */
  readonly jobs?: number;
  readonly shrink: boolean;
  /** Failing seeds to shrink (default 1: the lowest). */
  readonly shrinkMax?: number;
  /** Most runs one shrink may spend (default 300). */
  readonly shrinkRuns?: number;
  readonly checkDeterminism: boolean;
  /** Guard against real time and randomness (default true). */
  readonly guard: boolean;
  readonly json: boolean;
}

/** Where `keel sim` writes; tests may pass their own. */
export interface SimOutput {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream & { readonly isTTY?: boolean };
}

/** Failing seeds listed one by one in the text summary; the rest are named in one line. */
const LISTED_FAILURES = 20;
const DEFAULT_SEEDS = 100;

/** Parses a seed (an integer >= 0) or throws a UsageError naming the option. */
export function parseSeed(value: string, option: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
    throw new UsageError(`${option} must be an integer >= 0, got '${value}'`);
  }
  return n;
}

/** Quotes an argument for a POSIX shell when it needs it. */
function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** A worker (or the main thread) that performs one task at a time. */
interface Lane {
  run(task: Task): Promise<TaskResult>;
  close(): Promise<void>;
}

function localLane(loaded: LoadedScenario, choices: TaskChoices, progress: ShrinkProgress): Lane {
  return {
    run: (task) => performTask(loaded.scenario, task, choices, progress),
    close: async () => {},
  };
}

function workerLane(setup: WorkerSetup, progress: ShrinkProgress): Lane {
  const worker = new Worker(new URL("./sim-worker.ts", import.meta.url), { workerData: setup });
  let pending: { resolve(r: TaskResult): void; reject(e: Error): void } | undefined;
  let dead: Error | undefined;
  const fail = (err: Error) => {
    dead ??= err;
    pending?.reject(err);
    pending = undefined;
  };
  worker.on("message", (m: WorkerMessage) => {
    switch (m.kind) {
      case "progress":
        progress(m.seed, m.runs, m.reproduced);
        break;
      case "result":
        pending?.resolve(m.result);
        pending = undefined;
        break;
      case "error":
        fail(new Error(`a simulation task failed in a worker: ${m.message}`));
        break;
    }
  });
  worker.on("error", fail);
  worker.on("exit", (code) => fail(new Error(`a simulation worker exited with code ${code}`)));
  return {
    run(task) {
      if (dead !== undefined) return Promise.reject(dead);
      const { promise, resolve, reject } = Promise.withResolvers<TaskResult>();
      pending = { resolve, reject };
      worker.postMessage(task);
      return promise;
    },
    async close() {
      worker.removeAllListeners("exit");
      await worker.terminate();
    },
  };
}

/** Runs `tasks` over `lanes`, each lane taking the next task as soon as it is free. */
async function drive(
  lanes: readonly Lane[],
  tasks: readonly Task[],
  onResult: (r: TaskResult) => void,
): Promise<void> {
  let next = 0;
  await Promise.all(
    lanes.map(async (lane) => {
      for (let task = tasks[next++]; task !== undefined; task = tasks[next++]) {
        onResult(await lane.run(task));
      }
    }),
  );
}

/** The one-line progress display on a terminal's standard error. */
class Progress {
  readonly #out: SimOutput["stderr"];
  readonly #on: boolean;
  readonly #total: number;
  readonly #start: number;
  #done = 0;
  #failed = 0;
  #events = 0;
  #shrinking = "";
  #last = 0;

  constructor(out: SimOutput["stderr"], total: number, start: number) {
    this.#out = out;
    this.#on = out.isTTY === true;
    this.#total = total;
    this.#start = start;
  }

  seed(r: SeedResult): void {
    this.#done++;
    if (!r.ok) this.#failed++;
    this.#events += r.events;
    this.#render(this.#done === this.#total);
  }

  shrink(seed: number, runs: number, reproduced: number): void {
    this.#shrinking = `shrinking seed ${seed}: ${runs} runs, ${reproduced} of them reproduced the failure`;
    this.#render(false);
  }

  clear(): void {
    if (this.#on) this.#out.write("\r\x1b[K");
  }

  #render(force: boolean): void {
    if (!this.#on) return;
    const now = performance.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    const seconds = (now - this.#start) / 1000;
    const rate = seconds > 0 ? Math.round(this.#events / seconds) : 0;
    const line =
      this.#shrinking !== ""
        ? this.#shrinking
        : `seeds ${this.#done}/${this.#total} · ${this.#failed} failed · ${rate.toLocaleString("en-US")} events/s`;
    this.#out.write(`\r${line}\x1b[K`);
  }
}

/** Everything `keel sim` found (the `--json` output). */
export interface SimSummary {
  readonly module: string;
  readonly scenario: { readonly name: string; readonly export: string };
  readonly seeds: readonly number[];
  readonly jobs: number;
  readonly passed: number;
  readonly failed: readonly number[];
  /** Every seed's outcome, in seed order; `replay` is the command that replays it. */
  readonly runs: ReadonlyArray<SeedResult & { readonly replay: string }>;
  /** `sometimes` assertions missed in every seed: never seen to hold. */
  readonly sometimesNeverHeld: readonly string[];
  /** How many seeds missed each `sometimes` assertion that some seed missed. */
  readonly sometimesMissed: Readonly<Record<string, number>>;
  readonly determinism?: ReadonlyArray<
    Omit<DeterminismResult, "run"> & { readonly replay: string }
  >;
  /** Shrinks of failing seeds, with `--shrink` (empty without it, or when no seed failed). */
  readonly shrinks: ReadonlyArray<ShrinkSummary & { readonly replay: string }>;
  /** Whether `--shrink` was given. */
  readonly shrinkAsked: boolean;
  /** Virtual time covered by the seeds (each seed once). */
  readonly virtualMs: number;
  readonly events: number;
  /** Real time of running the seeds (shrinking not included). */
  readonly realMs: number;
  readonly eventsPerSecond: number;
  /** Virtual time / real time. */
  readonly speedup: number;
  /** Real time spent shrinking. */
  readonly shrinkRealMs: number;
}

/**
 * `keel sim <module>`: runs a scenario over a range of seeds (or one seed, exactly), in worker
 * threads, then shrinks failing seeds and prints a summary with the command that replays each
 * failure. Resolves with the exit code: 0 when every seed passed, 1 otherwise.
 */
export async function sim(
  modulePath: string,
  options: SimOptions,
  out: SimOutput = process,
): Promise<number> {
  if (options.seed !== undefined && (options.seeds !== undefined || options.first !== undefined)) {
    throw new UsageError("--seed runs exactly one seed: drop --seeds and --first, or drop --seed");
  }
  let plan: readonly FaultStep[] | undefined;
  if (options.plan !== undefined) {
    try {
      plan = decodePlan(options.plan);
    } catch (err) {
      throw new UsageError(`--plan: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const loaded = await loadScenario(modulePath, options.scenario);
  const choices: TaskChoices = {
    guard: options.guard,
    shrinkRuns: options.shrinkRuns ?? 300,
    ...(plan !== undefined ? { plan } : {}),
    ...(options.ops !== undefined ? { ops: options.ops } : {}),
    ...(options.ties !== undefined ? { ties: options.ties } : {}),
  };
  const seeds =
    options.seed !== undefined
      ? [options.seed]
      : Array.from({ length: options.seeds ?? DEFAULT_SEEDS }, (_, i) => (options.first ?? 1) + i);
  const jobs = Math.max(1, Math.min(options.jobs ?? availableParallelism(), seeds.length));
  const command = [
    "npx keel sim",
    shellQuote(modulePath),
    ...(loaded.exportName !== "default" ? ["--scenario", shellQuote(loaded.exportName)] : []),
  ].join(" ");
  const replay = (args: readonly string[], extra: readonly string[] = []) =>
    [command, ...args.map(shellQuote), ...extra].join(" ");

  const start = performance.now();
  const progress = new Progress(out.stderr, seeds.length, start);
  const onShrink: ShrinkProgress = (seed, runs, reproduced) =>
    progress.shrink(seed, runs, reproduced);
  const lanes =
    jobs === 1
      ? [localLane(loaded, choices, onShrink)]
      : Array.from({ length: jobs }, () =>
          workerLane({ url: loaded.url, exportName: loaded.exportName, choices }, onShrink),
        );

  const runs = new Map<number, SeedResult>();
  const determinism = new Map<number, DeterminismResult>();
  const shrinks: ShrinkSummary[] = [];
  let seedsMs = 0;
  let shrinkMs = 0;
  try {
    const kind = options.checkDeterminism ? "determinism" : "run";
    await drive(
      lanes,
      seeds.map((seed) => ({ kind, seed, timeline: seeds.length === 1 })),
      (r) => {
        const run = r.kind === "determinism" ? r.run : r.kind === "run" ? r : undefined;
        if (r.kind === "determinism") determinism.set(r.seed, r);
        if (run === undefined) return;
        runs.set(run.seed, run);
        progress.seed(run);
      },
    );
    seedsMs = performance.now() - start;
    if (options.shrink) {
      const failing = seeds.filter((s) => runs.get(s)?.ok === false);
      const chosen = failing.slice(0, options.shrinkMax ?? 1);
      const t0 = performance.now();
      await drive(
        lanes,
        chosen.map((seed) => ({ kind: "shrink", seed })),
        (r) => {
          if (r.kind === "shrink") shrinks.push(r);
        },
      );
      shrinkMs = performance.now() - t0;
      shrinks.sort((a, b) => a.seed - b.seed);
    }
  } finally {
    progress.clear();
    await Promise.all(lanes.map((l) => l.close()));
  }

  const ordered = seeds.map((s) => runs.get(s)).filter((r) => r !== undefined);
  const missed = new Map<string, number>();
  const held = new Set<string>();
  for (const r of ordered) {
    for (const name of r.sometimesMissed) missed.set(name, (missed.get(name) ?? 0) + 1);
    for (const name of r.sometimesHeld) held.add(name);
  }
  const virtualMs = ordered.reduce((sum, r) => sum + r.virtualMs, 0);
  const events = ordered.reduce((sum, r) => sum + r.events, 0);
  const checkFlag = options.checkDeterminism ? ["--check-determinism"] : [];
  const summary: SimSummary = {
    module: modulePath,
    scenario: { name: loaded.scenario.name, export: loaded.exportName },
    seeds,
    jobs,
    passed: ordered.filter((r) => r.ok).length,
    failed: ordered.filter((r) => !r.ok).map((r) => r.seed),
    runs: ordered.map((r) => ({ ...r, replay: replay(r.replayArgs) })),
    sometimesNeverHeld: [...missed.keys()].filter((name) => !held.has(name)).sort(),
    sometimesMissed: Object.fromEntries([...missed].sort(([a], [b]) => (a < b ? -1 : 1))),
    ...(options.checkDeterminism
      ? {
          determinism: seeds
            .map((s) => determinism.get(s))
            .filter((d) => d !== undefined)
            .map(({ run, ...d }) => ({ ...d, replay: replay(run.replayArgs, checkFlag) })),
        }
      : {}),
    shrinks: shrinks.map((s) => ({ ...s, replay: replay(s.replayArgs) })),
    shrinkAsked: options.shrink,
    virtualMs,
    events,
    realMs: seedsMs,
    eventsPerSecond: seedsMs > 0 ? Math.round((events / seedsMs) * 1000) : 0,
    speedup: seedsMs > 0 ? Math.round(virtualMs / seedsMs) : 0,
    shrinkRealMs: shrinkMs,
  };
  // Wait until the text is handed to the OS: main.ts exits right after, and a pipe's writes are
  // asynchronous (a large --json summary would be cut short).
  const text = options.json ? `${JSON.stringify(summary)}\n` : formatSummary(summary);
  await new Promise<void>((resolve, reject) =>
    out.stdout.write(text, (err) => (err ? reject(err) : resolve())),
  );
  const nondeterministic = summary.determinism?.some((d) => !d.deterministic) === true;
  return summary.failed.length > 0 || nondeterministic ? EXIT.failed : EXIT.ok;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const count = (n: number) => n.toLocaleString("en-US");
const plural = (n: number, word: string) => `${count(n)} ${word}${n === 1 ? "" : "s"}`;
const firstLine = (text: string, max = 240) => {
  const line = text.split("\n", 1)[0] ?? "";
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};
const indent = (text: string, by: string) =>
  text
    .split("\n")
    .map((l) => (l === "" ? l : by + l))
    .join("\n");

/** The text summary. Everything but the timing line is the same whatever the number of jobs. */
export function formatSummary(s: SimSummary): string {
  const lines: string[] = [];
  const first = s.seeds[0];
  const last = s.seeds.at(-1);
  const range =
    s.seeds.length === 1 ? `seed ${first}` : `seeds ${first}..${last} (${s.seeds.length})`;
  lines.push(`keel sim: ${s.scenario.name} (${s.module}, export ${s.scenario.export}), ${range}`);
  lines.push("");
  const failing = s.runs.filter((r) => !r.ok);
  for (const r of failing.slice(0, LISTED_FAILURES)) {
    const f = r.failures[0];
    const more = r.failures.length > 1 ? ` (+${r.failures.length - 1} more failures)` : "";
    lines.push(
      `FAIL seed ${r.seed}: ${f?.name ?? "?"} at ${seconds(f?.atMs ?? 0)}${more}: ${firstLine(f?.detail ?? "")}`,
    );
    lines.push(`  replay: ${r.replay}`);
  }
  if (failing.length > LISTED_FAILURES) {
    const rest = failing.slice(LISTED_FAILURES).map((r) => r.seed);
    lines.push(`… ${rest.length} more failing seeds: ${rest.join(", ")} (--json lists them all)`);
  }
  const only = s.runs.length === 1 ? s.runs[0] : undefined;
  if (only !== undefined) {
    // One seed (a replay): every failure in full, then the story of the run.
    const full = only.failures.filter((f, i) => i > 0 || f.detail.includes("\n"));
    for (const f of full) {
      lines.push(`  ${f.name} (${plural(f.count, "time")}, first at ${seconds(f.atMs)}):`);
      lines.push(indent(f.detail, "    "));
    }
    if (only.timeline !== undefined) lines.push("timeline:", only.timeline);
  }
  if (failing.length > 0 || only?.timeline !== undefined) lines.push("");
  for (const d of s.determinism ?? []) {
    if (d.deterministic) continue;
    const at = d.divergence;
    lines.push(
      `NONDETERMINISTIC seed ${d.seed}: the runs diverged at event ${at?.index}: first '${at?.first}', then '${at?.second}'`,
    );
    lines.push(`  replay: ${d.replay}`);
  }
  if (s.determinism !== undefined) {
    const bad = s.determinism.filter((d) => !d.deterministic).length;
    lines.push(
      bad === 0
        ? `determinism: every seed ran twice with identical events and random draws`
        : `determinism: ${bad} of ${s.determinism.length} seeds diverged between two runs`,
    );
    lines.push("");
  }
  for (const sh of s.shrinks) {
    lines.push(sh.description);
    lines.push("timeline of the shrunk run:");
    lines.push(sh.timeline);
    lines.push(`  replay the shrunk run: ${sh.replay}`);
    lines.push("");
  }
  if (s.shrinkAsked && s.failed.length === 0) lines.push("nothing to shrink: no seed failed", "");
  if (s.sometimesNeverHeld.length > 0) {
    lines.push(`sometimes, never held in any seed: ${s.sometimesNeverHeld.join("; ")}`);
  }
  const partly = Object.entries(s.sometimesMissed).filter(
    ([name]) => !s.sometimesNeverHeld.includes(name),
  );
  if (partly.length > 0) {
    lines.push(
      `sometimes, missed in some seeds: ${partly.map(([name, n]) => `${name} (${n} of ${s.seeds.length})`).join("; ")}`,
    );
  }
  lines.push(
    `${plural(s.seeds.length, "seed")}: ${s.passed} passed, ${s.failed.length} failed${s.failed.length > 0 && s.failed.length <= LISTED_FAILURES ? ` (${s.failed.join(", ")})` : ""}`,
  );
  lines.push(
    `virtual time ${seconds(s.virtualMs)} in ${seconds(s.realMs)} real on ${s.jobs} ${s.jobs === 1 ? "thread" : "threads"} (${count(s.speedup)}x real time), ${count(s.events)} events (${count(s.eventsPerSecond)} events/s)${s.shrinks.length > 0 ? `; shrinking took ${seconds(s.shrinkRealMs)}` : ""}`,
  );
  return `${lines.join("\n")}\n`;
}
