/**
 * Fault plans: what goes wrong, when, for how long. A plan is plain data, so a failing run's plan
 * can be printed, replayed and shrunk. The nemesis draws a plan from the seed ("swarm" mode draws
 * which kinds of fault a run gets and how hard they hit, so different seeds explore different
 * mixes).
 * @module
 */
import { KeelError, type Random } from "@keel/core";

/** The kinds of fault a plan can hold. */
export const FAULT_KINDS = [
  "partition",
  "isolate",
  "link",
  "crash",
  "pause",
  "clock-jump",
  "clock-drift",
] as const;

/** One kind of fault. */
export type FaultKind = (typeof FAULT_KINDS)[number];

interface StepBase {
  /** When the fault starts, in ms from the start of the safety phase. */
  readonly at: number;
}

/** One fault of a plan. Faults with a duration undo themselves when it ends. */
export type FaultStep =
  | (StepBase & {
      readonly kind: "partition";
      readonly a: readonly string[];
      readonly b: readonly string[];
      readonly oneWay?: boolean;
      readonly durationMs: number;
    })
  | (StepBase & { readonly kind: "isolate"; readonly node: string; readonly durationMs: number })
  | (StepBase & {
      readonly kind: "link";
      /** Only frames from this node (default: any). */
      readonly from?: string;
      /** Only frames to this node (default: any). */
      readonly to?: string;
      readonly drop?: number;
      readonly duplicate?: number;
      /** Extra delay, uniform in [0, delayMs]. */
      readonly delayMs?: number;
      readonly reorder?: boolean;
      readonly durationMs: number;
    })
  | (StepBase & {
      readonly kind: "crash";
      readonly node: string;
      /** Down this long, then restarted (the liveness phase restarts it in any case). */
      readonly durationMs: number;
    })
  | (StepBase & { readonly kind: "pause"; readonly node: string; readonly durationMs: number })
  | (StepBase & { readonly kind: "clock-jump"; readonly node: string; readonly deltaMs: number })
  | (StepBase & {
      readonly kind: "clock-drift";
      readonly node: string;
      readonly driftPpm: number;
      readonly durationMs: number;
    });

/** How the nemesis draws a plan. */
export interface FaultOptions {
  /** Kinds of fault to draw from (default: all). */
  readonly kinds?: readonly FaultKind[];
  /**
   * Swarm mode (default on): each seed enables a random non-empty subset of `kinds` and scales the
   * rate, so some runs get many faults of one kind and others a mix.
   */
  readonly swarm?: boolean;
  /** Mean faults per second of the safety phase (default 1). */
  readonly ratePerSecond?: number;
  /** Longest a fault lasts, in ms (default 1500). */
  readonly maxDurationMs?: number;
  /** Nodes that may be crashed, paused, isolated or have their clock changed (default: all). */
  readonly targets?: readonly string[];
  /** Nodes never crashed or paused (e.g. the one the workload's clients sit on). */
  readonly protect?: readonly string[];
  /** Largest wall-clock jump, in ms (default 30000). */
  readonly maxClockJumpMs?: number;
  /** Largest drift, in ppm (default 200000, i.e. 20 %: exaggerated to find timing bugs fast). */
  readonly maxDriftPpm?: number;
}

/** What a drawn plan was drawn with (reported, so a user sees what a seed explored). */
export interface NemesisProfile {
  readonly kinds: readonly FaultKind[];
  readonly ratePerSecond: number;
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[random.int(items.length)] as T;
}

