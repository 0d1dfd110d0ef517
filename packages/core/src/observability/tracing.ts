import type * as OtelApi from "@opentelemetry/api";
import type {
  Attributes,
  HrTime,
  Context as OtelContext,
  Span,
  SpanContext,
  SpanKind,
  SpanStatusCode,
  Tracer,
  TracerProvider,
} from "@opentelemetry/api";
import type { Clock } from "../env/index.ts";
import { isKeelError } from "../errors/index.ts";
import { lazyPeer } from "../peer.ts";

/**
 * The OpenTelemetry API, loaded when tracing turns on, not with this module: a node that does not
 * trace never needs it (about 1 MB of an idle node's memory, and its start-up garbage).
 */
const api = lazyPeer<typeof OtelApi>(
  "@opentelemetry/api",
  "@keel/core needs its peer dependency @opentelemetry/api: npm install @opentelemetry/api",
);

/**
 * Where the API keeps what is registered globally (the tracer provider, the context manager): one
 * object per major version, made by the first registration. While it does not exist, no SDK can be
 * registered, and tracing is off without loading the API.
 */
const OTEL_GLOBAL = Symbol.for("opentelemetry.js.api.1");

// The API's enum values, fixed by the OpenTelemetry specification, without loading it.
const INTERNAL = 0 as SpanKind.INTERNAL;
const SERVER = 1 as SpanKind.SERVER;
const CLIENT = 2 as SpanKind.CLIENT;
const PRODUCER = 3 as SpanKind.PRODUCER;
const CONSUMER = 4 as SpanKind.CONSUMER;
const STATUS_ERROR = 2 as SpanStatusCode.ERROR;

/** The instrumentation scope of Keel's spans. */
export const TRACER_NAME = "@keel/core";
const TRACER_VERSION = "0.1.0";

/** A span name and attributes, kept for the calls of one action (the SDK copies attributes). */
export class RpcSpanShape {
  readonly name: string;
  readonly attributes: Attributes;
  constructor(name: string, attributes: Attributes) {
    this.name = name;
    this.attributes = attributes;
  }
}

/**
 * How a call that only the calling node can serve is traced: `one` INTERNAL span, or a CLIENT
 * span and a SERVER child, as a call to another node is.
 */
export type LocalCallSpans = "one" | "client-server";

/** The global proxy provider's way to tell whether an SDK was registered behind it. */
interface Delegating {
  getDelegateTracer(name: string, version?: string): Tracer | undefined;
}

/**
 * One node's tracing: its tracer (or none while tracing is off) and span timestamps on the
 * node's Env clock, so spans on virtual time are deterministic.
 *
 * Tracing is off when the provider is the global one and no SDK is registered behind it: then
 * `tracer()` returns undefined and the runtime creates no span and allocates nothing. Once an SDK
 * is registered globally, the next call picks it up.
 */
export class Tracing {
  readonly node: string;
  readonly #clock: Clock;
  /** Wall-clock milliseconds at the clock's origin: span times are `origin + clock.now()`. */
  readonly #origin: number;
  #proxy: Delegating | undefined;
  #tracer: Tracer | undefined;
  /** The global provider, while the API has not seen a registration (see OTEL_GLOBAL). */
  #awaitingGlobal = false;

  /** How a call that only this node can serve is traced (see `NodeOptions.localCallSpans`). */
  readonly localCallSpans: LocalCallSpans;

  constructor(
    node: string,
    provider: TracerProvider | undefined,
    clock: Clock,
    localCallSpans: LocalCallSpans = "one",
  ) {
    this.node = node;
    this.localCallSpans = localCallSpans;
    this.#clock = clock;
    this.#origin = clock.wallNow() - clock.now();
    if (provider !== undefined) this.#use(provider);
    else if ((globalThis as Record<symbol, unknown>)[OTEL_GLOBAL] === undefined) {
      this.#awaitingGlobal = true;
    } else this.#use(api().trace.getTracerProvider());
  }

