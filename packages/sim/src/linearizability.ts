/**
 * A linearizability checker: Wing & Gong's search with Lowe's improvements, as in Porcupine. The
 * history's call and return events sit in a doubly-linked list; linearizing an operation lifts
 * its two events out of the list and backtracking puts them back. A cache of (set of linearized
 * operations, model state) pairs stops the search from exploring the same configuration twice.
 * @module
 */
import { KeelError } from "@keel/core";
import { HistoryError, type Operation, type Outcome } from "./history.ts";
import type { Model } from "./models.ts";

/** Anything that tells the time in milliseconds: the Env's clock, or a fake one in tests. */
export interface TimeSource {
  now(): number;
}

/** The checker's verdict. `unknown` means it gave up (time or step limit) before deciding. */
export type Verdict = "linearizable" | "not-linearizable" | "unknown";

/** Options of `checkLinearizability`. */
export interface LinearizabilityOptions {
  /** Give up with `unknown` once this many milliseconds have passed on `clock`. Needs `clock`. */
  readonly timeLimitMs?: number;
  /** Where the time limit is measured: the Env's clock (`env.clock`). */
  readonly clock?: TimeSource;
  /** Search steps between two looks at the clock (default 1024). */
  readonly checkEvery?: number;
  /** Give up with `unknown` after this many search steps in all: a budget that is the same on every machine. */
  readonly maxSteps?: number;
  /** Stop at the first partition found not linearizable (default: check them all, to name every bad one). */
  readonly stopAtFirstViolation?: boolean;
}

/** An operation placed in a linearization, with the model state right after it. */
export interface LinearizedOperation<S, I, O> {
  readonly operation: Operation<I, O>;
  readonly state: S;
}

/** An operation that could have gone next after the longest prefix. */
export interface Candidate<I, O> {
  readonly operation: Operation<I, O>;
  /** Whether the model accepts it in the prefix's final state (if so, every path on from it was a dead end). */
  readonly legal: boolean;
}

/** Why a partition is not linearizable: the longest linearizable prefix, and where it got stuck. */
export interface Counterexample<S, I, O> {
  /** The partition's key. */
  readonly partition: string;
  /** The longest sequence of operations the search could linearize, in order. */
  readonly prefix: readonly LinearizedOperation<S, I, O>[];
  /** The state after the prefix. */
  readonly state: S;
  /** The operation that returned before any order extending the prefix could place it. */
  readonly blocked: Operation<I, O>;
  /** The operations that could have gone next (invoked before `blocked` returned); none led anywhere. */
  readonly candidates: readonly Candidate<I, O>[];
}

/** The verdict on one partition (one key, or the whole history when the model does not partition). */
export interface PartitionResult<S, I, O> {
  readonly key: string;
  readonly result: Verdict;
  /** Operations checked (operations the model calls irrelevant are left out). */
  readonly operations: number;
  /** Search steps spent on this partition. */
  readonly steps: number;
  /** When linearizable: an order explaining the history (`info` operations absent from it never took effect). */
  readonly linearization?: readonly LinearizedOperation<S, I, O>[];
  /** When not linearizable: why. */
  readonly counterexample?: Counterexample<S, I, O>;
  /** When unknown: which limit stopped the search, or `not-checked` when an earlier partition used the budget up. */
  readonly gaveUp?: "time-limit" | "step-limit" | "not-checked";
}

/** The checker's answer for a whole history. */
export interface LinearizabilityResult<S, I, O> {
  /** `not-linearizable` if any partition is; else `unknown` if any is; else `linearizable`. */
  readonly result: Verdict;
  readonly partitions: readonly PartitionResult<S, I, O>[];
  /** The first failing partition's counterexample. */
  readonly counterexample?: Counterexample<S, I, O>;
  /** Search steps in all. */
  readonly steps: number;
}

/** Shared by all partitions, so many small partitions still look at the clock. */
interface Budget {
  steps: number;
  /** Steps left before the next look at the clock. */
  countdown: number;
  readonly maxSteps: number;
  readonly clock: TimeSource | undefined;
  readonly deadline: number;
  readonly checkEvery: number;
}

