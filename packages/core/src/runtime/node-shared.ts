import type { Env } from "../env/index.ts";
import { KeelError } from "../errors/index.ts";
import type { Transport } from "../transport/index.ts";
import { type Codec, type Envelope, encodeChecked } from "../wire/index.ts";
import type { BalancerName } from "./context-types.ts";
import type { DeadlineTracker } from "./deadlines.ts";
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

/** A service this node hosts, indexed for dispatch. */
export interface Hosted {
  readonly def: AnyService;
  readonly actions: ReadonlyMap<string, AnyAction>;
  readonly subscriptions: ReadonlyMap<string, Subscription>;
}

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
  /** This node's frame limit: its setting, lowered to the transport's own limit once connected. */
  maxFrameBytes: number;
  readonly heartbeatMs: number;
  readonly failureTimeoutMs: number;
  readonly defaultTimeoutMs: number;
  readonly balancer: BalancerName;
  readonly registry: Registry;
  readonly deadlines: DeadlineTracker;
  readonly hosted: ReadonlyMap<string, Hosted>;
  /** The node itself, as handler contexts see it. */
  readonly hooks: RuntimeHooks;
  /** The node's lifecycle state; the node updates it. */
  state: NodeState = "created";
  readonly #transport: Transport;
  #lastId = 0;

  constructor(init: {
    id: string;
    env: Env;
    log: Logger;
    stats: NodeStats;
    codec: Codec;
    settings: NodeSettings;
    registry: Registry;
    deadlines: DeadlineTracker;
    hosted: ReadonlyMap<string, Hosted>;
    hooks: RuntimeHooks;
    transport: Transport;
  }) {
    this.id = init.id;
    this.env = init.env;
    this.log = init.log;
    this.stats = init.stats;
    this.codec = init.codec;
    this.maxFrameBytes = init.settings.maxFrameBytes;
    this.heartbeatMs = init.settings.heartbeatMs;
    this.failureTimeoutMs = init.settings.failureTimeoutMs;
    this.defaultTimeoutMs = init.settings.defaultTimeoutMs;
    this.balancer = init.settings.balancer;
    this.registry = init.registry;
    this.deadlines = init.deadlines;
    this.hosted = init.hosted;
    this.hooks = init.hooks;
    this.#transport = init.transport;
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

/** True when the error says the request never started on the server, so any action may go elsewhere. */
export function notProcessed(err: KeelError): boolean {
  return err.code === "UNAVAILABLE" && err.details?.["notProcessed"] === true;
}
