/**
 * Sequential specifications the linearizability checker judges histories against.
 * @module
 */
import type { Operation, Outcome } from "./history.ts";

/** What one step of a model decides: whether the operation was legal, and the state after it. */
export interface StepResult<S> {
  readonly ok: boolean;
  readonly state: S;
}

/** A sub-history the checker can judge on its own (P-compositionality): e.g. one key of a map. */
export interface Partition<I, O> {
  /** Names the partition in results (e.g. the key). */
  readonly key: string;
  readonly operations: readonly Operation<I, O>[];
}

/** A sequential specification: the object a history should behave like. States must be immutable. */
export interface Model<S, I, O> {
  /** Printed in explanations. */
  readonly name: string;
  /** The state before any operation. */
  init(): S;
  /**
   * Applies `input` to `state`. `ok` says whether `outcome` is a legal result there: an `ok`
   * outcome carries the output to compare; `fail` means it did not take effect; `info` may or may
   * not have (the checker also tries leaving `info` operations out altogether).
   */
  step(state: S, input: I, outcome: Outcome<O>): StepResult<S>;
  /** Equality of states, for the checker's cache; `Object.is` when left out. */
  equal?(a: S, b: S): boolean;
  /** A 32-bit hash consistent with `equal`; states hash alike when left out (slower, still right). */
  hash?(state: S): number;
  /** Splits a history into independent sub-histories, checked one by one. */
  partition?(operations: readonly Operation<I, O>[]): readonly Partition<I, O>[];
  /** True for operations that cannot change the verdict (e.g. a read with an unknown result); dropped before checking. */
  irrelevant?(input: I, outcome: Outcome<O>): boolean;
  /** One operation as people read it, e.g. `cas 1→2`. */
  describeOperation?(input: I, outcome: Outcome<O>): string;
  /** A state as people read it. */
  describeState?(state: S): string;
}

/** Values a register or a key-value store holds. */
export type RegisterValue = number | string | boolean | bigint;

/** An operation on a single register (Jepsen's `read`, `write`, `cas`). */
export type RegisterInput =
  | { readonly f: "read" }
  | { readonly f: "write"; readonly value: RegisterValue }
  | { readonly f: "cas"; readonly from: RegisterValue | null; readonly to: RegisterValue };

/** A read's value (`null` when the register is absent); `null` for writes and cas. */
export type RegisterOutput = RegisterValue | null;

/** The register's state: its value, or `null` when absent. */
export type RegisterState = RegisterValue | null;

