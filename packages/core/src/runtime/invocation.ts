import type { Env } from "../env/index.ts";
import type { KeelError } from "../errors/index.ts";
import type { ActionMeter } from "../observability/keel-metrics.ts";
import { type OtelContext, type Span, traceIdOf } from "../observability/tracing.ts";
import type { AdaptivePermit, BulkheadPolicy } from "../policies/index.ts";
import type { Scheduled } from "../policies/timer-queue.ts";
import type { CallerInfo } from "../wire/index.ts";
import type { CallOptions, Client, Context, EventContext } from "./context-types.ts";
import { type Logger, silentLogger } from "./logger.ts";
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
  // `declare`d fields set in the constructor (see Scope): an Invocation is built once per call.
  /** This context's span (server or consumer) when tracing is on: the parent of what it starts. */
  declare span: Span | undefined;
  /** The OpenTelemetry context the handler runs in (with `span` active). */
  declare otelContext: OtelContext | undefined;
  declare protected readonly rt: RuntimeHooks;
  declare private logger: Logger | undefined;

  constructor(rt: RuntimeHooks) {
    super();
    this.span = undefined;
    this.otelContext = undefined;
    this.rt = rt;
    this.logger = undefined;
  }

  /** The invocation whose deadline and cancellation bind what this context starts. */
  protected abstract get parentCall(): Invocation | undefined;

  /** The fields of this context's log lines (besides the node's). */
  protected abstract logBindings(): Record<string, unknown>;

  get node(): string {
    return this.rt.id;
  }

  get env(): Env {
    return this.rt.env;
  }

  /** The node's logger, with this context's module, service, trace and span ids bound (made on first use). */
  get log(): Logger {
    if (this.logger === undefined) {
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
      this.logger = this.rt.log.child(bindings);
    }
    return this.logger;
  }

  abstract readonly traceContext: string | undefined;
  abstract readonly traceState: string | undefined;

  call<S extends AnyService, A extends ActionName<S>>(
    service: S,
    action: A,
    input: InputOf<S, A>,
    options?: CallOptions,
  ): Promise<OutputOf<S, A>> {
    return this.rt.invoke(service, action, input, options, this.parentCall, this.span) as Promise<
      OutputOf<S, A>
    >;
  }

  client<S extends AnyService>(service: S, defaults?: CallOptions): Client<S> {
    return this.rt.client(service, defaults, this.parentCall, this.span);
  }

  emit<E extends EventDefinition>(event: E, payload: PayloadOf<E>): void {
    this.rt.emitEvent(event, payload, "emit", this.parentCall, this.span);
  }

  broadcast<E extends EventDefinition>(event: E, payload: PayloadOf<E>): void {
    this.rt.emitEvent(event, payload, "broadcast", this.parentCall, this.span);
  }
}

/**
 * What a request carries for metrics, action counters and its caller's span: made only when one
 * of them is on, so a node with none of them on builds, sets and checks none of it per call.
 */
export class Observed {
  /** This request's server-side meter and when it arrived (metrics on). */
  serverMeter: ActionMeter | undefined = undefined;
  servedAt = 0;
  /** A local call's caller-side meter (begun by the caller) and when the call was made. */
  clientMeter: ActionMeter | undefined = undefined;
  calledAt = 0;
  /** The action's request counters (`KeelNode.actionStats`), and when counting began. */
  actionStats: ActionStatsRecord | undefined = undefined;
  countedAt = 0;
  /** A same-node call's CLIENT span (tracing on), ended with the request. */
  clientSpan: Span | undefined = undefined;
}

/**
 * One handled request: the handler's Context, the server's in-flight record and a deadline entry
 * in one object, so the hot path allocates little. A local call that completes synchronously
 * never reads the clock, never gets a request id string and is never registered anywhere.
 */
export class Invocation extends CallerBase implements Context, Scheduled {
  // `declare`d fields set in the constructor (see Scope): this object is built once per call.
  /** Position in the node's deadline queue; -1 when not queued. */
  declare slot: number;
  /** True once the outcome was delivered (reply sent, local promise settled, or stored below). */
  declare settled: boolean;
  /** Registered as in flight: tracked for drain, deadline, cancellation and balancer stats. */
  declare registered: boolean;
  /** A synchronous outcome, for the local caller to pick up when no promise was made. */
  declare ok: boolean;
  declare result: unknown;
  /** Local calls: settles the caller's promise once the call went asynchronous. */
  declare resolveLocal: ((value: unknown) => void) | undefined;
  declare rejectLocal: ((err: KeelError) => void) | undefined;
  /** Local calls: the endpoint whose stats this call updates, and when it went asynchronous. */
  declare endpoint: Endpoint | undefined;
  /** Record latency for the balancer (only worth a clock read when it has a choice). */
  declare measure: boolean;
  declare startedAt: number;
  /** Local calls: what cancels this call once it is registered. */
  declare callerSignal: AbortSignal | undefined;
  declare upstream: Invocation | undefined;
  /** Undoes links to the caller's signal or parent scope. */
  declare unlink: (() => void) | undefined;
  /** Server-side limits this request holds a slot of, given back when it finishes. */
  declare bulkhead: BulkheadPolicy | undefined;
  declare adaptivePermit: AdaptivePermit | undefined;
  /** Metrics, action counters and caller's span of this request, when any is on (see Observed). */
  declare observed: Observed | undefined;
  /** Neighbours in the node's list of in-flight invocations. */
  declare prevServing: Invocation | undefined;
  declare nextServing: Invocation | undefined;

