import { hasCode } from "../errors/index.ts";
import { contextOf } from "./context.ts";
import { Emitter, type PolicyEvent } from "./event.ts";
import { checkFunction, checkOptions, configError } from "./internal.ts";
import type { ExecuteOptions, Policy, PolicyFn } from "./types.ts";

/** Options of `fallback`: a value, or a function of the error, used when the call fails. */
export type FallbackOptions<F> =
  | {
      readonly value: F;
      /** Which errors to replace (default: all but CANCELLED: a caller who left wants no value). */
      readonly on?: (error: unknown) => boolean;
    }
  | {
      readonly fn: (error: unknown) => F | Promise<F>;
      /** Which errors to replace (default: all but CANCELLED: a caller who left wants no value). */
      readonly on?: (error: unknown) => boolean;
    };

/** Emitted when the fallback replaces an error. */
export interface FallbackEvent {
  readonly error: unknown;
}

/** A fallback policy: `execute` resolves to the call's result or to the fallback's `F`. */
export interface FallbackPolicy<F> extends Policy<F> {
  readonly kind: "fallback";
  readonly onFallback: PolicyEvent<FallbackEvent>;
}

const notCancelled = (error: unknown): boolean => !hasCode(error, "CANCELLED");

/**
 * Replaces a failure with a value, or with what `fn(error)` returns (if that throws, its error is
 * the call's). The outermost policy of a pipeline, so that it sees every other policy's refusals.
 *
 * @example
 * const withDefault = fallback({ value: [] as Product[] });
 * const recommended = await pipeline(withDefault, retryPolicy).execute(() => reco.get(user));
 */
export function fallback<F>(options: FallbackOptions<F>): FallbackPolicy<F> {
  const name = "fallback";
  checkOptions(name, options);
  const hasValue = "value" in options;
  const hasFn = "fn" in options;
  if (hasValue === hasFn) throw configError(name, "give exactly one of value and fn");
  if (hasFn) {
    if (typeof options.fn !== "function") throw configError(name, "fn must be a function");
  }
  checkFunction(name, "on", options.on);
  return new Fallback(options);
}

class Fallback<F> implements FallbackPolicy<F> {
  readonly kind = "fallback";
  readonly #options: FallbackOptions<F>;
  readonly #on: (error: unknown) => boolean;
  readonly #fallbacks = new Emitter<FallbackEvent>();
  readonly onFallback = this.#fallbacks.event;

  constructor(options: FallbackOptions<F>) {
    this.#options = options;
    this.#on = options.on ?? notCancelled;
  }

  async execute<T>(fn: PolicyFn<T>, options?: ExecuteOptions): Promise<T | F> {
    try {
      return await fn(contextOf(options));
    } catch (error) {
      if (!this.#on(error)) throw error;
      if (this.#fallbacks.active) this.#fallbacks.emit({ error });
      const o = this.#options;
      return "value" in o ? o.value : await o.fn(error);
    }
  }
}
