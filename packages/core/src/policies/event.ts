/** What subscribing to a policy event returns: `dispose()` (or `using`) stops the listener. */
export interface EventDisposable {
  dispose(): void;
  [Symbol.dispose](): void;
}

/** A typed event: call it with a listener to subscribe. No string keys. */
export type PolicyEvent<T> = (listener: (value: T) => void) => EventDisposable;

/**
 * The emitting side of a PolicyEvent. Listeners are kept in a copy-on-write array, so emitting
 * iterates a stable list (a listener may dispose itself or others) and, with no listener, costs one
 * length check; callers guard payload construction with `active`.
 */
export class Emitter<T> {
  #listeners: ReadonlyArray<(value: T) => void> = [];

  /** Subscribes a listener; the returned handle unsubscribes it (idempotently). */
  readonly event: PolicyEvent<T> = (listener) => {
    this.#listeners = [...this.#listeners, listener];
    let live = true;
    const dispose = (): void => {
      if (!live) return;
      live = false;
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners = this.#listeners.toSpliced(i, 1);
    };
    return { dispose, [Symbol.dispose]: dispose };
  };

  /** True when at least one listener is subscribed: build the payload only then. */
  get active(): boolean {
    return this.#listeners.length !== 0;
  }

  /** Calls every listener; a throwing listener never breaks the policy that emits. */
  emit(value: T): void {
    const listeners = this.#listeners;
    for (let i = 0; i < listeners.length; i++) {
      try {
        listeners[i]!(value);
      } catch (error) {
        // The policy's state must stay consistent, yet a broken listener must not go unnoticed:
        // rethrow outside the policy, as an uncaught error of its own.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
