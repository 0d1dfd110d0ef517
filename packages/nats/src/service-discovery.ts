import {
  type AnyService,
  createJsonLogger,
  KeelError,
  type KeelNode,
  type Logger,
} from "@keel/core";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { checkCluster, DEFAULT_CLUSTER, nodeSubject, subjectToken } from "./subjects.ts";

/** The verbs of the NATS service discovery protocol. */
export type SrvVerb = "PING" | "INFO" | "STATS";

/** Who answers: one `$SRV` service instance per service a node hosts. */
export interface SrvIdentity {
  /** The Keel service name. */
  readonly name: string;
  /** `<node token>-v<version>`: unique per node and service version, stable across restarts. */
  readonly id: string;
  /** The service version as semver: Keel's version 2 is `"2.0.0"`. */
  readonly version: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/** The answer to `$SRV.PING`. */
export interface SrvPingResponse extends SrvIdentity {
  readonly type: "io.nats.micro.v1.ping_response";
}

/** One action of a service, as `$SRV.INFO` lists it. */
export interface SrvEndpointInfo {
  /** The action name. */
  readonly name: string;
  /** The subject requests for it travel on: the node's subject (requests are Keel frames). */
  readonly subject: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/** The answer to `$SRV.INFO`. */
export interface SrvInfoResponse extends SrvIdentity {
  readonly type: "io.nats.micro.v1.info_response";
  readonly description: string;
  readonly endpoints: readonly SrvEndpointInfo[];
}

/** One action of a service, as `$SRV.STATS` reports it. */
export interface SrvEndpointStats {
  readonly name: string;
  readonly subject: string;
  /** Requests of this action the node finished since discovery started (`node.actionStats()`). */
  readonly num_requests: number;
  /** Of those, the ones that failed, whatever the code. */
  readonly num_errors: number;
  /** The last failure as `"CODE: message"`; absent before the first. */
  readonly last_error?: string;
  /** Total processing time, in nanoseconds (the protocol's unit). */
  readonly processing_time: number;
  /** `processing_time / num_requests`, rounded, in nanoseconds; 0 before the first request. */
  readonly average_processing_time: number;
  /** The node's id, state and totals (`node.stats`). */
  readonly data: unknown;
}

/** The answer to `$SRV.STATS`. */
export interface SrvStatsResponse extends SrvIdentity {
  readonly type: "io.nats.micro.v1.stats_response";
  /** When discovery started answering, as an ISO date. */
  readonly started: string;
  readonly endpoints: readonly SrvEndpointStats[];
}

/** Options for `serveDiscovery`. */
export interface DiscoveryOptions {
  /** The node to describe. */
  readonly node: KeelNode;
  /** The services the node hosts (the definitions it was created with). */
  readonly services: readonly AnyService[];
  /** The node transport's subject prefix (default `"keel"`), to report the endpoints' subject. */
  readonly cluster?: string;
  /** Extra metadata for every service instance. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Where failures to answer are logged (default: JSON lines on stderr at `warn`). */
  readonly logger?: Logger;
}

/** A running `$SRV` responder. */
export interface DiscoveryServer extends AsyncDisposable {
  /** The service instances it answers for. */
  readonly instances: readonly SrvIdentity[];
  /** Stops answering (also happens by itself when the node stops). */
  stop(): Promise<void>;
}

/** The subject prefix of the protocol. */
export const SRV_PREFIX = "$SRV";
const VERBS: readonly SrvVerb[] = ["PING", "INFO", "STATS"];

interface Instance {
  readonly identity: SrvIdentity;
  readonly def: AnyService;
  readonly ping: Uint8Array;
  readonly info: Uint8Array;
}

const encode = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value), "utf8");

/**
 * Answers the NATS service discovery protocol (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`, each also
 * as `$SRV.<verb>.<name>` and `$SRV.<verb>.<name>.<id>`) for the services a Keel node hosts, so
 * `nats micro ls` and `@nats-io/services` clients see it. Each hosted `service@version` is one
 * instance; its actions are its endpoints.
 * @example
 * await node.start();
 * const discovery = serveDiscovery(transport.connection(), { node, services: [orders] });
 * // ... later: await discovery.stop(), or let node.stop() end it
 */