/**
 * Checks that `operations` are linearizable with respect to `model`: that there is one order of
 * them, consistent with real time (an operation that returned before another was invoked comes
 * first), in which every operation is legal for the model. Operations with an unknown outcome
 * (`info`) may take effect at any point after their call, or not at all.
 * @example
 * const result = checkLinearizability(registerModel, history.operations(), {
 *   clock: env.clock,
 *   timeLimitMs: 10_000,
 * });
 * if (result.result !== "linearizable") console.log(describeLinearizability(registerModel, result));
 */
export function checkLinearizability<S, I, O>(
  model: Model<S, I, O>,
  operations: readonly Operation<I, O>[],
  options: LinearizabilityOptions = {},
): LinearizabilityResult<S, I, O> {
  const { timeLimitMs, clock, checkEvery = 1024, maxSteps = Number.POSITIVE_INFINITY } = options;
  if (timeLimitMs !== undefined && clock === undefined) {
    throw new KeelError(
      "CONFIGURATION",
      "checkLinearizability: timeLimitMs needs a clock (e.g. env.clock)",
    );
  }
  if (!(Number.isInteger(checkEvery) && checkEvery > 0)) {
    throw new RangeError(
      `checkLinearizability: checkEvery must be a positive integer, not ${checkEvery}`,
    );
  }
  for (const op of operations) validate(op);
  const budget: Budget = {
    steps: 0,
    countdown: checkEvery,
    maxSteps,
    clock: timeLimitMs === undefined ? undefined : clock,
    deadline:
      timeLimitMs === undefined || clock === undefined
        ? Number.POSITIVE_INFINITY
        : clock.now() + timeLimitMs,
    checkEvery,
  };
  const partitions = model.partition?.(operations) ?? [{ key: "all", operations }];
  const results: PartitionResult<S, I, O>[] = [];
  let exhausted: "time-limit" | "step-limit" | undefined;
  let violated = false;
  for (const partition of partitions) {
    const relevant =
      model.irrelevant === undefined
        ? partition.operations
        : partition.operations.filter((op) => !model.irrelevant?.(op.input, op));
    if (exhausted !== undefined || (violated && options.stopAtFirstViolation === true)) {
      results.push({
        key: partition.key,
        result: "unknown",
        operations: relevant.length,
        steps: 0,
        gaveUp: "not-checked",
      });
      continue;
    }
    const result = checkPartition(model, partition.key, relevant, budget);
    if (result.gaveUp === "time-limit" || result.gaveUp === "step-limit") exhausted = result.gaveUp;
    if (result.result === "not-linearizable") violated = true;
    results.push(result);
  }
  const failed = results.find((r) => r.result === "not-linearizable");
  const verdict: Verdict =
    failed !== undefined
      ? "not-linearizable"
      : results.some((r) => r.result === "unknown")
        ? "unknown"
        : "linearizable";
  return {
    result: verdict,
    partitions: results,
    ...(failed?.counterexample === undefined ? {} : { counterexample: failed.counterexample }),
    steps: budget.steps,
  };
}

function validate(op: Operation<unknown, unknown>): void {
  if (!Number.isFinite(op.call)) {
    throw new HistoryError("invalid-operation", `operation ${op.id}: call must be a finite number`);
  }
  if (op.status === "info") return;
  if (!Number.isFinite(op.return)) {
    throw new HistoryError(
      "invalid-operation",
      `operation ${op.id}: a ${op.status} operation needs a finite return (only info operations return at Infinity)`,
    );
  }
  if (op.return < op.call) {
    throw new HistoryError(
      "time-went-backwards",
      `operation ${op.id}: returns at ${op.return}, before its call at ${op.call}`,
    );
  }
}

/** 32-bit finaliser (murmur3): spreads operation indices into independent-looking Zobrist keys. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) | 0;
}

/**
 * The set of (linearized operations, state) configurations already explored. Bitsets live in one
 * flat array (`words` per entry); chains of entries hang off power-of-two buckets.
 */