  declare readonly service: string;
  declare readonly action: string;
  declare private id: string | number;
  declare private fixedDeadline: number;
  declare private readonly budget: number;
  declare private readonly cap: number;
  declare readonly caller: CallerInfo | undefined;
  declare readonly idempotencyKey: string | undefined;
  declare readonly meta: Readonly<Record<string, string>>;
  declare readonly traceContext: string | undefined;
  declare readonly traceState: string | undefined;
  /** The calling node, for requests that came over the transport. */
  declare readonly replyTo: string | undefined;

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
    traceState: string | undefined,
    replyTo: string | undefined,
  ) {
    super(rt);
    this.slot = -1;
    this.settled = false;
    this.registered = false;
    this.ok = false;
    this.result = undefined;
    this.resolveLocal = undefined;
    this.rejectLocal = undefined;
    this.endpoint = undefined;
    this.measure = false;
    this.startedAt = 0;
    this.callerSignal = undefined;
    this.upstream = undefined;
    this.unlink = undefined;
    this.bulkhead = undefined;
    this.adaptivePermit = undefined;
    this.observed = undefined;
    this.prevServing = undefined;
    this.nextServing = undefined;
    this.service = service;
    this.action = action;
    this.id = id;
    // NaN: fixed on first need as min(cap, now + budget).
    this.fixedDeadline = deadline;
    this.budget = budget;
    this.cap = cap;
    this.caller = caller;
    this.idempotencyKey = idempotencyKey;
    this.meta = meta ?? EMPTY_META;
    this.traceContext = traceContext;
    this.traceState = traceState;
    this.replyTo = replyTo;
  }

  get requestId(): string {
    const id = this.id;
    if (typeof id === "string") return id;
    const text = String(id);
    this.id = text;
    return text;
  }

  get deadline(): number {
    const d = this.fixedDeadline;
    return Number.isNaN(d) ? this.fixDeadline(this.rt.env.clock.now()) : d;
  }

  /** Fixes a lazy deadline as `min(cap, now + budget)`; returns it. */
  fixDeadline(now: number): number {
    if (Number.isNaN(this.fixedDeadline))
      this.fixedDeadline = Math.min(this.cap, now + this.budget);
    return this.fixedDeadline;
  }

  protected get parentCall(): Invocation {
    return this;
  }

  protected logBindings(): Record<string, unknown> {
    return { module: this.service, service: this.service, action: this.action };
  }

  remainingMs(): number {
    return Math.max(0, this.deadline - this.rt.env.clock.now());
  }

  /** The deadline, as the deadline queue reads it. */
  get at(): number {
    return this.deadline;
  }

  fire(): void {
    this.rt.expired(this);
  }
}

/** The context of one event delivery: calls it makes start fresh, with no parent deadline. */
export class EventInvocation extends CallerBase implements EventContext {
  declare readonly service: string;
  declare readonly event: string;
  declare readonly from: string;
  declare readonly traceContext: string | undefined;
  declare readonly traceState: string | undefined;

  constructor(
    rt: RuntimeHooks,
    service: string,
    event: string,
    from: string,
    traceContext: string | undefined,
    traceState: string | undefined,
  ) {
    super(rt);
    this.service = service;
    this.event = event;
    this.from = from;
    this.traceContext = traceContext;
    this.traceState = traceState;
  }

  protected get parentCall(): undefined {
    return undefined;
  }

  protected logBindings(): Record<string, unknown> {
    return { module: this.service, service: this.service, event: this.event };
  }
}

/** Throws: the shape anchors below never run anything. */
const inert = (): never => {
  throw new Error("a shape anchor is never used");
};

/** Runtime hooks for the shape anchors: every method throws. */
const ANCHOR_HOOKS: RuntimeHooks = {
  id: "",
  get env(): Env {
    return inert();
  },
  log: silentLogger,
  invoke: inert,
  client: inert,
  emitEvent: inert,
  expired: inert,
};

/**
 * One instance of each context class, alive for the life of the process. V8 sizes a class's
 * objects by watching its first few constructions ("slack tracking") over the tree of shapes they
 * went through; a full GC in that window with no instance alive prunes that tree, and V8 then
 * concludes the objects need no in-object fields at all. An Invocation (about 40 fields, some
 * private) then lands in dictionary mode and every call costs ~5 µs instead of ~0.3 µs — what a
 * node saw after a major GC early in its life (the core bench's gc() before each measurement).
 * A live instance keeps the full shape in the tree whenever the tracking ends.
 */
export const SHAPE_ANCHORS: readonly object[] = [
  new Invocation(
    ANCHOR_HOOKS,
    "",
    "",
    0,
    Number.NaN,
    0,
    Number.POSITIVE_INFINITY,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ),
  new EventInvocation(ANCHOR_HOOKS, "", "", "", undefined, undefined),
];
