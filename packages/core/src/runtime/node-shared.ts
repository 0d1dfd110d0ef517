import type { Env } from "../env/index.ts";
import { KeelError } from "../errors/index.ts";
import type { NodeMetrics } from "../observability/keel-metrics.ts";
import { decisionAttributes, type Span, type Tracing } from "../observability/tracing.ts";
import type {
  AdaptiveLimitPolicy,
  BulkheadPolicy,
  CircuitBreakerOptions,
  RateLimiter,
  RetryPolicy,
} from "../policies/index.ts";
import type { TimerQueue } from "../policies/timer-queue.ts";
import type { Transport } from "../transport/index.ts";
import { type Codec, type Envelope, encodeChecked } from "../wire/index.ts";
import type { BalancerName } from "./context-types.ts";
import type { RuntimeHooks } from "./invocation.ts";
import type { Logger } from "./logger.ts";
import type { NodeSettings } from "./options.ts";
import type { Registry } from "./registry.ts";
import type { AnyAction, AnyService, Subscription } from "./service.ts";

/** A node's lifecycle. */
export type NodeState = "created" | "starting" | "ready" | "draining" | "stopped";

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

/** Requests one hosted action served since the node began counting (see `KeelNode.actionStats`). */
export class ActionStatsRecord {
  requests = 0;
  errors = 0;
  /** The last failure's code and message, e.g. `"INVALID_ARGUMENT: input of ..."`. */
  lastError: string | undefined;
  /** Total time from arrival to outcome, in ms. */
  processingMs = 0;
  readonly service: string;
  readonly action: string;

  constructor(service: string, action: string) {
    this.service = service;
    this.action = action;
  }
}

/** The server-side limits of one action on this node, built from its `limits`. */
export interface ActionGuards {
  readonly bulkhead: BulkheadPolicy | undefined;
  readonly adaptive: AdaptiveLimitPolicy | undefined;
  readonly rate: RateLimiter | undefined;
}

/** A service this node hosts, indexed for dispatch. */
export interface Hosted {
  readonly def: AnyService;
  readonly actions: ReadonlyMap<string, AnyAction>;
  readonly subscriptions: ReadonlyMap<string, Subscription>;
  /** Actions with limits, by name. */
  readonly guards: ReadonlyMap<string, ActionGuards>;
}

/** A resilience decision the runtime took, for logs, metrics and tests. */
export type Decision =
  | {
      readonly kind: "retry";
      readonly service: string;
      readonly action: string;
      readonly attempt: number;
      readonly delayMs: number;
      readonly code: string;
    }
  | {
      readonly kind: "give-up";
      readonly service: string;
      readonly action: string;
      readonly attempts: number;
      readonly reason: string;
      readonly code: string;
    }
  | {
      readonly kind: "failover";
      readonly service: string;
      readonly action: string;
      readonly from: string | undefined;
      readonly to: string;
    }
  | {
      readonly kind: "hedge";
      readonly service: string;
      readonly action: string;
      readonly attempt: number;
      readonly afterMs: number;
    }
  | {
      readonly kind: "breaker";
      readonly peer: string;
      readonly service: string;
      readonly from: string;
      readonly to: string;
    }
  | {
      readonly kind: "shed";
      readonly service: string;
      readonly action: string;
      readonly code: "OVERLOADED" | "RATE_LIMITED";
      readonly by: "concurrency" | "adaptive" | "rate";
    };

/**
 * What the parts of a node (serving, calls, discovery, events) share: its identity, its Env, its
 * settings, the registry, the deadline tracker and a way to send frames. Internal to the runtime.
 * A class with plain fields, so the hot path reads them at full speed.
 */
export class NodeShared {
  readonly id: string;
  readonly env: Env;
  readonly log: Logger;
  readonly stats: NodeStats;
  readonly codec: Codec;
  /** Spans of calls, requests and events (off unless an OpenTelemetry SDK is there). */
  readonly tracing: Tracing;
  /** The node's metrics, when it has a `metrics` option (undefined: record nothing). */
  readonly metrics: NodeMetrics | undefined;
  /** This node's frame limit: its setting, lowered to the transport's own limit once connected. */
  maxFrameBytes: number;
  readonly heartbeatMs: number;
  readonly failureTimeoutMs: number;
  readonly defaultTimeoutMs: number;
  readonly balancer: BalancerName;
  readonly retry: RetryPolicy | undefined;
  readonly breaker: Omit<CircuitBreakerOptions, "env"> | undefined;
  readonly registry: Registry;
  readonly deadlines: TimerQueue;
  readonly hosted: ReadonlyMap<string, Hosted>;
  /** The node itself, as handler contexts see it. */
  readonly hooks: RuntimeHooks;
  /** Per-action request counters, by action definition, once something asked for them. */
  actionStats: Map<AnyAction, ActionStatsRecord> | undefined;
  /** The node's lifecycle state; the node updates it. */
  state: NodeState = "created";
  readonly #transport: Transport;
  readonly #decisionListeners = new Set<(decision: Decision) => void>();
  #lastId = 0;

