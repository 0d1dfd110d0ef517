import type { Clock } from "../env/index.ts";
import type { Decision, Hosted, NodeState } from "../runtime/node-shared.ts";
import type { RegistryEvent, RegistryView } from "../runtime/registry.ts";
import {
  type Counter,
  type CounterSeries,
  DEFAULT_SECONDS_BUCKETS,
  type Gauge,
  type GaugeSeries,
  type Histogram,
  type HistogramSeries,
  type Metrics,
} from "./metrics.ts";

/** One metric Keel records: its Prometheus name, type, labels and meaning. */
export interface KeelMetricInfo {
  readonly name: string;
  readonly type: "counter" | "gauge" | "histogram";
  readonly labelNames: readonly string[];
  readonly help: string;
}

const REQUEST = ["node", "service", "action", "outcome"] as const;
const ACTION = ["node", "service", "action"] as const;

function info<const L extends string>(
  name: string,
  type: "counter" | "gauge" | "histogram",
  labelNames: readonly L[],
  help: string,
) {
  return { name, type, labelNames, help } as const;
}

/**
 * Every metric a node records (all carry the node's id as `node`). `service` is the routing key
 * `name@version`; `outcome` is `ok` or the error code.
 */
export const KEEL_METRICS = {
  clientRequests: info(
    "keel_client_requests_total",
    "counter",
    REQUEST,
    "Calls this node made, by outcome (ok or error code), after retries and hedging.",
  ),
  clientDuration: info(
    "keel_client_request_duration_seconds",
    "histogram",
    REQUEST,
    "Duration of calls this node made, from the call to its outcome.",
  ),
  clientInFlight: info(
    "keel_client_requests_in_flight",
    "gauge",
    ACTION,
    "Calls this node made that have not settled yet.",
  ),
  retries: info(
    "keel_client_retries_total",
    "counter",
    ["node", "service", "action", "code"],
    "Retries of calls, by the error code that caused them.",
  ),
  hedges: info(
    "keel_client_hedges_total",
    "counter",
    ACTION,
    "Hedged attempts started because the earlier ones were slow.",
  ),
  failovers: info(
    "keel_client_failovers_total",
    "counter",
    ACTION,
    "Attempts sent to another endpoint after one could not serve them.",
  ),
  breakerState: info(
    "keel_client_circuit_breaker_state",
    "gauge",
    ["node", "peer", "service", "state"],
    "1 for the current state of the breaker of a remote endpoint (closed, open, half-open, isolated), 0 for the others.",
  ),
  breakerTransitions: info(
    "keel_client_circuit_breaker_transitions_total",
    "counter",
    ["node", "peer", "service", "to"],
    "Changes of state of the breaker of a remote endpoint, by the state entered.",
  ),
  serverRequests: info(
    "keel_server_requests_total",
    "counter",
    REQUEST,
    "Requests this node accepted for an action it hosts, by outcome (including those its limits shed).",
  ),
  serverDuration: info(
    "keel_server_request_duration_seconds",
    "histogram",
    REQUEST,
    "Duration of requests this node handled, from arrival to outcome.",
  ),
  serverInFlight: info(
    "keel_server_requests_in_flight",
    "gauge",
    ACTION,
    "Requests this node accepted and has not answered yet (queued ones included).",
  ),
  shed: info(
    "keel_server_shed_total",
    "counter",
    ["node", "service", "action", "limit"],
    "Requests refused by an action's limits: concurrency and adaptive answer OVERLOADED, rate answers RATE_LIMITED.",
  ),
  bulkheadActive: info(
    "keel_server_bulkhead_active",
    "gauge",
    ACTION,
    "Requests holding a slot of an action's concurrency limit.",
  ),
  bulkheadQueued: info(
    "keel_server_bulkhead_queued",
    "gauge",
    ACTION,
    "Requests waiting in the queue of an action's concurrency limit.",
  ),
  adaptiveLimit: info(
    "keel_server_adaptive_limit",
    "gauge",
    ACTION,
    "The current limit of an action's adaptive concurrency limit.",
  ),
  nodeState: info(
    "keel_node_state",
    "gauge",
    ["node", "state"],
    "1 for the node's lifecycle state (created, starting, ready, draining, stopped), 0 for the others.",
  ),
  registryNodes: info(
    "keel_registry_nodes",
    "gauge",
    ["node", "state"],
    "Nodes this node knows to be alive (itself included), by state (ready, draining).",
  ),
  registryEndpoints: info(
    "keel_registry_endpoints",
    "gauge",
    ["node", "service"],
    "Ready endpoints of each service this node can route to.",
  ),
} as const satisfies Record<string, KeelMetricInfo>;

const NODE_STATES: readonly NodeState[] = ["created", "starting", "ready", "draining", "stopped"];
const BREAKER_STATES = ["closed", "open", "half-open", "isolated"] as const;

