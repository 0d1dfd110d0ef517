import { isKeelError, KeelError } from "../errors/index.ts";
import type { ActionMeter } from "../observability/keel-metrics.ts";
import {
  activeContext,
  type OtelContext,
  remoteContext,
  runIn,
  type Span,
  traceFields,
  withSpan,
} from "../observability/tracing.ts";
import { type StandardSchemaV1, schemaError } from "../schema/index.ts";
import {
  encodeChecked,
  type RequestFrame,
  type ResponseFrame,
  WIRE_VERSION,
} from "../wire/index.ts";
import type { CallOptions } from "./context-types.ts";
import { Invocation, Observed } from "./invocation.ts";
import type { Logger } from "./logger.ts";
import type { Hosted, NodeShared } from "./node-shared.ts";
import { unavailable } from "./node-shared.ts";
import { type Endpoint, Registry } from "./registry.ts";
import { cancelled, deadlineExceeded } from "./scope.ts";
import type { AnyAction } from "./service.ts";

type Result = StandardSchemaV1.Result<unknown>;

/**
 * What a same-node request does with the span its caller passes: `own` it (the call's one
 * INTERNAL span, which the request ends), serve under a SERVER child and end the caller's
 * `client` span, or serve under a SERVER child of a `parent` it leaves alone (a hedge attempt).
 */
export type LocalSpanRole = "own" | "client" | "parent";

/** Callers whose (empty) request maps are kept before the empty ones are dropped. */
const MAX_IDLE_CALLERS = 1024;

/**
 * The serving half of a node: runs handlers for requests from the transport and for same-node
 * calls, checks schemas at the boundary, enforces deadlines and cancellation, and delivers each
 * outcome exactly once. A call is registered as in flight only once it goes asynchronous.
 */
export class Server {
  readonly #n: NodeShared;
  /** Requests in flight (remote ones, and local ones that went asynchronous). */
  #head: Invocation | undefined;
  #count = 0;
  /** Remote requests by caller node, then request id, for cancel frames. */
  readonly #remote = new Map<string, Map<string, Invocation>>();
  /** Hosted services by name, then version (what a request names, without building a key). */
  readonly #byName = new Map<string, Map<number, Hosted>>();
  #idle: (() => void) | undefined;
  readonly #log: Logger;

  constructor(shared: NodeShared) {
    this.#n = shared;
    this.#log = shared.log.child({ module: "keel.server" });
    for (const hosted of shared.hosted.values()) {
      const def = hosted.def;
      let byVersion = this.#byName.get(def.name);
      if (byVersion === undefined) {
        byVersion = new Map();
        this.#byName.set(def.name, byVersion);
      }
      byVersion.set(def.version, hosted);
    }
  }

  /** Requests in flight. */
  get inFlightCount(): number {
    return this.#count;
  }