  #use(p: TracerProvider): void {
    api(); // loaded now, so that the first span does not wait for it
    if (typeof (p as Partial<Delegating>).getDelegateTracer === "function") {
      this.#proxy = p as TracerProvider & Delegating;
    } else {
      this.#tracer = p.getTracer(TRACER_NAME, TRACER_VERSION);
    }
  }

  /** The tracer, or undefined while tracing is off. */
  tracer(): Tracer | undefined {
    const t = this.#tracer;
    if (t !== undefined) return t;
    if (this.#proxy === undefined) {
      if (!this.#awaitingGlobal) return undefined;
      if ((globalThis as Record<symbol, unknown>)[OTEL_GLOBAL] === undefined) return undefined;
      this.#awaitingGlobal = false;
      this.#use(api().trace.getTracerProvider());
      if (this.#tracer !== undefined) return this.#tracer;
    }
    const delegate = (this.#proxy as Delegating).getDelegateTracer(TRACER_NAME, TRACER_VERSION);
    if (delegate !== undefined) this.#tracer = delegate;
    return delegate;
  }

  /** Now, in wall-clock milliseconds with the monotonic clock's resolution. */
  time(): number {
    return this.#origin + this.#clock.now();
  }

  /**
   * Now, as the `[seconds, nanoseconds]` span times are kept in. Given a number, the SDK reads
   * its own clock once more to tell an epoch time from a performance one, then converts it.
   */
  hrTime(): HrTime {
    const ms = this.#origin + this.#clock.now();
    const s = Math.floor(ms / 1000);
    const ns = Math.round((ms - s * 1000) * 1e6);
    return ns < 1e9 ? [s, ns] : [s + 1, ns - 1e9];
  }

  /** A CLIENT span for a call of `service@version.action`. */
  startCall(
    tracer: Tracer,
    service: string,
    version: number,
    action: string,
    parent: OtelContext,
  ): Span {
    return this.#rpcSpan(tracer, CLIENT, service, version, action, undefined, parent);
  }

  /** The name and attributes of the spans of calls of `service@version.action`, made once. */
  rpcShape(service: string, version: number, action: string): RpcSpanShape {
    return new RpcSpanShape(`${service}/${action}`, this.#rpcAttributes(service, version, action));
  }

  /**
   * The one INTERNAL span of a call that only this node serves: no network is crossed, so the
   * call and its request are one operation, with the same RPC attributes as a CLIENT span.
   */
  startLocal(tracer: Tracer, shape: RpcSpanShape, parent: OtelContext): Span {
    return tracer.startSpan(
      shape.name,
      { kind: INTERNAL, startTime: this.hrTime(), attributes: shape.attributes },
      parent,
    );
  }

  /** A SERVER span for a request `caller` (a node id, if known) sent to this node. */
  startServe(
    tracer: Tracer,
    service: string,
    version: number,
    action: string,
    caller: string | undefined,
    parent: OtelContext,
  ): Span {
    return this.#rpcSpan(tracer, SERVER, service, version, action, caller, parent);
  }

  #rpcSpan(
    tracer: Tracer,
    kind: SpanKind,
    service: string,
    version: number,
    action: string,
    caller: string | undefined,
    parent: OtelContext,
  ): Span {
    const attributes = this.#rpcAttributes(service, version, action);
    if (caller !== undefined) attributes["client.address"] = caller;
    return tracer.startSpan(
      `${service}/${action}`,
      { kind, startTime: this.hrTime(), attributes },
      parent,
    );
  }

  #rpcAttributes(service: string, version: number, action: string): Attributes {
    // Each attribute costs the SDK ~0.1 µs: only what is not implied (version 1 is the default).
    const attributes: Attributes = {
      "rpc.system": "keel",
      "rpc.service": service,
      "rpc.method": action,
      "keel.node": this.node,
    };
    if (version !== 1) attributes["keel.service.version"] = version;
    return attributes;
  }

  /** A PRODUCER span for one `emit` or `broadcast` of `event`. */
  startPublish(
    tracer: Tracer,
    event: string,
    mode: "emit" | "broadcast",
    parent: OtelContext,
  ): Span {
    return tracer.startSpan(
      `send ${event}`,
      {
        kind: PRODUCER,
        startTime: this.hrTime(),
        attributes: {
          "messaging.system": "keel",
          "messaging.operation.type": "send",
          "messaging.operation.name": mode,
          "messaging.destination.name": event,
          "keel.node": this.node,
        },
      },
      parent,
    );
  }

  /**
   * A CONSUMER span for one delivery of `event` to `service`: a child of the producer's span
   * (from `tc`) and linked to it, as OpenTelemetry's messaging conventions ask.
   */
  startProcess(
    tracer: Tracer,
    event: string,
    service: string,
    from: string,
    tc: string | undefined,
    ts: string | undefined,
  ): Span {
    const producer = remoteSpanContext(tc, ts);
    return tracer.startSpan(
      `process ${event}`,
      {
        kind: CONSUMER,
        startTime: this.hrTime(),
        attributes: {
          "messaging.system": "keel",
          "messaging.operation.type": "process",
          "messaging.destination.name": event,
          "messaging.consumer.group.name": service,
          "keel.node": this.node,
          "keel.peer": from,
        },
        links: producer === undefined ? [] : [{ context: producer }],
      },
      underRemote(producer),
    );
  }

  /** Ends a span: unset status, or ERROR with the KeelError code (`INTERNAL` for anything else). */
  end(span: Span, err?: unknown): void {
    if (err !== undefined) {
      const code = isKeelError(err) ? err.code : "INTERNAL";
      const message = err instanceof Error ? err.message : String(err);
      span.setAttribute("error.type", code);
      span.setStatus({ code: STATUS_ERROR, message: `${code}: ${message}` });
    }
    span.end(this.hrTime());
  }

  /** Adds a span event at the node's time. */
  event(span: Span, name: string, attributes: Attributes): void {
    span.addEvent(name, attributes, this.hrTime());
  }
}

/** The key the OpenTelemetry API keeps a context's span under (keys are `Symbol.for` names). */
const SPAN_KEY = Symbol.for("OpenTelemetry Context Key SPAN");

/**
 * A context that is `parent` with one value set. The API's own contexts copy their whole map on
 * each `setValue`; this one links to its parent instead, so setting the span of every request
 * costs one small object. Any Context implementation is valid for the API and its managers.
 */
class LinkedContext implements OtelContext {
  readonly #parent: OtelContext;
  readonly #key: symbol;
  readonly #value: unknown;

  constructor(parent: OtelContext, key: symbol, value: unknown) {
    this.#parent = parent;
    this.#key = key;
    this.#value = value;
  }

  getValue(key: symbol): unknown {
    return key === this.#key ? this.#value : this.#parent.getValue(key);
  }

  setValue(key: symbol, value: unknown): OtelContext {
    return new LinkedContext(this, key, value);
  }

  deleteValue(key: symbol): OtelContext {
    return new LinkedContext(this, key, undefined);
  }
}

/** `ctx` with `span` as its active span (what `trace.setSpan` does, without copying `ctx`). */
export function withSpan(ctx: OtelContext, span: Span): OtelContext {
  return new LinkedContext(ctx, SPAN_KEY, span);
}

/**
 * The context a new span of a call or an emit starts in: under the span of the handler that
 * makes it (carried explicitly, so no context manager is needed), else under the caller's
 * `traceparent`, else under whatever span is active.
 */
export function parentContext(
  span: Span | undefined,
  tc: string | undefined,
  ts: string | undefined,
): OtelContext {
  const base = activeContext();
  if (span !== undefined) return withSpan(base, span);
  const remote = remoteSpanContext(tc, ts);
  return remote === undefined ? base : api().trace.setSpanContext(base, remote);
}

/**
 * The context a request from the wire is served in: under the caller's `traceparent` (with its
 * `tracestate`), if any.
 */
export function remoteContext(tc: string | undefined, ts: string | undefined): OtelContext {
  return underRemote(remoteSpanContext(tc, ts));
}

/** A fresh context under a remote span context, if any. */
function underRemote(remote: SpanContext | undefined): OtelContext {
  const { ROOT_CONTEXT, trace } = api();
  return remote === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, remote);
}

