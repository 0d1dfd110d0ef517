import type { Env, TimerHandle } from "../env/index.ts";

/** Something that must be told when its time comes. */
export interface Scheduled {
  /** When to fire, on the Env's monotonic clock (ms). */
  at: number;
  /** Position in the queue's heap; -1 when not queued. */
  slot: number;
  fire(): void;
}

/**
 * Many scheduled items on one Env timer: a binary heap by time and one timer armed for the
 * earliest. Adding and removing are O(log n) and create no timer per item; removing leaves the
 * timer armed (it re-arms for the new earliest when it fires), so a steady stream of calls that
 * finish in time costs about one Env timer per period, not one per call.
 */
export class TimerQueue {
  readonly #env: Env;
  readonly #heap: Scheduled[] = [];
  #timer: TimerHandle | undefined;
  #armedAt = Number.POSITIVE_INFINITY;
  readonly #onTimer = (): void => this.#fire();

  constructor(env: Env) {
    this.#env = env;
  }

  /** Items queued. */
  get size(): number {
    return this.#heap.length;
  }

  add(item: Scheduled): void {
    const heap = this.#heap;
    item.slot = heap.length;
    heap.push(item);
    this.#up(item.slot);
    if (item.at < this.#armedAt) this.#arm(item.at);
  }

  remove(item: Scheduled): void {
    const i = item.slot;
    if (i < 0) return;
    const heap = this.#heap;
    const last = heap.pop()!;
    item.slot = -1;
    if (i < heap.length) {
      heap[i] = last;
      last.slot = i;
      this.#down(i);
      this.#up(last.slot);
    }
  }

  /** Cancels the timer; queued items stay and never fire (used when the owner shuts down). */
  dispose(): void {
    if (this.#timer !== undefined) this.#env.timers.cancel(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
  }

  #arm(at: number): void {
    const timers = this.#env.timers;
    if (this.#timer !== undefined) timers.cancel(this.#timer);
    this.#armedAt = at;
    this.#timer = timers.schedule(this.#onTimer, at - this.#env.clock.now());
  }

  #fire(): void {
    // The timer armed for `armedAt` fired, so `armedAt` has come, even if the clock reads a hair
    // earlier (a drifting simulated clock's rounding): re-arming for the rest would take a timer
    // for a delay too small to move virtual time, again and again.
    const now = Math.max(this.#env.clock.now(), this.#armedAt);
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    const heap = this.#heap;
    while (heap.length > 0 && heap[0]!.at <= now) {
      const item = heap[0]!;
      this.remove(item);
      item.fire();
    }
    // An item fired above may have queued another and armed for it; arm for the earliest.
    if (heap.length > 0 && heap[0]!.at < this.#armedAt) this.#arm(heap[0]!.at);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const item = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (parent.at <= item.at) break;
      heap[i] = parent;
      parent.slot = i;
      i = p;
    }
    heap[i] = item;
    item.slot = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && heap[r]!.at < heap[l]!.at ? r : l;
      const child = heap[c]!;
      if (child.at >= item.at) break;
      heap[i] = child;
      child.slot = i;
      i = c;
    }
    heap[i] = item;
    item.slot = i;
  }
}
