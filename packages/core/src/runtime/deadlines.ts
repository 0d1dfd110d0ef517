import type { Env, TimerHandle } from "../env/index.ts";

/** Something with a deadline that must be told when it passes. */
export interface Expiring {
  deadline: number;
  /** Position in the tracker's heap; -1 when not tracked. */
  heapIndex: number;
  expire(): void;
}

/**
 * Tracks many deadlines with one timer: a binary heap ordered by deadline, and one Env timer
 * armed for the earliest. Adding and removing are O(log n) and create no timer per call.
 */
export class DeadlineTracker {
  readonly #env: Env;
  readonly #heap: Expiring[] = [];
  #timer: TimerHandle | undefined;
  #armedAt = Number.POSITIVE_INFINITY;

  constructor(env: Env) {
    this.#env = env;
  }

  get size(): number {
    return this.#heap.length;
  }

  add(item: Expiring): void {
    const heap = this.#heap;
    item.heapIndex = heap.length;
    heap.push(item);
    this.#up(item.heapIndex);
    if (item.deadline < this.#armedAt) this.#arm(item.deadline);
  }

  remove(item: Expiring): void {
    const i = item.heapIndex;
    if (i < 0) return;
    const heap = this.#heap;
    const last = heap.pop()!;
    item.heapIndex = -1;
    if (i < heap.length) {
      heap[i] = last;
      last.heapIndex = i;
      this.#down(i);
      this.#up(last.heapIndex);
    }
    // The armed timer is left alone: when it fires it re-arms for the new earliest deadline.
  }

  /** Cancels the timer; tracked items stay (used when a node stops). */
  dispose(): void {
    if (this.#timer !== undefined) this.#env.timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) this.#env.timers.clearTimeout(this.#timer);
    this.#armedAt = at;
    this.#timer = this.#env.timers.setTimeout(() => this.#fire(), at - this.#env.clock.now());
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    const now = this.#env.clock.now();
    const heap = this.#heap;
    while (heap.length > 0 && heap[0]!.deadline <= now) {
      const item = heap[0]!;
      this.remove(item);
      item.expire();
    }
    if (heap.length > 0) this.#arm(heap[0]!.deadline);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const item = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (parent.deadline <= item.deadline) break;
      heap[i] = parent;
      parent.heapIndex = i;
      i = p;
    }
    heap[i] = item;
    item.heapIndex = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && heap[r]!.deadline < heap[l]!.deadline ? r : l;
      const child = heap[c]!;
      if (child.deadline >= item.deadline) break;
      heap[i] = child;
      child.heapIndex = i;
      i = c;
    }
    heap[i] = item;
    item.heapIndex = i;
  }
}
