/**
 * A simulated world: the user's real services on ordinary `createNode` nodes, on one in-process
 * network, on virtual time, with per-node clocks and random streams split from one seed.
 * @module
 */
import {
  CALLER_MISTAKES,
  createInProcessNetwork,
  createNode,
  createRandom,
  type Env,
  type ErrorCode,
  type InProcessNetwork,
  isKeelError,
  KeelError,
  type KeelNode,
  type LinkFaults,
  type NodeOptions,
  type Random,
  type Seed,
  silentLogger,
} from "@keel/core";
import { type Guard, installGuard, type NondeterminismError } from "./env/guard.ts";
import {
  type ClockSettings,
  NodeClock,
  type Owner,
  type RunStop,
  type TieBreak,
  tracedRandom,
  World,
  worldEnv,
} from "./env/world.ts";
import { describeStep, type FaultStep } from "./faults.ts";
import { createHistory, type HistoryRecorder, type ProcessId } from "./history.ts";

/** How clocks are set up: the same for every node, or drawn per node from the seed. */
export type ClockOptions =
  | ClockSettings
  | { readonly random: { readonly maxSkewMs?: number; readonly maxDriftPpm?: number } };

/** Options for {@link createSimulation}. */
export interface SimulationOptions {
  readonly seed: Seed;
  /** How same-time events are ordered (default `random`: explores interleavings). */
  readonly ties?: TieBreak;
  /**
   * Throw on any touch of real time, timers, randomness or sockets while the world runs (default
   * true). Turn it off only for code you cannot change (and expect runs not to replay).
   */
  readonly guard?: boolean;
  /** Keep a per-event hash and label, for the determinism self-check (default false). */
  readonly trace?: boolean;
  /** The network's fault model outside injected faults (default: 0.1–1 ms uniform latency). */
  readonly network?: LinkFaults;
  /** Node clocks (default: perfect clocks). */
  readonly clocks?: ClockOptions;
  /** Wall-clock time at virtual time 0 (default 2026-01-01T00:00:00Z). */
  readonly wallStart?: number;
}

/** What a node is given each time its process (re)starts. */
export interface NodeLife {
  readonly id: string;
  /** This process's Env: its own clock, timers and random stream. */
  readonly env: Env;
  /** 1 for the first start, 2 after the first restart, and so on. */
  readonly life: number;
}

/** Node options the simulation does not set itself. */
export type SimNodeOptions = Omit<NodeOptions, "id" | "env" | "transport">;

/** A node of the world, across crashes and restarts. */
export interface SimNode {
  readonly id: string;
  /** The running process's node (the last one, after a crash). */
  readonly node: KeelNode;
  readonly life: number;
  /** `up`, `paused` or `crashed`. */
  readonly status: "up" | "paused" | "crashed";
  readonly clock: NodeClock;
}

/** A failed `always`, a failed check, or a run-level failure. */
export interface Failure {
  readonly name: string;
  readonly detail: string;
  /** World time of the first failure with this name. */
  readonly atMs: number;
  /** How many times it failed. */
  readonly count: number;
}

/** One line of the story of a run. */
export interface TimelineEntry {
  readonly atMs: number;
  readonly text: string;
}

/** How `run` ended, when it did not end because `main` settled. */
export class SimulationStuckError extends Error {
  override readonly name = "SimulationStuckError";
  readonly reason: Exclude<RunStop, "done">;

  constructor(reason: Exclude<RunStop, "done">, atMs: number) {
    const what = {
      idle: "nothing is left to happen (no timer, no frame in flight) but the simulation's main task has not finished: a deadlock, or a wait on something outside the world",
      "time-limit": "the virtual time limit was reached before the main task finished",
      "event-limit": "the event limit was reached before the main task finished",
    }[reason];
    super(`simulation stopped at ${atMs} ms: ${what}`);
    this.reason = reason;
  }
}

/** Error codes after which an operation certainly did not take effect. */
const DEFINITE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ...CALLER_MISTAKES,
  "CIRCUIT_OPEN",
  "RATE_LIMITED",
  "CONFIGURATION",
  "UNIMPLEMENTED",
]);

