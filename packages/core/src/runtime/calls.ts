import type { TimerHandle } from "../env/index.ts";
import { isKeelError, KeelError } from "../errors/index.ts";
import type { ActionMeter } from "../observability/keel-metrics.ts";
import {
  parentContext,
  type RpcSpanShape,
  type Span,
  traceFields,
  traceparent,
  tracestate,
} from "../observability/tracing.ts";
import {
  type BreakerPermit,
  type CallOutcome,
  type CircuitBreaker,
  circuitBreaker,
  type HedgePolicy,
  type RetryPolicy,
} from "../policies/index.ts";
import type { Scheduled } from "../policies/timer-queue.ts";
import {
  encodeChecked,
  type RequestFrame,
  type ResponseFrame,
  WIRE_VERSION,
} from "../wire/index.ts";
import { type BalancerState, checkRouting, pick, pickVersion } from "./balancer.ts";
import type { CallOptions, Client } from "./context-types.ts";
import type { Invocation } from "./invocation.ts";
import type { Logger } from "./logger.ts";
import { type Hosted, type NodeShared, notProcessed, unavailable } from "./node-shared.ts";
import { type Endpoint, type NodeDownReason, Registry } from "./registry.ts";
import { cancelled, deadlineExceeded, type Scope } from "./scope.ts";
import type { Server } from "./server.ts";
import type { AnyAction, AnyService } from "./service.ts";

/** A frame under construction. */
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** Routing constraints of one attempt of a hedged call: nodes other attempts already use. */
interface Route {
  readonly exclude: Set<string>;
  /** The hedged call's span, which its attempts share. */
  readonly span: Span | undefined;
}

/**
 * Where calls of one action go while the registry is unchanged: its only ready endpoint, when that
 * is this node (else `ep` is undefined and calls take the general path).
 */
interface LocalRoute {
  readonly service: AnyService;
  readonly generation: number;
  readonly ep: Endpoint | undefined;
  readonly hosted: Hosted | undefined;
  readonly local: AnyAction;
  /** The name and attributes of its span, made on its first traced call. */
  span: RpcSpanShape | undefined;
}

/**
 * A call to a remote endpoint (and its failovers), tracked until it settles. What the call is
 * about is fixed for its lifetime (the readonly fields); one object per call, as the hot path
 * allocates little.
 */
class ClientCall implements Scheduled {
  slot = -1;
  settled = false;
  attemptId = "";
  endpoint: Endpoint | undefined;
  sentAt = 0;
  tried: Set<string> | undefined;
  unlink: (() => void) | undefined;
  /** Retries so far, the last backoff, and the pending retry's timer. */
  retries = 0;
  lastDelay = 0;
  retryTimer: TimerHandle | undefined;
  /** The breaker of the endpoint of the attempt in flight, and its permit. */
  breaker: CircuitBreaker | undefined;
  permit: BreakerPermit | undefined;
  /** The call's metrics (when the node records them), and when it was made. */
  meter: ActionMeter | undefined;
  calledAt = 0;
  /** Attempts sent (for the span), and whether this is one attempt of a hedged call. */
  attempts = 0;
  hedged = false;
  readonly service: AnyService;
  readonly key: string;
  readonly action: string;
  readonly input: unknown;
  readonly options: CallOptions | undefined;
  readonly parent: Invocation | undefined;
  readonly idempotent: boolean;
  readonly deadline: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: KeelError) => void;
  readonly onExpire: (call: ClientCall) => void;
  readonly retry: RetryPolicy | undefined;
  /** The call's CLIENT span, when tracing is on. */
  readonly span: Span | undefined;

  constructor(
    service: AnyService,
    key: string,
    action: string,
    input: unknown,
    options: CallOptions | undefined,
    parent: Invocation | undefined,
    idempotent: boolean,
    deadline: number,
    resolve: (value: unknown) => void,
    reject: (err: KeelError) => void,
    onExpire: (call: ClientCall) => void,
    retry: RetryPolicy | undefined,
    span: Span | undefined,
  ) {
    this.service = service;
    this.key = key;
    this.action = action;
    this.input = input;
    this.options = options;
    this.parent = parent;
    this.idempotent = idempotent;
    this.deadline = deadline;
    this.resolve = resolve;
    this.reject = reject;
    this.onExpire = onExpire;
    this.retry = retry;
    this.span = span;
  }

  /** The deadline, as the deadline queue reads it. */
  get at(): number {
    return this.deadline;
  }

  fire(): void {
    this.onExpire(this);
  }
}

