/**
 * Histories: what clients saw. Each operation has an invocation and, usually, a completion; the
 * checkers judge whether some order of the operations explains everything that was seen.
 * @module
 */

/** How an operation ended: `ok` (took effect, with an output), `fail` (did not take effect), `info` (unknown). */
export type OperationStatus = "ok" | "fail" | "info";

/** A client process; it runs one operation at a time. */
export type ProcessId = number | string;

/** What every operation carries, whatever its outcome. */
export interface OperationBase<I> {
  /** Position of the invocation among the history's invocations, from 0. */
  readonly id: number;
  readonly process: ProcessId;
  readonly input: I;
  /** When the operation was invoked (an event index or a time). */
  readonly call: number;
  /** When it completed; `Infinity` when the outcome is unknown (`info`), since it may take effect at any later time. */
  readonly return: number;
}

/** An operation that completed and took effect, with its output. */
export interface OkOperation<I, O> extends OperationBase<I> {
  readonly status: "ok";
  readonly output: O;
}

/** An operation that completed without taking effect. */
export interface FailedOperation<I> extends OperationBase<I> {
  readonly status: "fail";
  readonly output?: undefined;
}

/** An operation with an unknown outcome: it may take effect at any point after its call, or never. */
export interface IndeterminateOperation<I> extends OperationBase<I> {
  readonly status: "info";
  readonly output?: undefined;
}

/** One operation of a history, discriminated by `status`. */
export type Operation<I, O> = OkOperation<I, O> | FailedOperation<I> | IndeterminateOperation<I>;

/** The part of an operation a model judges: its status and, when `ok`, its output. An `Operation` is one. */
export type Outcome<O> =
  | { readonly status: "ok"; readonly output: O }
  | { readonly status: "fail" }
  | { readonly status: "info" };

/** One event of a history, in the order it happened. */
export type HistoryEvent<I, O> =
  | {
      readonly type: "invoke";
      readonly id: number;
      readonly process: ProcessId;
      readonly input: I;
      readonly at: number;
    }
  | {
      readonly type: "ok";
      readonly id: number;
      readonly process: ProcessId;
      readonly output: O;
      readonly at: number;
    }
  | { readonly type: "fail"; readonly id: number; readonly process: ProcessId; readonly at: number }
  | {
      readonly type: "info";
      readonly id: number;
      readonly process: ProcessId;
      readonly at: number;
    };

/** Why a history could not be recorded or assembled. */
export type HistoryErrorReason =
  | "unknown-operation"
  | "already-completed"
  | "process-busy"
  | "time-went-backwards"
  | "invalid-operation";

/** A history that breaks the rules: completing an unknown operation, a busy process, time going backwards. */
export class HistoryError extends Error {
  override readonly name = "HistoryError";
  readonly reason: HistoryErrorReason;

