/** What a policy hands the function it runs. */
export interface AttemptContext {
  /** 0-based number of this attempt: set by retry and hedge, passed through by other policies. */
  readonly attempt: number;
  /**
   * Aborts when the attempt should stop (the caller cancelled, a timeout passed, a hedge won).
   * Policies create their AbortController only when this is read, so read it only if you use it.
   */
  readonly signal: AbortSignal | undefined;
  /** The attempt's deadline on the Env's monotonic clock (`env.clock.now()` ms); Infinity if none. */
  readonly deadline: number;
}

/** Per-call options of `execute`. An outer policy's AttemptContext is a valid value. */
export interface ExecuteOptions {
  /** Cancels the call: policies stop waiting, queueing and retrying, and pass it down. */
  readonly signal?: AbortSignal | undefined;
  /** Absolute deadline on the Env's monotonic clock, in ms. */
  readonly deadline?: number | undefined;
  /** Attempt number to pass through (set when an outer policy's context is passed as options). */
  readonly attempt?: number | undefined;
}

/** The function a policy runs: one attempt of the protected operation. */
export type PolicyFn<T> = (ctx: AttemptContext) => Promise<T> | T;

/**
 * Anything that runs a function under a policy. `Extra` is what the policy may return instead of
 * the function's result (a fallback value); `never` for every other policy.
 */
export interface Policy<Extra = never> {
  /** Runs `fn` under this policy. */
  execute<T>(fn: PolicyFn<T>, options?: ExecuteOptions): Promise<T | Extra>;
}

/** How a finished call counts towards a breaker or a limit. */
export type CallOutcome = "success" | "failure" | "ignore";
