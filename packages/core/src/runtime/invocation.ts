import type { Env } from "../env/index.ts";
import type { KeelError } from "../errors/index.ts";
import type { ActionMeter } from "../observability/keel-metrics.ts";
import { type OtelContext, type Span, traceIdOf } from "../observability/tracing.ts";
import type { AdaptivePermit, BulkheadPolicy } from "../policies/index.ts";
import type { Scheduled } from "../policies/timer-queue.ts";
import type { CallerInfo } from "../wire/index.ts";
import type { CallOptions, Client, Context, EventContext } from "./context-types.ts";
import type { Logger } from "./logger.ts";
import type { ActionStatsRecord } from "./node-shared.ts";
import type { Endpoint } from "./registry.ts";
import { Scope } from "./scope.ts";
import type {
  ActionName,
  AnyService,
  EventDefinition,
  InputOf,
  OutputOf,
  PayloadOf,
} from "./service.ts";

/** The runtime services an invocation or event context delegates to (implemented by the node). */
export interface RuntimeHooks {
  readonly id: string;
  readonly env: Env;
  readonly log: Logger;
  invoke(
    service: AnyService,
    action: string,
    input: unknown,
    options: CallOptions | undefined,
    parent: Invocation | undefined,
    span: Span | undefined,
  ): Promise<unknown>;
  client<S extends AnyService>(
    service: S,
    defaults: CallOptions | undefined,
    parent: Invocation | undefined,
    span: Span | undefined,
  ): Client<S>;
  emitEvent(
    event: EventDefinition,
    payload: unknown,
    mode: "emit" | "broadcast",
    parent: Scope | undefined,
    span: Span | undefined,
  ): void;
  /** Called once when an invocation's deadline passes. */
  expired(inv: Invocation): void;
}

const EMPTY_META: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The Caller half of every context: calls, clients and events go through the node, with this
 * context as the parent of what it starts (so deadlines and cancellation flow downstream).
 */
abstract class CallerBase extends Scope {
  /** This context's span (server or consumer) when tracing is on: the parent of what it starts. */
  span: Span | undefined;
  /** The OpenTelemetry context the handler runs in (with `span` active). */
  otelContext: OtelContext | undefined;
  readonly #rt: RuntimeHooks;
  #log: Logger | undefined;

  constructor(rt: RuntimeHooks) {
    super();
    this.#rt = rt;
  }

  /** The invocation whose deadline and cancellation bind what this context starts. */
  protected abstract get parentCall(): Invocation | undefined;

  /** The fields of this context's log lines (besides the node's). */
  protected abstract logBindings(): Record<string, unknown>;

  get node(): string {
    return this.#rt.id;
  }

  get env(): Env {
    return this.#rt.env;
  }

  /** The node's logger, with this context's module, service, trace and span ids bound (made on first use). */
  get log(): Logger {
    if (this.#log === undefined) {
      const bindings = this.logBindings();
      const span = this.span;
      const tc = this.traceContext;
      if (span !== undefined) {
        const sc = span.spanContext();
        bindings["trace_id"] = sc.traceId;
        bindings["span_id"] = sc.spanId;
      } else if (tc !== undefined) {
        const traceId = traceIdOf(tc);
        if (traceId !== undefined) bindings["trace_id"] = traceId;
      }
      this.#log = this.#rt.log.child(bindings);
    }
    return this.#log;
  }

  abstract readonly traceContext: string | undefined;

  call<S extends AnyService, A extends ActionName<S>>(
    service: S,
    action: A,
    input: InputOf<S, A>,
    options?: CallOptions,
  ): Promise<OutputOf<S, A>> {
    return this.#rt.invoke(service, action, input, options, this.parentCall, this.span) as Promise<
      OutputOf<S, A>
    >;
  }

  client<S extends AnyService>(service: S, defaults?: CallOptions): Client<S> {
    return this.#rt.client(service, defaults, this.parentCall, this.span);
  }

  emit<E extends EventDefinition>(event: E, payload: PayloadOf<E>): void {
    this.#rt.emitEvent(event, payload, "emit", this.parentCall, this.span);
  }

  broadcast<E extends EventDefinition>(event: E, payload: PayloadOf<E>): void {
    this.#rt.emitEvent(event, payload, "broadcast", this.parentCall, this.span);
  }
}

/**
 * One handled request: the handler's Context, the server's in-flight record and a deadline entry
 * in one object, so the hot path allocates little. A local call that completes synchronously
 * never reads the clock, never gets a request id string and is never registered anywhere.
 */
