import { createRandom, type Seed } from "./random.ts";
import { sleepOn } from "./real.ts";
import type { Env, Random, TimerHandle, Timers } from "./types.ts";

interface Scheduled {
  readonly id: number;
  readonly at: number;
  readonly seq: number;
  fn: (() => void) | undefined;
}

/** Options for a virtual Env. */
export interface VirtualEnvOptions {
  /** Seed for the random stream (default 1). */
  readonly seed?: Seed;
  /** Wall-clock time at virtual time 0 (default 2026-01-01T00:00:00Z). */
  readonly wallStart?: number;
}

/** An Env on virtual time, driven by the test: time moves only when told to. */
export interface VirtualEnv extends Env {
  /** Number of timers scheduled and not yet fired or cancelled. */
  readonly pendingTimers: number;
  /** Virtual time of the earliest pending timer, or undefined. */
  nextTimerAt(): number | undefined;
  /** Lets pending promise callbacks run without moving time. */
  flush(): Promise<void>;
  /** Moves time forward by `ms`, firing every timer due on the way, in order. */
  advance(ms: number): Promise<void>;
  /** Jumps to the earliest pending timer and fires it (and any others due then). Returns false if none. */
  runNext(): Promise<boolean>;
  /**
   * Fires timers until none is left or `limitMs` of virtual time has passed (default one hour:
   * running nodes keep heartbeat timers, so "until none is left" alone would never end).
   */
  runAll(limitMs?: number): Promise<void>;
}

// Drains the microtask queue: every promise continuation already queued runs first.
const drainMicrotasks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

class MinHeap {
  readonly items: Scheduled[] = [];

  push(item: Scheduled): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  peek(): Scheduled | undefined {
    return this.items[0];
  }

  pop(): Scheduled | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && before(items[l]!, items[m]!)) m = l;
        if (r < items.length && before(items[r]!, items[m]!)) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m]!, items[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Scheduled, b: Scheduled): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** Creates an Env on virtual time for tests: no real time passes, and runs replay from the seed. */
export function createVirtualEnv(options: VirtualEnvOptions = {}): VirtualEnv {
  const wallStart = options.wallStart ?? Date.UTC(2026, 0, 1);
  const random: Random = createRandom(options.seed ?? 1);
  const heap = new MinHeap();
  const live = new Map<number, Scheduled>();
  let now = 0;
  let seq = 0;

  const timers: Timers = {
    schedule(fn, ms) {
      const id = ++seq;
      const item: Scheduled = { id, at: now + Math.max(0, ms), seq: id, fn };
      heap.push(item);
      live.set(id, item);
      return { id };
    },
    cancel(handle: TimerHandle) {
      const item = live.get(handle.id);
      if (item !== undefined) {
        item.fn = undefined;
        live.delete(handle.id);
      }
    },
    sleep(ms, signal) {
      return sleepOn(timers, ms, signal);
    },
  };

  const skipCancelled = (): Scheduled | undefined => {
    let top = heap.peek();
    while (top !== undefined && top.fn === undefined) {
      heap.pop();
      top = heap.peek();
    }
    return top;
  };

  const fireDue = async (until: number): Promise<void> => {
    await drainMicrotasks();
    for (;;) {
      const top = skipCancelled();
      if (top === undefined || top.at > until) break;
      heap.pop();
      live.delete(top.id);
      now = Math.max(now, top.at);
      const fn = top.fn;
      top.fn = undefined;
      fn?.();
      await drainMicrotasks();
    }
  };

  return {
    clock: { now: () => now, wallNow: () => wallStart + now },
    timers,
    random,
    get pendingTimers() {
      return live.size;
    },
    nextTimerAt: () => skipCancelled()?.at,
    flush: drainMicrotasks,
    async advance(ms) {
      const target = now + ms;
      await fireDue(target);
      now = Math.max(now, target);
    },
    async runNext() {
      const top = skipCancelled();
      if (top === undefined) {
        await drainMicrotasks();
        return false;
      }
      await fireDue(top.at);
      return true;
    },
    async runAll(limitMs = 3_600_000) {
      const end = now + limitMs;
      for (;;) {
        const top = skipCancelled();
        if (top === undefined || top.at > end) break;
        await fireDue(top.at);
      }
      await drainMicrotasks();
    },
  };
}
