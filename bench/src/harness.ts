import { cpus } from "node:os";
import { setImmediate as nextTurn } from "node:timers/promises";

/** One benchmarked operation, run in sequential `await` loops. */
export interface BenchCase {
  /** Short, stable id: used in ratios, `--only` and the JSON output. */
  readonly id: string;
  /** What the table shows. */
  readonly label: string;
  /** One operation; its result is awaited (a plain value costs one microtask tick, like a promise). */
  readonly op: () => unknown;
  /** Calls between clock reads for this case (default: the run's batch); 1 for slow operations. */
  readonly batch?: number;
}

/** What a self-measuring case reports for one measurement. */
export interface Measurement {
  readonly ops: number;
  readonly elapsedMs: number;
  /** Further figures of this measurement (latency percentiles, CPU per op), by name. */
  readonly metrics?: Readonly<Record<string, number>>;
}

/**
 * A case that measures itself, e.g. by asking another process to run a load: it runs within the
 * given time and operation bounds and reports what it did.
 */
export interface MeasuredCase {
  readonly id: string;
  readonly label: string;
  readonly measure: (seconds: number, maxOps: number) => Promise<Measurement>;
}

/** A suite's case: an operation the harness loops over, or a case that measures itself. */
export type SuiteCase = BenchCase | MeasuredCase;

/** A figure computed within each round from two cases, then summarised over rounds. */
export interface Comparison {
  readonly label: string;
  /**
   * `throughput-ratio`: ops/s of `of` divided by ops/s of `over` (> 1 means `of` is faster).
   * `overhead-ns`: ns/op of `of` minus ns/op of `over`.
   */
  readonly kind: "throughput-ratio" | "overhead-ns";
  readonly of: string;
  readonly over: string;
  /** A goal for the median (`throughput-ratio`: at least; `overhead-ns`: at most). */
  readonly target?: number;
}

const comparison =
  (kind: Comparison["kind"]) =>
  (label: string, of: string, over: string, target?: number): Comparison => ({
    label,
    kind,
    of,
    over,
    ...(target === undefined ? {} : { target }),
  });

/** A `throughput-ratio` comparison: ops/s of `of` over ops/s of `over`, at least `target`. */
export const ratio = comparison("throughput-ratio");

/** An `overhead-ns` comparison: ns/op of `of` minus ns/op of `over`, at most `target`. */
export const overhead = comparison("overhead-ns");

/** What a benchmark hands the harness. */
export interface Suite {
  readonly name: string;
  readonly description: string;
  /** Id of the case every other case is paired against in each round. */
  readonly reference: string;
  readonly cases: readonly SuiteCase[];
  readonly comparisons?: readonly Comparison[];
  /** Lines printed under the tables (what each case is, caveats). */
  readonly notes?: readonly string[];
}

/** A suite ready to run, and how to stop what it started (nodes, brokers) so the process can exit. */
export interface PreparedSuite {
  readonly suite: Suite;
  teardown(): Promise<void>;
}

/** Stops one thing a suite started (a node, a broker, a policy's timer). */
export type Stop = () => Promise<void>;

/**
 * Starts a suite's cases, checks that each returns `expected` once before anything is measured,
 * and returns them with a teardown that stops everything `start` registered. If starting or a
 * check fails, what was started is stopped and the setup error is thrown.
 */
export async function prepareCases(
  start: (stops: Stop[]) => Promise<BenchCase[]>,
  expected: unknown,
): Promise<{ cases: BenchCase[]; teardown: () => Promise<void> }> {
  const stops: Stop[] = [];
  const teardown = async () => {
    const outcomes = await Promise.allSettled(stops.map((stop) => stop()));
    const failed = outcomes.filter((r) => r.status === "rejected");
    if (failed.length > 0) {
      throw new AggregateError(
        failed.map((r) => r.reason),
        "teardown failed",
      );
    }
  };
  try {
    const cases = await start(stops);
    for (const c of cases) {
      const got = await c.op();
      if (got !== expected) {
        throw new Error(`case '${c.id}' returned ${String(got)}, expected ${String(expected)}`);
      }
    }
    return { cases, teardown };
  } catch (err) {
    await teardown().catch(() => {}); // the setup error is the one worth reporting
    throw err;
  }
}

