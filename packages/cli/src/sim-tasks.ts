/**
 * What `keel sim` asks of a scenario, as plain data in and out, so the same tasks run in the main
 * thread or in worker threads: load a scenario module, run a seed, shrink a seed, check a seed's
 * determinism.
 * @module
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import {
  checkDeterminism,
  describeShrink,
  type FaultStep,
  formatTimeline,
  type RunReport,
  runScenario,
  type Scenario,
  shrink,
  type TieBreak,
} from "@keel/sim";
import { UsageError } from "./usage.ts";

/** Whether a value looks like a scenario from `defineScenario` (checked by shape: another copy of sim may have made it). */
export function isScenario(value: unknown): value is Scenario {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Partial<Record<keyof Scenario, unknown>>;
  return (
    typeof v.name === "string" &&
    typeof v.safetyMs === "number" &&
    typeof v.setup === "function" &&
    typeof v.workload === "function"
  );
}

/** A scenario found in a module, and where. */
export interface LoadedScenario {
  readonly scenario: Scenario;
  /** The export it came from (`default` for the default export). */
  readonly exportName: string;
  /** The module's absolute file URL (for workers). */
  readonly url: string;
}

/**
 * Imports a scenario module (path relative to `cwd`) and picks the scenario: the export named
 * `exportName`, else the default export, else the only scenario it exports.
 */
export async function loadScenario(
  modulePath: string,
  exportName?: string,
  cwd = process.cwd(),
): Promise<LoadedScenario> {
  const file = resolve(cwd, modulePath);
  if (!existsSync(file)) throw new UsageError(`cannot find module '${modulePath}' (${file})`);
  const url = pathToFileURL(file).href;
  const mod = (await import(url)) as Record<string, unknown>;
  const found = Object.keys(mod).filter((k) => isScenario(mod[k]));
  const listed = found.length > 0 ? found.join(", ") : "none";
  if (exportName !== undefined) {
    if (!(exportName in mod)) {
      throw new UsageError(
        `'${modulePath}' has no export '${exportName}' (scenario exports: ${listed})`,
      );
    }
    const value = mod[exportName];
    if (!isScenario(value)) {
      throw new UsageError(
        `'${modulePath}': export '${exportName}' is not a scenario from defineScenario() (scenario exports: ${listed})`,
      );
    }
    return { scenario: value, exportName, url };
  }
  const fallback = isScenario(mod["default"])
    ? "default"
    : found.length === 1
      ? found[0]
      : undefined;
  if (fallback === undefined) {
    throw new UsageError(
      found.length === 0
        ? `'${modulePath}' exports no scenario: export defineScenario(...) as default or name one with --scenario`
        : `'${modulePath}' exports several scenarios (${listed}) and none as default: pick one with --scenario`,
    );
  }
  return { scenario: mod[fallback] as Scenario, exportName: fallback, url };
}

/** The run choices given on the command line, applied to every seed. */
export interface TaskChoices {
  readonly plan?: readonly FaultStep[];
  readonly ops?: number;
  readonly ties?: TieBreak;
  readonly guard: boolean;
  /** Most runs one shrink may spend. */
  readonly shrinkRuns: number;
}

/** One unit of work. */
export type Task =
  | { readonly kind: "run"; readonly seed: number; readonly timeline?: boolean }
  | { readonly kind: "determinism"; readonly seed: number; readonly timeline?: boolean }
  | { readonly kind: "shrink"; readonly seed: number };

/** A failure of a run, as reported. */
export interface SeedFailure {
  readonly name: string;
  readonly detail: string;
  readonly atMs: number;
  readonly count: number;
}

/** What one seed did (plain data). */
export interface SeedResult {
  readonly kind: "run";
  readonly seed: number;
  readonly ok: boolean;
  readonly failures: readonly SeedFailure[];
  readonly sometimesMissed: readonly string[];
  readonly sometimesHeld: readonly string[];
  readonly faults: number;
  readonly kinds: readonly string[];
  readonly ops: number;
  readonly events: number;
  readonly virtualMs: number;
  readonly hash: number;
  /** Flags that replay this run (`--seed …`, plus `--plan`/`--ops`/`--ties` when chosen). */
  readonly replayArgs: readonly string[];
  /** The run's story (formatTimeline), when the task asked for it. */
  readonly timeline?: string;
}

/** Timeline lines printed for a single-seed run. */
const TIMELINE_LINES = 80;