/** The caller's span context from `traceparent` and `tracestate` (tracing is on). */
function remoteSpanContext(
  tc: string | undefined,
  ts: string | undefined,
): SpanContext | undefined {
  const sc = tc === undefined ? undefined : parseTraceparent(tc);
  if (sc === undefined || ts === undefined || ts === "") return sc;
  return { ...sc, traceState: api().createTraceState(ts) };
}

/**
 * The W3C `tracestate` to send with a span context's `traceparent`: undefined when empty, and at
 * most 512 characters, whole entries dropped from the end (the oldest) to fit, as W3C asks.
 */
export function tracestate(sc: SpanContext): string | undefined {
  let ts = sc.traceState?.serialize();
  if (ts === undefined || ts === "") return undefined;
  while (ts.length > MAX_TRACESTATE) {
    const cut = ts.lastIndexOf(",");
    if (cut < 0) return undefined;
    ts = ts.slice(0, cut);
  }
  return ts;
}

/** The longest `tracestate` Keel sends (W3C: propagate at least 512 characters). */
const MAX_TRACESTATE = 512;

/** The active context (tracing is on, so the API is loaded). */
export function activeContext(): OtelContext {
  return api().context.active();
}

/** A W3C `traceparent` header value for a span context (version 00). */
export function traceparent(sc: SpanContext): string {
  const flags = sc.traceFlags & 0xff;
  return `00-${sc.traceId}-${sc.spanId}-${flags < 16 ? "0" : ""}${flags.toString(16)}`;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;
/** All-zero ids are invalid (the API's `isValidTraceId`, `isValidSpanId`; the pattern checks the rest). */
const INVALID_TRACE_ID = "0".repeat(32);
const INVALID_SPAN_ID = "0".repeat(16);

/** Parses a W3C `traceparent`; undefined when it is malformed (the trace then starts afresh). */
export function parseTraceparent(tc: string): SpanContext | undefined {
  const m = TRACEPARENT.exec(tc);
  if (m === null) return undefined;
  const version = m[1] ?? "";
  const traceId = m[2] ?? "";
  const spanId = m[3] ?? "";
  const flags = m[4] ?? "";
  // Version ff is invalid; version 00 must have nothing after the flags.
  if (version === "ff" || (version === "00" && tc.length !== 55)) return undefined;
  if (traceId === INVALID_TRACE_ID || spanId === INVALID_SPAN_ID) return undefined;
  return { traceId, spanId, traceFlags: Number.parseInt(flags, 16), isRemote: true };
}

/** The trace id of a `traceparent`, without parsing it fully (for log lines). */
export function traceIdOf(tc: string): string | undefined {
  return parseTraceparent(tc)?.traceId;
}

/** `trace_id` and `span_id` of a span, for a log line (nothing without a span). */
export function traceFields(span: Span | undefined): { trace_id?: string; span_id?: string } {
  if (span === undefined) return {};
  const sc = span.spanContext();
  return { trace_id: sc.traceId, span_id: sc.spanId };
}

/** The span events of resilience decisions: `keel.<kind>`, fields as `keel.<snake_case>`. */
export function decisionAttributes(decision: object): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(decision)) {
    if (k === "kind" || v === undefined) continue;
    const name =
      k === "code" ? "error.type" : `keel.${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
    out[name] = v as string | number;
  }
  return out;
}

/** Runs `fn(arg, ctx)` with `span`'s context active, so user code and other instrumentations see it. */
export function runIn<A, C, R>(ctx: OtelContext, fn: (arg: A, c: C) => R, arg: A, c: C): R {
  return api().context.with(ctx, fn, undefined, arg, c);
}

export type { OtelContext, Span, TracerProvider };
