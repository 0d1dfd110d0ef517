import { createRealEnv, type Env } from "../env/index.ts";
import { isKeelError, KeelError } from "../errors/index.ts";
import { NodeMetrics } from "../observability/keel-metrics.ts";
import { type Span, Tracing } from "../observability/tracing.ts";
import { adaptiveLimit, bulkhead, tokenBucket } from "../policies/index.ts";
import { TimerQueue } from "../policies/timer-queue.ts";
import type { Transport, TransportStatus } from "../transport/index.ts";
import {
  type Codec,
  type Envelope,
  encodeChecked,
  jsonCodec,
  ProtocolViolation,
  WIRE_VERSION,
} from "../wire/index.ts";
import { Calls } from "./calls.ts";
import type { Caller, CallOptions, Client } from "./context-types.ts";
import { Discovery } from "./discovery.ts";
import { Events } from "./events.ts";
import type { Invocation, RuntimeHooks } from "./invocation.ts";
import { createJsonLogger, type Logger } from "./logger.ts";
import {
  type ActionGuards,
  ActionStatsRecord,
  type Decision,
  type Hosted,
  NodeShared,
  type NodeState,
  type NodeStats,
  remember,
  unavailable,
} from "./node-shared.ts";
import { type NodeOptions, type NodeSettings, resolveSettings } from "./options.ts";
import { Registry, type RegistryView } from "./registry.ts";
import type { Scope } from "./scope.ts";
import { Server } from "./server.ts";
import type {
  ActionName,
  AnyAction,
  AnyService,
  EventDefinition,
  InputOf,
  OutputOf,
  PayloadOf,
} from "./service.ts";

export type { Decision, NodeState, NodeStats } from "./node-shared.ts";
export type { NodeOptions } from "./options.ts";

/** A node's health, as `/health/ready` reports it. */
export interface NodeHealth {
  readonly state: NodeState;
  /** The transport's connection, as it last reported it (`connected` once started). */
  readonly transport: TransportStatus;
  /**
   * True once the node has had one heartbeat interval since joining to hear its peers'
   * announcements, so its registry reflects the cluster.
   */
  readonly registrySynced: boolean;
  /** Ready for traffic: state `ready`, transport connected and registry synced. */
  readonly ready: boolean;
}

/** The requests one hosted action served, for `$SRV.STATS` and dashboards. */
export interface ActionStats {
  /** The service as `name@version`. */
  readonly service: string;
  readonly action: string;
  /** Requests that finished (remote and same-node), whatever their outcome. */
  readonly requests: number;
  /** Of those, the ones that failed (with any code, including sheds, cancels and deadlines). */
  readonly errors: number;
  /** The last failure as `"CODE: message"`. */
  readonly lastError: string | undefined;
  /** Total time from arrival to outcome, in ms. */
  readonly processingMs: number;
}

/** Options for `stop()`. */
export interface StopOptions {
  /** Overrides the node's `drainGraceMs`. */
  readonly graceMs?: number;
}

/** A running Keel node: hosts services, calls others, and takes part in discovery. */
export interface KeelNode extends Caller {
  readonly id: string;
  readonly env: Env;
  readonly state: NodeState;
  readonly registry: RegistryView;
  readonly stats: Readonly<NodeStats>;
  /** Joins the cluster and starts serving. */
  start(): Promise<void>;
  /** Drains (refuses new requests, finishes in-flight ones up to the grace period), then leaves. */
  stop(options?: StopOptions): Promise<void>;
  /** Stops at once as if the process died: no drain, no leave, nothing more sent. */
  crash(): void;
  /** Listens to lifecycle changes; returns an unsubscribe function. */
  onStateChange(listener: (state: NodeState) => void): () => void;
  /** Resolves once at least `count` ready endpoints of `service` are known. */
  waitForEndpoints(service: AnyService, count?: number, timeoutMs?: number): Promise<void>;
  /** Listens to resilience decisions (retries, failovers, breaker transitions, shedding). */
  onDecision(listener: (decision: Decision) => void): () => void;
  /**
   * Per-action counters of the requests this node served. Counting starts at the first call
   * (until then the runtime keeps none, so nodes that never ask pay nothing); later calls return
   * the totals since then.
   */
  actionStats(): readonly ActionStats[];
  /** What health probes report: `ready` when serving, connected and synced with the cluster. */
  health(): NodeHealth;
}