/** The verdict of running a seed twice. */
export interface DeterminismResult {
  readonly kind: "determinism";
  readonly seed: number;
  readonly deterministic: boolean;
  readonly divergence?: { readonly index: number; readonly first: string; readonly second: string };
  /** The first of the two runs. */
  readonly run: SeedResult;
}

/** What shrinking a failing seed found. */
export interface ShrinkSummary {
  readonly kind: "shrink";
  readonly seed: number;
  /** The failure kept while shrinking; undefined when the seed did not fail. */
  readonly target: string | undefined;
  readonly runs: number;
  readonly original: { readonly faults: number; readonly ops: number };
  readonly shrunk: { readonly faults: number; readonly ops: number; readonly ties: TieBreak };
  /** describeShrink's paragraph. */
  readonly description: string;
  /** formatTimeline of the shrunk run. */
  readonly timeline: string;
  readonly replayArgs: readonly string[];
}

/** A task's answer. */
export type TaskResult = SeedResult | DeterminismResult | ShrinkSummary;

/** Told while a shrink runs: how many runs so far, how many reproduced the failure. */
export type ShrinkProgress = (seed: number, runs: number, reproduced: number) => void;

function summarise(report: RunReport, choices: TaskChoices, timeline = false): SeedResult {
  return {
    kind: "run",
    seed: report.seed,
    ok: report.ok,
    failures: report.failures.map((f) => ({
      name: f.name,
      detail: f.detail,
      atMs: f.atMs,
      count: f.count,
    })),
    sometimesMissed: [...report.sometimesMissed],
    sometimesHeld: [...report.sometimesHeld],
    faults: report.plan.length,
    kinds: [...(report.profile?.kinds ?? [])],
    ops: report.ops,
    events: report.events,
    virtualMs: report.virtualMs,
    hash: report.hash,
    replayArgs: choices.guard ? [...report.replayArgs] : [...report.replayArgs, "--no-guard"],
    ...(timeline ? { timeline: formatTimeline(report, { limit: TIMELINE_LINES }) } : {}),
  };
}

function runOptions(seed: number, choices: TaskChoices) {
  return {
    seed,
    guard: choices.guard,
    ...(choices.plan !== undefined ? { plan: choices.plan } : {}),
    ...(choices.ops !== undefined ? { ops: choices.ops } : {}),
    ...(choices.ties !== undefined ? { ties: choices.ties } : {}),
  };
}

/** Performs one task. Never throws for a failing run; throws only for a broken harness. */
export async function performTask(
  scenario: Scenario,
  task: Task,
  choices: TaskChoices,
  progress?: ShrinkProgress,
): Promise<TaskResult> {
  switch (task.kind) {
    case "run":
      return summarise(
        await runScenario(scenario, runOptions(task.seed, choices)),
        choices,
        task.timeline === true,
      );
    case "determinism": {
      const d = await checkDeterminism(scenario, runOptions(task.seed, choices));
      return {
        kind: "determinism",
        seed: task.seed,
        deterministic: d.deterministic,
        ...(d.divergence !== undefined ? { divergence: d.divergence } : {}),
        run: summarise(d.report, choices, task.timeline === true),
      };
    }
    case "shrink": {
      const failing = await runScenario(scenario, runOptions(task.seed, choices));
      const original = { faults: failing.plan.length, ops: failing.ops };
      if (failing.ok) {
        return {
          kind: "shrink",
          seed: task.seed,
          target: undefined,
          runs: 0,
          original,
          shrunk: { ...original, ties: failing.ties },
          description: `seed ${task.seed} did not fail: nothing to shrink`,
          timeline: formatTimeline(failing),
          replayArgs: summarise(failing, choices).replayArgs,
        };
      }
      let reproduced = 0;
      const result = await shrink(scenario, failing, {
        maxRuns: choices.shrinkRuns,
        guard: choices.guard,
        onRun: (run, again) => {
          if (again) reproduced++;
          progress?.(task.seed, run, reproduced);
        },
      });
      const s = result.shrunk;
      return {
        kind: "shrink",
        seed: task.seed,
        target: result.target,
        runs: result.runs,
        original,
        shrunk: { faults: s.plan.length, ops: s.ops, ties: s.ties },
        description: describeShrink(result),
        timeline: formatTimeline(s),
        replayArgs: summarise(s, choices).replayArgs,
      };
    }
  }
}