class ConfigCache<S> {
  readonly #words: number;
  readonly #equal: (a: S, b: S) => boolean;
  #bits: Uint32Array;
  #keys: Int32Array;
  #chain: Int32Array;
  #buckets: Int32Array;
  #states: S[] = [];
  #size = 0;

  constructor(words: number, equal: (a: S, b: S) => boolean) {
    this.#words = words;
    this.#equal = equal;
    const capacity = 1024;
    this.#bits = new Uint32Array(capacity * words);
    this.#keys = new Int32Array(capacity);
    this.#chain = new Int32Array(capacity);
    this.#buckets = new Int32Array(capacity).fill(-1);
  }

  get size(): number {
    return this.#size;
  }

  /** Adds (bits, state) under `key`; false when it was already there. */
  add(key: number, bits: Uint32Array, state: S): boolean {
    const words = this.#words;
    const pool = this.#bits;
    const keys = this.#keys;
    const chain = this.#chain;
    const states = this.#states;
    for (let e = this.#buckets[key & (this.#buckets.length - 1)]!; e !== -1; e = chain[e]!) {
      if (keys[e] !== key) continue;
      let same = true;
      for (let w = 0, base = e * words; w < words; w++) {
        if (pool[base + w] !== bits[w]) {
          same = false;
          break;
        }
      }
      if (same && this.#equal(states[e]!, state)) return false;
    }
    const e = this.#size++;
    if (e === keys.length) this.#grow();
    this.#bits.set(bits, e * words);
    this.#keys[e] = key;
    this.#states.push(state);
    const bucket = key & (this.#buckets.length - 1);
    this.#chain[e] = this.#buckets[bucket]!;
    this.#buckets[bucket] = e;
    return true;
  }

  #grow(): void {
    const capacity = this.#keys.length * 2;
    const bits = new Uint32Array(capacity * this.#words);
    bits.set(this.#bits);
    this.#bits = bits;
    const keys = new Int32Array(capacity);
    keys.set(this.#keys);
    this.#keys = keys;
    this.#chain = new Int32Array(capacity);
    this.#buckets = new Int32Array(capacity).fill(-1);
    const mask = capacity - 1;
    for (let e = 0; e < this.#size - 1; e++) {
      const bucket = keys[e]! & mask;
      this.#chain[e] = this.#buckets[bucket]!;
      this.#buckets[bucket] = e;
    }
  }
}

const NONE = -1;

/** The search on one partition. Mutates `budget` (steps spent). */
function checkPartition<S, I, O>(
  model: Model<S, I, O>,
  key: string,
  ops: readonly Operation<I, O>[],
  budget: Budget,
): PartitionResult<S, I, O> {
  const n = ops.length;
  const startSteps = budget.steps;

  // Events, sorted by time; at equal times calls come first, so touching operations overlap.
  // An info operation has no return event: it never forces its own linearization.
  const times: number[] = [];
  const kinds: number[] = []; // 0 call, 1 return
  const owners: number[] = [];
  let finite = 0;
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    times.push(op.call);
    kinds.push(0);
    owners.push(i);
    if (op.status !== "info") {
      finite++;
      times.push(op.return);
      kinds.push(1);
      owners.push(i);
    }
  }
  const order = Array.from(times, (_, i) => i).sort(
    (a, b) => times[a]! - times[b]! || kinds[a]! - kinds[b]! || owners[a]! - owners[b]!,
  );

  // Node 0 is the head sentinel; node k + 1 is the k-th event in time order.
  const size = order.length + 1;
  const next = new Int32Array(size);
  const prev = new Int32Array(size);
  const nodeOp = new Int32Array(size).fill(NONE);
  const match = new Int32Array(size).fill(NONE); // call node → its return node
  const isCall = new Uint8Array(size);
  const callNode = new Int32Array(n);
  for (let k = 0; k < order.length; k++) {
    const event = order[k]!;
    const node = k + 1;
    const op = owners[event]!;
    nodeOp[node] = op;
    if (kinds[event] === 0) {
      isCall[node] = 1;
      callNode[op] = node;
    } else {
      match[callNode[op]!] = node;
    }
  }
  for (let node = 0; node < size; node++) {
    next[node] = node + 1 < size ? node + 1 : NONE;
    prev[node] = node - 1;
  }

  const inputs = ops.map((op) => op.input);
  const outcomes: Outcome<O>[] = ops.slice();
  const counts = new Uint8Array(n);
  for (let i = 0; i < n; i++) counts[i] = ops[i]!.status === "info" ? 0 : 1;
  const zobrist = new Int32Array(n);
  for (let i = 0; i < n; i++) zobrist[i] = mix32(Math.imul(i + 1, 0x9e3779b9));
  const words = Math.max(1, Math.ceil(n / 32));
  const bits = new Uint32Array(words);
  const equal = model.equal ?? Object.is;
  const hashState = model.hash;
  const cache = new ConfigCache<S>(words, equal);

  // The linearization so far: the call nodes lifted, and the state before each.
  const stackNode = new Int32Array(n);
  const stackState: S[] = new Array<S>(n);
  let depth = 0;
  let state = model.init();
  let zob = 0;
  let remaining = finite;

  // The deepest point reached, for the counterexample.
  let bestDepth = -1;
  let bestNodes = new Int32Array(0);
  let bestStates: S[] = [];
  let bestState = state;
  let bestBlocked = NONE;
  let bestCandidates: number[] = [];

  const { checkEvery, clock, deadline, maxSteps } = budget;
  let steps = budget.steps;
  let countdown = budget.countdown;
  let gaveUp: "time-limit" | "step-limit" | undefined;

  let entry = next[0]!;
  while (remaining > 0) {
    if (++steps > maxSteps) {
      gaveUp = "step-limit";
      break;
    }
    if (--countdown === 0) {
      countdown = checkEvery;
      if (clock !== undefined && clock.now() >= deadline) {
        gaveUp = "time-limit";
        break;
      }
    }
    if (isCall[entry] === 1) {
      const op = nodeOp[entry]!;
      const result = model.step(state, inputs[op]!, outcomes[op]!);
      if (result.ok) {
        const word = op >>> 5;
        const bit = 1 << (op & 31);
        bits[word] = bits[word]! | bit;
        const nextZob = zob ^ zobrist[op]!;
        const cacheKey =
          hashState === undefined
            ? nextZob
            : nextZob ^ Math.imul(hashState(result.state), 0x9e3779b1);
        if (cache.add(cacheKey, bits, result.state)) {
          stackNode[depth] = entry;
          stackState[depth] = state;
          depth++;
          state = result.state;
          zob = nextZob;
          remaining -= counts[op]!;
          // Lift the call and its return out of the list.
          const p = prev[entry]!;
          const q = next[entry]!;
          next[p] = q;
          if (q !== NONE) prev[q] = p;
          const r = match[entry]!;
          if (r !== NONE) {
            const rp = prev[r]!;
            const rq = next[r]!;
            next[rp] = rq;
            if (rq !== NONE) prev[rq] = rp;
          }
          entry = next[0]!;
        } else {
          bits[word] = bits[word]! & ~bit;
          entry = next[entry]!;
        }
      } else {
        entry = next[entry]!;
      }
    } else {
      // A return: its operation had to be linearized by now. Backtrack.
      if (depth > bestDepth) {
        bestDepth = depth;
        bestNodes = stackNode.slice(0, depth);
        bestStates = stackState.slice(0, depth);
        bestState = state;
        bestBlocked = nodeOp[entry]!;
        bestCandidates = [];
        for (let c = next[0]!; c !== entry && c !== NONE; c = next[c]!) {
          if (isCall[c] === 1) bestCandidates.push(nodeOp[c]!);
        }
      }
      if (depth === 0) break;
      depth--;
      const top = stackNode[depth]!;
      const op = nodeOp[top]!;
      state = stackState[depth]!;
      zob ^= zobrist[op]!;
      bits[op >>> 5] = bits[op >>> 5]! & ~(1 << (op & 31));
      remaining += counts[op]!;
      // Unlift, in the reverse order of the lift.
      const r = match[top]!;
      if (r !== NONE) {
        next[prev[r]!] = r;
        const rq = next[r]!;
        if (rq !== NONE) prev[rq] = r;
      }
      next[prev[top]!] = top;
      const q = next[top]!;
      if (q !== NONE) prev[q] = top;
      entry = q;
    }
  }
  budget.steps = Math.min(steps, maxSteps);
  budget.countdown = countdown;
  const spent = budget.steps - startSteps;

  const placed = (nodes: Int32Array, before: S[], last: S): LinearizedOperation<S, I, O>[] =>
    Array.from(nodes, (node, i) => ({
      operation: ops[nodeOp[node]!]!,
      state: i + 1 < nodes.length ? before[i + 1]! : last,
    }));

  if (remaining === 0) {
    return {
      key,
      result: "linearizable",
      operations: n,
      steps: spent,
      linearization: placed(stackNode.slice(0, depth), stackState, state),
    };
  }
  if (gaveUp !== undefined) {
    return { key, result: "unknown", operations: n, steps: spent, gaveUp };
  }
  const candidates = bestCandidates.map((op) => ({
    operation: ops[op]!,
    legal: model.step(bestState, inputs[op]!, outcomes[op]!).ok,
  }));
  return {
    key,
    result: "not-linearizable",
    operations: n,
    steps: spent,
    counterexample: {
      partition: key,
      prefix: placed(bestNodes, bestStates, bestState),
      state: bestState,
      blocked: ops[bestBlocked]!,
      candidates,
    },
  };
}

const count = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? "" : "s"}`;

function describeWith<S, I, O>(model: Model<S, I, O>) {
  const operation = (op: Operation<I, O>): string => {
    const what = model.describeOperation?.(op.input, op) ?? JSON.stringify(op.input);
    const end = op.status === "info" ? "…" : String(op.return);
    return `#${op.id} p${String(op.process)} ${what} [${op.call}, ${end}]`;
  };
  const state = (s: S): string => model.describeState?.(s) ?? JSON.stringify(s);
  return { operation, state };
}