/**
 * The calling half of a node: picks an endpoint, takes the same-node fast path or sends a request,
 * tracks the reply against the deadline, and fails over when that is safe.
 */
export class Calls {
  readonly #n: NodeShared;
  readonly #server: Server;
  readonly #balance: BalancerState;
  /** Calls awaiting a remote reply, by attempt id. */
  readonly #pending = new Map<string, ClientCall>();
  /** One breaker per remote endpoint (`node\0service@version`), when the node has breakers. */
  readonly #breakers = new Map<string, CircuitBreaker>();
  readonly #log: Logger;
  /** Resolved same-node routes by the caller's action definition (see #localRoute). */
  readonly #routes = new Map<AnyAction, LocalRoute>();
  /**
   * Set by #invoke when it handed the call's span to a same-node request, which ends it; read and
   * cleared by `invoke` right after (nested calls made meanwhile set and clear it themselves).
   */
  #spanTaken = false;
  /** The span of the call whose breaker permit is being taken or returned (for breaker events). */
  #breakerSpan: Span | undefined;

  constructor(shared: NodeShared, server: Server, balance: BalancerState) {
    this.#n = shared;
    this.#server = server;
    this.#balance = balance;
    this.#log = shared.log.child({ module: "keel.calls" });
  }

  client<S extends AnyService>(
    service: S,
    defaults: CallOptions | undefined,
    parent: Invocation | undefined,
    span: Span | undefined,
  ): Client<S> {
    if (service?.kind !== "service")
      throw new KeelError("CONFIGURATION", "client() takes a service from defineService()");
    if (defaults !== undefined) checkRouting(defaults);
    const out: Record<string, (input: unknown, options?: CallOptions) => Promise<unknown>> = {};
    for (const name of Object.keys(service.actions)) {
      out[name] = (input, options) =>
        this.invoke(
          service,
          name,
          input,
          defaults === undefined ? options : { ...defaults, ...options },
          parent,
          span,
        );
    }
    return Object.freeze(out) as Client<S>;
  }

