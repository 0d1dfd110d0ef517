/**
 * Scenarios: a cluster, a workload, faults and checks, run from a seed in two phases — safety
 * (workload under faults; nothing wrong may happen) then liveness (every fault healed; the system
 * must converge within a stated virtual time).
 * @module
 */
import { KeelError, type LinkFaults } from "@keel/core";
import type { TieBreak } from "./env/world.ts";
import {
  drawPlan,
  encodePlan,
  type FaultOptions,
  type FaultStep,
  type NemesisProfile,
} from "./faults.ts";
import {
  type ClockOptions,
  createSimulation,
  type Failure,
  type Simulation,
  SimulationStuckError,
  type TimelineEntry,
} from "./simulation.ts";

/** Where a run is. */
export type Phase = "setup" | "safety" | "liveness" | "check";

/** The run-specific facts a scenario reads. */
export interface RunInfo {
  readonly phase: Phase;
  /** How many operations the workload may issue (shrinking lowers it). */
  readonly ops: number;
  /** True once the safety phase is over: the workload should stop issuing operations. */
  readonly stopping: boolean;
}

/** A scenario: define once with {@link defineScenario}, run with `keel sim` or {@link runScenario}. */
export interface Scenario<S = unknown> {
  readonly name: string;
  /** Virtual ms of the safety phase: workload and faults. */
  readonly safetyMs: number;
  /** Virtual ms the system has to converge once every fault is healed (default 5000). */
  readonly livenessMs?: number;
  /** Operation budget of the workload (default 200). */
  readonly ops?: number;
  /** How the nemesis draws faults, or `false` for none (default: swarm over every kind). */
  readonly faults?: FaultOptions | false;
  /** The network outside injected faults. */
  readonly network?: LinkFaults;
  readonly clocks?: ClockOptions;
  /** Builds the cluster (nodes, stores); its result is handed to the other hooks. */
  setup(sim: Simulation, run: RunInfo): Promise<S>;
  /** Issues operations during the safety phase; should return once `run.stopping` or the budget is spent. */
  workload(sim: Simulation, state: S, run: RunInfo): Promise<void>;
  /** Polled during the liveness phase: true once the system has converged. */
  converged?(sim: Simulation, state: S, run: RunInfo): boolean | Promise<boolean>;
  /** Final checks (use `sim.always`); runs after convergence. */
  check?(sim: Simulation, state: S, run: RunInfo): void | Promise<void>;
}

/** Checks a scenario's shape at definition time and returns it (typed). */
export function defineScenario<S>(scenario: Scenario<S>): Scenario<S> {
  if (typeof scenario.name !== "string" || scenario.name.length === 0) {
    throw new KeelError("CONFIGURATION", "a scenario needs a name");
  }
  // Finite too: the nemesis draws faults until the safety phase ends, and liveness must end.
  if (!(scenario.safetyMs > 0 && Number.isFinite(scenario.safetyMs))) {
    throw new KeelError("CONFIGURATION", "scenario 'safetyMs' must be > 0 and finite");
  }
  if (
    scenario.livenessMs !== undefined &&
    !(scenario.livenessMs > 0 && Number.isFinite(scenario.livenessMs))
  ) {
    throw new KeelError("CONFIGURATION", "scenario 'livenessMs' must be > 0 and finite");
  }
  if (scenario.ops !== undefined && !(Number.isInteger(scenario.ops) && scenario.ops >= 0)) {
    throw new KeelError("CONFIGURATION", "scenario 'ops' must be an integer >= 0");
  }
  if (typeof scenario.setup !== "function" || typeof scenario.workload !== "function") {
    throw new KeelError("CONFIGURATION", "a scenario needs setup() and workload()");
  }
  return scenario;
}

/** The choices a run made that shrinking may change; everything else follows from the seed. */
export interface RunChoices {
  /** The fault plan (default: drawn from the seed). */
  readonly plan?: readonly FaultStep[];
  /** Operation budget (default: the scenario's). */
  readonly ops?: number;
  /** Tie-break between same-time events (default `random`). */
  readonly ties?: TieBreak;
}

/** Options for {@link runScenario}. */
export interface RunOptions extends RunChoices {
  readonly seed: number;
  /** Guard against real time and randomness (default true). */
  readonly guard?: boolean;
  /** Keep per-event hashes (for {@link checkDeterminism}). */
  readonly trace?: boolean;
  /** Cap on events, so a runaway seed ends (default 50 million). */
  readonly maxEvents?: number;
}

/** What one seed did. */
export interface RunReport {
  readonly scenario: string;
  readonly seed: number;
  readonly ok: boolean;
  readonly failures: readonly Failure[];
  /** `sometimes` assertions that never held: situations this run never reached. */
  readonly sometimesMissed: readonly string[];
  /** `sometimes` assertions that held at least once in this run. */
  readonly sometimesHeld: readonly string[];
  /** The plan that ran (drawn or given). */
  readonly plan: readonly FaultStep[];
  readonly profile: NemesisProfile | undefined;
  readonly ops: number;
  readonly ties: TieBreak;
  readonly events: number;
  readonly virtualMs: number;
  /** Rolling hash of events and random draws: two runs of one seed must agree. */
  readonly hash: number;
  readonly timeline: readonly TimelineEntry[];
  /** Per-event hashes and labels, when run with `trace`. */
  readonly trace?: { readonly hashes: readonly number[]; readonly labels: readonly string[] };
  /** Flags that replay this run exactly (`--seed …` plus any changed choices). */
  readonly replayArgs: readonly string[];
}

