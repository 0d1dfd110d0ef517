import { KeelError } from "../errors/index.ts";

/**
 * Cheap cancellation: an AbortController is created only when someone reads `signal`
 * (creating and aborting one costs microseconds on the hot path).
 */
export class Scope {
  // Fields are `declare`d and set in the constructor, not class fields: V8 builds objects of a
  // class chain faster from constructor assignments than from class-field initializers, and
  // Invocation (a Scope) is built once per call.
  declare reason: KeelError | undefined;
  declare private controller: AbortController | undefined;
  declare private listeners: Array<(reason: KeelError) => void> | undefined;

  constructor() {
    this.reason = undefined;
    this.controller = undefined;
    this.listeners = undefined;
  }

  get aborted(): boolean {
    return this.reason !== undefined;
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.reason !== undefined) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** Aborts once; later calls do nothing. */
  abort(reason: KeelError): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    this.controller?.abort(reason);
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners !== undefined) for (const l of listeners) l(reason);
  }

  /** Runs `fn` on abort (at once if already aborted). Returns a function that unregisters it. */
  onAbort(fn: (reason: KeelError) => void): () => void {
    if (this.reason !== undefined) {
      fn(this.reason);
      return () => {};
    }
    this.listeners ??= [];
    this.listeners.push(fn);
    return () => {
      const list = this.listeners;
      if (list === undefined) return;
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }
}

/** The error a handler sees when its caller goes away. */
export function cancelled(message = "the caller cancelled the call"): KeelError {
  return new KeelError("CANCELLED", message, { noStack: true });
}

/** The error for a spent deadline. */
export function deadlineExceeded(message = "deadline exceeded"): KeelError {
  return new KeelError("DEADLINE_EXCEEDED", message, { noStack: true });
}