interface NodeRecord {
  readonly id: string;
  readonly options: (life: NodeLife) => SimNodeOptions;
  readonly clock: NodeClock;
  /** The drift the node was set up with, which healing restores. */
  readonly driftPpm: number;
  owner: Owner;
  node: KeelNode;
  life: number;
  status: "up" | "paused" | "crashed";
}

const DEFAULT_NETWORK: LinkFaults = { latency: { kind: "uniform", min: 0.1, max: 1 } };

/**
 * A simulation: build nodes with {@link Simulation.addNode}, drive the world with
 * {@link Simulation.run}, inject faults, and judge with `always` / `sometimes`.
 */
export class Simulation {
  readonly seed: Seed;
  /** The harness's Env: true world time, timers that never pause, a random stream for the workload. */
  readonly env: Env;
  readonly network: InProcessNetwork;
  readonly #world: World;
  readonly #root: Random;
  readonly #guardOn: boolean;
  readonly #clockOptions: ClockOptions | undefined;
  readonly #clockRandom: Random;
  readonly #nodes = new Map<string, NodeRecord>();
  readonly #baseFaults: LinkFaults;
  readonly #failures = new Map<
    string,
    { name: string; detail: string; atMs: number; count: number }
  >();
  readonly #sometimes = new Map<string, boolean>();
  readonly #timeline: TimelineEntry[] = [];
  readonly #partitions = new Set<FaultStep & { kind: "partition" | "isolate" }>();
  readonly #links = new Set<FaultStep & { kind: "link" }>();
  #guard: Guard | undefined;
  #violations: NondeterminismError[] = [];

