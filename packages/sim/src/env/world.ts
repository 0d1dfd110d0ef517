/**
 * The world's scheduler: one queue of events ordered by (virtual time, tie-break, sequence), time
 * that jumps to the next event, and a handoff that lets every woken task run until it blocks again
 * before the next event fires. Per-node clocks (skew, drift, jumps) and Envs are built on it.
 *
 * This file lives under `env/` because it binds the Env: it is the one place in `sim` that touches
 * the host's scheduling (`process.nextTick`, for the handoff).
 * @module
 */
import {
  createRandom,
  type Env,
  hash32,
  KeelError,
  type Random,
  type Seed,
  sleepOn,
  type TimerHandle,
} from "@keel/core";

/** Who an event belongs to: a node's process (paused or killed with it), or the world itself. */
export interface Owner {
  readonly id: string;
  /** Set while the process is paused: its events wait, in order, until it resumes. */
  paused: boolean;
  /** Set when the process dies: its pending events are dropped. */
  dead: boolean;
  /** Events that came due while paused. */
  readonly held: WorldEvent[];
}

/** One scheduled event; it is also the timer handle `schedule` returns. */
export class WorldEvent implements TimerHandle {
  declare at: number;
  declare tie: number;
  declare readonly seq: number;
  declare readonly owner: Owner | undefined;
  declare readonly kind: string;
  declare fn: (() => void) | undefined;

  constructor(
    at: number,
    tie: number,
    seq: number,
    owner: Owner | undefined,
    kind: string,
    fn: () => void,
  ) {
    this.at = at;
    this.tie = tie;
    this.seq = seq;
    this.owner = owner;
    this.kind = kind;
    this.fn = fn;
  }

  /** The timer handle's id. */
  get id(): number {
    return this.seq;
  }
}

/** How same-time events are ordered: by a seeded draw (explores interleavings) or first come. */
export type TieBreak = "random" | "fifo";

/** Why `run` returned. */
export type RunStop = "done" | "idle" | "time-limit" | "event-limit";

function before(a: WorldEvent, b: WorldEvent): boolean {
  return a.at < b.at || (a.at === b.at && (a.tie < b.tie || (a.tie === b.tie && a.seq < b.seq)));
}

/*
 * The handoff: a `nextTick` queued from a promise job runs only once V8's microtask queue is empty,
 * so when it fires, every task the last event woke has blocked again on something the world
 * controls (a timer, a frame, a promise only an event can settle), unless simulated code left
 * ticks of its own pending, which `run` counts and waits out.
 */

const MIX = 0x9e3779b1;

/**
 * Counts the process.nextTick callbacks simulated code leaves pending, so the handoff also waits
 * for chains that mix ticks and promises (a tick queued after the handoff's own would otherwise run
 * after it). One wrapper for the whole thread, installed while any world runs: worlds that run at
 * once share it, so none can capture another's wrapper as "the original" and leave it behind.
 */
const tickCounter = {
  original: process.nextTick,
  pending: 0,
  scheduled: 0,
  users: 0,
};

function countTicks(): () => void {
  if (tickCounter.users++ === 0) {
    const original = process.nextTick;
    tickCounter.original = original;
    process.nextTick = function countedNextTick(
      callback: (...args: unknown[]) => void,
      ...args: unknown[]
    ) {
      tickCounter.pending++;
      tickCounter.scheduled++;
      original(() => {
        tickCounter.pending--;
        callback(...args);
      });
    } as typeof process.nextTick;
  }
  return () => {
    if (--tickCounter.users === 0) process.nextTick = tickCounter.original;
  };
}

/** The discrete-event core of a simulation. */
export class World {
  now = 0;
  readonly wallStart: number;
  readonly ties: TieBreak;
  readonly #tieRandom: Random;
  readonly #heap: WorldEvent[] = [];
  #seq = 0;
  #fired = 0;
  #hash = 0x811c9dc5;
  /** Per-event hashes and kinds, kept only when tracing (for the determinism self-check). */
  readonly #trace: { hashes: number[]; labels: string[] } | undefined;
  #stopRequested = false;

