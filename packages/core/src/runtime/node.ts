import { createRealEnv, type Env, type TimerHandle } from "../env/index.ts";
import { isKeelError, KeelError } from "../errors/index.ts";
import { type StandardSchemaV1, schemaError, validate } from "../schema/index.ts";
import type { InboundFrame, Transport } from "../transport/index.ts";
import {
  type AnnounceFrame,
  type Codec,
  DEFAULT_MAX_FRAME_BYTES,
  type Envelope,
  type EventFrame,
  encodeChecked,
  jsonCodec,
  ProtocolViolation,
  type RequestFrame,
  type ResponseFrame,
  type ServiceAnnouncement,
  WIRE_VERSION,
} from "../wire/index.ts";
import {
  type BalancerState,
  checkBalancerName,
  checkRouting,
  pick,
  pickVersion,
} from "./balancer.ts";
import type { BalancerName, Caller, CallOptions, Client } from "./context-types.ts";
import { DeadlineTracker, type Expiring } from "./deadlines.ts";
import { EventInvocation, Invocation, type RuntimeHooks } from "./invocation.ts";
import { createJsonLogger, type Logger } from "./logger.ts";
import { type Endpoint, type NodeDownReason, Registry, type RegistryView } from "./registry.ts";
import { cancelled, deadlineExceeded, type Scope } from "./scope.ts";
import type {
  ActionName,
  AnyAction,
  AnyService,
  EventDefinition,
  InputOf,
  OutputOf,
  PayloadOf,
  Subscription,
} from "./service.ts";

/** A node's lifecycle. */
export type NodeState = "created" | "starting" | "ready" | "draining" | "stopped";

/** Options for `createNode`. */
export interface NodeOptions {
  /** Unique id of this node in the cluster. */
  readonly id: string;
  /** How this node reaches the others (in-process network, NATS). */
  readonly transport: Transport;
  /** Time, timers and randomness (default: the real Env). */
  readonly env?: Env;
  /** Services this node hosts. */
  readonly services?: readonly AnyService[];
  /** Wire codec for frames to other nodes (default JSON). */
  readonly codec?: Codec;
  /** Largest frame accepted or sent, in bytes (default 1 MiB). */
  readonly maxFrameBytes?: number;
  /** How often this node says it is alive (default 200 ms). */
  readonly heartbeatIntervalMs?: number;
  /** A node silent this long is taken for dead (default 700 ms; detection within timeout + interval). */
  readonly failureTimeoutMs?: number;
  /** How long `stop()` waits for in-flight requests (default 5000 ms). */
  readonly drainGraceMs?: number;
  /** Deadline of calls that set no `timeoutMs` (default 10000 ms). */
  readonly defaultTimeoutMs?: number;
  /** Default balancing strategy (default `p2c`). */
  readonly balancer?: BalancerName;
  /** Where the node logs (default: JSON lines on stderr at `warn`). */
  readonly logger?: Logger;
}

/** Counters a node keeps about its own work. */
export interface NodeStats {
  /** Calls this node made (local and remote). */
  callsStarted: number;
  /** Requests this node handled. */
  requestsHandled: number;
  /** Calls re-sent to another endpoint after one could not serve them. */
  failovers: number;
  /** Frames refused as malformed, oversized or of unknown version. */
  protocolErrors: number;
  eventsEmitted: number;
  eventsDelivered: number;
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
}

interface Hosted {
  readonly def: AnyService;
  readonly actions: ReadonlyMap<string, AnyAction>;
  readonly subscriptions: ReadonlyMap<string, Subscription>;
}

/** What a client call is about; fixed for its lifetime. */
interface CallSpec {
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
}

/** A call to a remote endpoint (and its failovers), tracked until it settles. */
class ClientCall implements Expiring {
  heapIndex = -1;
  settled = false;
  attemptId = "";
  endpoint: Endpoint | undefined;
  sentAt = 0;
  tried: Set<string> | undefined;
  unlink: (() => void) | undefined;
  readonly spec: CallSpec;
  readonly deadline: number;

  constructor(spec: CallSpec) {
    this.spec = spec;
    this.deadline = spec.deadline;
  }

  expire(): void {
    this.spec.onExpire(this);
  }
}

const DEFAULTS = {
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  heartbeatIntervalMs: 200,
  failureTimeoutMs: 700,
  drainGraceMs: 5000,
  defaultTimeoutMs: 10_000,
} as const;

const PERR_INTERVAL_MS = 1000;
/** Bound on per-peer bookkeeping maps: the oldest entries go first. */
const MAX_REMEMBERED_PEERS = 1024;

/** Sets `key` in an insertion-ordered map, forgetting the oldest entry past the bound. */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_REMEMBERED_PEERS) map.delete(map.keys().next().value as string);
}

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(Number.isFinite(value) && value > 0)) {
    throw new KeelError(
      "CONFIGURATION",
      `node option '${name}' must be a positive number, got ${value}`,
    );
  }
  return value;
}

function unavailable(message: string, details?: Record<string, unknown>): KeelError {
  return new KeelError(
    "UNAVAILABLE",
    message,
    details === undefined ? { noStack: true } : { noStack: true, details },
  );
}

/** True when the error says the request never started on the server, so any action may go elsewhere. */
function notProcessed(err: KeelError): boolean {
  return err.code === "UNAVAILABLE" && err.details?.["notProcessed"] === true;
}

