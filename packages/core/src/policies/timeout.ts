import type { Env } from "../env/index.ts";
import { KeelError } from "../errors/index.ts";
import { ControlledContext } from "./context.ts";
import { Emitter, type PolicyEvent } from "./event.ts";
import { checkEnv, checkNumber, checkOptions, isPromiseLike } from "./internal.ts";
import { type Scheduled, TimerQueue } from "./timer-queue.ts";
import type { ExecuteOptions, Policy, PolicyFn } from "./types.ts";

/** Options of `timeout`. */
export interface TimeoutOptions {
  readonly env: Env;
  /** Time allowed to each execution. */
  readonly ms: number;
}

/** Emitted when an execution runs out of time. */
export interface TimeoutEvent {
  /** The limit that passed: this policy's `ms`, or less when the outer deadline came first. */
  readonly afterMs: number;
  /** True when the outer deadline, not this policy's `ms`, ended the execution. */
  readonly outer: boolean;
}

/** A timeout policy. */
export interface TimeoutPolicy extends Policy {
  readonly kind: "timeout";
  readonly ms: number;
  /** Low-level: the deadline of an attempt starting now, given the outer one (the earlier wins). */
  deadline(outer?: number): number;
  /** Executions in flight under this policy's timer. */
  readonly pending: number;
  /** Stops the policy's timer (executions in flight then never time out). */
  dispose(): void;
  readonly onTimeout: PolicyEvent<TimeoutEvent>;
}

/**
 * A cooperative timeout: `execute` rejects with DEADLINE_EXCEEDED once `ms` (or the outer deadline,
 * if earlier) has passed, and aborts `ctx.signal` with that error; what `fn` produces afterwards is
 * dropped. `fn` is not stopped unless it reads `ctx.signal` (or `ctx.deadline`). A timeout raised
 * by this policy's own `ms` is retryable (another attempt may fit in the outer deadline); one
 * raised by the outer deadline is not. One Env timer serves every execution of the policy.
 *
 * @example
 * const perAttempt = timeout({ env, ms: 500 });
 * const body = await perAttempt.execute((ctx) => http.get(url, { signal: ctx.signal }));
 */
export function timeout(options: TimeoutOptions): TimeoutPolicy {
  const name = "timeout";
  checkOptions(name, options);
  const env = checkEnv(name, options.env);
  checkNumber(name, "ms", options.ms, { above: 0 });
  return new Timeout(env, options.ms);
}

class Timeout implements TimeoutPolicy {
  readonly kind = "timeout";
  readonly ms: number;
  readonly #env: Env;
  readonly #queue: TimerQueue;
  readonly #timeouts = new Emitter<TimeoutEvent>();
  readonly onTimeout = this.#timeouts.event;

  constructor(env: Env, ms: number) {
    this.#env = env;
    this.ms = ms;
    this.#queue = new TimerQueue(env);
  }

  get pending(): number {
    return this.#queue.size;
  }

  deadline(outer = Number.POSITIVE_INFINITY): number {
    const own = this.#env.clock.now() + this.ms;
    return Math.min(outer, own);
  }

  dispose(): void {
    this.#queue.dispose();
  }

  execute<T>(fn: PolicyFn<T>, options?: ExecuteOptions): Promise<T> {
    const now = this.#env.clock.now();
    const own = now + this.ms;
    const outer = options?.deadline ?? Number.POSITIVE_INFINITY;
    const outerFirst = outer < own;
    const deadline = outerFirst ? outer : own;
    if (deadline <= now) return Promise.reject(this.expired(outerFirst, 0));
    const ctx = new TimedAttempt(this, options, options?.attempt ?? 0, deadline, outerFirst, now);
    let result: Promise<T> | T;
    try {
      result = fn(ctx);
    } catch (error) {
      ctx.finish();
      return Promise.reject(error);
    }
    if (!isPromiseLike(result)) {
      ctx.finish();
      return Promise.resolve(result);
    }
    const pending = result;
    return new Promise<T>((resolve, reject) => {
      ctx.reject = reject;
      this.#queue.add(ctx);
      pending.then(
        (value) => {
          if (ctx.settle(this.#queue)) resolve(value);
        },
        (error: unknown) => {
          if (ctx.settle(this.#queue)) reject(error);
        },
      );
    });
  }

  /** The error of an execution that ran out of time. */
  expired(outer: boolean, afterMs: number): KeelError {
    if (this.#timeouts.active) this.#timeouts.emit({ afterMs, outer });
    return outer
      ? new KeelError("DEADLINE_EXCEEDED", "the deadline passed", { noStack: true })
      : new KeelError("DEADLINE_EXCEEDED", `timed out after ${this.ms} ms`, {
          noStack: true,
          retryable: true,
          details: { timeoutMs: this.ms },
        });
  }
}

/** One execution: its context, and its place in the policy's timer queue. */
class TimedAttempt extends ControlledContext implements Scheduled {
  at: number;
  slot = -1;
  reject: ((error: unknown) => void) | undefined;
  #settled = false;
  readonly #policy: Timeout;
  readonly #outer: boolean;
  readonly #start: number;

  constructor(
    policy: Timeout,
    parent: ExecuteOptions | undefined,
    attempt: number,
    deadline: number,
    outer: boolean,
    start: number,
  ) {
    super(parent, attempt, deadline);
    this.#policy = policy;
    this.at = deadline;
    this.#outer = outer;
    this.#start = start;
  }

  /** `fn` finished; true if in time (the result is to be passed on). */
  settle(queue: TimerQueue): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    queue.remove(this);
    this.finish();
    return true;
  }

  fire(): void {
    if (this.#settled) return;
    this.#settled = true;
    const error = this.#policy.expired(this.#outer, this.at - this.#start);
    this.abort(error);
    this.finish();
    this.reject?.(error);
  }
}