  constructor(options: {
    readonly seed: Seed;
    readonly ties?: TieBreak;
    readonly wallStart?: number;
    readonly trace?: boolean;
  }) {
    this.wallStart = options.wallStart ?? Date.UTC(2026, 0, 1);
    this.ties = options.ties ?? "random";
    this.#tieRandom = createRandom(options.seed).split("world:ties");
    this.#trace = options.trace === true ? { hashes: [], labels: [] } : undefined;
  }

  /** Events fired so far. */
  get fired(): number {
    return this.#fired;
  }

  /** Events waiting. */
  get pending(): number {
    return this.#heap.length;
  }

  /** The rolling hash of every event fired and every random draw made so far. */
  get hash(): number {
    return this.#hash >>> 0;
  }

  /** Per-event hashes and labels when constructed with `trace: true`. */
  get trace():
    | { readonly hashes: readonly number[]; readonly labels: readonly string[] }
    | undefined {
    return this.#trace;
  }

  /** Folds a value into the rolling hash (events, random draws). */
  mix(value: number): void {
    let h = Math.imul(this.#hash ^ (value | 0), MIX);
    h ^= h >>> 15;
    this.#hash = h;
  }

  /** Schedules `fn` after `delay` ms of world time. */
  schedule(owner: Owner | undefined, delay: number, kind: string, fn: () => void): WorldEvent {
    // biome-ignore lint/complexity/useMathMinMax: a NaN delay must mean 0, and Math.max keeps NaN
    return this.scheduleAt(owner, this.now + (delay > 0 ? delay : 0), kind, fn);
  }

  /** Schedules `fn` at world time `at` (now, if `at` is in the past). */
  scheduleAt(owner: Owner | undefined, at: number, kind: string, fn: () => void): WorldEvent {
    const event = new WorldEvent(
      // biome-ignore lint/complexity/useMathMinMax: a NaN time must mean now, and Math.max keeps NaN
      at > this.now ? at : this.now,
      this.ties === "random" ? this.#tieRandom.int(0x40000000) : 0,
      ++this.#seq,
      owner,
      kind,
      fn,
    );
    this.#push(event);
    return event;
  }

  /** Cancels an event; cancelling a fired or cancelled one does nothing. */
  cancel(event: WorldEvent): void {
    event.fn = undefined;
  }

  /** Puts events held for a paused owner back on the queue, due now, in the order they came due. */
  release(owner: Owner): void {
    const held = owner.held.splice(0);
    for (const [i, event] of held.entries()) {
      event.at = this.now;
      // Ahead of anything else due now, and among themselves in the order they came due.
      event.tie = i - held.length;
      this.#push(event);
    }
  }

  /** Asks a running `run` to return after the current event. */
  requestStop(): void {
    this.#stopRequested = true;
  }

  /**
   * Fires events in order, handing off to woken tasks after each, until `done()` holds, nothing is
   * left, world time would pass `until`, or `maxEvents` have fired.
   */
  async run(done: () => boolean, until: number, maxEvents: number): Promise<RunStop> {
    const heap = this.#heap;
    const trace = this.#trace;
    const limit = this.#fired + maxEvents;
    this.#stopRequested = false;
    // Continue inside a promise job: a nextTick queued from a macrotask (a timer, an I/O or a
    // worker-message callback) would run before the microtasks already queued, not after them.
    await null;
    const restore = countTicks();
    try {
      return await this.#loop(heap, trace, limit, done, until);
    } finally {
      restore();
    }
  }

  #loop(
    heap: WorldEvent[],
    trace: { hashes: number[]; labels: string[] } | undefined,
    limit: number,
    done: () => boolean,
    until: number,
  ): Promise<RunStop> {
    const nextTick = tickCounter.original;
    const pendingTicks = () => tickCounter.pending;
    const ticksScheduled = () => tickCounter.scheduled;
    return new Promise<RunStop>((resolve, reject) => {
      let mark = ticksScheduled();
      // The handoff: queued as a microtask, `next` queues a tick, which runs only once the
      // microtask queue is empty; `step` then fires one event. No promise per event.
      const next = () => nextTick(step);
      const step = () => {
        try {
          // Simulated code used ticks since the last look: hand off again until a whole handoff
          // passes with none scheduled and none pending (chains that mix ticks and promises).
          if (ticksScheduled() !== mark || pendingTicks() > 0) {
            mark = ticksScheduled();
            queueMicrotask(next);
            return;
          }
          if (done() || this.#stopRequested) {
            resolve("done");
            return;
          }
          let event: WorldEvent | undefined;
          for (;;) {
            event = heap[0];
            while (event !== undefined && event.fn === undefined) {
              this.#pop();
              event = heap[0];
            }
            if (event === undefined) {
              resolve("idle");
              return;
            }
            if (event.at > until) {
              this.now = Math.max(this.now, until);
              resolve("time-limit");
              return;
            }
            if (this.#fired >= limit) {
              resolve("event-limit");
              return;
            }
            this.#pop();
            const owner = event.owner;
            if (owner === undefined) break;
            if (owner.dead) continue;
            if (!owner.paused) break;
            owner.held.push(event);
          }
          if (event.at > this.now) this.now = event.at;
          const fn = event.fn as () => void;
          event.fn = undefined;
          this.#fired++;
          this.mix(event.seq);
          // Times too: two runs that differ only in when things happen must not hash alike.
          this.mix(Math.round(this.now * 1000));
          if (trace !== undefined) {
            const owner = event.owner;
            trace.hashes.push(this.#hash >>> 0);
            trace.labels.push(
              `${event.kind}${owner === undefined ? "" : `@${owner.id}`} t=${this.now}`,
            );
          }
          mark = ticksScheduled();
          fn();
          queueMicrotask(next);
        } catch (err) {
          reject(err);
        }
      };
      queueMicrotask(next);
    });
  }

  #push(event: WorldEvent): void {
    const items = this.#heap;
    items.push(event);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent] as WorldEvent;
      if (!before(event, p)) break;
      items[i] = p;
      i = parent;
    }
    items[i] = event;
  }

  #pop(): void {
    const items = this.#heap;
    const last = items.pop();
    if (items.length === 0 || last === undefined) return;
    const n = items.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let m = l;
      if (r < n && before(items[r] as WorldEvent, items[l] as WorldEvent)) m = r;
      if (!before(items[m] as WorldEvent, last)) break;
      items[i] = items[m] as WorldEvent;
      i = m;
    }
    items[i] = last;
  }
}

