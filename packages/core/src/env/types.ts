/** Monotonic and wall-clock time, in milliseconds. */
export interface Clock {
  /** Monotonic milliseconds since an arbitrary origin; never goes backwards. */
  now(): number;
  /** Wall-clock milliseconds since the Unix epoch; may be skewed or jump. */
  wallNow(): number;
}

/** An opaque handle for a scheduled timer. */
export interface TimerHandle {
  readonly id: number;
}

/** Timers on the Env's clock. */
export interface Timers {
  /** Runs `fn` once after `ms` milliseconds. */
  schedule(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer; cancelling a fired or cancelled timer does nothing. */
  cancel(handle: TimerHandle): void;
  /** Resolves after `ms`; rejects with the signal's reason if it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** A seeded, splittable source of randomness. */
export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** A new, independent stream derived from this one's seed and `label` (not from its position). */
  split(label: string): Random;
  /** A random 128-bit identifier as 32 lowercase hex characters. */
  id(): string;
  /** Hex string of `bytes` random bytes (e.g. 8 for a trace span id). */
  hex(bytes: number): string;
}

/** Everything in core and sim that needs time or chance asks an Env. */
export interface Env {
  readonly clock: Clock;
  readonly timers: Timers;
  readonly random: Random;
}
