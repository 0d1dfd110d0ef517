import type { AttemptContext, ExecuteOptions } from "./types.ts";

/** The context of a call made without options. */
export const ROOT_CONTEXT: AttemptContext = Object.freeze({
  attempt: 0,
  signal: undefined,
  deadline: Number.POSITIVE_INFINITY,
});

/**
 * A context that adds nothing to its parent but an attempt number. The parent's `signal` is read
 * only when this one is, so an outer policy's lazy controller stays uncreated unless used.
 */
export class PassContext implements AttemptContext {
  readonly attempt: number;
  readonly deadline: number;
  readonly #parent: ExecuteOptions;

  constructor(parent: ExecuteOptions, attempt: number, deadline: number) {
    this.#parent = parent;
    this.attempt = attempt;
    this.deadline = deadline;
  }

  get signal(): AbortSignal | undefined {
    return this.#parent.signal;
  }
}

/** The context for a policy that passes calls through: the options themselves when they are one. */
export function contextOf(options: ExecuteOptions | undefined): AttemptContext {
  if (options === undefined) return ROOT_CONTEXT;
  const { attempt, deadline } = options;
  // An outer policy's context (attempt and deadline set) is passed on as it is: no allocation.
  if (attempt !== undefined && deadline !== undefined) return options as AttemptContext;
  return new PassContext(options, attempt ?? 0, deadline ?? Number.POSITIVE_INFINITY);
}

/**
 * A context whose signal the policy can abort (timeout, hedge). The AbortController, and the
 * listener on the parent's signal, are created only when `signal` is first read: most functions
 * never read it, and a controller costs microseconds.
 */
export class ControlledContext implements AttemptContext {
  readonly attempt: number;
  readonly deadline: number;
  readonly #parent: ExecuteOptions | undefined;
  #controller: AbortController | undefined;
  #linked: AbortSignal | undefined;
  #aborted = false;
  #reason: unknown;
  #finished = false;

  constructor(parent: ExecuteOptions | undefined, attempt: number, deadline: number) {
    this.#parent = parent;
    this.attempt = attempt;
    this.deadline = deadline;
  }

  get signal(): AbortSignal {
    let controller = this.#controller;
    if (controller === undefined) {
      controller = new AbortController();
      this.#controller = controller;
      if (this.#aborted) {
        controller.abort(this.#reason);
      } else {
        const parent = this.#parent?.signal;
        if (parent?.aborted === true) {
          this.abort(parent.reason);
        } else if (parent !== undefined && !this.#finished) {
          parent.addEventListener("abort", this);
          this.#linked = parent;
        }
      }
    }
    return controller.signal;
  }

  /** True once the policy aborted this attempt (or the parent did, if the signal was read). */
  get aborted(): boolean {
    return this.#aborted;
  }

  /** The parent's signal fired: pass it on. */
  handleEvent(): void {
    const parent = this.#linked;
    this.#linked = undefined;
    this.abort(parent?.reason);
  }

  /** Aborts this attempt's signal (now, or when first read) with `reason`. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#unlink();
    this.#controller?.abort(reason);
  }

  /** The attempt is over: stop listening to the parent (a long-lived caller signal must not leak). */
  finish(): void {
    this.#finished = true;
    this.#unlink();
  }

  #unlink(): void {
    const linked = this.#linked;
    if (linked !== undefined) {
      this.#linked = undefined;
      linked.removeEventListener("abort", this);
    }
  }
}