/** Flags for `keel sim` that replay a run with these choices. */
export function replayArgs(seed: number, choices: RunChoices, drawn: boolean): string[] {
  const args = ["--seed", String(seed)];
  if (!drawn && choices.plan !== undefined) args.push("--plan", encodePlan(choices.plan));
  if (choices.ops !== undefined) args.push("--ops", String(choices.ops));
  if (choices.ties === "fifo") args.push("--ties", "fifo");
  return args;
}

const POLL_MS = 50;

/** Runs one seed of a scenario through setup, safety, liveness and checks. Never throws for a failing run. */
export async function runScenario<S>(
  scenario: Scenario<S>,
  options: RunOptions,
): Promise<RunReport> {
  const ties = options.ties ?? "random";
  const sim = createSimulation({
    seed: options.seed,
    ties,
    guard: options.guard !== false,
    trace: options.trace === true,
    ...(scenario.network !== undefined ? { network: scenario.network } : {}),
    ...(scenario.clocks !== undefined ? { clocks: scenario.clocks } : {}),
  });
  const ops = options.ops ?? scenario.ops ?? 200;
  const livenessMs = scenario.livenessMs ?? 5000;
  const info = { phase: "setup" as Phase, ops, stopping: false };
  let plan: readonly FaultStep[] = options.plan ?? [];
  let profile: NemesisProfile | undefined;

  const main = async () => {
    const state = await scenario.setup(sim, info);
    info.phase = "safety";
    const start = sim.now;
    if (options.plan === undefined && scenario.faults !== false) {
      const drawn = drawPlan(
        sim.random("nemesis"),
        sim.nodes().map((n) => n.id),
        scenario.safetyMs,
        scenario.faults ?? {},
      );
      plan = drawn.plan;
      profile = drawn.profile;
    }
    const faults = sim.schedule(plan, start);
    let workloadDone = false;
    const workload = scenario.workload(sim, state, info).then(
      () => {
        workloadDone = true;
      },
      (err: unknown) => {
        workloadDone = true;
        sim.fail("workload threw", err instanceof Error ? (err.stack ?? err.message) : String(err));
      },
    );
    await sim.sleep(scenario.safetyMs);

    info.phase = "liveness";
    info.stopping = true;
    faults.cancel();
    await sim.healAll();
    const deadline = sim.now + livenessMs;
    let converged = scenario.converged === undefined;
    while (!converged && sim.now < deadline) {
      converged = (await scenario.converged?.(sim, state, info)) === true;
      if (!converged) await sim.sleep(POLL_MS);
    }
    if (!converged) {
      sim.fail("liveness", `did not converge within ${livenessMs} ms of healing every fault`);
    }
    while (!workloadDone && sim.now < deadline) await sim.sleep(POLL_MS);
    if (!workloadDone) {
      sim.fail("liveness", `the workload was still running ${livenessMs} ms after healing`);
    }
    info.phase = "check";
    await scenario.check?.(sim, state, info);
    // End every process at once: nothing of this run may leak into the next.
    sim.shutdown();
    // A workload that ignores `stopping` has failed 'liveness' already; waiting for it would run
    // the world until the event cap (minutes of real time) for nothing.
    if (workloadDone) await workload;
  };

  try {
    await sim.run(main, { events: options.maxEvents ?? 50_000_000 });
  } catch (err) {
    const name = err instanceof SimulationStuckError ? "stuck" : "scenario threw";
    sim.fail(name, err instanceof Error ? (err.stack ?? err.message) : String(err));
  }
  const failures = sim.failures;
  const trace = sim.trace;
  return {
    scenario: scenario.name,
    seed: options.seed,
    ok: failures.length === 0,
    failures,
    sometimesMissed: sim.sometimesMissed,
    sometimesHeld: sim.sometimesHeld,
    plan,
    profile,
    ops,
    ties,
    events: sim.events,
    virtualMs: sim.now,
    hash: sim.hash,
    timeline: sim.timeline,
    ...(trace !== undefined ? { trace } : {}),
    replayArgs: replayArgs(
      options.seed,
      {
        ...(options.plan !== undefined ? { plan } : {}),
        ...(options.ops !== undefined ? { ops } : {}),
        ties,
      },
      options.plan === undefined,
    ),
  };
}

/** The verdict of {@link checkDeterminism}. */
export interface DeterminismReport {
  readonly deterministic: boolean;
  readonly events: number;
  readonly hash: number;
  /** The first event whose hash differed, with what each run did there. */
  readonly divergence?: { readonly index: number; readonly first: string; readonly second: string };
  /** The first of the two runs (with its trace). */
  readonly report: RunReport;
}

/** Runs one seed twice and compares the rolling hash of events and random draws, event by event. */
export async function checkDeterminism<S>(
  scenario: Scenario<S>,
  options: RunOptions,
): Promise<DeterminismReport> {
  const a = await runScenario(scenario, { ...options, trace: true });
  const b = await runScenario(scenario, { ...options, trace: true });
  const ha = a.trace?.hashes ?? [];
  const hb = b.trace?.hashes ?? [];
  const n = Math.max(ha.length, hb.length);
  for (let i = 0; i < n; i++) {
    if (ha[i] !== hb[i]) {
      return {
        deterministic: false,
        events: a.events,
        hash: a.hash,
        report: a,
        divergence: {
          index: i,
          first: a.trace?.labels[i] ?? "(ended)",
          second: b.trace?.labels[i] ?? "(ended)",
        },
      };
    }
  }
  if (a.hash !== b.hash) {
    return {
      deterministic: false,
      events: a.events,
      hash: a.hash,
      report: a,
      divergence: { index: n, first: `final hash ${a.hash}`, second: `final hash ${b.hash}` },
    };
  }
  return { deterministic: true, events: a.events, hash: a.hash, report: a };
}
