import type { Env } from "../env/index.ts";
import { KeelError } from "../errors/index.ts";
import { ControlledContext, contextOf, PassContext } from "./context.ts";
import { Emitter, type PolicyEvent } from "./event.ts";
import { checkEnv, checkNumber, checkOptions, configError, isPromiseLike } from "./internal.ts";
import { type Scheduled, TimerQueue } from "./timer-queue.ts";
import type { AttemptContext, ExecuteOptions, Policy, PolicyFn } from "./types.ts";

/** A hedging delay that follows the observed latency. */
export interface HedgePercentileDelay {
  /** Hedge when an attempt takes longer than this percentile of recent latencies, e.g. 0.95. */
  readonly percentile: number;
  /** Latencies to observe before hedging at all. */
  readonly minSamples: number;
  /** Recent latencies kept (default max(200, minSamples)). */
  readonly windowSize?: number;
  /** Delay until minSamples are known (default: do not hedge until then). */
  readonly initialMs?: number;
}

/** Options of `hedge`. */
export interface HedgeOptions {
  readonly env: Env;
  /** Wait before each hedge: fixed, or a percentile of recent latencies. */
  readonly delayMs: number | HedgePercentileDelay;
  /** Extra attempts at most (0 disables hedging). */
  readonly maxHedges: number;
}

/** Emitted when a hedged attempt starts. */
export interface HedgeEvent {
  /** The new attempt's `ctx.attempt`. */
  readonly attempt: number;
  /** Time since the call started. */
  readonly afterMs: number;
}

/** A hedging policy. */
export interface HedgePolicy extends Policy {
  readonly kind: "hedge";
  readonly maxHedges: number;
  /** Low-level: the current hedging delay in ms (Infinity while too few latencies are known). */
  delay(): number;
  /** Low-level: feeds the latency of a successful attempt to the percentile. */
  recordLatency(ms: number): void;
  /** Stops the policy's timer (pending hedges then never start). */
  dispose(): void;
  readonly onHedge: PolicyEvent<HedgeEvent>;
}

/**
 * Hedged requests ("The Tail at Scale"): when attempt 0 has not finished after the delay, attempt
 * 1 starts alongside it, and so on up to `maxHedges`; the first success wins and the others'
 * `ctx.signal` aborts with CANCELLED. Use `ctx.attempt` to send each attempt to another replica.
 * Hedging is for slowness, not failure: once every started attempt has failed, the call fails
 * with the last error at once (retry is the policy for failures). Only for idempotent work.
 *
 * Under an outer policy that numbers attempts (retry), attempt k of outer attempt r is numbered
 * `r * (maxHedges + 1) + k`, so every attempt of a call has its own number.
 *
 * @example
 * const hedged = hedge({ env, delayMs: { percentile: 0.95, minSamples: 100 }, maxHedges: 1 });
 * const page = await hedged.execute((ctx) => replicas[ctx.attempt % replicas.length].get(key));
 */
export function hedge(options: HedgeOptions): HedgePolicy {
  const name = "hedge";
  checkOptions(name, options);
  const env = checkEnv(name, options.env);
  checkNumber(name, "maxHedges", options.maxHedges, { integer: true, min: 0, max: 100 });
  const d = options.delayMs;
  if (typeof d === "number") {
    checkNumber(name, "delayMs", d, { min: 0 });
    return new Hedge(env, options.maxHedges, d, undefined);
  }
  if (typeof d !== "object" || d === null) {
    throw configError(name, "delayMs must be a number or { percentile, minSamples }");
  }
  checkNumber(name, "delayMs.percentile", d.percentile, { above: 0, below: 1 });
  checkNumber(name, "delayMs.minSamples", d.minSamples, { integer: true, min: 1 });
  const windowSize = checkNumber(
    name,
    "delayMs.windowSize",
    d.windowSize ?? Math.max(200, d.minSamples),
    { integer: true, min: d.minSamples, max: 100_000 },
  );
  const initial = checkNumber(name, "delayMs.initialMs", d.initialMs ?? Number.POSITIVE_INFINITY, {
    min: 0,
    infinite: true,
  });
  return new Hedge(env, options.maxHedges, initial, {
    percentile: d.percentile,
    minSamples: d.minSamples,
    windowSize,
  });
}

class Hedge implements HedgePolicy {
  readonly kind = "hedge";
  readonly maxHedges: number;
  readonly env: Env;
  readonly queue: TimerQueue;
  readonly #percentile: number;
  readonly #minSamples: number;
  /** Recent latencies (a ring), or undefined for a fixed delay. */
  readonly #samples: Float64Array | undefined;
  readonly #scratch: Float64Array | undefined;
  #count = 0;
  #next = 0;
  #sinceUpdate = 0;
  readonly #updateEvery: number;
  #delay: number;
  readonly hedges = new Emitter<HedgeEvent>();
  readonly onHedge = this.hedges.event;

  constructor(
    env: Env,
    maxHedges: number,
    delay: number,
    adaptive: { percentile: number; minSamples: number; windowSize: number } | undefined,
  ) {
    this.env = env;
    this.maxHedges = maxHedges;
    this.queue = new TimerQueue(env);
    this.#delay = maxHedges === 0 ? Number.POSITIVE_INFINITY : delay;
    this.#percentile = adaptive?.percentile ?? 1;
    this.#minSamples = adaptive?.minSamples ?? 0;
    this.#samples = adaptive === undefined ? undefined : new Float64Array(adaptive.windowSize);
    this.#scratch = adaptive === undefined ? undefined : new Float64Array(adaptive.windowSize);
    // Even a selection costs more than a call: refresh the percentile 8 times a window.
    this.#updateEvery = adaptive === undefined ? 1 : Math.max(1, adaptive.windowSize >> 3);
  }

