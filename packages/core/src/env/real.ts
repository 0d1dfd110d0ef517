import { randomFillSync } from "node:crypto";
import { createRandom } from "./random.ts";
import type { Env, Random, TimerHandle, Timers } from "./types.ts";

interface RealHandle extends TimerHandle {
  readonly timer: ReturnType<typeof setTimeout>;
}

const realTimers: Timers = {
  schedule(fn, ms) {
    const timer = setTimeout(fn, Math.max(0, ms));
    return { id: Number(timer), timer } satisfies RealHandle;
  },
  cancel(handle) {
    clearTimeout((handle as RealHandle).timer);
  },
  sleep(ms, signal) {
    return sleepOn(realTimers, ms, signal);
  },
};

/** Shared `sleep` on any Timers: resolves after `ms`, rejects with the signal's reason on abort. */
export function sleepOn(timers: Timers, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal === undefined) {
      timers.schedule(resolve, ms);
      return;
    }
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      timers.cancel(handle);
      reject(signal.reason);
    };
    const handle = timers.schedule(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Options for the production Env. */
export interface RealEnvOptions {
  /** Seed for reproducible randomness; by default a seed drawn from the OS. */
  readonly seed?: number | string;
}

/** The production Env: Node's clock and timers, and a random stream seeded from the OS. */
export function createRealEnv(options: RealEnvOptions = {}): Env {
  // randomFillSync, not Web Crypto's getRandomValues: that one loads Node's Web Crypto and WebIDL
  // layers (a few hundred KB of an idle node's memory, which TLS alone does not load).
  const seed = options.seed ?? randomFillSync(new Uint32Array(2)).join("-");
  const random: Random = createRandom(seed);
  return {
    clock: {
      now: () => performance.now(),
      wallNow: () => Date.now(),
    },
    timers: realTimers,
    random,
  };
}