/** A random stream whose every draw is folded into the world's rolling hash. */
class TracedRandom implements Random {
  readonly #inner: Random;
  readonly #world: World;

  constructor(inner: Random, world: World) {
    this.#inner = inner;
    this.#world = world;
  }

  next(): number {
    const v = this.#inner.next();
    this.#world.mix(v * 4294967296);
    return v;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  split(label: string): Random {
    return new TracedRandom(this.#inner.split(label), this.#world);
  }

  hex(bytes: number): string {
    const out = this.#inner.hex(bytes);
    this.#world.mix(hash32(out));
    return out;
  }

  id(): string {
    return this.hex(16);
  }
}

/** Wraps a random stream so its draws count towards the world's determinism hash. */
export function tracedRandom(inner: Random, world: World): Random {
  return new TracedRandom(inner, world);
}

/** How a node's clock relates to world time. */
export interface ClockSettings {
  /** Wall-clock offset from true time, in ms (positive: ahead). */
  readonly skewMs?: number;
  /** Rate error in parts per million (positive: the node's clock runs fast). */
  readonly driftPpm?: number;
}

function rateOf(driftPpm: number): number {
  if (!(Number.isFinite(driftPpm) && driftPpm > -1_000_000)) {
    throw new KeelError(
      "CONFIGURATION",
      `clock drift must be a finite number of ppm above -1000000 (a clock that stops or runs backwards), got ${driftPpm}`,
    );
  }
  return 1 + driftPpm / 1e6;
}

/**
 * A node's own clock: monotonic time runs at `1 + drift` of world time; wall time adds a skew that
 * can jump. Timers are set in the node's time and fire when the node's clock reaches them.
 */
export class NodeClock {
  readonly #world: World;
  #anchorWorld: number;
  #anchorLocal: number;
  #rate: number;
  #wallOffset: number;

  constructor(world: World, settings: ClockSettings = {}) {
    this.#world = world;
    this.#anchorWorld = world.now;
    this.#anchorLocal = world.now;
    this.#rate = rateOf(settings.driftPpm ?? 0);
    const skew = settings.skewMs ?? 0;
    if (!Number.isFinite(skew))
      throw new KeelError("CONFIGURATION", `clock skew must be finite, got ${skew}`);
    this.#wallOffset = skew;
  }

  now(): number {
    return this.#anchorLocal + (this.#world.now - this.#anchorWorld) * this.#rate;
  }

  wallNow(): number {
    return this.#world.wallStart + this.now() + this.#wallOffset;
  }

  /** World-time delay for `ms` of this node's time. */
  toWorld(ms: number): number {
    return ms / this.#rate;
  }

  /**
   * The world time at which this clock will read `now() + ms`, rounded up so that a timer never
   * fires while the node's clock still reads a hair short of its time (which would make code that
   * re-arms for the remainder spin without time moving).
   */
  dueAt(ms: number): number {
    // biome-ignore lint/complexity/useMathMinMax: a NaN delay must mean 0, and Math.max keeps NaN
    const target = this.now() + (ms > 0 ? ms : 0);
    let at = this.#anchorWorld + (target - this.#anchorLocal) / this.#rate;
    for (let i = 0; i < 64 && this.#localAt(at) < target; i++) {
      at += Math.max(Math.abs(at) * Number.EPSILON, Number.MIN_VALUE);
    }
    return at;
  }

  #localAt(worldAt: number): number {
    return this.#anchorLocal + (worldAt - this.#anchorWorld) * this.#rate;
  }

  /** Moves the wall clock by `deltaMs` (NTP step, VM migration); monotonic time never jumps. */
  jump(deltaMs: number): void {
    this.#wallOffset += deltaMs;
  }

  /** Changes the drift from now on (timers already set keep their world due time). */
  setDrift(driftPpm: number): void {
    this.#anchorLocal = this.now();
    this.#anchorWorld = this.#world.now;
    this.#rate = rateOf(driftPpm);
  }

  get skewMs(): number {
    return this.#wallOffset;
  }

  get driftPpm(): number {
    return (this.#rate - 1) * 1e6;
  }
}

/** Builds an Env whose time is `clock`, whose timers belong to `owner`, and whose random is `random`. */
export function worldEnv(
  world: World,
  owner: Owner | undefined,
  clock: NodeClock | undefined,
  random: Random,
): Env {
  const timers: Env["timers"] = {
    schedule(fn, ms) {
      return clock === undefined
        ? world.schedule(owner, ms, "timer", fn)
        : world.scheduleAt(owner, clock.dueAt(ms), "timer", fn);
    },
    cancel(handle) {
      if (handle instanceof WorldEvent) world.cancel(handle);
    },
    sleep(ms, signal) {
      return sleepOn(timers, ms, signal);
    },
  };
  const worldClock = {
    now: () => world.now,
    wallNow: () => world.wallStart + world.now,
  };
  return { clock: clock ?? worldClock, timers, random };
}