function shuffle<T>(random: Random, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.int(i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** Draws a fault plan for a safety phase of `safetyMs` over `nodes`. */
export function drawPlan(
  random: Random,
  nodes: readonly string[],
  safetyMs: number,
  options: FaultOptions = {},
): { plan: FaultStep[]; profile: NemesisProfile } {
  const all = options.kinds ?? FAULT_KINDS;
  for (const kind of all) {
    if (!FAULT_KINDS.includes(kind)) {
      throw new KeelError(
        "CONFIGURATION",
        `unknown fault kind '${String(kind)}': one of ${FAULT_KINDS.join(", ")}`,
      );
    }
  }
  if (!(safetyMs >= 0 && safetyMs < Number.POSITIVE_INFINITY)) {
    throw new KeelError(
      "CONFIGURATION",
      `the safety phase must last a finite number of ms >= 0, got ${safetyMs}`,
    );
  }
  const atLeastZero = (name: string, value: number | undefined) => {
    if (value !== undefined && !(value >= 0 && value < Number.POSITIVE_INFINITY)) {
      throw new KeelError(
        "CONFIGURATION",
        `fault option '${name}' must be a finite number >= 0, got ${value}`,
      );
    }
  };
  atLeastZero("ratePerSecond", options.ratePerSecond);
  atLeastZero("maxDurationMs", options.maxDurationMs);
  atLeastZero("maxClockJumpMs", options.maxClockJumpMs);
  atLeastZero("maxDriftPpm", options.maxDriftPpm);
  if (options.maxDriftPpm !== undefined && options.maxDriftPpm >= 1_000_000) {
    // A drift of -1e6 ppm stops a clock, and beyond that it runs backwards.
    throw new KeelError(
      "CONFIGURATION",
      `fault option 'maxDriftPpm' must be < 1000000, got ${options.maxDriftPpm}`,
    );
  }
  let kinds: readonly FaultKind[] = all;
  let rate = options.ratePerSecond ?? 1;
  if (options.swarm !== false && all.length > 0) {
    const chosen = all.filter(() => random.next() < 0.5);
    kinds = chosen.length > 0 ? chosen : [pick(random, all)];
    rate *= 0.25 + 1.75 * random.next();
  }
  const maxDuration = options.maxDurationMs ?? 1500;
  const targets = options.targets ?? nodes;
  const protect = new Set(options.protect ?? []);
  const killable = targets.filter((n) => !protect.has(n));
  const plan: FaultStep[] = [];
  if (kinds.length === 0 || nodes.length === 0 || rate <= 0) {
    return { plan, profile: { kinds, ratePerSecond: rate } };
  }
  let t = 0;
  for (;;) {
    t += -Math.log(1 - random.next()) * (1000 / rate);
    if (t >= safetyMs) break;
    const at = round(t);
    const durationMs = round(50 + random.next() * Math.max(0, maxDuration - 50));
    const kind = pick(random, kinds);
    switch (kind) {
      case "partition": {
        const order = shuffle(random, nodes);
        const cut = 1 + random.int(Math.max(1, order.length - 1));
        const oneWay = random.next() < 0.25;
        plan.push({
          at,
          kind,
          a: order.slice(0, cut),
          b: order.slice(cut),
          ...(oneWay ? { oneWay } : {}),
          durationMs,
        });
        break;
      }
      case "isolate":
        if (targets.length > 0) plan.push({ at, kind, node: pick(random, targets), durationMs });
        break;
      case "link": {
        const scoped = random.next() < 0.5;
        plan.push({
          at,
          kind,
          ...(scoped ? { to: pick(random, nodes) } : {}),
          // Three decimals, printed without binary noise (0.176, not 0.17600000000000002).
          drop: Math.round(random.next() * 0.3 * 100 * 10) / 1000,
          duplicate: Math.round(random.next() * 0.2 * 100 * 10) / 1000,
          delayMs: round(random.next() * 50),
          reorder: random.next() < 0.5,
          durationMs,
        });
        break;
      }
      case "crash":
      case "pause":
        if (killable.length > 0) plan.push({ at, kind, node: pick(random, killable), durationMs });
        break;
      case "clock-jump": {
        const max = options.maxClockJumpMs ?? 30_000;
        if (targets.length > 0) {
          plan.push({
            at,
            kind,
            node: pick(random, targets),
            deltaMs: round((random.next() * 2 - 1) * max),
          });
        }
        break;
      }
      case "clock-drift": {
        const max = options.maxDriftPpm ?? 200_000;
        if (targets.length > 0) {
          plan.push({
            at,
            kind,
            node: pick(random, targets),
            driftPpm: Math.round((random.next() * 2 - 1) * max),
            durationMs,
          });
        }
        break;
      }
    }
  }
  return { plan, profile: { kinds, ratePerSecond: round(rate * 100) / 100 } };
}

/** A short human description of a fault step. */
export function describeStep(step: FaultStep): string {
  const dur = (ms: number) => `for ${ms} ms`;
  switch (step.kind) {
    case "partition":
      return `partition [${step.a.join(", ")}] ${step.oneWay === true ? "-/->" : "<-/->"} [${step.b.join(", ")}] ${dur(step.durationMs)}`;
    case "isolate":
      return `isolate ${step.node} ${dur(step.durationMs)}`;
    case "link": {
      const scope = `${step.from ?? "*"} -> ${step.to ?? "*"}`;
      const parts: string[] = [];
      if (step.drop) parts.push(`drop ${step.drop}`);
      if (step.duplicate) parts.push(`duplicate ${step.duplicate}`);
      if (step.delayMs) parts.push(`delay <= ${step.delayMs} ms`);
      if (step.reorder === true) parts.push("reorder");
      return `degrade links ${scope} (${parts.join(", ") || "no change"}) ${dur(step.durationMs)}`;
    }
    case "crash":
      return `crash ${step.node}, restart after ${step.durationMs} ms`;
    case "pause":
      return `pause ${step.node} ${dur(step.durationMs)}`;
    case "clock-jump":
      return `jump ${step.node}'s wall clock by ${step.deltaMs > 0 ? "+" : ""}${step.deltaMs} ms`;
    case "clock-drift":
      return `drift ${step.node}'s clock by ${step.driftPpm} ppm ${dur(step.durationMs)}`;
  }
}

/** Encodes a plan for a command line (base64url JSON). */
export function encodePlan(plan: readonly FaultStep[]): string {
  return Buffer.from(JSON.stringify(plan)).toString("base64url");
}

/** Decodes {@link encodePlan}'s output, checking its shape; throws TypeError on bad input. */
export function decodePlan(text: string): FaultStep[] {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    throw new KeelError("INVALID_ARGUMENT", "the fault plan is not base64url-encoded JSON");
  }
  if (!Array.isArray(value))
    throw new KeelError("INVALID_ARGUMENT", "the fault plan must be a JSON array of steps");
  for (const [i, step] of value.entries()) {
    const s = step as { kind?: unknown; at?: unknown };
    if (typeof s !== "object" || s === null || !FAULT_KINDS.includes(s.kind as FaultKind)) {
      throw new KeelError("INVALID_ARGUMENT", `fault plan step ${i} has an unknown kind`);
    }
    if (typeof s.at !== "number" || !(s.at >= 0 && s.at < Number.POSITIVE_INFINITY)) {
      throw new KeelError("INVALID_ARGUMENT", `fault plan step ${i} needs a time 'at' >= 0`);
    }
    checkFields(i, s as Record<string, unknown>);
  }
  return value as FaultStep[];
}

const finite = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Checks the fields of one decoded step of a known kind, so a bad plan fails here, not mid-run. */
function checkFields(i: number, s: Record<string, unknown>): void {
  const need = (field: string, what: string, ok: (v: unknown) => boolean, optional = false) => {
    const v = s[field];
    if (optional && v === undefined) return;
    if (!ok(v))
      throw new KeelError(
        "INVALID_ARGUMENT",
        `fault plan step ${i} (${String(s["kind"])}) needs '${field}': ${what}`,
      );
  };
  const nodeId = (v: unknown) => typeof v === "string" && v.length > 0;
  const nodeIds = (v: unknown) => Array.isArray(v) && v.every(nodeId);
  const duration = () => need("durationMs", "a number of ms >= 0", (v) => finite(v) && v >= 0);
  const probability = (v: unknown) => finite(v) && v >= 0 && v <= 1;
  switch (s["kind"] as FaultKind) {
    case "partition":
      need("a", "an array of node ids", nodeIds);
      need("b", "an array of node ids", nodeIds);
      need("oneWay", "true or false", (v) => typeof v === "boolean", true);
      duration();
      break;
    case "link":
      need("from", "a node id", nodeId, true);
      need("to", "a node id", nodeId, true);
      need("drop", "a probability in [0, 1]", probability, true);
      need("duplicate", "a probability in [0, 1]", probability, true);
      need("delayMs", "a number of ms >= 0", (v) => finite(v) && v >= 0, true);
      need("reorder", "true or false", (v) => typeof v === "boolean", true);
      duration();
      break;
    case "isolate":
    case "crash":
    case "pause":
      need("node", "a node id", nodeId);
      duration();
      break;
    case "clock-jump":
      need("node", "a node id", nodeId);
      need("deltaMs", "a number of ms", finite);
      break;
    case "clock-drift":
      need("node", "a node id", nodeId);
      need("driftPpm", "a number of ppm > -1000000", (v) => finite(v) && v > -1_000_000);
      duration();
      break;
  }
}