/** Builds the server-side limits of a service's actions on one node (throws CONFIGURATION). */
function guardsOf(def: AnyService, env: Env): Map<string, ActionGuards> {
  const out = new Map<string, ActionGuards>();
  for (const action of Object.values(def.actions)) {
    const limits = action.limits;
    if (limits === undefined) continue;
    const c = limits.concurrency;
    out.set(action.name, {
      bulkhead:
        c === undefined
          ? undefined
          : bulkhead({ env, maxConcurrent: c.maxConcurrent, maxQueue: c.maxQueue ?? 0 }),
      adaptive:
        limits.adaptive === undefined
          ? undefined
          : adaptiveLimit({ env, algorithm: limits.adaptive }),
      rate: limits.rate === undefined ? undefined : tokenBucket({ env, ...limits.rate }),
    });
  }
  return out;
}

/** At most one perr per peer per this many ms. */
const PERR_INTERVAL_MS = 1000;

/**
 * One runtime instance: owns the lifecycle and the receive loop, and routes each frame to the
 * part that handles it (serving, calls, discovery, events).
 */
class NodeRuntime implements KeelNode, RuntimeHooks {
  readonly id: string;
  readonly env: Env;
  readonly log: Logger;
  /** The node's own lines (module `keel.node`). */
  readonly #log: Logger;
  readonly stats: NodeStats = {
    callsStarted: 0,
    requestsHandled: 0,
    failovers: 0,
    protocolErrors: 0,
    eventsEmitted: 0,
    eventsDelivered: 0,
  };
  readonly #settings: NodeSettings;
  readonly #transport: Transport;
  readonly #codec: Codec;
  readonly #registry = new Registry();
  readonly #deadlines: TimerQueue;
  readonly #server: Server;
  readonly #calls: Calls;
  readonly #discovery: Discovery;
  readonly #events: Events;
  readonly #stateListeners = new Set<(state: NodeState) => void>();
  readonly #perrSentAt = new Map<string, number>();
  readonly #shared: NodeShared;
  #receiving: Promise<void> | undefined;
  #statusWatch: Disposable | undefined;
  #stopping: Promise<void> | undefined;
  #transportStatus: TransportStatus = "disconnected";
  /** When the registry counts as synced (one heartbeat after joining). */
  #syncedAt = Number.POSITIVE_INFINITY;