/** Explains a counterexample in a few lines: the longest prefix, then where no order could go on. */
export function describeCounterexample<S, I, O>(
  model: Model<S, I, O>,
  counterexample: Counterexample<S, I, O>,
): string {
  const show = describeWith(model);
  const { prefix, blocked, candidates } = counterexample;
  const lines: string[] = [];
  lines.push(`partition ${JSON.stringify(counterexample.partition)} of ${model.name}:`);
  if (prefix.length === 0) {
    lines.push(`  no operation can go first (initial state ${show.state(counterexample.state)})`);
  } else {
    lines.push(
      `  longest linearizable prefix (${count(prefix.length, "operation")}), state after each:`,
    );
    for (const step of prefix) {
      lines.push(`    ${show.operation(step.operation)}  ⇒ ${show.state(step.state)}`);
    }
  }
  lines.push(
    `  then ${show.operation(blocked)} returned, but no order could place it (state ${show.state(counterexample.state)}).`,
  );
  lines.push("  candidates to go next:");
  for (const c of candidates) {
    lines.push(
      `    ${show.operation(c.operation)}: ${c.legal ? "legal, but every order after it fails" : "illegal in this state"}`,
    );
  }
  return lines.join("\n");
}

/** A readable report of a check: the verdict, each partition's, and the counterexample if any. */
export function describeLinearizability<S, I, O>(
  model: Model<S, I, O>,
  result: LinearizabilityResult<S, I, O>,
): string {
  const lines = [`${result.result} (${model.name}, ${result.steps} search steps)`];
  if (result.partitions.length > 1) {
    for (const p of result.partitions) {
      const why = p.gaveUp === undefined ? "" : ` (${p.gaveUp})`;
      lines.push(
        `  ${JSON.stringify(p.key)}: ${p.result}${why}, ${count(p.operations, "operation")}`,
      );
    }
  } else if (result.partitions[0]?.gaveUp !== undefined) {
    lines.push(`  gave up: ${result.partitions[0].gaveUp}`);
  }
  for (const p of result.partitions) {
    if (p.counterexample !== undefined) lines.push(describeCounterexample(model, p.counterexample));
  }
  return lines.join("\n");
}
