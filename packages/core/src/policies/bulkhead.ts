import type { Env } from "../env/index.ts";
import { KeelError } from "../errors/index.ts";
import { contextOf } from "./context.ts";
import { Emitter, type PolicyEvent } from "./event.ts";
import { cancelledBy, checkEnv, checkNumber, checkOptions, refusal } from "./internal.ts";
import { type Scheduled, TimerQueue } from "./timer-queue.ts";
import type { ExecuteOptions, Policy, PolicyFn } from "./types.ts";

/** Options of `bulkhead`. */
export interface BulkheadOptions {
  readonly env: Env;
  /** Executions running at once. */
  readonly maxConcurrent: number;
  /** Executions waiting for a slot; more are refused at once with OVERLOADED (0: no queue). */
  readonly maxQueue: number;
}

/** Emitted when the bulkhead refuses an execution because its queue is full. */
export interface ShedEvent {
  readonly active: number;
  readonly queued: number;
}

/** A bulkhead. */
export interface BulkheadPolicy extends Policy {
  readonly kind: "bulkhead";
  /** Slots taken. */
  readonly active: number;
  /** Waiters in the queue. */
  readonly queued: number;
  /** Low-level: takes a slot if one is free and nobody waits; then call `release()` once. */
  tryAcquire(): boolean;
  /**
   * Low-level: resolves holding a slot (call `release()` once), possibly after queueing; rejects
   * with OVERLOADED when the queue is full, with CANCELLED when `signal` aborts while queued and
   * with DEADLINE_EXCEEDED when `deadline` passes while queued.
   */
  acquire(options?: ExecuteOptions): Promise<void>;
  /** Low-level: gives a slot back (to the first waiter, if any). */
  release(): void;
  /** Stops the timer watching queued deadlines. */
  dispose(): void;
  readonly onShed: PolicyEvent<ShedEvent>;
}

/**
 * A bulkhead: at most `maxConcurrent` executions at once and `maxQueue` waiting, first come first
 * served. A waiter whose signal aborts, or whose deadline passes, leaves the queue at once and
 * never runs.
 *
 * @example
 * const pool = bulkhead({ env, maxConcurrent: 16, maxQueue: 64 });
 * const rows = await pool.execute(() => db.query(sql), { signal, deadline });
 */
export function bulkhead(options: BulkheadOptions): BulkheadPolicy {
  const name = "bulkhead";
  checkOptions(name, options);
  const env = checkEnv(name, options.env);
  checkNumber(name, "maxConcurrent", options.maxConcurrent, { integer: true, min: 1 });
  checkNumber(name, "maxQueue", options.maxQueue, { integer: true, min: 0, infinite: true });
  return new Bulkhead(env, options.maxConcurrent, options.maxQueue);
}

const HELD: Promise<void> = Promise.resolve();

/** A queued execution: a node of the FIFO list, a deadline in the timer queue, an abort listener. */
class Waiter implements Scheduled {
  at: number;
  slot = -1;
  prev: Waiter | undefined;
  next: Waiter | undefined;
  queued = true;
  readonly bulkhead: Bulkhead;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
  readonly signal: AbortSignal | undefined;

  constructor(
    bulkhead: Bulkhead,
    deadline: number,
    signal: AbortSignal | undefined,
    resolve: () => void,
    reject: (error: unknown) => void,
  ) {
    this.bulkhead = bulkhead;
    this.at = deadline;
    this.signal = signal;
    this.resolve = resolve;
    this.reject = reject;
  }

  /** The deadline passed while queued. */
  fire(): void {
    this.bulkhead.leave(
      this,
      new KeelError(
        "DEADLINE_EXCEEDED",
        "the deadline passed while waiting in the bulkhead queue",
        {
          noStack: true,
        },
      ),
    );
  }

  /** The signal aborted while queued. */
  handleEvent(): void {
    this.bulkhead.leave(this, cancelledBy(this.signal?.reason));
  }
}

class Bulkhead implements BulkheadPolicy {
  readonly kind = "bulkhead";
  readonly #env: Env;
  readonly #max: number;
  readonly #maxQueue: number;
  readonly #deadlines: TimerQueue;
  #active = 0;
  #queued = 0;
  #head: Waiter | undefined;
  #tail: Waiter | undefined;
  readonly #shed = new Emitter<ShedEvent>();
  readonly onShed = this.#shed.event;

  constructor(env: Env, max: number, maxQueue: number) {
    this.#env = env;
    this.#max = max;
    this.#maxQueue = maxQueue;
    this.#deadlines = new TimerQueue(env);
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queued;
  }

  tryAcquire(): boolean {
    if (this.#active >= this.#max || this.#head !== undefined) return false;
    this.#active++;
    return true;
  }

  acquire(options?: ExecuteOptions): Promise<void> {
    if (this.tryAcquire()) return HELD;
    if (this.#queued >= this.#maxQueue) {
      if (this.#shed.active) this.#shed.emit({ active: this.#active, queued: this.#queued });
      return Promise.reject(
        refusal("OVERLOADED", "the bulkhead is full", {
          refusedBy: "bulkhead",
          maxConcurrent: this.#max,
          maxQueue: this.#maxQueue,
        }),
      );
    }
    const signal = options?.signal;
    if (signal?.aborted === true) return Promise.reject(cancelledBy(signal.reason));
    const deadline = options?.deadline ?? Number.POSITIVE_INFINITY;
    if (deadline <= this.#env.clock.now()) {
      return Promise.reject(
        new KeelError("DEADLINE_EXCEEDED", "the deadline passed before the bulkhead", {
          noStack: true,
        }),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = new Waiter(this, deadline, signal, resolve, reject);
      waiter.prev = this.#tail;
      if (this.#tail === undefined) this.#head = waiter;
      else this.#tail.next = waiter;
      this.#tail = waiter;
      this.#queued++;
      if (deadline !== Number.POSITIVE_INFINITY) this.#deadlines.add(waiter);
      signal?.addEventListener("abort", waiter);
    });
  }

  release(): void {
    // A release without a slot held (a double release) must not hand a slot to a waiter.
    if (this.#active === 0) return;
    const waiter = this.#head;
    if (waiter === undefined) {
      if (this.#active > 0) this.#active--;
      return;
    }
    // The slot passes straight to the first waiter: #active stays the same.
    this.#unlink(waiter);
    waiter.resolve();
  }

  /** A waiter gives up its place (aborted, or out of time). */
  leave(waiter: Waiter, error: unknown): void {
    if (!waiter.queued) return;
    this.#unlink(waiter);
    waiter.reject(error);
  }

  dispose(): void {
    this.#deadlines.dispose();
  }

  async execute<T>(fn: PolicyFn<T>, options?: ExecuteOptions): Promise<T> {
    if (!this.tryAcquire()) {
      await this.acquire(options);
      // Aborted between being handed the slot and running: pass the slot on, never run.
      const signal = options?.signal;
      if (signal?.aborted === true) {
        this.release();
        throw cancelledBy(signal.reason);
      }
    }
    try {
      return await fn(contextOf(options));
    } finally {
      this.release();
    }
  }

  #unlink(waiter: Waiter): void {
    waiter.queued = false;
    const { prev, next } = waiter;
    if (prev === undefined) this.#head = next;
    else prev.next = next;
    if (next === undefined) this.#tail = prev;
    else next.prev = prev;
    waiter.prev = undefined;
    waiter.next = undefined;
    this.#queued--;
    this.#deadlines.remove(waiter);
    waiter.signal?.removeEventListener("abort", waiter);
  }
}