  delay(): number {
    return this.#delay;
  }

  recordLatency(ms: number): void {
    const samples = this.#samples;
    if (samples === undefined || !(ms >= 0)) return;
    samples[this.#next] = ms;
    this.#next = this.#next + 1 === samples.length ? 0 : this.#next + 1;
    if (this.#count < samples.length) this.#count++;
    if (this.#count < this.#minSamples) return;
    if (this.#count === this.#minSamples || ++this.#sinceUpdate >= this.#updateEvery) {
      this.#sinceUpdate = 0;
      this.#updatePercentile();
    }
  }

  #updatePercentile(): void {
    const n = this.#count;
    const scratch = this.#scratch!;
    scratch.set(this.#samples!.subarray(0, n));
    const rank = Math.max(0, Math.min(n - 1, Math.ceil(this.#percentile * n) - 1));
    if (this.maxHedges > 0) this.#delay = select(scratch, n, rank);
  }

  dispose(): void {
    this.queue.dispose();
  }

  execute<T>(fn: PolicyFn<T>, options?: ExecuteOptions): Promise<T> {
    const now = this.env.clock.now();
    const deadline = options?.deadline ?? Number.POSITIVE_INFINITY;
    const outer = options?.attempt ?? 0;
    const first = outer * (this.maxHedges + 1);
    const delay = this.#delay;
    if (!(now + delay < deadline)) {
      // No hedge could start in time: one plain attempt, whose latency still feeds the window.
      const ctx =
        first === outer ? contextOf(options) : new PassContext(options ?? {}, first, deadline);
      return this.#single(fn, ctx, now);
    }
    return new Promise<T>((resolve, reject) => {
      const run = new HedgeRun<T>(this, fn, options, first, deadline, resolve, reject);
      run.launch(now);
      if (!run.done) {
        run.at = now + delay;
        this.queue.add(run);
      }
    });
  }

  async #single<T>(fn: PolicyFn<T>, ctx: AttemptContext, start: number): Promise<T> {
    const value = await fn(ctx);
    this.recordLatency(this.env.clock.now() - start);
    return value;
  }
}

/** One hedged call: its attempts, and its place in the policy's timer queue. */
class HedgeRun<T> implements Scheduled {
  at = 0;
  slot = -1;
  done = false;
  readonly #policy: Hedge;
  readonly #fn: PolicyFn<T>;
  readonly #parent: ExecuteOptions | undefined;
  readonly #first: number;
  readonly #deadline: number;
  readonly #resolve: (value: T) => void;
  readonly #reject: (error: unknown) => void;
  readonly #attempts: ControlledContext[] = [];
  #start = 0;
  #failed = 0;

  constructor(
    policy: Hedge,
    fn: PolicyFn<T>,
    parent: ExecuteOptions | undefined,
    first: number,
    deadline: number,
    resolve: (value: T) => void,
    reject: (error: unknown) => void,
  ) {
    this.#policy = policy;
    this.#fn = fn;
    this.#parent = parent;
    this.#first = first;
    this.#deadline = deadline;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** Starts the next attempt. */
  launch(now: number): void {
    if (this.#attempts.length === 0) this.#start = now;
    const ctx = new ControlledContext(
      this.#parent,
      this.#first + this.#attempts.length,
      this.#deadline,
    );
    this.#attempts.push(ctx);
    let result: Promise<T> | T;
    try {
      result = this.#fn(ctx);
    } catch (error) {
      this.#failure(ctx, error);
      return;
    }
    if (!isPromiseLike(result)) {
      this.#success(ctx, result, now);
      return;
    }
    result.then(
      (value) => this.#success(ctx, value, now),
      (error: unknown) => this.#failure(ctx, error),
    );
  }

  /** The hedging delay passed with no attempt finished. */
  fire(): void {
    if (this.done) return;
    const policy = this.#policy;
    const now = policy.env.clock.now();
    // Read only now, on the rare hedging path: an outer lazy signal stays uncreated otherwise.
    if (this.#parent?.signal?.aborted === true || now >= this.#deadline) return;
    if (policy.hedges.active) {
      policy.hedges.emit({
        attempt: this.#first + this.#attempts.length,
        afterMs: now - this.#start,
      });
    }
    this.launch(now);
    const delay = policy.delay();
    if (!this.done && this.#attempts.length <= policy.maxHedges && now + delay < this.#deadline) {
      this.at = now + delay;
      policy.queue.add(this);
    }
  }

  #success(ctx: ControlledContext, value: T, start: number): void {
    ctx.finish();
    if (this.done) return;
    this.done = true;
    const policy = this.#policy;
    policy.queue.remove(this);
    policy.recordLatency(policy.env.clock.now() - start);
    if (this.#attempts.length > 1) {
      const lost = new KeelError("CANCELLED", "another hedged attempt won", { noStack: true });
      for (const other of this.#attempts) {
        if (other !== ctx) {
          other.abort(lost);
          other.finish();
        }
      }
    }
    this.#resolve(value);
  }

  #failure(ctx: ControlledContext, error: unknown): void {
    ctx.finish();
    if (this.done) return;
    if (++this.#failed < this.#attempts.length) return;
    // Every attempt started so far failed: hedging is for slowness, so fail now.
    this.done = true;
    this.#policy.queue.remove(this);
    this.#reject(error);
  }
}

/** The `rank`-th smallest of `a[0..n)` (Hoare's quickselect; reorders `a`): O(n), no sort. */
function select(a: Float64Array, n: number, rank: number): number {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (rank <= j) hi = j;
    else if (rank >= i) lo = i;
    else break;
  }
  return a[rank]!;
}