  constructor(options: NodeOptions) {
    this.#settings = resolveSettings(options);
    this.id = options.id;
    this.env = options.env ?? createRealEnv();
    this.log = (options.logger ?? createJsonLogger({ clock: this.env.clock })).child({
      node: options.id,
    });
    this.#log = this.log.child({ module: "keel.node" });
    this.#transport = options.transport;
    this.#codec = options.codec ?? jsonCodec;
    this.#deadlines = new TimerQueue(this.env);
    const hosted = new Map<string, Hosted>();
    for (const def of options.services ?? []) {
      if (def?.kind !== "service") {
        throw new KeelError(
          "CONFIGURATION",
          `node '${options.id}': services must come from defineService()`,
        );
      }
      if (hosted.has(def.key))
        throw new KeelError("CONFIGURATION", `node '${options.id}' hosts ${def.key} twice`);
      hosted.set(def.key, {
        def,
        actions: new Map(Object.entries(def.actions)),
        subscriptions: new Map(def.subscriptions.map((s) => [s.event.name, s])),
        guards: guardsOf(def, this.env),
      });
    }
    const shared = new NodeShared({
      id: this.id,
      env: this.env,
      log: this.log,
      stats: this.stats,
      codec: this.#codec,
      tracing: new Tracing(
        options.id,
        options.tracerProvider,
        this.env.clock,
        options.localCallSpans,
      ),
      metrics:
        options.metrics === undefined
          ? undefined
          : new NodeMetrics(options.metrics, options.id, this.env.clock),
      settings: this.#settings,
      registry: this.#registry,
      deadlines: this.#deadlines,
      hosted,
      hooks: this,
      transport: this.#transport,
    });
    this.#shared = shared;
    const metrics = shared.metrics;
    if (metrics !== undefined) {
      shared.onDecision((d) => metrics.decision(d));
      metrics.watch({ state: () => shared.state, registry: this.#registry, hosted });
    }
    const random = this.env.random.split(`balancer/${options.id}`);
    this.#server = new Server(shared);
    this.#calls = new Calls(shared, this.#server, { random, cursors: new Map() });
    this.#discovery = new Discovery(shared, this.#calls, random);
    this.#events = new Events(shared);
  }

  health(): NodeHealth {
    const state = this.#shared.state;
    const transport = this.#transportStatus;
    const registrySynced = this.env.clock.now() >= this.#syncedAt;
    const ready = state === "ready" && transport === "connected" && registrySynced;
    return { state, transport, registrySynced, ready };
  }

  get state(): NodeState {
    return this.#shared.state;
  }

  get registry(): RegistryView {
    return this.#registry;
  }

  #setState(state: NodeState): void {
    this.#shared.state = state;
    for (const l of this.#stateListeners) l(state);
  }

  actionStats(): readonly ActionStats[] {
    const shared = this.#shared;
    if (shared.actionStats === undefined) {
      const table = new Map<AnyAction, ActionStatsRecord>();
      for (const hosted of shared.hosted.values()) {
        for (const action of hosted.actions.values())
          table.set(action, new ActionStatsRecord(hosted.def.key, action.name));
      }
      shared.actionStats = table;
    }
    return [...shared.actionStats.values()].map((r) => ({
      service: r.service,
      action: r.action,
      requests: r.requests,
      errors: r.errors,
      lastError: r.lastError,
      processingMs: r.processingMs,
    }));
  }

  onDecision(listener: (decision: Decision) => void): () => void {
    return this.#shared.onDecision(listener);
  }

  onStateChange(listener: (state: NodeState) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.#shared.state !== "created") {
      throw new KeelError(
        "FAILED_PRECONDITION",
        `node '${this.id}' is ${this.#shared.state}: a node starts once`,
      );
    }
    this.#setState("starting");
    try {
      await this.#transport.connect();
    } catch (err) {
      this.#setState("created"); // nothing was joined: the caller may fix the cause and start again
      throw err;
    }
    const shared = this.#shared;
    const transportMax = this.#transport.maxFrameBytes;
    if (transportMax !== undefined && transportMax < shared.maxFrameBytes)
      shared.maxFrameBytes = transportMax;
    // Replies cannot come back over a lost connection: fail the calls waiting for them now, as
    // retryable UNAVAILABLE, rather than at their deadlines.
    this.#transportStatus = "connected";
    this.#statusWatch = this.#transport.onStatus?.((status) => {
      this.#transportStatus = status;
      if (status === "connected" || shared.state === "stopped") return;
      this.#log.warn({ status }, "transport connection lost");
      this.#calls.settleAll(
        unavailable(`node '${this.id}' lost its transport connection (${status})`),
      );
    });
    this.#receiving = this.#receive();
    this.#setState("ready");
    this.#discovery.join();
    this.#syncedAt = this.env.clock.now() + this.#settings.heartbeatMs;
  }

  stop(options: StopOptions = {}): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping;
    if (this.#shared.state === "created" || this.#shared.state === "stopped") {
      this.#setState("stopped");
      return Promise.resolve();
    }
    this.#stopping = this.#drain(options.graceMs ?? this.#settings.graceMs);
    return this.#stopping;
  }

  async #drain(graceMs: number): Promise<void> {
    this.#setState("draining");
    this.#discovery.announceDraining();
    await this.#server.whenIdle(graceMs);
    if (this.#shared.state === "stopped") return; // crashed while draining: a dead process says nothing
    // Whatever is still running gets a clear answer: never dropped silently.
    const cutOff = unavailable(`node '${this.id}' stopped before the request finished`, {
      node: this.id,
    });
    this.#server.interruptAll(cutOff, false);
    this.#discovery.leave();
    await this.#shutdown(unavailable(`node '${this.id}' stopped`));
  }

  crash(): void {
    if (this.#shared.state === "stopped") return;
    const err = unavailable(`node '${this.id}' crashed`);
    // A crashed process answers nobody remote; local callers share its fate.
    this.#server.interruptAll(err, true);
    void this.#shutdown(err);
  }

  async #shutdown(reason: KeelError): Promise<void> {
    this.#setState("stopped");
    this.#discovery.stop();
    this.#deadlines.dispose();
    this.#calls.settleAll(reason);
    this.#shared.metrics?.stop();
    this.#transportStatus = "disconnected";
    this.#statusWatch?.[Symbol.dispose]();
    await this.#transport.close();
    await this.#receiving;
  }

  waitForEndpoints(
    service: AnyService,
    count = 1,
    timeoutMs = this.#settings.defaultTimeoutMs,
  ): Promise<void> {
    const enough = () => this.#registry.endpoints(service.name, service.version).length >= count;
    if (enough()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const off = this.#registry.onChange(() => {
        if (!enough()) return;
        off();
        this.env.timers.cancel(timer);
        resolve();
      });
      const timer = this.env.timers.schedule(() => {
        off();
        reject(
          unavailable(`fewer than ${count} endpoints of ${service.key} after ${timeoutMs} ms`),
        );
      }, timeoutMs);
    });
  }

  // ---- frames in -------------------------------------------------------------------------------

  async #receive(): Promise<void> {
    try {
      const transport = this.#transport;
      if (transport.listen !== undefined) await transport.listen(this.#onInbound);
      else for await (const inbound of transport) this.#onFrame(inbound.frame, inbound.from);
    } catch (err) {
      this.#log.error({ err }, "transport receive loop failed");
    }
    if (this.#shared.state !== "stopped") {
      // The transport ended on its own (closed for good): a node that cannot hear is down.
      this.#log.error({}, "transport closed underneath the node: stopping");
      this.crash();
    }
  }

  /** The transport's frame sink, for transports that call it as frames arrive. */
  readonly #onInbound = (bytes: Uint8Array, from: string | undefined): void => {
    try {
      this.#onFrame(bytes, from);
    } catch (err) {
      // Only a throwing logger gets here: the transport's read loop must go on.
      try {
        this.#log.error({ err }, "failed to process a frame");
      } catch {
        // nothing more can be said
      }
    }
  };

  #onFrame(bytes: Uint8Array, from: string | undefined): void {
    let frame: Envelope;
    try {
      frame = this.#codec.decode(bytes, this.#shared.maxFrameBytes);
    } catch (err) {
      this.#onBadFrame(bytes, from, err);
      return;
    }
    if (this.#shared.state === "stopped" || frame.from === this.id) return;
    try {
      this.#dispatch(frame);
    } catch (err) {
      // A bug in a handler path must not end the receive loop.
      this.#log.error({ err, kind: frame.k, peer: frame.from }, "failed to process a frame");
    }
  }

  #onBadFrame(bytes: Uint8Array, from: string | undefined, err: unknown): void {
    this.stats.protocolErrors++;
    const violation = err instanceof ProtocolViolation ? err : undefined;
    const sender = from ?? violation?.frameFrom;
    this.#log.warn(
      { err, peer: sender, kind: violation?.frameKind, bytes: bytes.byteLength },
      "refused a malformed frame",
    );
    if (sender === undefined || sender === this.id || this.#shared.state === "stopped") return;
    const wire = isKeelError(err)
      ? err.toWire()
      : { code: "PROTOCOL" as const, message: "malformed frame", retryable: false };
    const send = (frame: Envelope) => {
      try {
        this.#transport.send(sender, encodeChecked(this.#codec, frame, this.#shared.maxFrameBytes));
      } catch (e) {
        this.#log.warn({ err: e, peer: sender }, "frame refused before sending");
      }
    };
    // Answer a request by its id so the caller fails fast; never answer replies or protocol errors.
    if (violation?.frameKind === "req" && violation.frameId !== undefined) {
      send({
        v: WIRE_VERSION,
        k: "res",
        id: violation.frameId,
        from: this.id,
        ok: false,
        err: wire,
      });
    } else if (violation?.frameKind !== "res" && violation?.frameKind !== "perr") {
      // At most one perr per peer per second: two nodes that cannot read each other (say, JSON
      // and MessagePack) would otherwise answer each other's perr forever.
      const now = this.env.clock.now();
      const last = this.#perrSentAt.get(sender);
      if (last !== undefined && now - last < PERR_INTERVAL_MS) return;
      remember(this.#perrSentAt, sender, now);
      send({ v: WIRE_VERSION, k: "perr", from: this.id, err: wire });
    }
  }

  #dispatch(frame: Envelope): void {
    const now = this.env.clock.now();
    const known = this.#registry.touch(frame.from, now);
    switch (frame.k) {
      case "req":
        this.#server.onRequest(frame, now);
        break;
      case "res":
        this.#calls.onResponse(frame, now);
        break;
      case "cancel":
        this.#server.onCancel(frame.from, frame.id);
        break;
      case "evt":
        this.#events.onEvent(frame);
        break;
      case "announce":
        this.#discovery.onAnnounce(frame, known, now);
        break;
      case "hb":
        this.#discovery.onHeartbeat(frame, known);
        break;
      case "leave":
        this.#discovery.onLeave(frame, known);
        break;
      case "perr":
        this.stats.protocolErrors++;
        this.#log.warn(
          { peer: frame.from, err: frame.err },
          "a peer refused a frame from this node",
        );
        break;
    }
  }

  // ---- the API and the hooks handler contexts use ------------------------------------------------

  call<S extends AnyService, A extends ActionName<S>>(
    service: S,
    action: A,
    input: InputOf<S, A>,
    options?: CallOptions,
  ): Promise<OutputOf<S, A>> {
    return this.#calls.invoke(service, action, input, options, undefined, undefined) as Promise<
      OutputOf<S, A>
    >;
  }

  client<S extends AnyService>(
    service: S,
    defaults?: CallOptions,
    parent?: Invocation,
    span?: Span,
  ): Client<S> {
    return this.#calls.client(service, defaults, parent, span);
  }

  invoke(
    service: AnyService,
    action: string,
    input: unknown,
    options: CallOptions | undefined,
    parent: Invocation | undefined,
    span: Span | undefined,
  ): Promise<unknown> {
    return this.#calls.invoke(service, action, input, options, parent, span);
  }

  emit<E extends EventDefinition>(event: E, payload: PayloadOf<E>): void {
    this.#events.emit(event, payload, "emit", undefined, undefined);
  }

  broadcast<E extends EventDefinition>(event: E, payload: PayloadOf<E>): void {
    this.#events.emit(event, payload, "broadcast", undefined, undefined);
  }

  emitEvent(
    event: EventDefinition,
    payload: unknown,
    mode: "emit" | "broadcast",
    parent: Scope | undefined,
    span: Span | undefined,
  ): void {
    this.#events.emit(event, payload, mode, parent, span);
  }

  expired(inv: Invocation): void {
    this.#server.expired(inv);
  }
}

/**
 * Creates a node: one runtime instance hosting services on a transport.
 * @example
 * const network = createInProcessNetwork({ env });
 * const node = createNode({ id: "a", env, transport: network.transport("a"), services: [payments] });
 * await node.start();
 * const { chargeId } = await node.call(payments, "charge", { orderId: "o1", amount: 10 });
 */
export function createNode(options: NodeOptions): KeelNode {
  return new NodeRuntime(options);
}