export class Invocation extends CallerBase implements Context, Scheduled {
  /** Position in the node's deadline queue; -1 when not queued. */
  slot = -1;
  /** True once the outcome was delivered (reply sent, local promise settled, or stored below). */
  settled = false;
  /** Registered as in flight: tracked for drain, deadline, cancellation and balancer stats. */
  registered = false;
  /** A synchronous outcome, for the local caller to pick up when no promise was made. */
  ok = false;
  result: unknown;
  /** Local calls: settles the caller's promise once the call went asynchronous. */
  resolveLocal: ((value: unknown) => void) | undefined;
  rejectLocal: ((err: KeelError) => void) | undefined;
  /** Local calls: the endpoint whose stats this call updates, and when it went asynchronous. */
  endpoint: Endpoint | undefined;
  /** Record latency for the balancer (only worth a clock read when it has a choice). */
  measure = false;
  startedAt = 0;
  /** Local calls: what cancels this call once it is registered. */
  callerSignal: AbortSignal | undefined;
  upstream: Invocation | undefined;
  /** Undoes links to the caller's signal or parent scope. */
  unlink: (() => void) | undefined;
  /** Server-side limits this request holds a slot of, given back when it finishes. */
  bulkhead: BulkheadPolicy | undefined;
  adaptivePermit: AdaptivePermit | undefined;
  /**
   * Metrics, when the node records them: this request's server-side meter and when it arrived;
   * for a local call, also the caller's meter and when the call was made.
   */
  serverMeter: ActionMeter | undefined;
  servedAt = 0;
  clientMeter: ActionMeter | undefined;
  calledAt = 0;
  /** The action's request counters, when the node keeps them, and when counting began. */
  actionStats: ActionStatsRecord | undefined;
  countedAt = 0;
  /** Neighbours in the node's list of in-flight invocations. */
  prevServing: Invocation | undefined;
  nextServing: Invocation | undefined;

  readonly #rt: RuntimeHooks;
  readonly service: string;
  readonly action: string;
  #id: string | number;
  #deadline: number;
  readonly #budget: number;
  readonly #cap: number;
  readonly caller: CallerInfo | undefined;
  readonly idempotencyKey: string | undefined;
  readonly meta: Readonly<Record<string, string>>;
  readonly traceContext: string | undefined;
  /** The calling node, for requests that came over the transport. */
  readonly replyTo: string | undefined;

  constructor(
    rt: RuntimeHooks,
    service: string,
    action: string,
    id: string | number,
    deadline: number,
    budget: number,
    cap: number,
    caller: CallerInfo | undefined,
    idempotencyKey: string | undefined,
    meta: Readonly<Record<string, string>> | undefined,
    traceContext: string | undefined,
    replyTo: string | undefined,
  ) {
    super(rt);
    this.#rt = rt;
    this.service = service;
    this.action = action;
    this.#id = id;
    // NaN: fixed on first need as min(cap, now + budget).
    this.#deadline = deadline;
    this.#budget = budget;
    this.#cap = cap;
    this.caller = caller;
    this.idempotencyKey = idempotencyKey;
    this.meta = meta ?? EMPTY_META;
    this.traceContext = traceContext;
    this.replyTo = replyTo;
  }

  get requestId(): string {
    const id = this.#id;
    if (typeof id === "string") return id;
    const text = String(id);
    this.#id = text;
    return text;
  }

  get deadline(): number {
    const d = this.#deadline;
    return Number.isNaN(d) ? this.fixDeadline(this.#rt.env.clock.now()) : d;
  }

  /** Fixes a lazy deadline as `min(cap, now + budget)`; returns it. */
  fixDeadline(now: number): number {
    if (Number.isNaN(this.#deadline)) this.#deadline = Math.min(this.#cap, now + this.#budget);
    return this.#deadline;
  }

  protected get parentCall(): Invocation {
    return this;
  }

  protected logBindings(): Record<string, unknown> {
    return { module: this.service, service: this.service, action: this.action };
  }

  remainingMs(): number {
    return Math.max(0, this.deadline - this.#rt.env.clock.now());
  }

  /** The deadline, as the deadline queue reads it. */
  get at(): number {
    return this.deadline;
  }

  fire(): void {
    this.#rt.expired(this);
  }
}

/** The context of one event delivery: calls it makes start fresh, with no parent deadline. */
export class EventInvocation extends CallerBase implements EventContext {
  readonly service: string;
  readonly event: string;
  readonly from: string;
  readonly traceContext: string | undefined;

  constructor(
    rt: RuntimeHooks,
    service: string,
    event: string,
    from: string,
    traceContext: string | undefined,
  ) {
    super(rt);
    this.service = service;
    this.event = event;
    this.from = from;
    this.traceContext = traceContext;
  }

  protected get parentCall(): undefined {
    return undefined;
  }

  protected logBindings(): Record<string, unknown> {
    return { module: this.service, service: this.service, event: this.event };
  }
}