/** A call or request outcome's series, resolved once. */
interface OutcomeSeries {
  readonly count: CounterSeries;
  readonly duration: HistogramSeries;
}

/** The request metrics of one action on one side (client or server), series resolved once. */
export class ActionMeter {
  readonly service: string;
  readonly action: string;
  readonly inFlight: GaugeSeries;
  readonly #requests: Counter<(typeof REQUEST)[number]>;
  readonly #duration: Histogram<(typeof REQUEST)[number]>;
  readonly #labels: { readonly node: string; readonly service: string; readonly action: string };
  readonly #ok: OutcomeSeries;
  readonly #failed = new Map<string, OutcomeSeries>();

  constructor(
    requests: Counter<(typeof REQUEST)[number]>,
    duration: Histogram<(typeof REQUEST)[number]>,
    inFlight: Gauge<(typeof ACTION)[number]>,
    labels: { readonly node: string; readonly service: string; readonly action: string },
  ) {
    this.#requests = requests;
    this.#duration = duration;
    this.#labels = labels;
    this.service = labels.service;
    this.action = labels.action;
    this.inFlight = inFlight.labels(labels);
    this.#ok = this.#series("ok");
  }

  #series(outcome: string): OutcomeSeries {
    const labels = { ...this.#labels, outcome };
    return { count: this.#requests.labels(labels), duration: this.#duration.labels(labels) };
  }

  /** One call or request started. */
  begin(): void {
    this.inFlight.inc();
  }

  /** One call or request ended: `outcome` is "ok" or an error code; `ms` its duration. */
  end(outcome: string, ms: number): void {
    this.inFlight.dec();
    let s = this.#ok;
    if (outcome !== "ok") {
      s = this.#failed.get(outcome) ?? this.#series(outcome);
      this.#failed.set(outcome, s);
    }
    s.count.inc();
    s.duration.observe(ms / 1000);
  }
}

/** The meters of one side, by service key then action name. */
function meterOf(
  map: Map<string, Map<string, ActionMeter>>,
  key: string,
  action: string,
  make: () => ActionMeter,
): ActionMeter {
  let byAction = map.get(key);
  if (byAction === undefined) {
    byAction = new Map();
    map.set(key, byAction);
  }
  let meter = byAction.get(action);
  if (meter === undefined) {
    meter = make();
    byAction.set(action, meter);
  }
  return meter;
}

/** What the collect hook reads from the node. */
export interface NodeView {
  readonly state: () => NodeState;
  readonly registry: RegistryView;
  readonly hosted: ReadonlyMap<string, Hosted>;
}

/**
 * One node's Keel metrics on a `Metrics` port: declares the set, resolves series once per
 * action, and reads gauges (state, registry, limits) when the exporter collects. Internal.
 */
export class NodeMetrics {
  readonly node: string;
  readonly clock: Clock;
  readonly #m: Metrics;
  readonly #clientRequests;
  readonly #clientDuration;
  readonly #clientInFlight;
  readonly #serverRequests;
  readonly #serverDuration;
  readonly #serverInFlight;
  readonly #retries;
  readonly #hedges;
  readonly #failovers;
  readonly #breakerState;
  readonly #breakerTransitions;
  readonly #shed;
  readonly #client = new Map<string, Map<string, ActionMeter>>();
  readonly #server = new Map<string, Map<string, ActionMeter>>();
  /** Service keys of the breakers whose state is exported, by peer. */
  readonly #breakers = new Map<string, Set<string>>();
  /** Endpoint series exported at the last collect, by service key. */
  #endpointKeys = new Set<string>();
  #offCollect: (() => void) | undefined;
  #lastCollect: (() => void) | undefined;
  #offRegistry: (() => void) | undefined;

  constructor(metrics: Metrics, node: string, clock: Clock) {
    this.#m = metrics;
    this.node = node;
    this.clock = clock;
    const K = KEEL_METRICS;
    const buckets = DEFAULT_SECONDS_BUCKETS;
    this.#clientRequests = metrics.counter(K.clientRequests);
    this.#clientDuration = metrics.histogram({ ...K.clientDuration, buckets });
    this.#clientInFlight = metrics.gauge(K.clientInFlight);
    this.#serverRequests = metrics.counter(K.serverRequests);
    this.#serverDuration = metrics.histogram({ ...K.serverDuration, buckets });
    this.#serverInFlight = metrics.gauge(K.serverInFlight);
    this.#retries = metrics.counter(K.retries);
    this.#hedges = metrics.counter(K.hedges);
    this.#failovers = metrics.counter(K.failovers);
    this.#breakerState = metrics.gauge(K.breakerState);
    this.#breakerTransitions = metrics.counter(K.breakerTransitions);
    this.#shed = metrics.counter(K.shed);
  }

  /** The client-side meter of calls to `action` of service `key`. */
  client(key: string, action: string): ActionMeter {
    return meterOf(
      this.#client,
      key,
      action,
      () =>
        new ActionMeter(this.#clientRequests, this.#clientDuration, this.#clientInFlight, {
          node: this.node,
          service: key,
          action,
        }),
    );
  }