/** 32-bit hash of a register value (absent included); equal values hash alike. */
export function hashValue(value: RegisterValue | null): number {
  if (value === null) return 0x2545f491;
  if (typeof value === "number" && Number.isInteger(value) && Math.abs(value) <= 0x7fffffff) {
    let h = Math.imul(value ^ 0x9e3779b9, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  }
  const text = `${typeof value}:${String(value)}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  return (h ^ (h >>> 13)) >>> 0;
}

function show(value: RegisterValue | null | undefined): string {
  if (value === null || value === undefined) return "nil";
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function showOutcome(text: string, outcome: Outcome<unknown>): string {
  return outcome.status === "ok" ? text : `${text} (${outcome.status})`;
}

/**
 * One step of register semantics, shared by `registerModel` and each key of `kvModel`: a read is
 * legal when it returns the state (or its result is unknown); a write always is; cas(from, to) is
 * legal as `ok` only when the state equals `from` (then the state becomes `to`), as `fail` only
 * when it does not (state unchanged), and as `info` either way (it takes effect iff `from` matched).
 */
function registerStep(
  state: RegisterState,
  input: RegisterInput,
  outcome: Outcome<RegisterOutput>,
): { ok: boolean; state: RegisterState } {
  switch (input.f) {
    case "read":
      return {
        ok: outcome.status !== "ok" || outcome.output === state,
        state,
      };
    case "write":
      return outcome.status === "fail" ? { ok: true, state } : { ok: true, state: input.value };
    case "cas": {
      const matches = state === input.from;
      if (outcome.status === "ok")
        return matches ? { ok: true, state: input.to } : { ok: false, state };
      if (outcome.status === "fail") return { ok: !matches, state };
      return { ok: true, state: matches ? input.to : state };
    }
  }
}

function describeRegister(
  input: RegisterInput,
  outcome: Outcome<RegisterOutput>,
  names = { read: "read", write: "write", cas: "cas" },
): string {
  switch (input.f) {
    case "read":
      return outcome.status === "ok"
        ? `${names.read} → ${show(outcome.output)}`
        : showOutcome(names.read, outcome);
    case "write":
      return showOutcome(`${names.write} ${show(input.value)}`, outcome);
    case "cas":
      return `${names.cas} ${show(input.from)}→${show(input.to)} (${outcome.status})`;
  }
}

/**
 * A single register, initially absent, with read, write and compare-and-set: the model Jepsen and
 * Porcupine use for etcd. A `fail` write or read did nothing; a `fail` cas says the value did not
 * match; an `info` operation may or may not have taken effect.
 */
export const registerModel: Model<RegisterState, RegisterInput, RegisterOutput> = {
  name: "register",
  init: () => null,
  step: registerStep,
  equal: (a, b) => a === b,
  hash: hashValue,
  irrelevant: (input, outcome) =>
    (input.f === "read" && outcome.status !== "ok") ||
    (input.f === "write" && outcome.status === "fail"),
  describeOperation: describeRegister,
  describeState: show,
};

/** An operation on a key-value store: `get`, `put`, and compare-and-set, each on one key. */
export type KvInput =
  | { readonly f: "get"; readonly key: string }
  | { readonly f: "put"; readonly key: string; readonly value: RegisterValue }
  | {
      readonly f: "cas";
      readonly key: string;
      readonly from: RegisterValue | null;
      readonly to: RegisterValue;
    };

/** A get's value (`null` when the key is absent); `null` for put and cas. */
export type KvOutput = RegisterValue | null;

/** The store's state: present keys and their values. Never mutated; steps copy. */
export type KvState = Readonly<Record<string, RegisterValue>>;

function toRegister(input: KvInput): RegisterInput {
  switch (input.f) {
    case "get":
      return { f: "read" };
    case "put":
      return { f: "write", value: input.value };
    case "cas":
      return { f: "cas", from: input.from, to: input.to };
  }
}

const EMPTY: KvState = Object.freeze({});

/**
 * A key-value store, each key an independent register (initially absent). The checker splits the
 * history per key and checks each key's register sub-history on its own, so a violation names
 * its key.
 */
export const kvModel: Model<KvState, KvInput, KvOutput> = {
  name: "kv",
  init: () => EMPTY,
  step(state, input, outcome) {
    const before = Object.hasOwn(state, input.key) ? (state[input.key] ?? null) : null;
    const { ok, state: after } = registerStep(before, toRegister(input), outcome);
    if (!ok || after === before) return { ok, state };
    const next: Record<string, RegisterValue> = { ...state };
    if (after === null) delete next[input.key];
    else next[input.key] = after;
    return { ok, state: next };
  },
  equal(a, b) {
    const keys = Object.keys(a);
    if (keys.length !== Object.keys(b).length) return false;
    for (const key of keys) if (!Object.hasOwn(b, key) || a[key] !== b[key]) return false;
    return true;
  },
  hash(state) {
    // Order-independent: a sum of per-entry hashes.
    let h = 0;
    for (const key of Object.keys(state)) {
      h = (h + Math.imul(hashValue(key) ^ hashValue(state[key] ?? null), 0x27d4eb2d)) | 0;
    }
    return h >>> 0;
  },
  partition(operations) {
    const byKey = new Map<string, Operation<KvInput, KvOutput>[]>();
    for (const op of operations) {
      const list = byKey.get(op.input.key);
      if (list === undefined) byKey.set(op.input.key, [op]);
      else list.push(op);
    }
    return [...byKey].map(([key, ops]) => ({ key, operations: ops }));
  },
  irrelevant: (input, outcome) =>
    (input.f === "get" && outcome.status !== "ok") ||
    (input.f === "put" && outcome.status === "fail"),
  describeOperation(input, outcome) {
    const key = JSON.stringify(input.key);
    return describeRegister(toRegister(input), outcome, {
      read: `get ${key}`,
      write: `put ${key}`,
      cas: `cas ${key}`,
    });
  },
  describeState(state) {
    const keys = Object.keys(state).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}: ${show(state[k])}`).join(", ")}}`;
  },
};