  /** Resolves when nothing is in flight any more, or after `graceMs`. */
  whenIdle(graceMs: number): Promise<void> {
    if (this.#count === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timers = this.#n.env.timers;
      const timer = timers.schedule(() => {
        this.#idle = undefined;
        resolve();
      }, graceMs);
      this.#idle = () => {
        timers.cancel(timer);
        this.#idle = undefined;
        resolve();
      };
    });
  }

  /**
   * Ends every in-flight request with `err`: the handler's signal fires, local callers are
   * rejected, remote ones are told unless `silent` (a crashed process answers nobody).
   */
  interruptAll(err: KeelError, silent: boolean): void {
    const all: Invocation[] = [];
    for (let inv = this.#head; inv !== undefined; inv = inv.nextServing) all.push(inv);
    for (const inv of all) {
      inv.abort(err);
      this.#finish(inv, false, err, silent);
    }
  }

  /** Answers request `f` with an error, unserved. */
  #refuse(f: RequestFrame, err: KeelError): void {
    const n = this.#n;
    n.sendTo(f.from, {
      v: WIRE_VERSION,
      k: "res",
      id: f.id,
      from: n.id,
      ok: false,
      err: err.toWire(),
    });
  }

  /** A request from the wire, arrived at `now`. */
  onRequest(f: RequestFrame, now: number): void {
    const n = this.#n;
    if (n.state !== "ready") {
      const err = unavailable(`node '${n.id}' is ${n.state}`, { node: n.id, notProcessed: true });
      this.#refuse(f, err);
      return;
    }
    const hosted = this.#byName.get(f.svc)?.get(f.ver);
    if (hosted === undefined) {
      this.#refuse(
        f,
        unavailable(`node '${n.id}' does not host ${f.svc}@${f.ver}`, {
          node: n.id,
          notProcessed: true,
        }),
      );
      return;
    }
    const action = hosted.actions.get(f.act);
    if (action === undefined) {
      this.#refuse(
        f,
        new KeelError("NOT_FOUND", `${f.svc}@${f.ver} has no action '${f.act}'`, { noStack: true }),
      );
      return;
    }
    if (f.dl <= 0) {
      this.#refuse(f, deadlineExceeded(`no time left for ${f.svc}@${f.ver}.${f.act} on arrival`));
      return;
    }
    const budget = action.timeoutMs === undefined ? f.dl : Math.min(f.dl, action.timeoutMs);
    const inv = new Invocation(
      n.hooks,
      f.svc,
      f.act,
      f.id,
      now + budget,
      budget,
      Number.POSITIVE_INFINITY,
      f.caller,
      f.ik,
      f.meta,
      f.tc,
      f.ts,
      f.from,
    );
    const tracer = n.tracing.tracer();
    if (tracer !== undefined) this.#trace(inv, hosted, action, f.from, remoteContext(f.tc, f.ts));
    if (n.metrics !== undefined) this.#meter(inv, hosted, action, undefined, now, now);
    if (n.actionStats !== undefined) this.#countIn(inv, action, now);
    let fromCaller = this.#remote.get(f.from);
    if (fromCaller === undefined) {
      // Callers' maps stay (one per caller, reused); node ids come and go over a cluster's life,
      // so the empty ones go once there are many.
      if (this.#remote.size >= MAX_IDLE_CALLERS) {
        for (const [caller, m] of this.#remote) if (m.size === 0) this.#remote.delete(caller);
      }
      fromCaller = new Map();
      this.#remote.set(f.from, fromCaller);
    }
    fromCaller.set(f.id, inv);
    this.#register(inv, now);
    this.#admitThenServe(inv, hosted, action, f.p);
  }

  /** The caller gave up on request `id`: stop the handler, answer nobody. */
  onCancel(from: string, id: string): void {
    const inv = this.#remote.get(from)?.get(id);
    if (inv === undefined) return;
    const reason = cancelled();
    inv.abort(reason);
    this.#finish(inv, false, reason, true);
  }

  /**
   * The same-node fast path: no encoding and no transport, but the same validation, deadline and
   * cancellation. A call whose schemas and handler are synchronous completes here without a timer,
   * a clock read or a promise of its own; the first promise registers it as in flight. With
   * tracing on, `spanRole` says what the request does with the caller's `span`.
   */
  callLocal(
    hosted: Hosted,
    action: AnyAction,
    input: unknown,
    options: CallOptions | undefined,
    parent: Invocation | undefined,
    timeout: number,
    ep: Endpoint,
    measure: boolean,
    span: Span | undefined,
    meter: ActionMeter | undefined,
    spanRole: LocalSpanRole,
  ): Promise<unknown> {
    const budget = action.timeoutMs === undefined ? timeout : Math.min(timeout, action.timeoutMs);
    const cap = parent === undefined ? Number.POSITIVE_INFINITY : parent.deadline;
    const inv = this.#localInvocation(hosted, action, options, parent, Number.NaN, budget, cap);
    if (span !== undefined) {
      if (spanRole === "own") {
        inv.span = span;
        inv.otelContext = callerContext(span);
      } else {
        this.#trace(inv, hosted, action, this.#n.id, callerContext(span));
        if (spanRole === "client") {
          inv.observed ??= new Observed();
          inv.observed.clientSpan = span;
        }
      }
    }
    inv.endpoint = ep;
    inv.measure = measure;
    inv.callerSignal = options?.signal;
    inv.upstream = parent;
    const metrics = this.#n.metrics;
    if (metrics !== undefined) {
      const now = metrics.clock.now();
      this.#meter(inv, hosted, action, meter, now, now);
    }
    if (this.#n.actionStats !== undefined) this.#countIn(inv, action, this.#n.env.clock.now());
    if (hosted.guards.size === 0) this.#serve(inv, action, input);
    else this.#admitThenServe(inv, hosted, action, input);
    if (inv.settled) return inv.ok ? Promise.resolve(inv.result) : Promise.reject(inv.result);
    return new Promise((resolve, reject) => {
      inv.resolveLocal = resolve;
      inv.rejectLocal = reject;
    });
  }

  /** A remote call failing over to this node: it keeps its deadline and its caller's promise. */
  takeOver(
    hosted: Hosted,
    action: AnyAction,
    input: unknown,
    options: CallOptions | undefined,
    parent: Invocation | undefined,
    deadline: number,
    ep: Endpoint,
    resolve: (value: unknown) => void,
    reject: (err: KeelError) => void,
    span: Span | undefined,
    meter: ActionMeter | undefined,
    calledAt: number,
  ): void {
    const inv = this.#localInvocation(hosted, action, options, parent, deadline, 0, deadline);
    if (span !== undefined) this.#trace(inv, hosted, action, this.#n.id, callerContext(span));
    inv.endpoint = ep;
    inv.measure = true;
    inv.callerSignal = options?.signal;
    inv.upstream = parent;
    inv.resolveLocal = resolve;
    inv.rejectLocal = reject;
    const metrics = this.#n.metrics;
    if (metrics !== undefined)
      this.#meter(inv, hosted, action, meter, calledAt, metrics.clock.now());
    if (this.#n.actionStats !== undefined) this.#countIn(inv, action, this.#n.env.clock.now());
    this.#admitThenServe(inv, hosted, action, input);
  }

  /**
   * Starts a request's metrics (the node records them) at `now`; a local call also carries its
   * caller's meter (begun by the caller at `calledAt`), ended with the request.
   */
  #meter(
    inv: Invocation,
    hosted: Hosted,
    action: AnyAction,
    client: ActionMeter | undefined,
    calledAt: number,
    now: number,
  ): void {
    const m = this.#n.metrics!.server(hosted.def.key, action.name);
    m.begin();
    inv.observed ??= new Observed();
    const o = inv.observed;
    o.serverMeter = m;
    o.servedAt = now;
    o.clientMeter = client;
    o.calledAt = calledAt;
  }

  /** Counts a request in its action's counters (`KeelNode.actionStats`), from `now`. */
  #countIn(inv: Invocation, action: AnyAction, now: number): void {
    inv.observed ??= new Observed();
    const o = inv.observed;
    o.actionStats = this.#n.actionStats!.get(action);
    o.countedAt = now;
  }

  /** Ends a request's metrics and counts it in its action's counters, with its outcome. */
  #endObserved(o: Observed, ok: boolean, value: unknown): void {
    const now = this.#n.env.clock.now();
    const server = o.serverMeter;
    if (server !== undefined) {
      const outcome = ok ? "ok" : (value as KeelError).code;
      server.end(outcome, now - o.servedAt);
      o.clientMeter?.end(outcome, now - o.calledAt);
    }
    const counts = o.actionStats;
    if (counts !== undefined) {
      counts.requests++;
      counts.processingMs += now - o.countedAt;
      if (!ok) {
        counts.errors++;
        const err = value as KeelError;
        counts.lastError = `${err.code}: ${err.message}`;
      }
    }
  }

  /** Called once when an invocation's deadline passes. */
  expired(inv: Invocation): void {
    const err = deadlineExceeded(`${inv.service}.${inv.action} exceeded its deadline`);
    inv.abort(err);
    this.#finish(inv, false, err);
  }

  #localInvocation(
    hosted: Hosted,
    action: AnyAction,
    options: CallOptions | undefined,
    parent: Invocation | undefined,
    deadline: number,
    budget: number,
    cap: number,
  ): Invocation {
    const n = this.#n;
    return new Invocation(
      n.hooks,
      hosted.def.name,
      action.name,
      n.nextId(),
      deadline,
      budget,
      cap,
      parent === undefined ? undefined : { node: n.id, service: parent.service },
      options?.idempotencyKey,
      options?.meta,
      parent?.traceContext,
      parent?.traceState,
      undefined,
    );
  }

  /** Starts the SERVER span of a request (tracing is on) and the context its handler runs in. */
  #trace(
    inv: Invocation,
    hosted: Hosted,
    action: AnyAction,
    caller: string,
    parent: OtelContext,
  ): void {
    const tracing = this.#n.tracing;
    const tracer = tracing.tracer();
    if (tracer === undefined) return;
    const span = tracing.startServe(
      tracer,
      hosted.def.name,
      hosted.def.version,
      action.name,
      caller,
      parent,
    );
    inv.span = span;
    inv.otelContext = withSpan(parent, span);
  }

  /** Lets a request through the action's limits (if it has any), then serves it. */
  #admitThenServe(inv: Invocation, hosted: Hosted, action: AnyAction, input: unknown): void {
    const guards = hosted.guards.size === 0 ? undefined : hosted.guards.get(action.name);
    if (guards === undefined) {
      this.#serve(inv, action, input);
      return;
    }
    if (guards.rate !== undefined) {
      const waitMs = guards.rate.tryAcquire();
      if (waitMs > 0) {
        const err = new KeelError(
          "RATE_LIMITED",
          `${inv.service}.${inv.action} is over its rate limit`,
          {
            noStack: true,
            details: { retryAfterMs: waitMs },
          },
        );
        this.#finish(inv, false, this.#shed(inv, err, "rate"));
        return;
      }
    }
    if (guards.adaptive !== undefined) {
      const permit = guards.adaptive.acquire();
      if (isKeelError(permit)) {
        this.#finish(inv, false, this.#shed(inv, permit, "adaptive"));
        return;
      }
      inv.adaptivePermit = permit;
    }
    const b = guards.bulkhead;
    if (b === undefined || b.tryAcquire()) {
      inv.bulkhead = b;
      this.#serve(inv, action, input);
      return;
    }
    // Full: wait in the bulkhead's queue (bounded; a full queue sheds at once).
    this.#register(inv, this.#n.env.clock.now());
    b.acquire({ deadline: inv.deadline }).then(
      () => {
        if (inv.settled) {
          b.release();
          return;
        }
        inv.bulkhead = b;
        this.#serve(inv, action, input);
      },
      (err: unknown) => {
        const shed = isKeelError(err) && err.code === "OVERLOADED";
        this.#finish(
          inv,
          false,
          shed ? this.#shed(inv, err, "concurrency") : this.#asKeelError(err, inv),
        );
      },
    );
  }

  /** A limit's refusal as the caller sees it: retryable, and not processed, so it may go elsewhere. */
  #shed(inv: Invocation, err: KeelError, by: "concurrency" | "adaptive" | "rate"): KeelError {
    const n = this.#n;
    const code = err.code === "RATE_LIMITED" ? "RATE_LIMITED" : "OVERLOADED";
    n.decide({ kind: "shed", service: inv.service, action: inv.action, code, by }, inv.span);
    const meter = inv.observed?.serverMeter;
    if (meter !== undefined) n.metrics?.shed(meter, by);
    return new KeelError(code, err.message, {
      noStack: true,
      retryable: true,
      details: { ...err.details, node: n.id, notProcessed: true },
    });
  }

  #serve(inv: Invocation, action: AnyAction, input: unknown): void {
    this.#n.stats.requestsHandled++;
    this.#validateThen(inv, action, action.input, input, this.#handle);
  }

  /** Validates `value`, then continues with `next`: at once when the schema is synchronous. */
  #validateThen(
    inv: Invocation,
    action: AnyAction,
    schema: StandardSchemaV1,
    value: unknown,
    next: (inv: Invocation, action: AnyAction, checked: Result) => void,
  ): void {
    let checked: Result | Promise<Result>;
    try {
      checked = schema["~standard"].validate(value);
    } catch (err) {
      this.#fail(inv, err);
      return;
    }
    if (checked instanceof Promise) {
      this.#register(inv, this.#n.env.clock.now());
      checked.then(
        (r) => next.call(this, inv, action, r),
        (err: unknown) => this.#fail(inv, err),
      );
    } else {
      next.call(this, inv, action, checked);
    }
  }

  #handle(inv: Invocation, action: AnyAction, checked: Result): void {
    if (inv.settled) return;
    let out: unknown;
    try {
      if (checked.issues !== undefined) {
        throw schemaError(
          "INVALID_ARGUMENT",
          `input of ${inv.service}.${inv.action}`,
          checked.issues,
        );
      }
      const ctx = inv.otelContext;
      out =
        ctx === undefined
          ? action.handler(checked.value, inv)
          : runIn(ctx, action.handler, checked.value, inv);
    } catch (err) {
      this.#fail(inv, err);
      return;
    }
    if (out instanceof Promise) {
      this.#register(inv, this.#n.env.clock.now());
      out.then(
        (value: unknown) => this.#respond(inv, action, value),
        (err: unknown) => this.#fail(inv, err),
      );
    } else {
      this.#respond(inv, action, out);
    }
  }

  /** Checks a handler's result against the output schema, then delivers it. */
  #respond(inv: Invocation, action: AnyAction, out: unknown): void {
    if (inv.settled) return;
    this.#validateThen(inv, action, action.output, out, this.#deliver);
  }

  #deliver(inv: Invocation, _action: AnyAction, checked: Result): void {
    if (checked.issues !== undefined) {
      this.#fail(
        inv,
        schemaError("INTERNAL", `output of ${inv.service}.${inv.action}`, checked.issues),
      );
    } else {
      this.#finish(inv, true, checked.value);
    }
  }

  /**
   * Registers an invocation as in flight: fixes its deadline, tracks it for drain and
   * cancellation, and counts it on its endpoint. Expires it at once if no time is left.
   */
  #register(inv: Invocation, now: number): void {
    if (inv.registered || inv.settled) return;
    inv.registered = true;
    const head = this.#head;
    inv.nextServing = head;
    if (head !== undefined) head.prevServing = inv;
    this.#head = inv;
    this.#count++;
    const deadline = inv.fixDeadline(now);
    this.#n.deadlines.add(inv);
    const ep = inv.endpoint;
    if (ep !== undefined) {
      ep.inflight++;
      inv.startedAt = now;
    }
    const signal = inv.callerSignal;
    const upstream = inv.upstream;
    if (signal !== undefined || upstream !== undefined) {
      const cancel = (reason?: KeelError) => {
        const err = reason ?? cancelled();
        inv.abort(err);
        this.#finish(inv, false, err);
      };
      const onSignal = () => cancel();
      signal?.addEventListener("abort", onSignal, { once: true });
      const offUpstream = upstream?.onAbort(cancel);
      inv.unlink = () => {
        signal?.removeEventListener("abort", onSignal);
        offUpstream?.();
      };
    }
    if (!(deadline > now)) this.expired(inv);
  }

  #unregister(inv: Invocation): void {
    inv.registered = false;
    const prev = inv.prevServing;
    const next = inv.nextServing;
    if (prev === undefined) this.#head = next;
    else prev.nextServing = next;
    if (next !== undefined) next.prevServing = prev;
    inv.prevServing = undefined;
    inv.nextServing = undefined;
    this.#count--;
    this.#n.deadlines.remove(inv);
    inv.unlink?.();
    const ep = inv.endpoint;
    if (ep !== undefined) {
      ep.inflight--;
      if (inv.measure) Registry.observe(ep, this.#n.env.clock.now() - inv.startedAt);
    }
  }

  #fail(inv: Invocation, err: unknown): void {
    if (inv.settled) return;
    this.#finish(inv, false, this.#asKeelError(err, inv));
  }

  #asKeelError(err: unknown, inv: Invocation): KeelError {
    const log = this.#log;
    if (isKeelError(err)) {
      if (err.code === "INTERNAL" && err.details?.["requestId"] === undefined) {
        // An output-schema violation or a handler's own INTERNAL: log it, and say which request.
        log.error(logFields(inv, err), "handler failed");
        return new KeelError("INTERNAL", err.message, {
          retryable: err.retryable,
          details: { ...err.details, requestId: inv.requestId },
          cause: err,
        });
      }
      if (err.details?.["notProcessed"] !== true) return err;
      // This handler did run: a downstream "not processed" must not make our caller run it again.
      const { notProcessed: _, ...details } = err.details;
      return new KeelError(err.code, err.message, {
        retryable: err.retryable,
        details,
        cause: err,
      });
    }
    // Log the real failure here; only a code, a short message and the request id cross the wire.
    log.error(logFields(inv, err), "handler failed");
    return new KeelError("INTERNAL", `internal error in ${inv.service}.${inv.action}`, {
      cause: err,
      details: { requestId: inv.requestId },
    });
  }

  /** Delivers an invocation's outcome once; later outcomes (after a deadline or cancel) are dropped. */
  #finish(inv: Invocation, ok: boolean, value: unknown, silent = false): void {
    if (inv.settled) return;
    inv.settled = true;
    if (inv.registered) this.#unregister(inv);
    const observed = inv.observed;
    if (observed !== undefined) this.#endObserved(observed, ok, value);
    if (inv.span !== undefined) this.#n.tracing.end(inv.span, ok ? undefined : value);
    const clientSpan = observed?.clientSpan;
    if (clientSpan !== undefined) this.#n.tracing.end(clientSpan, ok ? undefined : value);
    if (inv.bulkhead !== undefined) {
      inv.bulkhead.release();
      inv.bulkhead = undefined;
    }
    if (inv.adaptivePermit !== undefined) {
      // Timeouts and sheds downstream are the signs of overload the limit learns from.
      const code = ok ? undefined : (value as KeelError).code;
      inv.adaptivePermit.release(
        ok
          ? "success"
          : code === "DEADLINE_EXCEEDED" || code === "OVERLOADED"
            ? "dropped"
            : "ignore",
      );
      inv.adaptivePermit = undefined;
    }
    if (inv.replyTo === undefined) {
      if (inv.rejectLocal === undefined) {
        // Settled before any promise was made: the caller picks the outcome up synchronously.
        inv.ok = ok;
        inv.result = value;
      } else if (ok) inv.resolveLocal?.(value);
      else inv.rejectLocal(value as KeelError);
    } else {
      this.#remote.get(inv.replyTo)?.delete(inv.requestId);
      if (!silent && this.#n.state !== "stopped") this.#reply(inv, ok, value);
    }
    if (this.#idle !== undefined && this.#count === 0) this.#idle();
  }

  #reply(inv: Invocation, ok: boolean, value: unknown): void {
    const n = this.#n;
    const to = inv.replyTo!;
    const id = inv.requestId;
    let frame: ResponseFrame = ok
      ? { v: WIRE_VERSION, k: "res", id, from: n.id, ok: true, p: value }
      : {
          v: WIRE_VERSION,
          k: "res",
          id,
          from: n.id,
          ok: false,
          err: (value as KeelError).toWire(),
        };
    let bytes: Uint8Array;
    try {
      bytes = encodeChecked(n.codec, frame, n.limitFor(to));
    } catch (err) {
      // Too big (or not encodable) for the caller: it gets a coded error instead of silence.
      const e = isKeelError(err) ? err : new KeelError("INTERNAL", "reply could not be encoded");
      this.#log.warn(logFields(inv, e), "reply refused before sending");
      frame = { v: WIRE_VERSION, k: "res", id, from: n.id, ok: false, err: e.toWire() };
      bytes = n.codec.encode(frame);
    }
    n.sendBytes(to, bytes);
  }
}

/** The context of a same-node request: under the calling span, keeping the caller's baggage. */
function callerContext(span: Span): OtelContext {
  return withSpan(activeContext(), span);
}

/** The fields of the server's log lines about a request. */
function logFields(inv: Invocation, err: unknown): Record<string, unknown> {
  return {
    err,
    service: inv.service,
    action: inv.action,
    requestId: inv.requestId,
    ...traceFields(inv.span),
  };
}