  /** The server-side meter of requests to `action` of hosted service `key`. */
  server(key: string, action: string): ActionMeter {
    return meterOf(
      this.#server,
      key,
      action,
      () =>
        new ActionMeter(this.#serverRequests, this.#serverDuration, this.#serverInFlight, {
          node: this.node,
          service: key,
          action,
        }),
    );
  }

  /** A request (of `meter`'s action) refused by one of the action's limits. */
  shed(meter: ActionMeter, limit: "concurrency" | "adaptive" | "rate"): void {
    this.#shed.inc({ node: this.node, service: meter.service, action: meter.action, limit });
  }

  /** Counts a resilience decision (retries, hedges, failovers, breaker changes). */
  decision(d: Decision): void {
    const node = this.node;
    switch (d.kind) {
      case "retry":
        this.#retries.inc({ node, service: d.service, action: d.action, code: d.code });
        break;
      case "hedge":
        this.#hedges.inc({ node, service: d.service, action: d.action });
        break;
      case "failover":
        this.#failovers.inc({ node, service: d.service, action: d.action });
        break;
      case "breaker": {
        let keys = this.#breakers.get(d.peer);
        if (keys === undefined) {
          keys = new Set();
          this.#breakers.set(d.peer, keys);
        }
        keys.add(d.service);
        for (const state of BREAKER_STATES) {
          this.#breakerState.set(
            { node, peer: d.peer, service: d.service, state },
            state === d.to ? 1 : 0,
          );
        }
        this.#breakerTransitions.inc({ node, peer: d.peer, service: d.service, to: d.to });
        break;
      }
      case "give-up":
      case "shed":
        break; // counted where they happen (the call's outcome; keel_server_shed_total)
    }
  }

  /** Starts reading the node's gauges at each collect; `stop()` ends it. */
  watch(view: NodeView): void {
    const m = this.#m;
    const K = KEEL_METRICS;
    const node = this.node;
    const nodeState = m.gauge(K.nodeState);
    const registryNodes = m.gauge(K.registryNodes);
    const registryEndpoints = m.gauge(K.registryEndpoints);
    const active = m.gauge(K.bulkheadActive);
    const queued = m.gauge(K.bulkheadQueued);
    const limit = m.gauge(K.adaptiveLimit);
    // Zero series for every hosted action, so rates start from the first request.
    for (const [key, hosted] of view.hosted) {
      for (const action of hosted.actions.keys()) this.server(key, action);
    }
    this.#offRegistry = view.registry.onChange((e: RegistryEvent) => {
      if (e.kind === "node-down") this.#forgetBreakers(e.node);
    });
    const collect = () => {
      const state = view.state();
      for (const s of NODE_STATES) nodeState.set({ node, state: s }, s === state ? 1 : 0);
      let ready = 0;
      let draining = 0;
      const endpoints = new Map<string, number>();
      for (const id of view.registry.nodes()) {
        const rec = view.registry.node(id);
        if (rec === undefined) continue;
        if (rec.state === "draining") {
          draining++;
          continue;
        }
        ready++;
        for (const s of rec.services) {
          const key = `${s.name}@${s.version}`;
          endpoints.set(key, (endpoints.get(key) ?? 0) + 1);
        }
      }
      registryNodes.set({ node, state: "ready" }, ready);
      registryNodes.set({ node, state: "draining" }, draining);
      for (const key of this.#endpointKeys) {
        if (!endpoints.has(key)) registryEndpoints.remove({ node, service: key });
      }
      for (const [key, count] of endpoints) registryEndpoints.set({ node, service: key }, count);
      this.#endpointKeys = new Set(endpoints.keys());
      for (const [key, hosted] of view.hosted) {
        for (const [action, guards] of hosted.guards) {
          const labels = { node, service: key, action };
          if (guards.bulkhead !== undefined) {
            active.set(labels, guards.bulkhead.active);
            queued.set(labels, guards.bulkhead.queued);
          }
          if (guards.adaptive !== undefined) limit.set(labels, guards.adaptive.limit);
        }
      }
    };
    this.#lastCollect = collect;
    this.#offCollect = m.onCollect(collect);
  }

  /** Reads the gauges one last time (the node stopped), then no more; what was recorded stays. */
  stop(): void {
    this.#lastCollect?.();
    this.#lastCollect = undefined;
    this.#offCollect?.();
    this.#offRegistry?.();
    this.#offCollect = undefined;
    this.#offRegistry = undefined;
  }

  #forgetBreakers(peer: string): void {
    const keys = this.#breakers.get(peer);
    if (keys === undefined) return;
    this.#breakers.delete(peer);
    for (const service of keys) {
      for (const state of BREAKER_STATES) {
        this.#breakerState.remove({ node: this.node, peer, service, state });
      }
    }
  }
}