  constructor(reason: HistoryErrorReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** Records a history as it happens; usable by simulations and by tests. */
export interface HistoryRecorder<I, O> {
  /**
   * Records an invocation and returns the operation's id. `at` is a time or an index; when left
   * out, the event's position in the history is used (give `at` on every event or on none).
   */
  invoke(process: ProcessId, input: I, at?: number): number;
  /** The operation took effect and returned `output`. */
  ok(id: number, output: O, at?: number): void;
  /** The operation returned without taking effect. */
  fail(id: number, at?: number): void;
  /** The outcome is unknown (a timeout, a crash): it may take effect later, or never. */
  info(id: number, at?: number): void;
  /** Every event so far, in order. */
  events(): readonly HistoryEvent<I, O>[];
  /** The operations so far; those still pending are indeterminate (`info`). */
  operations(): Operation<I, O>[];
}

/**
 * Creates an empty history recorder.
 * @example
 * const h = createHistory<RegisterInput, RegisterOutput>();
 * const w = h.invoke(1, { f: "write", value: 3 });
 * h.ok(w, null);
 * checkLinearizability(registerModel, h.operations());
 */
export function createHistory<I, O>(): HistoryRecorder<I, O> {
  const events: HistoryEvent<I, O>[] = [];
  const invocations: Array<Extract<HistoryEvent<I, O>, { type: "invoke" }>> = [];
  const completed: boolean[] = [];
  const busy = new Map<ProcessId, number>();
  let last = Number.NEGATIVE_INFINITY;

  const timeOf = (at: number | undefined): number => {
    const t = at ?? events.length;
    if (Number.isNaN(t) || t < last) {
      throw new HistoryError(
        "time-went-backwards",
        `event at ${t} recorded after an event at ${last}: record events in time order`,
      );
    }
    last = t;
    return t;
  };

  // Validates everything before changing anything, so a refused event leaves no trace.
  const complete = (id: number, verb: string, at: number | undefined) => {
    const invocation = invocations[id];
    if (invocation === undefined) {
      throw new HistoryError("unknown-operation", `${verb}(${id}): no operation has this id`);
    }
    if (completed[id]) {
      throw new HistoryError("already-completed", `${verb}(${id}): operation already completed`);
    }
    const time = timeOf(at);
    completed[id] = true;
    busy.delete(invocation.process);
    return { process: invocation.process, at: time };
  };

  return {
    invoke(process, input, at) {
      const pending = busy.get(process);
      if (pending !== undefined) {
        throw new HistoryError(
          "process-busy",
          `invoke on process ${String(process)}: operation ${pending} is still pending (a process runs one operation at a time)`,
        );
      }
      const time = timeOf(at);
      const id = invocations.length;
      const event = { type: "invoke", id, process, input, at: time } as const;
      invocations.push(event);
      completed.push(false);
      busy.set(process, id);
      events.push(event);
      return id;
    },
    ok(id, output, at) {
      events.push({ type: "ok", id, output, ...complete(id, "ok", at) });
    },
    fail(id, at) {
      events.push({ type: "fail", id, ...complete(id, "fail", at) });
    },
    info(id, at) {
      events.push({ type: "info", id, ...complete(id, "info", at) });
    },
    events: () => events.slice(),
    operations: () => operationsFromEvents(events),
  };
}

/**
 * Pairs each invocation with its completion. Invocations never completed, and those completed with
 * `info`, become indeterminate operations (`return: Infinity`).
 */
export function operationsFromEvents<I, O>(
  events: Iterable<HistoryEvent<I, O>>,
): Operation<I, O>[] {
  const invocations: Array<Extract<HistoryEvent<I, O>, { type: "invoke" }>> = [];
  const completions = new Map<number, Exclude<HistoryEvent<I, O>, { type: "invoke" }>>();
  for (const event of events) {
    if (event.type === "invoke") {
      if (invocations[event.id] !== undefined) {
        throw new HistoryError("already-completed", `operation ${event.id} invoked twice`);
      }
      invocations[event.id] = event;
    } else {
      if (invocations[event.id] === undefined) {
        throw new HistoryError(
          "unknown-operation",
          `${event.type} for operation ${event.id}, which was never invoked`,
        );
      }
      if (completions.has(event.id)) {
        throw new HistoryError("already-completed", `operation ${event.id} completed twice`);
      }
      completions.set(event.id, event);
    }
  }
  const ops: Operation<I, O>[] = [];
  for (const invocation of invocations) {
    if (invocation === undefined) continue;
    const { id, process, input, at: call } = invocation;
    const done = completions.get(id);
    if (done === undefined || done.type === "info") {
      ops.push({ id, process, input, call, return: Number.POSITIVE_INFINITY, status: "info" });
    } else if (done.type === "fail") {
      ops.push({ id, process, input, call, return: done.at, status: "fail" });
    } else {
      ops.push({ id, process, input, call, return: done.at, status: "ok", output: done.output });
    }
  }
  return ops;
}