/** How long and how often to measure. */
export interface HarnessOptions {
  /** Rounds; each case is measured once per round. */
  readonly rounds: number;
  /** Time bound of one measurement, in seconds. */
  readonly seconds: number;
  /** Operation bound of one measurement (whichever bound is hit first ends it). */
  readonly maxOps: number;
  /** Warm-up per case before the first round, in seconds. */
  readonly warmupSeconds: number;
  /** Calls between two checks of the clock and two yields to the event loop. */
  readonly batch: number;
  /** Only these case ids (the reference is always kept); undefined for all. */
  readonly only?: readonly string[] | undefined;
  /** Which source was measured (recorded in the results, not used otherwise). */
  readonly source?: SourceInfo | undefined;
  /** Progress lines (stderr, so that `--json` output stays clean). */
  readonly progress: (line: string) => void;
}

/** The commit measured, and the files that differed from it. */
export interface SourceInfo {
  readonly commit: string;
  readonly modified: readonly string[];
}

/** Median, minimum and maximum of a series. */
export interface Stat {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

/** One measurement of one case. */
export interface Sample {
  readonly round: number;
  /** Position of the case in this round's order (0 = measured first). */
  readonly position: number;
  readonly ops: number;
  readonly elapsedMs: number;
  readonly opsPerSec: number;
  readonly nsPerOp: number;
  /** A self-measuring case's further figures. */
  readonly metrics?: Readonly<Record<string, number>>;
}

/** A case's figures over all rounds. */
export interface CaseResult {
  readonly id: string;
  readonly label: string;
  readonly opsPerSec: Stat;
  readonly nsPerOp: Stat;
  /** Paired per round: this case's ops/s over the reference's ops/s. */
  readonly vsReference: Stat;
  /** A self-measuring case's further figures, summarised over rounds, by name. */
  readonly metrics: Readonly<Record<string, Stat>>;
  readonly samples: readonly Sample[];
}

/** A comparison's figures over all rounds. */
export interface ComparisonResult extends Comparison, Stat {
  readonly perRound: readonly number[];
  /** Whether the median meets `target`, when there is one. */
  readonly met?: boolean;
}

/** Where the figures were measured. */
export interface Machine {
  readonly node: string;
  readonly v8: string;
  readonly platform: string;
  readonly arch: string;
  readonly cpus: number;
  readonly cpuModel: string;
  readonly gcExposed: boolean;
}

/** Everything a run produced; what `--json` prints. */
export interface SuiteResult {
  readonly suite: string;
  readonly description: string;
  readonly startedAt: string;
  readonly durationSec: number;
  readonly machine: Machine;
  readonly source: SourceInfo | null;
  readonly settings: Omit<HarnessOptions, "progress" | "only" | "source"> & {
    readonly only: readonly string[] | null;
  };
  readonly reference: string;
  readonly cases: readonly CaseResult[];
  readonly comparisons: readonly ComparisonResult[];
  readonly notes: readonly string[];
}

/** Median, min and max; the median of an even count is the mean of the middle two. */
export function stat(values: readonly number[]): Stat {
  if (values.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

/** Describes the machine the benchmark runs on. */
export function machine(): Machine {
  const list = cpus();
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: process.platform,
    arch: process.arch,
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? "unknown",
    gcExposed: typeof globalThis.gc === "function",
  };
}

/**
 * Runs `op` in a sequential `await` loop until `seconds` or `maxOps` is reached. The clock is read
 * once per batch, never per call; after each batch the loop yields a full event-loop turn so that
 * timers and I/O (heartbeats, transport) run as they would in a live process. That time counts.
 */
async function measure(op: () => unknown, seconds: number, maxOps: number, batch: number) {
  globalThis.gc?.();
  await nextTurn(); // let what the collection queued run before the clock starts
  const budgetMs = seconds * 1000;
  let ops = 0;
  let elapsedMs = 0;
  const start = performance.now();
  do {
    for (let i = 0; i < batch; i++) await op();
    ops += batch;
    await nextTurn();
    elapsedMs = performance.now() - start;
  } while (ops < maxOps && elapsedMs < budgetMs);
  return { ops, elapsedMs };
}

async function measureCase(
  c: SuiteCase,
  seconds: number,
  maxOps: number,
  batch: number,
): Promise<Measurement> {
  try {
    if ("measure" in c) return await c.measure(seconds, maxOps);
    return await measure(c.op, seconds, maxOps, c.batch ?? batch);
  } catch (err) {
    throw new Error(`case '${c.id}' failed while measured`, { cause: err });
  }
}

/** Each metric's median, min and max over the samples that report it. */
function summariseMetrics(list: readonly Sample[]): Record<string, Stat> {
  const byName = new Map<string, number[]>();
  for (const s of list) {
    for (const [name, value] of Object.entries(s.metrics ?? {})) {
      const values = byName.get(name);
      if (values === undefined) byName.set(name, [value]);
      else values.push(value);
    }
  }
  return Object.fromEntries([...byName].map(([name, values]) => [name, stat(values)]));
}

/** The cases in round `r`'s order: the list rotated by `r`, so every case takes every position. */
function rotate<T>(list: readonly T[], r: number): T[] {
  const k = r % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/**
 * Runs a suite: a warm-up of every case, then `rounds` rounds in which every case is measured
 * once, alternating in one process with the order rotating each round. Ratios are paired: they
 * compare two cases of the same round (same heap, same machine noise), then take the median.
 */
export async function runSuite(suite: Suite, options: HarnessOptions): Promise<SuiteResult> {
  const startedAt = new Date();
  const t0 = performance.now();
  const only = options.only;
  const cases = suite.cases.filter(
    (c) => only === undefined || only.includes(c.id) || c.id === suite.reference,
  );
  const byId = new Map(cases.map((c) => [c.id, c]));
  if (!byId.has(suite.reference))
    throw new Error(`reference case '${suite.reference}' is not in suite '${suite.name}'`);
  const log = options.progress;

  log(`warm-up: ${cases.length} cases x ${options.warmupSeconds} s`);
  for (const c of cases) await measureCase(c, options.warmupSeconds, options.maxOps, options.batch);

  const samples = new Map<string, Sample[]>(cases.map((c) => [c.id, []]));
  for (let round = 0; round < options.rounds; round++) {
    const order = rotate(cases, round);
    const line: string[] = [];
    for (const [position, c] of order.entries()) {
      const { ops, elapsedMs, metrics } = await measureCase(
        c,
        options.seconds,
        options.maxOps,
        options.batch,
      );
      const opsPerSec = ops / (elapsedMs / 1000);
      samples.get(c.id)!.push({
        round,
        position,
        ops,
        elapsedMs,
        opsPerSec,
        nsPerOp: (elapsedMs * 1e6) / ops,
        ...(metrics === undefined ? {} : { metrics }),
      });
      line.push(`${c.id} ${formatOps(opsPerSec)}`);
    }
    log(`round ${round + 1}/${options.rounds}: ${line.join(", ")}`);
  }

  const ofRound = (id: string, round: number): Sample =>
    samples.get(id)!.find((s) => s.round === round)!;
  const rounds = [...Array(options.rounds).keys()];
  const results: CaseResult[] = cases.map((c) => {
    const list = samples.get(c.id)!;
    return {
      id: c.id,
      label: c.label,
      opsPerSec: stat(list.map((s) => s.opsPerSec)),
      nsPerOp: stat(list.map((s) => s.nsPerOp)),
      vsReference: stat(
        rounds.map((r) => ofRound(c.id, r).opsPerSec / ofRound(suite.reference, r).opsPerSec),
      ),
      metrics: summariseMetrics(list),
      samples: list,
    };
  });

  const comparisons: ComparisonResult[] = [];
  for (const cmp of suite.comparisons ?? []) {
    if (!byId.has(cmp.of) || !byId.has(cmp.over)) continue;
    const perRound = rounds.map((r) => {
      const a = ofRound(cmp.of, r);
      const b = ofRound(cmp.over, r);
      return cmp.kind === "throughput-ratio" ? a.opsPerSec / b.opsPerSec : a.nsPerOp - b.nsPerOp;
    });
    const s = stat(perRound);
    const met =
      cmp.target === undefined
        ? undefined
        : cmp.kind === "throughput-ratio"
          ? s.median >= cmp.target
          : s.median <= cmp.target;
    comparisons.push({ ...cmp, ...s, perRound, ...(met === undefined ? {} : { met }) });
  }

  const { progress: _progress, only: _only, source, ...settings } = options;
  return {
    suite: suite.name,
    description: suite.description,
    startedAt: startedAt.toISOString(),
    durationSec: (performance.now() - t0) / 1000,
    machine: machine(),
    source: source ?? null,
    settings: { ...settings, only: only ?? null },
    reference: suite.reference,
    cases: results,
    comparisons,
    notes: suite.notes ?? [],
  };
}

// ---- formatting --------------------------------------------------------------------------------

/** Ops per second with a unit: `1.23 M`, `456.7 k`. */
export function formatOps(value: number): string {
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)} M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)} k`;
  return value.toFixed(1);
}

function formatNs(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

function formatRatio(value: number): string {
  return value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function range(s: Stat, f: (v: number) => string): string {
  return `${f(s.min)} – ${f(s.max)}`;
}

/** A plain-text table: the first column left-aligned, the others right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** The human-readable report of a run. */
export function report(result: SuiteResult): string {
  const s = result.settings;
  const m = result.machine;
  const out: string[] = [];
  out.push(`${result.suite}: ${result.description}`);
  out.push(
    `${m.node} (V8 ${m.v8}), ${m.platform}/${m.arch}, ${m.cpus} x ${m.cpuModel}, ` +
      `gc before each measurement: ${m.gcExposed ? "yes" : "no"}`,
  );
  if (result.source !== null) {
    const dirty = result.source.modified;
    const changes = dirty.length === 0 ? "" : ` + uncommitted changes in ${dirty.join(", ")}`;
    out.push(`source: ${result.source.commit}${changes}`);
  }
  out.push(
    `${s.rounds} rounds x ${s.seconds} s per case (at most ${s.maxOps.toLocaleString("en-US")} ops), ` +
      `warm-up ${s.warmupSeconds} s per case; clock read and event loop yielded every ${s.batch} calls; ` +
      `took ${result.durationSec.toFixed(1)} s`,
  );
  out.push("");
  out.push(
    table(
      [
        "case",
        "ops/s median",
        "min – max",
        "ns/op median",
        "min – max",
        `x ${result.reference}`,
        "min – max",
      ],
      result.cases.map((c) => [
        c.id,
        formatOps(c.opsPerSec.median),
        range(c.opsPerSec, formatOps),
        formatNs(c.nsPerOp.median),
        range(c.nsPerOp, formatNs),
        formatRatio(c.vsReference.median),
        range(c.vsReference, formatRatio),
      ]),
    ),
  );
  const metricNames = [...new Set(result.cases.flatMap((c) => Object.keys(c.metrics)))];
  if (metricNames.length > 0) {
    const cell = (s: Stat | undefined) =>
      s === undefined ? "" : `${formatNs(s.median)} (${range(s, formatNs)})`;
    out.push("");
    out.push(
      table(
        ["case", ...metricNames.map((m) => `${m} median (min – max)`)],
        result.cases.map((c) => [c.id, ...metricNames.map((m) => cell(c.metrics[m]))]),
      ),
    );
  }
  out.push("");
  const width = Math.max(...result.cases.map((c) => c.id.length));
  for (const c of result.cases) out.push(`  ${c.id.padEnd(width)}  ${c.label}`);
  if (result.comparisons.length > 0) {
    const ratio = (v: number) => `${formatRatio(v)}x`;
    const ns = (v: number) => `${formatNs(v)} ns`;
    out.push("");
    out.push(
      table(
        ["paired within each round, median over rounds", "median", "min – max", "target"],
        result.comparisons.map((c) => {
          const f = c.kind === "throughput-ratio" ? ratio : ns;
          const goal = c.kind === "throughput-ratio" ? ">=" : "<=";
          const verdict = c.met === true ? "met" : "NOT met";
          const target = c.target === undefined ? "" : `${goal} ${f(c.target)}: ${verdict}`;
          return [c.label, f(c.median), range(c, f), target];
        }),
      ),
    );
  }
  if (result.notes.length > 0) {
    out.push("");
    for (const note of result.notes) out.push(`- ${note}`);
  }
  return out.join("\n");
}
