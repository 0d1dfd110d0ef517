/**
 * Reads Jepsen's register logs (the etcd histories published with Porcupine and Knossos):
 *
 *     INFO  jepsen.util - <process>	:<type>	:<f>	<value>
 *
 * Other lines are ignored, and so are the nemesis's events; an event line that does not parse
 * throws a `JepsenParseError` naming its line.
 * @module
 */
import { type HistoryEvent, type Operation, operationsFromEvents } from "./history.ts";
import type { RegisterInput, RegisterOutput } from "./models.ts";

/** An event line of a Jepsen log that does not parse. */
export class JepsenParseError extends Error {
  override readonly name = "JepsenParseError";
  /** 1-based line number. */
  readonly line: number;

  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.line = line;
  }
}

/** A parsed Jepsen log: its events and the register operations they pair into. */
export interface JepsenHistory {
  /** Events in log order; `at` is the 1-based line number. */
  readonly events: readonly HistoryEvent<RegisterInput, RegisterOutput>[];
  /** Operations; `call` and `return` are line numbers (`Infinity` for outcomes never known). */
  readonly operations: readonly Operation<RegisterInput, RegisterOutput>[];
}

type Value =
  | { readonly kind: "nil" }
  | { readonly kind: "number"; readonly value: number }
  | { readonly kind: "pair"; readonly from: number; readonly to: number }
  | { readonly kind: "keyword"; readonly name: string };

// Lines that claim to be client events: a numeric process right after `jepsen.util - `.
const EVENT_LINE = /jepsen\.util\s+-\s+(\d+)\s+:/;
const FIELDS = /jepsen\.util\s+-\s+(\d+)\s+:([\w-]+)\s+:([\w-]+)(?:\s+(.*?))?\s*$/;
const NUMBER = /^-?\d+(?:\.\d+)?$/;

function parseValue(text: string, line: number): Value {
  if (text === "nil") return { kind: "nil" };
  if (NUMBER.test(text)) return { kind: "number", value: Number(text) };
  if (/^:[\w-]+$/.test(text)) return { kind: "keyword", name: text.slice(1) };
  const pair = /^\[\s*(\S+)\s+(\S+)\s*\]$/.exec(text);
  if (pair !== null && NUMBER.test(pair[1]!) && NUMBER.test(pair[2]!)) {
    return { kind: "pair", from: Number(pair[1]), to: Number(pair[2]) };
  }
  throw new JepsenParseError(line, `cannot read the value ${JSON.stringify(text)}`);
}

function show(value: Value): string {
  switch (value.kind) {
    case "nil":
      return "nil";
    case "number":
      return String(value.value);
    case "pair":
      return `[${value.from} ${value.to}]`;
    case "keyword":
      return `:${value.name}`;
  }
}

function inputOf(f: string, value: Value, line: number): RegisterInput {
  switch (f) {
    case "read":
      return { f: "read" };
    case "write":
      if (value.kind !== "number") {
        throw new JepsenParseError(line, `write needs a number, got ${show(value)}`);
      }
      return { f: "write", value: value.value };
    case "cas":
      if (value.kind !== "pair") {
        throw new JepsenParseError(line, `cas needs [from to], got ${show(value)}`);
      }
      return { f: "cas", from: value.from, to: value.to };
    default:
      throw new JepsenParseError(line, `unknown function :${f} (expected :read, :write or :cas)`);
  }
}

/**
 * Parses a Jepsen register log into events and operations. A `:fail :read :timed-out` is an
 * unknown outcome (`info`); an invocation never completed is indeterminate.
 * @example
 * const { operations } = parseJepsenLog(readFileSync("etcd_000.log", "utf8"));
 * checkLinearizability(registerModel, operations);
 */
export function parseJepsenLog(text: string): JepsenHistory {
  const events: HistoryEvent<RegisterInput, RegisterOutput>[] = [];
  const pending = new Map<number, { id: number; f: string; line: number }>();
  let nextId = 0;
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    const source = lines[index]!;
    const line = index + 1;
    if (!EVENT_LINE.test(source)) continue;
    const fields = FIELDS.exec(source);
    if (fields === null) {
      throw new JepsenParseError(line, `malformed event ${JSON.stringify(source.trim())}`);
    }
    const process = Number(fields[1]);
    const type = fields[2]!;
    const f = fields[3]!;
    const raw = fields[4];
    if (raw === undefined || raw === "") {
      throw new JepsenParseError(line, `event :${type} :${f} has no value`);
    }
    const value = parseValue(raw, line);
    if (type === "invoke") {
      const open = pending.get(process);
      if (open !== undefined) {
        throw new JepsenParseError(
          line,
          `process ${process} invokes while its operation from line ${open.line} is pending`,
        );
      }
      const id = nextId++;
      pending.set(process, { id, f, line });
      events.push({ type: "invoke", id, process, input: inputOf(f, value, line), at: line });
      continue;
    }
    if (type !== "ok" && type !== "fail" && type !== "info") {
      throw new JepsenParseError(
        line,
        `unknown event type :${type} (expected :invoke, :ok, :fail or :info)`,
      );
    }
    const open = pending.get(process);
    if (open === undefined) {
      throw new JepsenParseError(line, `process ${process} completes :${f} but invoked nothing`);
    }
    if (open.f !== f) {
      throw new JepsenParseError(
        line,
        `process ${process} completes :${f} but invoked :${open.f} on line ${open.line}`,
      );
    }
    pending.delete(process);
    const { id } = open;
    const timedOut = value.kind === "keyword" && value.name === "timed-out";
    if (type === "info" || (type === "fail" && f === "read" && timedOut)) {
      events.push({ type: "info", id, process, at: line });
    } else if (type === "fail") {
      events.push({ type: "fail", id, process, at: line });
    } else if (f === "read") {
      if (value.kind !== "nil" && value.kind !== "number") {
        throw new JepsenParseError(line, `a read returns nil or a number, got ${show(value)}`);
      }
      const output = value.kind === "nil" ? null : value.value;
      events.push({ type: "ok", id, process, output, at: line });
    } else {
      events.push({ type: "ok", id, process, output: null, at: line });
    }
  }
  return { events, operations: operationsFromEvents(events) };
}