class NodeRuntime implements KeelNode, RuntimeHooks {
  readonly id: string;
  readonly env: Env;
  readonly log: Logger;
  readonly stats: NodeStats = {
    callsStarted: 0,
    requestsHandled: 0,
    failovers: 0,
    protocolErrors: 0,
    eventsEmitted: 0,
    eventsDelivered: 0,
  };
  readonly #transport: Transport;
  readonly #codec: Codec;
  readonly #maxFrameBytes: number;
  readonly #heartbeatMs: number;
  readonly #failureTimeoutMs: number;
  readonly #graceMs: number;
  readonly #defaultTimeoutMs: number;
  readonly #balancer: BalancerName;
  readonly #hosted = new Map<string, Hosted>();
  readonly #announcement: ServiceAnnouncement[];
  readonly #registry = new Registry();
  readonly #deadlines: DeadlineTracker;
  readonly #balance: BalancerState;
  /** Requests in flight on this node (remote ones, and local ones that went asynchronous). */
  #servingHead: Invocation | undefined;
  #servingCount = 0;
  /** Remote requests by `from\0id`, for cancel frames. */
  readonly #servingRemote = new Map<string, Invocation>();
  /** Calls awaiting a remote reply, by attempt id. */
  readonly #pending = new Map<string, ClientCall>();
  readonly #stateListeners = new Set<(state: NodeState) => void>();
  #state: NodeState = "created";
  readonly #perrSentAt = new Map<string, number>();
  /** Incarnations that said goodbye, by node id. */
  readonly #departed = new Map<string, string>();
  #seq = 0;
  #incarnation = "";
  #nextId = 0;
  #heartbeat: TimerHandle | undefined;
  #receiving: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #drained: (() => void) | undefined;
  #eventCursor = 0;

