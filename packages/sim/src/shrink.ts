/**
 * Shrinking: a failing run's choices (fault plan, operation budget, tie-breaks) are made smaller
 * while the same failure still reproduces, so what is left is a short story of the bug.
 * @module
 */
import { KeelError } from "@keel/core";
import { describeStep, type FaultStep } from "./faults.ts";
import { type RunChoices, type RunReport, runScenario, type Scenario } from "./scenario.ts";

/** Options for {@link shrink}. */
export interface ShrinkOptions {
  /** Most runs to spend (default 300). */
  readonly maxRuns?: number;
  /** Told after each run, with whether the smaller candidate still failed. */
  readonly onRun?: (run: number, reproduced: boolean, choices: RunChoices) => void;
  readonly guard?: boolean;
}

/** What shrinking found. */
export interface ShrinkResult {
  /** The failure kept while shrinking (its name). */
  readonly target: string;
  readonly original: RunReport;
  /** The smallest run that still fails with `target`. */
  readonly shrunk: RunReport;
  /** Runs spent. */
  readonly runs: number;
}

const hasDuration = (s: FaultStep): s is Extract<FaultStep, { durationMs: number }> =>
  "durationMs" in s;

/**
 * Minimises a failing run: first-come tie-breaks, fewer faults (delta debugging over the plan),
 * shorter faults, fewer operations — keeping each change only if the run still fails the same way.
 */
export async function shrink<S>(
  scenario: Scenario<S>,
  failing: RunReport,
  options: ShrinkOptions = {},
): Promise<ShrinkResult> {
  const target = failing.failures[0]?.name;
  if (target === undefined) throw new KeelError("CONFIGURATION", "shrink needs a failing run");
  const maxRuns = options.maxRuns ?? 300;
  let runs = 0;
  let best = failing;
  let choices: { plan: readonly FaultStep[]; ops: number; ties: RunReport["ties"] } = {
    plan: failing.plan,
    ops: failing.ops,
    ties: failing.ties,
  };

  const attempt = async (candidate: typeof choices): Promise<boolean> => {
    if (runs >= maxRuns) return false;
    runs++;
    const report = await runScenario(scenario, {
      seed: failing.seed,
      ...candidate,
      ...(options.guard !== undefined ? { guard: options.guard } : {}),
    });
    const reproduced = report.failures.some((f) => f.name === target);
    options.onRun?.(runs, reproduced, candidate);
    if (reproduced) {
      best = report;
      choices = candidate;
    }
    return reproduced;
  };

  // The replay of the drawn plan as an explicit plan must itself fail (it should: same seed).
  if (choices.ties === "random") await attempt({ ...choices, ties: "fifo" });

  const removeSteps = async () => {
    let chunk = Math.max(1, Math.ceil(choices.plan.length / 2));
    while (chunk >= 1 && choices.plan.length > 0 && runs < maxRuns) {
      let removed = false;
      for (let i = 0; i < choices.plan.length && runs < maxRuns; ) {
        const plan = [...choices.plan.slice(0, i), ...choices.plan.slice(i + chunk)];
        if (await attempt({ ...choices, plan })) removed = true;
        else i += chunk;
      }
      if (!removed) chunk = chunk === 1 ? 0 : Math.ceil(chunk / 2);
    }
  };

  await removeSteps();

  // Shorter faults.
  for (let i = 0; i < choices.plan.length && runs < maxRuns; i++) {
    for (;;) {
      const step = choices.plan[i];
      if (step === undefined || !hasDuration(step) || step.durationMs <= 20) break;
      const shorter = { ...step, durationMs: Math.round(step.durationMs / 2) };
      const plan = choices.plan.map((s, j) => (j === i ? shorter : s));
      if (!(await attempt({ ...choices, plan }))) break;
    }
  }

  // Fewer operations.
  for (const factor of [0.5, 0.75, 0.9]) {
    for (;;) {
      const ops = Math.floor(choices.ops * factor);
      if (ops >= choices.ops || runs >= maxRuns) break;
      if (!(await attempt({ ...choices, ops }))) break;
    }
  }

  await removeSteps();
  return { target, original: failing, shrunk: best, runs };
}

const n = (count: number, word: string) => `${count} ${word}${count === 1 ? "" : "s"}`;
const fmt = (ms: number) => `${(ms / 1000).toFixed(3).padStart(8)} s`;

/** A run's story as short text: the faults that ran, the notes, and the failures. */
export function formatTimeline(
  report: RunReport,
  options: { readonly limit?: number } = {},
): string {
  const lines: string[] = [];
  const limit = options.limit ?? 40;
  const entries = report.timeline;
  for (const entry of entries.slice(0, limit)) lines.push(`${fmt(entry.atMs)}  ${entry.text}`);
  if (entries.length > limit) {
    // The failures are the point of the story: never cut them off.
    const failed = entries.slice(limit).filter((e) => e.text.startsWith("FAILED "));
    lines.push(`          … ${entries.length - limit - failed.length} more lines`);
    for (const entry of failed) lines.push(`${fmt(entry.atMs)}  ${entry.text}`);
  }
  return lines.join("\n");
}

/** A one-paragraph summary of a shrink. */
export function describeShrink(result: ShrinkResult): string {
  const o = result.original;
  const s = result.shrunk;
  const plan = s.plan.map((step) => `  at ${step.at} ms: ${describeStep(step)}`).join("\n");
  return [
    `seed ${s.seed} fails '${result.target}': shrunk from ${n(o.plan.length, "fault")} and ${n(o.ops, "operation")} to ${n(s.plan.length, "fault")} and ${n(s.ops, "operation")} in ${n(result.runs, "run")}${s.ties === "fifo" ? " (first-come tie-breaks)" : ""}`,
    s.plan.length > 0 ? `faults:\n${plan}` : "faults: none needed",
  ].join("\n");
}