  constructor(options: SimulationOptions) {
    this.seed = options.seed;
    this.#world = new World({
      seed: options.seed,
      ...(options.ties !== undefined ? { ties: options.ties } : {}),
      ...(options.wallStart !== undefined ? { wallStart: options.wallStart } : {}),
      ...(options.trace !== undefined ? { trace: options.trace } : {}),
    });
    this.#root = createRandom(options.seed);
    this.#guardOn = options.guard !== false;
    this.#clockOptions = options.clocks;
    this.#clockRandom = this.#root.split("clocks");
    this.env = worldEnv(
      this.#world,
      undefined,
      undefined,
      tracedRandom(this.#root.split("workload"), this.#world),
    );
    this.#baseFaults = options.network ?? DEFAULT_NETWORK;
    this.network = createInProcessNetwork({
      env: worldEnv(
        this.#world,
        undefined,
        undefined,
        tracedRandom(this.#root.split("network"), this.#world),
      ),
      faults: this.#baseFaults,
    });
  }

  /** World time in ms (true time; nodes' clocks may disagree). */
  get now(): number {
    return this.#world.now;
  }

  /** Events fired so far. */
  get events(): number {
    return this.#world.fired;
  }

  /** The rolling hash of events and random draws so far (equal runs have equal hashes). */
  get hash(): number {
    return this.#world.hash;
  }

  /** Per-event hashes and labels when created with `trace: true`. */
  get trace():
    | { readonly hashes: readonly number[]; readonly labels: readonly string[] }
    | undefined {
    return this.#world.trace;
  }

  /** A random stream for a purpose (split from the seed: independent of every other stream). */
  random(label: string): Random {
    return tracedRandom(this.#root.split(`user:${label}`), this.#world);
  }

  /** Sleeps `ms` of world time. */
  sleep(ms: number): Promise<void> {
    return this.env.timers.sleep(ms);
  }

  /**
   * Adds a node and starts it. `options` is called at each (re)start with the process's Env, so
   * per-process state (caches, in-memory stores) can be rebuilt and lost on a crash, as in life.
   */
  async addNode(
    id: string,
    options: SimNodeOptions | ((life: NodeLife) => SimNodeOptions) = {},
    clock?: ClockSettings,
  ): Promise<SimNode> {
    if (this.#nodes.has(id))
      throw new KeelError("CONFIGURATION", `node '${id}' is already in the simulation`);
    const settings = clock ?? this.#drawClock();
    const nodeClock = new NodeClock(this.#world, settings);
    const record = this.#spawn(
      id,
      typeof options === "function" ? options : () => options,
      nodeClock,
      1,
      settings.driftPpm ?? 0,
    );
    this.#nodes.set(id, record);
    await record.node.start();
    return this.#view(record);
  }

  /** The node `id` (throws CONFIGURATION if there is none). */
  node(id: string): SimNode {
    return this.#view(this.#record(id));
  }

  /** Every node, in the order added. */
  nodes(): SimNode[] {
    return [...this.#nodes.values()].map((r) => this.#view(r));
  }

  /** Kills a node's process: no drain, no goodbye; its timers and in-flight work die with it. */
  crash(id: string): void {
    if (this.#kill(id)) this.note(`crash ${id}`);
  }

  /** Ends the run's every process at once (not a fault: nothing is noted). */
  shutdown(): void {
    for (const id of this.#nodes.keys()) this.#kill(id);
  }

  #kill(id: string): boolean {
    const r = this.#record(id);
    if (r.status === "crashed") return false;
    r.owner.dead = true;
    r.status = "crashed";
    r.node.crash();
    this.network.crash(id);
    return true;
  }

  /** Starts a crashed node's process again (a new life: new Env, new random stream). */
  async restart(id: string): Promise<void> {
    const r = this.#record(id);
    if (r.status !== "crashed") return;
    const next = this.#spawn(id, r.options, r.clock, r.life + 1, r.driftPpm);
    this.#nodes.set(id, next);
    this.note(`restart ${id} (life ${next.life})`);
    await next.node.start();
  }

  /** Freezes a node's process (a long GC pause, SIGSTOP): nothing it owns runs until `resume`. */
  pause(id: string): void {
    const r = this.#record(id);
    if (r.status !== "up") return;
    r.owner.paused = true;
    r.status = "paused";
    this.network.pause(id);
    this.note(`pause ${id}`);
  }

  /** Resumes a paused node: what came due while it slept runs now, in order. */
  resume(id: string): void {
    const r = this.#record(id);
    if (r.status !== "paused") return;
    r.owner.paused = false;
    r.status = "up";
    this.#world.release(r.owner);
    this.network.resume(id);
    this.note(`resume ${id}`);
  }

  /** Applies a fault step now; returns a function that undoes it (for faults with a duration). */
  inject(step: FaultStep): () => void {
    switch (step.kind) {
      case "partition":
      case "isolate": {
        // A copy per injection: the same step injected twice is two windows, undone one by one.
        const active = { ...step };
        this.#partitions.add(active);
        this.#applyPartitions();
        this.note(describeStep(step));
        return () => {
          if (this.#partitions.delete(active)) {
            this.#applyPartitions();
            this.note(`healed: ${describeStep(step)}`);
          }
        };
      }
      case "link": {
        const active = { ...step };
        this.#links.add(active);
        this.#applyLinks();
        this.note(describeStep(step));
        return () => {
          if (this.#links.delete(active)) {
            this.#applyLinks();
            this.note(`healed: ${describeStep(step)}`);
          }
        };
      }
      case "crash": {
        if (this.#record(step.node).status === "crashed") return () => {};
        this.crash(step.node);
        return () => {
          this.restart(step.node).catch((err: unknown) => this.fail("restart", String(err)));
        };
      }
      case "pause": {
        if (this.#record(step.node).status !== "up") return () => {};
        this.pause(step.node);
        return () => this.resume(step.node);
      }
      case "clock-jump": {
        this.#record(step.node).clock.jump(step.deltaMs);
        this.note(describeStep(step));
        return () => {};
      }
      case "clock-drift": {
        const clock = this.#record(step.node).clock;
        const before = clock.driftPpm;
        clock.setDrift(step.driftPpm);
        this.note(describeStep(step));
        return () => clock.setDrift(before);
      }
    }
  }

  /** Schedules a plan: each step at `start + step.at`, undone after its duration. */
  schedule(plan: readonly FaultStep[], start = this.now): { cancel(): void } {
    const handles: Array<ReturnType<Env["timers"]["schedule"]>> = [];
    const timers = this.env.timers;
    for (const step of plan) {
      handles.push(
        timers.schedule(
          () => {
            const undo = this.inject(step);
            if ("durationMs" in step) handles.push(timers.schedule(undo, step.durationMs));
          },
          Math.max(0, start + step.at - this.now),
        ),
      );
    }
    return {
      cancel: () => {
        for (const h of handles) timers.cancel(h);
      },
    };
  }

  /** Ends every fault: heals partitions, restores links and clocks' drift, resumes and restarts nodes. */
  async healAll(): Promise<void> {
    this.#partitions.clear();
    this.#links.clear();
    this.#applyPartitions();
    this.#applyLinks();
    for (const r of this.#nodes.values()) {
      if (r.clock.driftPpm !== r.driftPpm) r.clock.setDrift(r.driftPpm);
    }
    for (const r of [...this.#nodes.values()]) {
      if (r.status === "paused") this.resume(r.id);
      else if (r.status === "crashed") await this.restart(r.id);
    }
    this.note("heal everything");
  }

  /** Records a line in the run's timeline. */
  note(text: string): void {
    this.#timeline.push({ atMs: this.now, text });
  }

  /** The timeline so far. */
  get timeline(): readonly TimelineEntry[] {
    return this.#timeline;
  }

  /** Asserts that `condition` holds every time this line runs; a failure fails the run. */
  always(condition: boolean, name: string, detail?: string | (() => string)): void {
    if (condition) return;
    this.fail(name, typeof detail === "function" ? detail() : (detail ?? "did not hold"));
  }

  /**
   * Notes that `condition` held at least once (a coverage signal): a `sometimes` that never held in
   * a run is reported, since the run never reached the situation it names.
   */
  sometimes(condition: boolean, name: string): void {
    if (condition) this.#sometimes.set(name, true);
    else if (!this.#sometimes.has(name)) this.#sometimes.set(name, false);
  }

  /** Fails the run with `name` (kept once per name, with a count). */
  fail(name: string, detail: string): void {
    const seen = this.#failures.get(name);
    if (seen !== undefined) {
      seen.count++;
      return;
    }
    this.#failures.set(name, { name, detail, atMs: this.now, count: 1 });
    this.note(`FAILED ${name}: ${detail}`);
  }

  /** Failures so far, first first (guard violations included). */
  get failures(): readonly Failure[] {
    const out: Failure[] = [...this.#failures.values()];
    const first = this.#violations[0];
    if (first !== undefined) {
      out.unshift({
        name: "determinism guard",
        detail: `${first.message}\n${first.stack ?? ""}`,
        atMs: 0,
        count: this.#violations.length,
      });
    }
    return out;
  }

  /** `sometimes` assertions that held at least once. */
  get sometimesHeld(): readonly string[] {
    return [...this.#sometimes].filter(([, hit]) => hit).map(([name]) => name);
  }

  /** `sometimes` assertions that were evaluated but never held. */
  get sometimesMissed(): readonly string[] {
    return [...this.#sometimes].filter(([, hit]) => !hit).map(([name]) => name);
  }

  /** A history recorder whose times are world time. */
  history<I, O>(): HistoryRecorder<I, O> {
    return createHistory<I, O>();
  }

  /**
   * Runs one client operation and records it: `ok` with its output, `fail` when the error says
   * it certainly did not take effect, `info` (unknown outcome) otherwise. Never throws.
   */
  async operation<I, O>(
    history: HistoryRecorder<I, O>,
    process: ProcessId,
    input: I,
    fn: () => Promise<O>,
  ): Promise<{ ok: true; output: O } | { ok: false; error: unknown }> {
    const id = history.invoke(process, input, this.now);
    try {
      const output = await fn();
      history.ok(id, output, this.now);
      return { ok: true, output };
    } catch (error) {
      if (isKeelError(error) && DEFINITE.has(error.code)) history.fail(id, this.now);
      else history.info(id, this.now);
      return { ok: false, error };
    }
  }

  /**
   * Drives the world until `main` settles: fires events in time order, letting every woken task
   * block again before the next. Throws {@link SimulationStuckError} if the world runs dry, or the
   * limits pass, first.
   */
  async run<T>(
    main: () => Promise<T>,
    limits: { readonly timeMs?: number; readonly events?: number } = {},
  ): Promise<T> {
    if (this.#guardOn) {
      this.#guard = installGuard();
      this.#violations = this.#guard.violations as NondeterminismError[];
    }
    try {
      let settled = false;
      let value: T | undefined;
      let failure: unknown;
      let threw = false;
      main().then(
        (v) => {
          settled = true;
          value = v;
        },
        (err: unknown) => {
          settled = true;
          threw = true;
          failure = err;
        },
      );
      const stop = await this.#world.run(
        () => settled,
        this.now + (limits.timeMs ?? Number.POSITIVE_INFINITY),
        limits.events ?? Number.POSITIVE_INFINITY,
      );
      if (!settled) throw new SimulationStuckError(stop as Exclude<RunStop, "done">, this.now);
      if (threw) throw failure;
      return value as T;
    } finally {
      this.#guard?.restore();
      this.#guard = undefined;
    }
  }

  #record(id: string): NodeRecord {
    const r = this.#nodes.get(id);
    if (r === undefined) throw new KeelError("CONFIGURATION", `no node '${id}' in the simulation`);
    return r;
  }

  #view(r: NodeRecord): SimNode {
    const nodes = this.#nodes;
    return {
      id: r.id,
      get node() {
        return (nodes.get(r.id) ?? r).node;
      },
      get life() {
        return (nodes.get(r.id) ?? r).life;
      },
      get status() {
        return (nodes.get(r.id) ?? r).status;
      },
      clock: r.clock,
    };
  }

  #drawClock(): ClockSettings {
    const o = this.#clockOptions;
    if (o === undefined) return {};
    if (!("random" in o)) return o;
    const r = this.#clockRandom;
    const skew = o.random.maxSkewMs ?? 0;
    const drift = o.random.maxDriftPpm ?? 0;
    return {
      skewMs: Math.round((r.next() * 2 - 1) * skew),
      driftPpm: Math.round((r.next() * 2 - 1) * drift),
    };
  }

  #spawn(
    id: string,
    options: (life: NodeLife) => SimNodeOptions,
    clock: NodeClock,
    life: number,
    driftPpm: number,
  ): NodeRecord {
    const owner: Owner = { id, paused: false, dead: false, held: [] };
    const random = tracedRandom(this.#root.split(`node:${id}`).split(`life:${life}`), this.#world);
    const env = worldEnv(this.#world, owner, clock, random);
    const transport = this.network.transport(id);
    const node = createNode({
      logger: silentLogger,
      ...options({ id, env, life }),
      id,
      env,
      transport,
    });
    return { id, options, clock, driftPpm, owner, node, life, status: "up" };
  }

  #applyPartitions(): void {
    this.network.heal();
    for (const p of this.#partitions) {
      if (p.kind === "isolate") this.network.isolate(p.node);
      else this.network.partition(p.a, p.b, p.oneWay === true ? { oneWay: true } : {});
    }
  }

  #applyLinks(): void {
    this.network.clearFaults();
    const base = this.#baseFaults;
    const merged = (steps: Iterable<FaultStep & { kind: "link" }>): LinkFaults => {
      let drop = base.drop ?? 0;
      let duplicate = base.duplicate ?? 0;
      let delay = 0;
      let reorder = base.reorder === true;
      for (const s of steps) {
        drop = 1 - (1 - drop) * (1 - (s.drop ?? 0));
        duplicate = Math.max(duplicate, s.duplicate ?? 0);
        delay = Math.max(delay, s.delayMs ?? 0);
        reorder ||= s.reorder === true;
      }
      const latency =
        delay === 0 ? base.latency : { kind: "uniform" as const, min: 0.1, max: 1 + delay };
      return {
        ...(latency !== undefined ? { latency } : {}),
        drop,
        duplicate,
        reorder,
      };
    };
    const global = [...this.#links].filter((s) => s.from === undefined && s.to === undefined);
    this.network.setDefaultFaults(merged(global));
    const scoped = [...this.#links].filter((s) => s.from !== undefined || s.to !== undefined);
    if (scoped.length === 0) return;
    const ids = [...this.#nodes.keys()];
    for (const from of ids) {
      for (const to of ids) {
        if (from === to) continue;
        const here = scoped.filter(
          (s) => (s.from === undefined || s.from === from) && (s.to === undefined || s.to === to),
        );
        if (here.length > 0) this.network.setLink(from, to, merged([...global, ...here]));
      }
    }
  }
}

/** Builds a simulated world from a seed. */
export function createSimulation(options: SimulationOptions): Simulation {
  return new Simulation(options);
}