export function serveDiscovery(nc: NatsConnection, options: DiscoveryOptions): DiscoveryServer {
  const { node } = options;
  if (node.state === "stopped") {
    throw new KeelError("FAILED_PRECONDITION", `serveDiscovery: node '${node.id}' is stopped`);
  }
  const log = (options.logger ?? createJsonLogger({ clock: node.env.clock })).child({
    node: node.id,
    component: "srv-discovery",
  });
  const cluster = checkCluster(options.cluster ?? DEFAULT_CLUSTER);
  const subject = nodeSubject(cluster, node.id);
  const token = subjectToken(node.id);
  const started = new Date(node.env.clock.wallNow()).toISOString();

  const instances: Instance[] = [];
  const seen = new Set<string>();
  for (const def of options.services) {
    if (def?.kind !== "service") {
      throw new KeelError(
        "CONFIGURATION",
        "serveDiscovery: services must come from defineService()",
      );
    }
    if (seen.has(def.key)) throw new KeelError("CONFIGURATION", `serveDiscovery: ${def.key} twice`);
    seen.add(def.key);
    const identity: SrvIdentity = {
      name: def.name,
      id: `${token}-v${def.version}`,
      version: `${def.version}.0.0`,
      metadata: {
        ...options.metadata,
        "keel.node": node.id,
        "keel.service": def.key,
        "keel.cluster": cluster,
        "keel.events": def.subscriptions.map((s) => s.event.name).join(","),
      },
    };
    const ping: SrvPingResponse = { type: "io.nats.micro.v1.ping_response", ...identity };
    const info: SrvInfoResponse = {
      type: "io.nats.micro.v1.info_response",
      ...identity,
      description: `Keel service ${def.key} on node ${node.id}`,
      endpoints: Object.values(def.actions).map((a) => ({
        name: a.name,
        subject,
        metadata: {
          "keel.action": a.name,
          "keel.idempotent": String(a.idempotent),
          ...(a.description === undefined ? {} : { description: a.description }),
          ...(a.timeoutMs === undefined ? {} : { "keel.timeout_ms": String(a.timeoutMs) }),
        },
      })),
    };
    instances.push({ identity, def, ping: encode(ping), info: encode(info) });
  }

  // Counting starts now: STATS reports the requests since `started`.
  node.actionStats();
  const stats = (inst: Instance): Uint8Array => {
    const data = { node: node.id, state: node.state, nodeStats: { ...node.stats } };
    const counts = new Map(
      node
        .actionStats()
        .filter((s) => s.service === inst.def.key)
        .map((s) => [s.action, s]),
    );
    const body: SrvStatsResponse = {
      type: "io.nats.micro.v1.stats_response",
      ...inst.identity,
      started,
      endpoints: Object.values(inst.def.actions).map((a) => {
        const c = counts.get(a.name);
        const requests = c?.requests ?? 0;
        const ns = Math.round((c?.processingMs ?? 0) * 1e6);
        return {
          name: a.name,
          subject,
          num_requests: requests,
          num_errors: c?.errors ?? 0,
          ...(c?.lastError === undefined ? {} : { last_error: c.lastError }),
          processing_time: ns,
          average_processing_time: requests === 0 ? 0 : Math.round(ns / requests),
          data,
        };
      }),
    };
    return encode(body);
  };

  const answer = (verb: SrvVerb, targets: readonly Instance[]) => (err: Error | null, msg: Msg) => {
    if (err !== null) {
      log.warn({ err, verb }, "$SRV subscription failed");
      return;
    }
    if (msg.reply === undefined || msg.reply === "") return;
    for (const inst of targets) {
      try {
        msg.respond(verb === "PING" ? inst.ping : verb === "INFO" ? inst.info : stats(inst));
      } catch (e) {
        log.warn({ err: e, verb, service: inst.def.key }, "could not answer a $SRV request");
      }
    }
  };

  const byName = new Map<string, Instance[]>();
  for (const inst of instances) {
    const list = byName.get(inst.identity.name);
    if (list === undefined) byName.set(inst.identity.name, [inst]);
    else list.push(inst);
  }
  const subs: Subscription[] = [];
  if (instances.length > 0) {
    for (const verb of VERBS) {
      subs.push(nc.subscribe(`${SRV_PREFIX}.${verb}`, { callback: answer(verb, instances) }));
      for (const [name, list] of byName) {
        subs.push(nc.subscribe(`${SRV_PREFIX}.${verb}.${name}`, { callback: answer(verb, list) }));
      }
      for (const inst of instances) {
        subs.push(
          nc.subscribe(`${SRV_PREFIX}.${verb}.${inst.identity.name}.${inst.identity.id}`, {
            callback: answer(verb, [inst]),
          }),
        );
      }
    }
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      offState();
      if (nc.isClosed()) return;
      await Promise.allSettled(subs.map((s) => (s.isClosed() ? undefined : s.drain())));
    })();
    return stopping;
  };
  const offState = node.onStateChange((state) => {
    if (state === "stopped") void stop();
  });

  return {
    instances: instances.map((i) => i.identity),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