  constructor(init: {
    id: string;
    env: Env;
    log: Logger;
    stats: NodeStats;
    codec: Codec;
    tracing: Tracing;
    metrics: NodeMetrics | undefined;
    settings: NodeSettings;
    registry: Registry;
    deadlines: TimerQueue;
    hosted: ReadonlyMap<string, Hosted>;
    hooks: RuntimeHooks;
    transport: Transport;
  }) {
    this.id = init.id;
    this.env = init.env;
    this.log = init.log;
    this.stats = init.stats;
    this.codec = init.codec;
    this.tracing = init.tracing;
    this.metrics = init.metrics;
    this.maxFrameBytes = init.settings.maxFrameBytes;
    this.heartbeatMs = init.settings.heartbeatMs;
    this.failureTimeoutMs = init.settings.failureTimeoutMs;
    this.defaultTimeoutMs = init.settings.defaultTimeoutMs;
    this.balancer = init.settings.balancer;
    this.retry = init.settings.retry;
    this.breaker = init.settings.breaker;
    this.registry = init.registry;
    this.deadlines = init.deadlines;
    this.hosted = init.hosted;
    this.hooks = init.hooks;
    this.#transport = init.transport;
  }

  /** True when someone listens to decisions (so building one is worth it). */
  get watched(): boolean {
    return this.#decisionListeners.size > 0;
  }

  /** Reports a decision to the listeners, and as an event `keel.<kind>` on `span` if there is one. */
  decide(decision: Decision, span?: Span): void {
    for (const l of this.#decisionListeners) l(decision);
    if (span !== undefined) {
      this.tracing.event(
        span,
        `keel.${decision.kind.replace("-", "_")}`,
        decisionAttributes(decision),
      );
    }
  }

  onDecision(listener: (decision: Decision) => void): () => void {
    this.#decisionListeners.add(listener);
    return () => this.#decisionListeners.delete(listener);
  }

  /** A new id, unique on this node. */
  nextId(): number {
    return ++this.#lastId;
  }

  /** The smaller of this node's frame limit and the one `node` announced. */
  limitFor(node: string): number {
    const peerMax = this.registry.node(node)?.maxFrameBytes;
    return peerMax === undefined ? this.maxFrameBytes : Math.min(peerMax, this.maxFrameBytes);
  }

  /** Encodes and sends a frame, within the receiver's announced frame limit; logs a refusal. */
  sendTo(to: string, frame: Envelope): void {
    let bytes: Uint8Array;
    try {
      bytes = encodeChecked(this.codec, frame, this.limitFor(to));
    } catch (err) {
      this.log.warn({ err, kind: frame.k, peer: to }, "frame refused before sending");
      return;
    }
    this.#transport.send(to, bytes);
  }

  /** Sends bytes already encoded. */
  sendBytes(to: string, bytes: Uint8Array): void {
    this.#transport.send(to, bytes);
  }

  broadcast(frame: Envelope): void {
    this.#transport.broadcast(this.codec.encode(frame));
  }

  /** True when the transport's broadcast is one send whatever the receivers (`Transport.fanOut`). */
  get fanOut(): boolean {
    return this.#transport.fanOut === true;
  }

  /**
   * Sends `frame` with one transport broadcast, within the smallest frame limit of the nodes meant
   * to read it; logs a refusal.
   */
  broadcastTo(receivers: Iterable<string>, frame: Envelope): void {
    let limit = this.maxFrameBytes;
    for (const to of receivers) limit = Math.min(limit, this.limitFor(to));
    let bytes: Uint8Array;
    try {
      bytes = encodeChecked(this.codec, frame, limit);
    } catch (err) {
      this.log.warn({ err, kind: frame.k }, "frame refused before sending");
      return;
    }
    this.#transport.broadcast(bytes);
  }
}

/** Bound on per-peer bookkeeping maps: the oldest entries go first. */
const MAX_REMEMBERED_PEERS = 1024;

/** Sets `key` in an insertion-ordered map, forgetting the oldest entry past the bound. */
export function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_REMEMBERED_PEERS) map.delete(map.keys().next().value as string);
}

/** An UNAVAILABLE error without a stack trace (cheap; raised on routine paths). */
export function unavailable(message: string, details?: Record<string, unknown>): KeelError {
  return new KeelError(
    "UNAVAILABLE",
    message,
    details === undefined ? { noStack: true } : { noStack: true, details },
  );
}

/**
 * True when the error says the request never started on the server (a draining node, a shed or
 * rate-limited request), so any action may go elsewhere. Only the runtime sets the flag, and it
 * strips it from what handlers throw.
 */
export function notProcessed(err: KeelError): boolean {
  return err.details?.["notProcessed"] === true;
}
