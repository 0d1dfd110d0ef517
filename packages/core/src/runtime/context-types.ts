import type { Env } from "../env/index.ts";
import type { HedgePolicy, RetryPolicy } from "../policies/index.ts";
import type { CallerInfo } from "../wire/index.ts";
import type { Logger } from "./logger.ts";
import type {
  ActionName,
  AnyService,
  EventDefinition,
  InputOf,
  OutputOf,
  PayloadOf,
} from "./service.ts";

/** How a call picks among a service's endpoints. */
export type BalancerName = "p2c" | "round-robin" | "consistent-hash" | "prefer-local";

/** Per-call options. */
export interface CallOptions {
  /** Time budget for this call in ms (default: the node's `defaultTimeoutMs`); capped by the caller's own deadline. */
  readonly timeoutMs?: number;
  /** Cancels the call; the callee's `ctx.signal` fires too. */
  readonly signal?: AbortSignal;
  /** Deduplication key for the callee; travels with the request. */
  readonly idempotencyKey?: string;
  /** String metadata for the callee. */
  readonly meta?: Readonly<Record<string, string>>;
  /** Balancing strategy for this call (default: the node's). */
  readonly balancer?: BalancerName;
  /** Key for `consistent-hash`: the same key reaches the same node while membership is stable. */
  readonly hashKey?: string;
  /** Weighted version routing, e.g. `{ 1: 95, 2: 5 }` for a 5 % canary of version 2. */
  readonly versions?: Readonly<Record<number, number>>;
  /**
   * Retries of this call (default: the node's `retry`; `false` for none). Each retry goes to
   * another endpoint when there is one, only while the deadline allows, and only for an
   * idempotent action or an error that says the request was not processed.
   */
  readonly retry?: RetryPolicy | false;
  /**
   * Hedging for an idempotent action: when the call is still running after the policy's delay
   * (fixed, or a latency percentile), a parallel attempt goes to another endpoint, up to
   * `maxHedges`; the first success wins and the others are cancelled.
   */
  readonly hedge?: HedgePolicy;
}

/** What every handler can use to reach the rest of the system. */
export interface Caller {
  /** Calls `action` of `service`; types come from the service definition. */
  call<S extends AnyService, A extends ActionName<S>>(
    service: S,
    action: A,
    input: InputOf<S, A>,
    options?: CallOptions,
  ): Promise<OutputOf<S, A>>;
  /** A typed client: one method per action of `service`. */
  client<S extends AnyService>(service: S, defaults?: CallOptions): Client<S>;
  /** Delivers the event to one node of each subscribing service. */
  emit<E extends EventDefinition>(event: E, payload: PayloadOf<E>): void;
  /** Delivers the event to every subscriber on every node. */
  broadcast<E extends EventDefinition>(event: E, payload: PayloadOf<E>): void;
}

/** A typed client for service `S`. */
export type Client<S extends AnyService> = {
  readonly [A in ActionName<S>]: (
    input: InputOf<S, A>,
    options?: CallOptions,
  ) => Promise<OutputOf<S, A>>;
};

/** What an action handler receives besides its input. */
export interface Context extends Caller {
  readonly node: string;
  readonly service: string;
  readonly action: string;
  readonly requestId: string;
  /** Who called: node and service, if the call came from a handler. */
  readonly caller: CallerInfo | undefined;
  readonly idempotencyKey: string | undefined;
  readonly meta: Readonly<Record<string, string>>;
  /** W3C `traceparent` of the caller, when tracing is on. */
  readonly traceContext: string | undefined;
  /** W3C `tracestate` of the caller, when it sent one with its `traceparent`. */
  readonly traceState: string | undefined;
  /** Fires when the caller cancels, the deadline passes, or the node stops. Its reason is a KeelError. */
  readonly signal: AbortSignal;
  /** Absolute deadline on this node's monotonic clock (`env.clock.now()`). */
  readonly deadline: number;
  /** Milliseconds left before the deadline (never negative). */
  remainingMs(): number;
  readonly env: Env;
  readonly log: Logger;
}

/** What an event handler receives besides the payload. */
export interface EventContext extends Caller {
  readonly node: string;
  readonly service: string;
  readonly event: string;
  /** The node that emitted the event. */
  readonly from: string;
  readonly traceContext: string | undefined;
  readonly traceState: string | undefined;
  readonly env: Env;
  readonly log: Logger;
}