  /**
   * Runs a hedged call: attempt 0 at once, then another attempt (to an endpoint no attempt has
   * used) each time the policy's delay passes with no answer, up to `maxHedges`. The first
   * success wins and the others are cancelled; when every started attempt has failed, the call
   * fails with the last error.
   */
  #hedged(
    service: AnyService,
    actionName: string,
    input: unknown,
    options: CallOptions,
    parent: Invocation | undefined,
    policy: HedgePolicy,
    span: Span | undefined,
  ): Promise<unknown> {
    const n = this.#n;
    const { hedge: _, signal: callerSignal, ...rest } = options;
    const route: Route = { exclude: new Set<string>(), span };
    const t0 = n.env.clock.now();
    const meter = n.metrics?.client(service.key, actionName);
    meter?.begin();
    return new Promise((resolve, reject) => {
      const controllers: AbortController[] = [];
      let done = false;
      let running = 0;
      let timer: TimerHandle | undefined;
      const finish = () => {
        done = true;
        if (timer !== undefined) n.env.timers.cancel(timer);
        for (const c of controllers) c.abort(cancelled("another hedged attempt answered first"));
      };
      const launch = (attempt: number) => {
        const ac = new AbortController();
        controllers.push(ac);
        const signal =
          callerSignal === undefined ? ac.signal : AbortSignal.any([callerSignal, ac.signal]);
        running++;
        if (attempt > 0) span?.setAttribute("keel.attempts", attempt + 1);
        this.invoke(service, actionName, input, { ...rest, signal }, parent, undefined, route).then(
          (value) => {
            if (done) return;
            policy.recordLatency(n.env.clock.now() - t0);
            meter?.end("ok", n.env.clock.now() - t0);
            finish();
            resolve(value);
          },
          (err: unknown) => {
            running--;
            if (done || running > 0) return;
            meter?.end(isKeelError(err) ? err.code : "INTERNAL", n.env.clock.now() - t0);
            finish();
            reject(err);
          },
        );
        if (attempt >= policy.maxHedges) return;
        const delay = policy.delay();
        if (!Number.isFinite(delay)) return;
        timer = n.env.timers.schedule(() => {
          timer = undefined;
          if (done) return;
          if (n.watched || span !== undefined) {
            n.decide(
              {
                kind: "hedge",
                service: service.key,
                action: actionName,
                attempt: attempt + 1,
                afterMs: n.env.clock.now() - t0,
              },
              span,
            );
          }
          launch(attempt + 1);
        }, delay);
      };
      launch(0);
    });
  }

  /**
   * Makes a call; `route` is set for the attempts of a hedged call. `traceParent` is the span of
   * the handler making it (the parent of the call's span when tracing is on).
   */
  invoke(
    service: AnyService,
    actionName: string,
    input: unknown,
    options: CallOptions | undefined,
    parent: Invocation | undefined,
    traceParent: Span | undefined,
    route?: Route,
  ): Promise<unknown> {
    if (route !== undefined) {
      return this.#invoke(service, actionName, input, options, parent, route.span, route);
    }
    const n = this.#n;
    const tracer = n.tracing.tracer();
    if (tracer === undefined) {
      return this.#invoke(service, actionName, input, options, parent, undefined, undefined);
    }
    const tracing = n.tracing;
    const ctx = parentContext(
      traceParent ?? parent?.span,
      parent?.traceContext,
      parent?.traceState,
    );
    // A call only this node can serve is one INTERNAL span (unless the node asks for two).
    const local =
      tracing.localCallSpans === "one"
        ? this.#sameNodeRoute(service, actionName, options)
        : undefined;
    let span: Span;
    if (local === undefined) {
      span = tracing.startCall(tracer, service.name, service.version, actionName, ctx);
    } else {
      local.span ??= tracing.rpcShape(service.name, service.version, actionName);
      span = tracing.startLocal(tracer, local.span, ctx);
    }
    const out = this.#invoke(service, actionName, input, options, parent, span, undefined);
    if (this.#spanTaken) {
      // A same-node call: its request ends the span as it settles (no promise reaction needed).
      this.#spanTaken = false;
      return out;
    }
    out.then(
      () => tracing.end(span),
      (err: unknown) => tracing.end(span, err),
    );
    return out;
  }

  #invoke(
    service: AnyService,
    actionName: string,
    input: unknown,
    options: CallOptions | undefined,
    parent: Invocation | undefined,
    span: Span | undefined,
    route: Route | undefined,
  ): Promise<unknown> {
    const n = this.#n;
    const state = n.state;
    if (state !== "ready" && state !== "draining") {
      return Promise.reject(
        unavailable(`node '${n.id}' is ${state}: it cannot make calls`, { notProcessed: true }),
      );
    }
    n.stats.callsStarted++;
    const action = service.actions[actionName];
    if (options?.hedge !== undefined && route === undefined && action?.idempotent === true) {
      return this.#hedged(service, actionName, input, options, parent, options.hedge, span);
    }
    if (action === undefined) {
      return Promise.reject(
        new KeelError("NOT_FOUND", `${service.key} has no action '${actionName}'`),
      );
    }
    if (options !== undefined) {
      try {
        checkRouting(options);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (
      n.balancer === "consistent-hash" &&
      options?.hashKey === undefined &&
      options?.balancer === undefined
    ) {
      return Promise.reject(
        new KeelError(
          "CONFIGURATION",
          `node '${n.id}' balances by consistent hash: calls need a 'hashKey'`,
        ),
      );
    }
    const timeout = options?.timeoutMs ?? n.defaultTimeoutMs;
    if (parent?.reason !== undefined)
      return this.#refuse(service.key, action, route, parent.reason);
    if (!(timeout > 0)) {
      const err = deadlineExceeded(`no time left to call ${service.key}.${actionName}`);
      return this.#refuse(service.key, action, route, err);
    }
    const signal = options?.signal;
    if (signal?.aborted) return this.#refuse(service.key, action, route, cancelled());

    if (route === undefined) {
      // One ready endpoint, on this node: no balancer has a choice to make.
      const r = this.#sameNodeRoute(service, actionName, options);
      if (r !== undefined) {
        const meter = n.metrics?.client(service.key, actionName);
        meter?.begin();
        const traced = span !== undefined;
        const one = n.tracing.localCallSpans === "one";
        if (traced && !one) span.setAttribute("server.address", n.id);
        const out = this.#server.callLocal(
          r.hosted!,
          r.local,
          input,
          options,
          parent,
          timeout,
          r.ep!,
          false,
          span,
          meter,
          one ? "own" : "client",
        );
        // The request ends the call's span as it settles: tell invoke() it is taken.
        if (traced) this.#spanTaken = true;
        return out;
      }
    }
    let key = service.key;
    const weights = options?.versions;
    if (weights !== undefined) {
      const v = pickVersion(
        weights,
        (version) => (n.registry.endpointsByKey(`${service.name}@${version}`)?.length ?? 0) > 0,
        this.#balance.random,
      );
      if (v !== undefined) key = `${service.name}@${v}`;
    }
    const endpoints = n.registry.endpointsByKey(key);
    const ep = this.#pick(key, endpoints, options, route?.exclude);
    if (ep !== undefined) route?.exclude.add(ep.node);
    if (ep === undefined) {
      const err = unavailable(`no endpoint for ${key}`, { service: key, notProcessed: true });
      return this.#refuse(key, action, route, err);
    }
    // Attempts of a hedged call are counted as one call, by #hedged.
    const meter = route === undefined ? n.metrics?.client(key, actionName) : undefined;
    meter?.begin();
    if (ep.local) {
      const hosted = n.hosted.get(key)!;
      const local = hosted.actions.get(actionName) ?? action;
      const owns = span !== undefined && route === undefined;
      if (owns) span.setAttribute("server.address", n.id);
      const out = this.#server.callLocal(
        hosted,
        local,
        input,
        options,
        parent,
        timeout,
        ep,
        endpoints!.length > 1,
        span,
        meter,
        owns ? "client" : "parent",
      );
      if (owns) this.#spanTaken = true;
      return out;
    }
    // Remote: the deadline is fixed now, since its remaining part travels with the request.
    const now = n.env.clock.now();
    let deadline = now + timeout;
    if (parent !== undefined && parent.deadline < deadline) deadline = parent.deadline;
    if (!(deadline > now)) {
      const err = deadlineExceeded(`no time left to call ${service.key}.${actionName}`);
      meter?.end(err.code, 0);
      return Promise.reject(err);
    }
    const retry = options?.retry === undefined ? n.retry : options.retry || undefined;
    retry?.begin(); // feeds the retry budget: one first attempt
    return new Promise((resolve, reject) => {
      const call = new ClientCall(
        service,
        key,
        actionName,
        input,
        options,
        parent,
        action.idempotent,
        deadline,
        resolve,
        reject,
        this.#onExpire,
        retry,
        span,
      );
      if (route !== undefined) {
        call.tried = route.exclude;
        call.hedged = true;
      }
      if (meter !== undefined) {
        call.meter = meter;
        call.calledAt = now;
      }
      n.deadlines.add(call);
      if (signal !== undefined || parent !== undefined) this.#linkCancel(call, signal, parent);
      this.#send(call, ep, now);
    });
  }

  /**
   * The route of a call that only this node can serve (its one ready endpoint is here and the
   * options leave the balancer no choice to make), or undefined.
   */
  #sameNodeRoute(
    service: AnyService,
    actionName: string,
    options: CallOptions | undefined,
  ): LocalRoute | undefined {
    const action = service.actions[actionName];
    if (action === undefined) return undefined;
    if (
      options !== undefined &&
      (options.versions !== undefined ||
        options.balancer !== undefined ||
        options.hashKey !== undefined ||
        (options.hedge !== undefined && action.idempotent === true))
    )
      return undefined;
    const r = this.#localRoute(service, action);
    return r.ep === undefined ? undefined : r;
  }

  /** The same-node route of `action`, resolved once per registry generation. */
  #localRoute(service: AnyService, action: AnyAction): LocalRoute {
    const n = this.#n;
    const generation = n.registry.generation;
    const cached = this.#routes.get(action);
    if (cached !== undefined && cached.generation === generation && cached.service === service)
      return cached;
    const endpoints = n.registry.endpointsByKey(service.key);
    const only = endpoints?.length === 1 ? endpoints[0] : undefined;
    const hosted = only?.local === true ? n.hosted.get(service.key) : undefined;
    const r: LocalRoute = {
      service,
      generation,
      ep: hosted === undefined ? undefined : only,
      hosted,
      local: hosted?.actions.get(action.name) ?? action,
      span: undefined,
    };
    this.#routes.set(action, r);
    return r;
  }

  /** A reply from the wire, arrived at `now`. */
  onResponse(f: ResponseFrame, now: number): void {
    const call = this.#pending.get(f.id);
    if (call === undefined || call.endpoint?.node !== f.from) return; // late, duplicate or stray reply
    this.#pending.delete(f.id);
    const ep = call.endpoint;
    ep.inflight--;
    Registry.observe(ep, now - call.sentAt);
    if (f.ok) {
      this.#record(call, "success");
      this.#settle(call, undefined, f.p);
      return;
    }
    const err = KeelError.fromWire(f.err);
    this.#record(call, call.breaker?.classify(err) ?? "ignore");
    if (notProcessed(err)) {
      this.#attemptFailed(call, err, true);
      return;
    }
    if (err.code === "UNAVAILABLE" && err.details?.["node"] === f.from && call.idempotent) {
      // The node itself gave up on the call (its drain ran out of time): safe to run elsewhere.
      this.#attemptFailed(call, err, false);
      return;
    }
    this.#retryOrSettle(call, err);
  }

  /**
   * A node left the registry: calls waiting on it fail over or fail. After a goodbye, its last
   * replies may still be on the way (links can reorder), so they get the failure timeout to land.
   */
  peerGone(node: string, reason: NodeDownReason): void {
    for (const k of this.#breakers.keys())
      if (k.startsWith(`${node}\u0000`)) this.#breakers.delete(k);
    const waiting = [...this.#pending.values()].filter((call) => call.endpoint?.node === node);
    if (waiting.length === 0) return;
    const fail = () => {
      for (const call of waiting) {
        if (this.#pending.get(call.attemptId) !== call) continue; // answered meanwhile
        this.#pending.delete(call.attemptId);
        this.#record(call, "failure");
        this.#attemptFailed(
          call,
          unavailable(`node '${node}' ${reason} before replying`, { node }),
        );
      }
    };
    if (reason === "left") this.#n.env.timers.schedule(fail, this.#n.failureTimeoutMs);
    else fail();
  }

  /** Fails every call still waiting (the node is stopping). */
  settleAll(reason: KeelError): void {
    for (const call of [...this.#pending.values()]) this.#settle(call, reason);
  }

  #linkCancel(call: ClientCall, signal: AbortSignal | undefined, parent: Scope | undefined): void {
    const cancel = (reason?: KeelError) => {
      this.#sendCancel(call);
      this.#settle(call, reason ?? cancelled());
    };
    const onSignal = () => cancel();
    signal?.addEventListener("abort", onSignal, { once: true });
    const offParent = parent?.onAbort(cancel);
    call.unlink = () => {
      signal?.removeEventListener("abort", onSignal);
      offParent?.();
    };
  }

  /** Sends an attempt of `call` to `ep` (`now` when the caller has just read the clock). */
  #send(call: ClientCall, ep: Endpoint, now = this.#n.env.clock.now()): void {
    const n = this.#n;
    const span = call.span;
    const breaker = this.#breakerFor(call.key, ep);
    if (breaker !== undefined) {
      this.#breakerSpan = span;
      const permit = breaker.tryAcquire();
      this.#breakerSpan = undefined;
      if (typeof permit !== "number") {
        // Open, or half-open with its probes taken: not sent, so any endpoint may take it.
        if (span !== undefined)
          n.tracing.event(span, "keel.circuit_open", { "keel.peer": ep.node });
        call.endpoint = ep;
        const details = { ...permit.details, node: ep.node, notProcessed: true };
        this.#attemptFailed(
          call,
          new KeelError("CIRCUIT_OPEN", permit.message, { noStack: true, details }),
          true,
        );
        return;
      }
      call.breaker = breaker;
      call.permit = permit;
    }
    call.attemptId = n.nextId().toString(36);
    call.endpoint = ep;
    call.sentAt = now;
    call.attempts++;
    const { options: opts, parent } = call;
    let tc = parent?.traceContext;
    let ts = parent?.traceState;
    if (span !== undefined) {
      const sc = span.spanContext();
      tc = traceparent(sc);
      ts = tracestate(sc);
      // A hedged call's attempts share its span, which counts them itself.
      if (!call.hedged) {
        span.setAttribute("server.address", ep.node);
        if (call.attempts > 1) span.setAttribute("keel.attempts", call.attempts);
      }
    }
    // Optional fields are added only when set (no spreads: four temporary objects per request).
    const frame: Mutable<RequestFrame> = {
      v: WIRE_VERSION,
      k: "req",
      id: call.attemptId,
      from: n.id,
      svc: call.service.name,
      ver: ep.version,
      act: call.action,
      dl: call.deadline - now,
      p: call.input,
    };
    if (tc !== undefined) frame.tc = tc;
    if (ts !== undefined) frame.ts = ts;
    if (opts?.idempotencyKey !== undefined) frame.ik = opts.idempotencyKey;
    if (parent !== undefined) frame.caller = { node: n.id, service: parent.service };
    if (opts?.meta !== undefined) frame.meta = opts.meta;
    let bytes: Uint8Array;
    try {
      // What the receiver would refuse unread fails here, fast.
      bytes = encodeChecked(n.codec, frame, n.limitFor(ep.node));
    } catch (err) {
      const e = isKeelError(err)
        ? err
        : new KeelError("INTERNAL", "request could not be encoded", { cause: err });
      this.#settle(call, e);
      return;
    }
    ep.inflight++;
    this.#pending.set(call.attemptId, call);
    n.sendBytes(ep.node, bytes);
  }

  /** The endpoint for the next attempt: the call's balancer over the ready endpoints not yet tried. */
  #pick(
    key: string,
    endpoints: readonly Endpoint[] | undefined,
    options: CallOptions | undefined,
    tried: ReadonlySet<string> | undefined,
  ): Endpoint | undefined {
    if (endpoints === undefined) return undefined;
    if (this.#breakers.size > 0) {
      // Endpoints whose breaker is open are skipped, as if already tried.
      for (const ep of endpoints) {
        if (ep.local || !this.#breakers.get(`${ep.node}\u0000${key}`)?.isOpen()) continue;
        const skip = new Set(tried);
        skip.add(ep.node);
        tried = skip;
      }
    }
    const balancer = options?.balancer ?? this.#n.balancer;
    return pick(balancer, key, endpoints, this.#balance, tried, options?.hashKey);
  }

  /** An attempt failed without an answer from the handler: fail over when that is safe. */
  #attemptFailed(call: ClientCall, err: KeelError, wasNotProcessed = notProcessed(err)): void {
    if (call.settled) return;
    const n = this.#n;
    // A request that may have run may run again elsewhere only if its action is idempotent.
    const safe = wasNotProcessed || call.idempotent;
    if (!safe || !(call.deadline > n.env.clock.now()) || n.state === "stopped") {
      this.#settle(call, err);
      return;
    }
    call.tried ??= new Set();
    if (call.endpoint !== undefined) call.tried.add(call.endpoint.node);
    const { key, options } = call;
    const next = this.#pick(key, n.registry.endpointsByKey(key), options, call.tried);
    if (next === undefined) {
      this.#retryOrSettle(call, err);
      return;
    }
    n.stats.failovers++;
    const span = call.span;
    if (n.watched || span !== undefined) {
      n.decide(
        {
          kind: "failover",
          service: key,
          action: call.action,
          from: call.endpoint?.node,
          to: next.node,
        },
        span,
      );
    }
    this.#log.debug(
      {
        service: key,
        action: call.action,
        from: call.endpoint?.node,
        to: next.node,
        code: err.code,
        ...traceFields(span),
      },
      "failing over",
    );
    this.#dispatch(call, next);
  }

  /** Sends the next attempt to `ep`, or lets this node take the call over when `ep` is local. */
  #dispatch(call: ClientCall, ep: Endpoint): void {
    call.tried?.add(ep.node); // shared with a hedged call's other attempts: they go elsewhere
    if (!ep.local) {
      this.#send(call, ep);
      return;
    }
    // This node takes the call over, with its deadline and its caller's promise.
    const n = this.#n;
    const hosted = n.hosted.get(call.key)!;
    n.deadlines.remove(call);
    call.unlink?.();
    call.settled = true;
    if (!call.hedged)
      call.span?.setAttributes({ "server.address": n.id, "keel.attempts": ++call.attempts });
    this.#server.takeOver(
      hosted,
      hosted.actions.get(call.action)!,
      call.input,
      call.options,
      call.parent,
      call.deadline,
      ep,
      call.resolve,
      call.reject,
      call.span,
      call.meter,
      call.calledAt,
    );
  }

  /**
   * The attempt failed for good: retry after a backoff when the call's retry policy (and its
   * budget, and the deadline) allow and running again is safe; otherwise fail the call.
   */
  #retryOrSettle(call: ClientCall, err: KeelError): void {
    const policy = call.retry;
    if (policy === undefined || !(call.idempotent || notProcessed(err)) || call.settled) {
      this.#settle(call, err);
      return;
    }
    const n = this.#n;
    const { key, action, span } = call;
    const delay = policy.nextDelay(err, call.retries, call.lastDelay, call.deadline);
    if (typeof delay === "string") {
      if (n.watched || span !== undefined) {
        n.decide(
          {
            kind: "give-up",
            service: key,
            action,
            attempts: call.retries + 1,
            reason: delay,
            code: err.code,
          },
          span,
        );
      }
      this.#settle(call, err);
      return;
    }
    call.retries++;
    call.lastDelay = delay;
    if (n.watched || span !== undefined)
      n.decide(
        {
          kind: "retry",
          service: key,
          action,
          attempt: call.retries,
          delayMs: delay,
          code: err.code,
        },
        span,
      );
    call.tried ??= new Set();
    if (call.endpoint !== undefined) call.tried.add(call.endpoint.node);
    call.retryTimer = n.env.timers.schedule(() => {
      call.retryTimer = undefined;
      if (call.settled || n.state === "stopped") return;
      const endpoints = n.registry.endpointsByKey(key);
      // Another endpoint when there is one; when every one was tried, any of them again.
      let next = this.#pick(key, endpoints, call.options, call.tried);
      if (next === undefined) {
        call.tried?.clear();
        next = this.#pick(key, endpoints, call.options, undefined);
      }
      if (next === undefined) this.#settle(call, err);
      else this.#dispatch(call, next);
    }, delay);
  }

  /** The breaker of a remote endpoint, made on first use when the node has breakers. */
  #breakerFor(key: string, ep: Endpoint): CircuitBreaker | undefined {
    const options = this.#n.breaker;
    if (options === undefined || ep.local) return undefined;
    const id = `${ep.node}\u0000${key}`;
    let breaker = this.#breakers.get(id);
    if (breaker === undefined) {
      const n = this.#n;
      breaker = circuitBreaker({ ...options, env: n.env });
      breaker.onStateChange((change) => {
        n.decide(
          {
            kind: "breaker",
            peer: ep.node,
            service: key,
            from: change.from.kind,
            to: change.to.kind,
          },
          this.#breakerSpan,
        );
      });
      this.#breakers.set(id, breaker);
    }
    return breaker;
  }

  /** Tells the attempt's breaker how it ended (once). */
  #record(call: ClientCall, outcome: CallOutcome): void {
    const { breaker, permit } = call;
    if (breaker === undefined || permit === undefined) return;
    call.permit = undefined;
    this.#breakerSpan = call.span;
    breaker.record(permit, outcome, this.#n.env.clock.now() - call.sentAt);
    this.#breakerSpan = undefined;
  }

  /** One function for every call's deadline (a closure per call would be an allocation). */
  readonly #onExpire = (call: ClientCall): void => this.#onExpired(call);

  #onExpired(call: ClientCall): void {
    this.#record(call, "failure");
    this.#sendCancel(call);
    this.#settle(call, deadlineExceeded(`${call.key}.${call.action} exceeded its deadline`));
  }

  #sendCancel(call: ClientCall): void {
    if (call.settled || call.endpoint === undefined || !this.#pending.has(call.attemptId)) return;
    this.#n.sendTo(call.endpoint.node, {
      v: WIRE_VERSION,
      k: "cancel",
      id: call.attemptId,
      from: this.#n.id,
    });
  }

  /** A call refused before any attempt: counted (unless an attempt of a hedged call), rejected. */
  #refuse(
    key: string,
    action: { readonly name: string } | undefined,
    route: Route | undefined,
    err: KeelError,
  ): Promise<never> {
    const metrics = this.#n.metrics;
    if (metrics !== undefined && route === undefined && action !== undefined) {
      const meter = metrics.client(key, action.name);
      meter.begin();
      meter.end(err.code, 0);
    }
    return Promise.reject(err);
  }

  /** Settles a client call once, with an error or a value. */
  #settle(call: ClientCall, err: KeelError | undefined, value?: unknown): void {
    if (call.settled) return;
    call.settled = true;
    this.#record(call, "ignore");
    if (call.retryTimer !== undefined) this.#n.env.timers.cancel(call.retryTimer);
    if (this.#pending.get(call.attemptId) === call) {
      this.#pending.delete(call.attemptId);
      if (call.endpoint !== undefined)
        call.endpoint.inflight = Math.max(0, call.endpoint.inflight - 1);
    }
    this.#n.deadlines.remove(call);
    call.unlink?.();
    call.meter?.end(err === undefined ? "ok" : err.code, this.#n.env.clock.now() - call.calledAt);
    if (err === undefined) call.resolve(value);
    else call.reject(err);
  }
}