  constructor(options: NodeOptions) {
    if (typeof options.id !== "string" || !NODE_ID.test(options.id)) {
      throw new KeelError("CONFIGURATION", `node id '${String(options.id)}' must match ${NODE_ID}`);
    }
    if (options.transport === undefined)
      throw new KeelError("CONFIGURATION", `node '${options.id}' needs a transport`);
    this.id = options.id;
    this.env = options.env ?? createRealEnv();
    this.log = (options.logger ?? createJsonLogger({ clock: this.env.clock })).child({
      node: options.id,
    });
    this.#transport = options.transport;
    this.#codec = options.codec ?? jsonCodec;
    this.#maxFrameBytes = positive("maxFrameBytes", options.maxFrameBytes, DEFAULTS.maxFrameBytes);
    this.#heartbeatMs = positive(
      "heartbeatIntervalMs",
      options.heartbeatIntervalMs,
      DEFAULTS.heartbeatIntervalMs,
    );
    this.#failureTimeoutMs = positive(
      "failureTimeoutMs",
      options.failureTimeoutMs,
      DEFAULTS.failureTimeoutMs,
    );
    if (this.#failureTimeoutMs <= this.#heartbeatMs) {
      throw new KeelError(
        "CONFIGURATION",
        "node option 'failureTimeoutMs' must be longer than 'heartbeatIntervalMs'",
      );
    }
    this.#graceMs = options.drainGraceMs ?? DEFAULTS.drainGraceMs;
    if (!(this.#graceMs >= 0))
      throw new KeelError("CONFIGURATION", "node option 'drainGraceMs' must be >= 0");
    this.#defaultTimeoutMs = positive(
      "defaultTimeoutMs",
      options.defaultTimeoutMs,
      DEFAULTS.defaultTimeoutMs,
    );
    this.#balancer = options.balancer ?? "p2c";
    checkBalancerName(this.#balancer);
    this.#deadlines = new DeadlineTracker(this.env);
    this.#balance = { random: this.env.random.split(`balancer/${options.id}`), cursors: new Map() };
    for (const def of options.services ?? []) {
      if (def?.kind !== "service")
        throw new KeelError(
          "CONFIGURATION",
          `node '${options.id}': services must come from defineService()`,
        );
      if (this.#hosted.has(def.key))
        throw new KeelError("CONFIGURATION", `node '${options.id}' hosts ${def.key} twice`);
      this.#hosted.set(def.key, {
        def,
        actions: new Map(Object.entries(def.actions)),
        subscriptions: new Map(def.subscriptions.map((s) => [s.event.name, s])),
      });
    }
    this.#announcement = [...this.#hosted.values()].map((h) => ({
      name: h.def.name,
      version: h.def.version,
      actions: [...h.actions.keys()],
      events: [...h.subscriptions.keys()],
    }));
  }

  get state(): NodeState {
    return this.#state;
  }

  get registry(): RegistryView {
    return this.#registry;
  }

  #setState(state: NodeState): void {
    this.#state = state;
    for (const l of this.#stateListeners) l(state);
  }

  onStateChange(listener: (state: NodeState) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.#state !== "created") {
      throw new KeelError(
        "FAILED_PRECONDITION",
        `node '${this.id}' is ${this.#state}: a node starts once`,
      );
    }
    this.#setState("starting");
    try {
      await this.#transport.connect();
    } catch (err) {
      this.#setState("created"); // nothing was joined: the caller may fix the cause and start again
      throw err;
    }
    // From the Env's shared stream: a per-node split would repeat across restarts of the same id.
    this.#incarnation = this.env.random.hex(8);
    this.#registry.upsert(this.#self("ready"), this.env.clock.now());
    this.#receiving = this.#receive();
    this.#setState("ready");
    this.#broadcast(this.#announce(true));
    this.#scheduleHeartbeat();
  }

  stop(options: StopOptions = {}): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping;
    if (this.#state === "created" || this.#state === "stopped") {
      this.#setState("stopped");
      return Promise.resolve();
    }
    this.#stopping = this.#drain(options.graceMs ?? this.#graceMs);
    return this.#stopping;
  }

  async #drain(graceMs: number): Promise<void> {
    this.#setState("draining");
    this.#seq++;
    this.#registry.upsert(this.#self("draining"), this.env.clock.now());
    this.#broadcast(this.#announce(false));
    if (this.#servingCount > 0) {
      await new Promise<void>((resolve) => {
        const timer = this.env.timers.setTimeout(() => {
          this.#drained = undefined;
          resolve();
        }, graceMs);
        this.#drained = () => {
          this.env.timers.clearTimeout(timer);
          this.#drained = undefined;
          resolve();
        };
      });
    }
    if (this.#state === "stopped") return; // crashed while draining: a dead process says nothing
    // Whatever is still running gets a clear answer: never dropped silently.
    for (const inv of this.#inFlight()) {
      const err = unavailable(`node '${this.id}' stopped before the request finished`, {
        node: this.id,
      });
      inv.abort(err);
      this.#finish(inv, false, err);
    }
    this.#broadcast({ v: WIRE_VERSION, k: "leave", from: this.id });
    await this.#shutdown(unavailable(`node '${this.id}' stopped`));
  }

  crash(): void {
    if (this.#state === "stopped") return;
    const err = unavailable(`node '${this.id}' crashed`);
    for (const inv of this.#inFlight()) {
      inv.abort(err);
      // A crashed process answers nobody remote; local callers share its fate.
      this.#finish(inv, false, err, true);
    }
    void this.#shutdown(err);
  }

  async #shutdown(reason: KeelError): Promise<void> {
    this.#setState("stopped");
    if (this.#heartbeat !== undefined) this.env.timers.clearTimeout(this.#heartbeat);
    this.#heartbeat = undefined;
    this.#deadlines.dispose();
    for (const call of [...this.#pending.values()]) this.#settle(call, reason);
    await this.#transport.close();
    await this.#receiving;
  }

  waitForEndpoints(
    service: AnyService,
    count = 1,
    timeoutMs = this.#defaultTimeoutMs,
  ): Promise<void> {
    const enough = () => this.#registry.endpoints(service.name, service.version).length >= count;
    if (enough()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const off = this.#registry.onChange(() => {
        if (!enough()) return;
        off();
        this.env.timers.clearTimeout(timer);
        resolve();
      });
      const timer = this.env.timers.setTimeout(() => {
        off();
        reject(
          unavailable(`fewer than ${count} endpoints of ${service.key} after ${timeoutMs} ms`),
        );
      }, timeoutMs);
    });
  }

  // ---- discovery -------------------------------------------------------------------------------

  #self(state: "ready" | "draining") {
    return {
      id: this.id,
      local: true,
      incarnation: this.#incarnation,
      maxFrameBytes: this.#maxFrameBytes,
      seq: this.#seq,
      state,
      services: this.#announcement,
    };
  }

  #announce(reply: boolean): AnnounceFrame {
    const state = this.#state === "draining" ? "draining" : "ready";
    return {
      v: WIRE_VERSION,
      k: "announce",
      from: this.id,
      inc: this.#incarnation,
      max: this.#maxFrameBytes,
      seq: this.#seq,
      state,
      services: this.#announcement,
      reply,
    };
  }

  #scheduleHeartbeat(): void {
    // +-10 % jitter keeps a fleet's heartbeats from lining up.
    const delay = this.#heartbeatMs * (0.9 + 0.2 * this.#balance.random.next());
    this.#heartbeat = this.env.timers.setTimeout(() => this.#onHeartbeat(), delay);
  }

  #onHeartbeat(): void {
    if (this.#state !== "ready" && this.#state !== "draining") return;
    this.#broadcast({
      v: WIRE_VERSION,
      k: "hb",
      from: this.id,
      inc: this.#incarnation,
      seq: this.#seq,
    });
    const silentSince = this.env.clock.now() - this.#failureTimeoutMs;
    for (const node of this.#registry.silentSince(silentSince)) this.#nodeGone(node, "failed");
    this.#scheduleHeartbeat();
  }

  #nodeGone(node: string, reason: NodeDownReason): void {
    if (!this.#registry.remove(node, reason)) return;
    if (reason === "failed") {
      this.log.warn({ peer: node }, "peer failed: no frame within the failure timeout");
    }
    const waiting = [...this.#pending.values()].filter((call) => call.endpoint?.node === node);
    if (waiting.length === 0) return;
    const fail = () => {
      for (const call of waiting) {
        if (this.#pending.get(call.attemptId) !== call) continue; // answered meanwhile
        this.#pending.delete(call.attemptId);
        this.#attemptFailed(
          call,
          unavailable(`node '${node}' ${reason} before replying`, { node }),
        );
      }
    };
    // A goodbye can overtake a node's last replies (links may reorder): give them time to land.
    if (reason === "left") this.env.timers.setTimeout(fail, this.#failureTimeoutMs);
    else fail();
  }

  // ---- frames in -------------------------------------------------------------------------------

  async #receive(): Promise<void> {
    try {
      for await (const inbound of this.#transport) this.#onFrame(inbound);
    } catch (err) {
      this.log.error({ err }, "transport receive loop failed");
    }
  }

  #onFrame(inbound: InboundFrame): void {
    let frame: Envelope;
    try {
      frame = this.#codec.decode(inbound.frame, this.#maxFrameBytes);
    } catch (err) {
      this.#onBadFrame(inbound, err);
      return;
    }
    if (this.#state === "stopped" || frame.from === this.id) return;
    try {
      this.#dispatch(frame);
    } catch (err) {
      // A bug in a handler path must not end the receive loop.
      this.log.error({ err, kind: frame.k, peer: frame.from }, "failed to process a frame");
    }
  }

  #onBadFrame(inbound: InboundFrame, err: unknown): void {
    this.stats.protocolErrors++;
    const violation = err instanceof ProtocolViolation ? err : undefined;
    const sender = inbound.from ?? violation?.frameFrom;
    this.log.warn(
      { err, peer: sender, kind: violation?.frameKind, bytes: inbound.frame.byteLength },
      "refused a malformed frame",
    );
    if (sender === undefined || sender === this.id || this.#state === "stopped") return;
    const wire = isKeelError(err)
      ? err.toWire()
      : { code: "PROTOCOL" as const, message: "malformed frame", retryable: false };
    // Answer a request by its id so the caller fails fast; never answer replies or protocol errors.
    if (violation?.frameKind === "req" && violation.frameId !== undefined) {
      this.#sendTo(sender, {
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
      this.#sendTo(sender, { v: WIRE_VERSION, k: "perr", from: this.id, err: wire });
    }
  }

  #dispatch(frame: Envelope): void {
    const now = this.env.clock.now();
    const known = this.#registry.touch(frame.from, now);
    switch (frame.k) {
      case "req":
        this.#onRequest(frame);
        break;
      case "res":
        this.#onResponse(frame);
        break;
      case "cancel": {
        const inv = this.#servingRemote.get(`${frame.from}\u0000${frame.id}`);
        if (inv !== undefined) {
          const reason = cancelled();
          inv.abort(reason);
          this.#finish(inv, false, reason, true);
        }
        break;
      }
      case "evt":
        this.#onEvent(frame);
        break;
      case "announce": {
        if (this.#departed.get(frame.from) === frame.inc) break;
        if (known !== undefined && known.incarnation !== frame.inc)
          this.#nodeGone(frame.from, "restarted");
        const isNew = this.#registry.upsert(
          {
            id: frame.from,
            local: false,
            incarnation: frame.inc,
            maxFrameBytes: frame.max,
            seq: frame.seq,
            state: frame.state,
            services: frame.services,
          },
          now,
        );
        if ((isNew || frame.reply === true) && this.#state !== "stopped")
          this.#sendTo(frame.from, this.#announce(false));
        break;
      }
      case "hb":
        if (this.#departed.get(frame.from) === frame.inc) break;
        // A stranger, a restarted node, or news we missed: ask for its announce.
        if (known !== undefined && known.incarnation !== frame.inc) {
          this.#nodeGone(frame.from, "restarted");
          this.#sendTo(frame.from, this.#announce(true));
        } else if (known === undefined || known.seq < frame.seq)
          this.#sendTo(frame.from, this.#announce(true));
        break;
      case "leave":
        // Remember which life said goodbye: its frames still in flight must not bring it back.
        if (known !== undefined) remember(this.#departed, frame.from, known.incarnation);
        this.#nodeGone(frame.from, "left");
        break;
      case "perr":
        this.stats.protocolErrors++;
        this.log.warn(
          { peer: frame.from, err: frame.err },
          "a peer refused a frame from this node",
        );
        break;
    }
  }

  // ---- serving ---------------------------------------------------------------------------------

  #onRequest(f: RequestFrame): void {
    const refuse = (err: KeelError) =>
      this.#sendTo(f.from, {
        v: WIRE_VERSION,
        k: "res",
        id: f.id,
        from: this.id,
        ok: false,
        err: err.toWire(),
      });
    if (this.#state !== "ready") {
      refuse(
        unavailable(`node '${this.id}' is ${this.#state}`, { node: this.id, notProcessed: true }),
      );
      return;
    }
    const hosted = this.#hosted.get(`${f.svc}@${f.ver}`);
    if (hosted === undefined) {
      refuse(
        unavailable(`node '${this.id}' does not host ${f.svc}@${f.ver}`, {
          node: this.id,
          notProcessed: true,
        }),
      );
      return;
    }
    const action = hosted.actions.get(f.act);
    if (action === undefined) {
      refuse(
        new KeelError("NOT_FOUND", `${f.svc}@${f.ver} has no action '${f.act}'`, { noStack: true }),
      );
      return;
    }
    if (f.dl <= 0) {
      refuse(deadlineExceeded(`no time left for ${f.svc}@${f.ver}.${f.act} on arrival`));
      return;
    }
    const now = this.env.clock.now();
    const budget = action.timeoutMs === undefined ? f.dl : Math.min(f.dl, action.timeoutMs);
    const inv = new Invocation(
      this,
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
      f.from,
    );
    this.#servingRemote.set(`${f.from}\u0000${f.id}`, inv);
    this.#register(inv, now);
    this.#serve(inv, action, f.p);
  }

  /**
   * Runs a handler for an accepted request and delivers the outcome exactly once. Stays
   * synchronous while the schemas and the handler are; the first promise registers the call.
   */
  #serve(inv: Invocation, action: AnyAction, input: unknown): void {
    this.stats.requestsHandled++;
    this.#validateThen(inv, action, action.input, input, this.#handle);
  }

  /** Validates `value`, then continues with `next`: at once when the schema is synchronous. */
  #validateThen(
    inv: Invocation,
    action: AnyAction,
    schema: StandardSchemaV1,
    value: unknown,
    next: (inv: Invocation, action: AnyAction, checked: StandardSchemaV1.Result<unknown>) => void,
  ): void {
    let checked: StandardSchemaV1.Result<unknown> | Promise<StandardSchemaV1.Result<unknown>>;
    try {
      checked = schema["~standard"].validate(value);
    } catch (err) {
      this.#fail(inv, err);
      return;
    }
    if (checked instanceof Promise) {
      this.#register(inv, this.env.clock.now());
      checked.then(
        (r) => next.call(this, inv, action, r),
        (err: unknown) => this.#fail(inv, err),
      );
    } else {
      next.call(this, inv, action, checked);
    }
  }

  #handle(inv: Invocation, action: AnyAction, checked: StandardSchemaV1.Result<unknown>): void {
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
      out = action.handler(checked.value, inv);
    } catch (err) {
      this.#fail(inv, err);
      return;
    }
    if (out instanceof Promise) {
      this.#register(inv, this.env.clock.now());
      out.then(
        (value: unknown) => this.#respond(inv, action, value),
        (err: unknown) => this.#fail(inv, err),
      );
    } else {
      this.#respond(inv, action, out);
    }
  }

  /**
   * Registers an invocation as in flight: fixes its deadline, tracks it for drain and
   * cancellation, and counts it on its endpoint. Expires it at once if no time is left.
   */
  #register(inv: Invocation, now: number): void {
    if (inv.registered || inv.settled) return;
    inv.registered = true;
    const head = this.#servingHead;
    inv.nextServing = head;
    if (head !== undefined) head.prevServing = inv;
    this.#servingHead = inv;
    this.#servingCount++;
    const deadline = inv.fixDeadline(now);
    this.#deadlines.add(inv);
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
    if (prev === undefined) this.#servingHead = next;
    else prev.nextServing = next;
    if (next !== undefined) next.prevServing = prev;
    inv.prevServing = undefined;
    inv.nextServing = undefined;
    this.#servingCount--;
    this.#deadlines.remove(inv);
    inv.unlink?.();
    const ep = inv.endpoint;
    if (ep !== undefined) {
      ep.inflight--;
      if (inv.measure) Registry.observe(ep, this.env.clock.now() - inv.startedAt);
    }
  }

  /** A snapshot of the in-flight invocations. */
  #inFlight(): Invocation[] {
    const out: Invocation[] = [];
    for (let inv = this.#servingHead; inv !== undefined; inv = inv.nextServing) out.push(inv);
    return out;
  }

  /** Checks a handler's result against the output schema, then delivers it. */
  #respond(inv: Invocation, action: AnyAction, out: unknown): void {
    if (inv.settled) return;
    this.#validateThen(inv, action, action.output, out, this.#deliver);
  }

  #deliver(inv: Invocation, _action: AnyAction, checked: StandardSchemaV1.Result<unknown>): void {
    if (checked.issues !== undefined) {
      this.#fail(
        inv,
        schemaError("INTERNAL", `output of ${inv.service}.${inv.action}`, checked.issues),
      );
    } else {
      this.#finish(inv, true, checked.value);
    }
  }

  #fail(inv: Invocation, err: unknown): void {
    if (inv.settled) return;
    this.#finish(inv, false, this.#asKeelError(err, inv));
  }

  #asKeelError(err: unknown, inv: Invocation): KeelError {
    if (isKeelError(err)) {
      if (err.code === "INTERNAL" && err.details?.["requestId"] === undefined) {
        // An output-schema violation or a handler's own INTERNAL: log it, and say which request.
        this.log.error(
          { err, service: inv.service, action: inv.action, requestId: inv.requestId },
          "handler failed",
        );
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
    this.log.error(
      { err, service: inv.service, action: inv.action, requestId: inv.requestId },
      "handler failed",
    );
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
    if (inv.replyTo === undefined) {
      if (inv.rejectLocal === undefined) {
        // Settled before any promise was made: the caller picks the outcome up synchronously.
        inv.ok = ok;
        inv.result = value;
      } else if (ok) inv.resolveLocal?.(value);
      else inv.rejectLocal(value as KeelError);
    } else {
      this.#servingRemote.delete(`${inv.replyTo}\u0000${inv.requestId}`);
      if (!silent && this.#state !== "stopped") this.#reply(inv, ok, value);
    }
    if (this.#drained !== undefined && this.#servingCount === 0) this.#drained();
  }

  #reply(inv: Invocation, ok: boolean, value: unknown): void {
    const to = inv.replyTo!;
    let frame: ResponseFrame = ok
      ? { v: WIRE_VERSION, k: "res", id: inv.requestId, from: this.id, ok: true, p: value }
      : {
          v: WIRE_VERSION,
          k: "res",
          id: inv.requestId,
          from: this.id,
          ok: false,
          err: (value as KeelError).toWire(),
        };
    let bytes: Uint8Array;
    try {
      bytes = encodeChecked(this.#codec, frame, this.#limitFor(to));
    } catch (err) {
      const e = isKeelError(err) ? err : new KeelError("INTERNAL", "reply could not be encoded");
      this.log.warn(
        { err: e, service: inv.service, action: inv.action },
        "reply refused before sending",
      );
      frame = {
        v: WIRE_VERSION,
        k: "res",
        id: inv.requestId,
        from: this.id,
        ok: false,
        err: e.toWire(),
      };
      bytes = this.#codec.encode(frame);
    }
    this.#transport.send(to, bytes);
  }

  expired(inv: Invocation): void {
    const err = deadlineExceeded(`${inv.service}.${inv.action} exceeded its deadline`);
    inv.abort(err);
    this.#finish(inv, false, err);
  }

  // ---- calling ---------------------------------------------------------------------------------

  call<S extends AnyService, A extends ActionName<S>>(
    service: S,
    action: A,
    input: InputOf<S, A>,
    options?: CallOptions,
  ): Promise<OutputOf<S, A>> {
    return this.invoke(service, action, input, options, undefined) as Promise<OutputOf<S, A>>;
  }

  client<S extends AnyService>(service: S, defaults?: CallOptions, parent?: Invocation): Client<S> {
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
        );
    }
    return Object.freeze(out) as Client<S>;
  }

  invoke(
    service: AnyService,
    actionName: string,
    input: unknown,
    options: CallOptions | undefined,
    parent: Invocation | undefined,
  ): Promise<unknown> {
    const state = this.#state;
    if (state !== "ready" && state !== "draining") {
      return Promise.reject(
        unavailable(`node '${this.id}' is ${state}: it cannot make calls`, { notProcessed: true }),
      );
    }
    this.stats.callsStarted++;
    const action = service.actions[actionName];
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
      this.#balancer === "consistent-hash" &&
      options?.hashKey === undefined &&
      options?.balancer === undefined
    ) {
      return Promise.reject(
        new KeelError(
          "CONFIGURATION",
          `node '${this.id}' balances by consistent hash: calls need a 'hashKey'`,
        ),
      );
    }
    const timeout = options?.timeoutMs ?? this.#defaultTimeoutMs;
    if (parent?.reason !== undefined) return Promise.reject(parent.reason);
    if (!(timeout > 0)) {
      return Promise.reject(deadlineExceeded(`no time left to call ${service.key}.${actionName}`));
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(cancelled());

    let key = service.key;
    const weights = options?.versions;
    if (weights !== undefined) {
      const v = pickVersion(
        weights,
        (version) => (this.#registry.endpointsByKey(`${service.name}@${version}`)?.length ?? 0) > 0,
        this.#balance.random,
      );
      if (v !== undefined) key = `${service.name}@${v}`;
    }
    const endpoints = this.#registry.endpointsByKey(key);
    const ep =
      endpoints === undefined
        ? undefined
        : pick(
            options?.balancer ?? this.#balancer,
            key,
            endpoints,
            this.#balance,
            undefined,
            options?.hashKey,
          );
    if (ep === undefined) {
      return Promise.reject(
        unavailable(`no endpoint for ${key}`, { service: key, notProcessed: true }),
      );
    }
    if (ep.local) {
      const hosted = this.#hosted.get(key)!;
      return this.#callLocal(
        hosted,
        hosted.actions.get(actionName) ?? action,
        input,
        options,
        parent,
        timeout,
        ep,
        endpoints!.length > 1,
      );
    }
    // Remote: the deadline is fixed now, since its remaining part travels with the request.
    const now = this.env.clock.now();
    let deadline = now + timeout;
    if (parent !== undefined && parent.deadline < deadline) deadline = parent.deadline;
    if (!(deadline > now)) {
      return Promise.reject(deadlineExceeded(`no time left to call ${service.key}.${actionName}`));
    }
    return new Promise((resolve, reject) => {
      const call = new ClientCall({
        service,
        key,
        action: actionName,
        input,
        options,
        parent,
        idempotent: action.idempotent,
        deadline,
        resolve,
        reject,
        onExpire: (c) => this.#onCallExpired(c),
      });
      this.#deadlines.add(call);
      if (signal !== undefined || parent !== undefined) this.#linkCancel(call, signal, parent);
      this.#sendAttempt(call, ep);
    });
  }

  /**
   * The same-node fast path: no encoding and no transport, but the same validation, deadline and
   * cancellation. A call whose schemas and handler are synchronous completes here without a timer,
   * a clock read or a promise of its own; the first promise registers it as in flight.
   */
  #callLocal(
    hosted: Hosted,
    action: AnyAction,
    input: unknown,
    options: CallOptions | undefined,
    parent: Invocation | undefined,
    timeout: number,
    ep: Endpoint,
    measure: boolean,
  ): Promise<unknown> {
    const budget = action.timeoutMs === undefined ? timeout : Math.min(timeout, action.timeoutMs);
    const cap = parent === undefined ? Number.POSITIVE_INFINITY : parent.deadline;
    const inv = this.#localInvocation(hosted, action, options, parent, Number.NaN, budget, cap);
    inv.endpoint = ep;
    inv.measure = measure;
    inv.callerSignal = options?.signal;
    inv.upstream = parent;
    this.#serve(inv, action, input);
    if (inv.settled) return inv.ok ? Promise.resolve(inv.result) : Promise.reject(inv.result);
    return new Promise((resolve, reject) => {
      inv.resolveLocal = resolve;
      inv.rejectLocal = reject;
    });
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
    return new Invocation(
      this,
      hosted.def.name,
      action.name,
      ++this.#nextId,
      deadline,
      budget,
      cap,
      parent === undefined ? undefined : { node: this.id, service: parent.service },
      options?.idempotencyKey,
      options?.meta,
      parent?.traceContext,
      undefined,
    );
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

  #sendAttempt(call: ClientCall, ep: Endpoint): void {
    const now = this.env.clock.now();
    const remaining = call.deadline - now;
    call.attemptId = (++this.#nextId).toString(36);
    call.endpoint = ep;
    call.sentAt = now;
    const opts = call.spec.options;
    const parent = call.spec.parent;
    const frame: RequestFrame = {
      v: WIRE_VERSION,
      k: "req",
      id: call.attemptId,
      from: this.id,
      svc: call.spec.service.name,
      ver: ep.version,
      act: call.spec.action,
      dl: remaining,
      p: call.spec.input,
      ...(parent?.traceContext === undefined ? {} : { tc: parent.traceContext }),
      ...(opts?.idempotencyKey === undefined ? {} : { ik: opts.idempotencyKey }),
      ...(parent === undefined ? {} : { caller: { node: this.id, service: parent.service } }),
      ...(opts?.meta === undefined ? {} : { meta: opts.meta }),
    };
    let bytes: Uint8Array;
    try {
      // What the receiver would refuse unread fails here, fast.
      bytes = encodeChecked(this.#codec, frame, this.#limitFor(ep.node));
    } catch (err) {
      this.#settle(
        call,
        isKeelError(err)
          ? err
          : new KeelError("INTERNAL", "request could not be encoded", { cause: err }),
      );
      return;
    }
    ep.inflight++;
    this.#pending.set(call.attemptId, call);
    this.#transport.send(ep.node, bytes);
  }

  #onResponse(f: ResponseFrame): void {
    const call = this.#pending.get(f.id);
    if (call === undefined || call.endpoint?.node !== f.from) return; // late, duplicate or stray reply
    this.#pending.delete(f.id);
    const ep = call.endpoint;
    ep.inflight--;
    Registry.observe(ep, this.env.clock.now() - call.sentAt);
    if (f.ok) {
      this.#settle(call, undefined, f.p);
      return;
    }
    const err = KeelError.fromWire(f.err);
    if (notProcessed(err)) {
      this.#attemptFailed(call, err, true);
      return;
    }
    if (err.code === "UNAVAILABLE" && err.details?.["node"] === f.from && call.spec.idempotent) {
      // The node itself gave up on the call (its drain ran out of time): safe to run elsewhere.
      this.#attemptFailed(call, err, false);
      return;
    }
    this.#settle(call, err);
  }

  /** An attempt failed without an answer from the handler: fail over when that is safe. */
  #attemptFailed(call: ClientCall, err: KeelError, wasNotProcessed = notProcessed(err)): void {
    if (call.settled) return;
    // A request that may have run may run again elsewhere only if its action is idempotent.
    const safe = wasNotProcessed || call.spec.idempotent;
    if (!safe || !(call.deadline > this.env.clock.now()) || this.#state === "stopped") {
      this.#settle(call, err);
      return;
    }
    call.tried ??= new Set();
    if (call.endpoint !== undefined) call.tried.add(call.endpoint.node);
    const endpoints = this.#registry.endpointsByKey(call.spec.key);
    const next =
      endpoints === undefined
        ? undefined
        : pick(
            call.spec.options?.balancer ?? this.#balancer,
            call.spec.key,
            endpoints,
            this.#balance,
            call.tried,
            call.spec.options?.hashKey,
          );
    if (next === undefined) {
      this.#settle(call, err);
      return;
    }
    this.stats.failovers++;
    this.log.debug(
      {
        service: call.spec.key,
        action: call.spec.action,
        from: call.endpoint?.node,
        to: next.node,
      },
      "failing over",
    );
    if (next.local) {
      // Fail over to this node: the call keeps its deadline and the caller's promise.
      const hosted = this.#hosted.get(call.spec.key)!;
      const action = hosted.actions.get(call.spec.action)!;
      this.#deadlines.remove(call);
      call.unlink?.();
      call.settled = true;
      const { options, parent } = call.spec;
      const inv = this.#localInvocation(
        hosted,
        action,
        options,
        parent,
        call.deadline,
        0,
        call.deadline,
      );
      inv.endpoint = next;
      inv.measure = true;
      inv.callerSignal = options?.signal;
      inv.upstream = parent;
      inv.resolveLocal = call.spec.resolve;
      inv.rejectLocal = call.spec.reject;
      this.#serve(inv, action, call.spec.input);
      return;
    }
    this.#sendAttempt(call, next);
  }

  #onCallExpired(call: ClientCall): void {
    this.#sendCancel(call);
    this.#settle(
      call,
      deadlineExceeded(`${call.spec.key}.${call.spec.action} exceeded its deadline`),
    );
  }

  #sendCancel(call: ClientCall): void {
    if (call.settled || call.endpoint === undefined || !this.#pending.has(call.attemptId)) return;
    this.#sendTo(call.endpoint.node, {
      v: WIRE_VERSION,
      k: "cancel",
      id: call.attemptId,
      from: this.id,
    });
  }

  /** Settles a client call once, with an error or a value. */
  #settle(call: ClientCall, err: KeelError | undefined, value?: unknown): void {
    if (call.settled) return;
    call.settled = true;
    if (this.#pending.get(call.attemptId) === call) {
      this.#pending.delete(call.attemptId);
      if (call.endpoint !== undefined)
        call.endpoint.inflight = Math.max(0, call.endpoint.inflight - 1);
    }
    this.#deadlines.remove(call);
    call.unlink?.();
    if (err === undefined) call.spec.resolve(value);
    else call.spec.reject(err);
  }

  // ---- events ----------------------------------------------------------------------------------

  emit<E extends EventDefinition>(event: E, payload: PayloadOf<E>): void {
    this.emitEvent(event, payload, "emit", undefined);
  }

  broadcast<E extends EventDefinition>(event: E, payload: PayloadOf<E>): void {
    this.emitEvent(event, payload, "broadcast", undefined);
  }

  emitEvent(
    event: EventDefinition,
    payload: unknown,
    mode: "emit" | "broadcast",
    parent: Scope | undefined,
  ): void {
    if (event?.kind !== "event")
      throw new KeelError("CONFIGURATION", `${mode}() takes an event from defineEvent()`);
    if (this.#state !== "ready" && this.#state !== "draining") {
      throw unavailable(`node '${this.id}' is ${this.#state}: it cannot emit events`);
    }
    const checked = event.schema["~standard"].validate(payload);
    if (!(checked instanceof Promise) && checked.issues !== undefined) {
      throw schemaError("INVALID_ARGUMENT", `payload of event '${event.name}'`, checked.issues);
    }
    this.stats.eventsEmitted++;
    const bySvc = this.#registry.subscribers(event.name);
    if (bySvc === undefined) return;
    const tc = (parent as Invocation | undefined)?.traceContext;
    // One copy per subscribing service (emit, round-robin over its nodes) or per node (broadcast).
    const targets: Array<[node: string, grp: string | undefined]> = [];
    if (mode === "emit") {
      for (const [svc, nodes] of bySvc) {
        targets.push([
          nodes.length === 1 ? nodes[0]! : nodes[this.#eventCursor++ % nodes.length]!,
          svc,
        ]);
      }
    } else {
      const nodes = new Set<string>();
      for (const list of bySvc.values()) for (const n of list) nodes.add(n);
      for (const n of nodes) targets.push([n, undefined]);
    }
    for (const [target, grp] of targets) {
      if (target === this.id) {
        this.#deliverLocal(event.name, payload, grp, this.id, tc);
        continue;
      }
      const frame: EventFrame = {
        v: WIRE_VERSION,
        k: "evt",
        from: this.id,
        name: event.name,
        mode,
        p: payload,
      };
      this.#sendTo(target, {
        ...frame,
        ...(grp === undefined ? {} : { grp }),
        ...(tc === undefined ? {} : { tc }),
      });
    }
  }

  #onEvent(f: EventFrame): void {
    this.#deliverLocal(f.name, f.p, f.mode === "emit" ? f.grp : undefined, f.from, f.tc);
  }

  /** Runs local subscribers: of service `svc` only, or of every hosted service when undefined. */
  #deliverLocal(
    name: string,
    payload: unknown,
    svc: string | undefined,
    from: string,
    tc: string | undefined,
  ): void {
    for (const hosted of this.#hosted.values()) {
      if (svc !== undefined && hosted.def.name !== svc) continue;
      const sub = hosted.subscriptions.get(name);
      if (sub === undefined) continue;
      this.stats.eventsDelivered++;
      const ctx = new EventInvocation(this, hosted.def.name, name, from, tc);
      // Always asynchronous, so an emitter never runs subscriber code on its own stack.
      void Promise.resolve()
        .then(async () => {
          let value = validate(sub.event.schema, payload, `payload of event '${name}'`);
          if (value instanceof Promise) value = await value;
          await sub.handler(value, ctx);
        })
        .catch((err: unknown) => {
          this.log.error(
            { err, service: hosted.def.name, event: name, peer: from },
            "event handler failed",
          );
        });
    }
  }

  // ---- frames out ------------------------------------------------------------------------------

  /** The smaller of our frame limit and the one `node` announced: what it would accept. */
  #limitFor(node: string): number {
    const peerMax = this.#registry.node(node)?.maxFrameBytes;
    return peerMax === undefined ? this.#maxFrameBytes : Math.min(peerMax, this.#maxFrameBytes);
  }

  #sendTo(to: string, frame: Envelope): void {
    let bytes: Uint8Array;
    try {
      bytes = encodeChecked(this.#codec, frame, this.#limitFor(to));
    } catch (err) {
      this.log.warn({ err, kind: frame.k, peer: to }, "frame refused before sending");
      return;
    }
    this.#transport.send(to, bytes);
  }

  #broadcast(frame: Envelope): void {
    this.#transport.broadcast(this.#codec.encode(frame));
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
