import type { TracerProvider } from "@opentelemetry/api";
import type { Env } from "../env/index.ts";
import { KeelError } from "../errors/index.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { LocalCallSpans } from "../observability/tracing.ts";
import { type CircuitBreakerOptions, circuitBreaker, type RetryPolicy } from "../policies/index.ts";
import type { Transport } from "../transport/index.ts";
import { type Codec, DEFAULT_MAX_FRAME_BYTES } from "../wire/index.ts";
import { checkBalancerName } from "./balancer.ts";
import type { BalancerName } from "./context-types.ts";
import type { Logger } from "./logger.ts";
import type { AnyService } from "./service.ts";

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
  /** Default retries of this node's calls (a `retry(...)` policy, with its budget); none by default. */
  readonly retry?: RetryPolicy;
  /**
   * A circuit breaker per remote endpoint this node calls, with these options (its Env is the
   * node's); the balancer skips endpoints whose breaker is open. None by default.
   */
  readonly breaker?: Omit<CircuitBreakerOptions, "env">;
  /**
   * Where the node records its metrics (requests, retries, breakers, limits, registry): e.g.
   * `createPrometheusMetrics()` from `@keel/prometheus`. None by default: nothing is recorded.
   */
  readonly metrics?: Metrics;
  /**
   * Where the node's spans go (default: the global provider, `trace.getTracerProvider()`; with no
   * OpenTelemetry SDK registered, tracing is off and costs nothing).
   */
  readonly tracerProvider?: TracerProvider;
  /**
   * How a call that only this node can serve (its one ready endpoint is here) is traced: `one`
   * INTERNAL span that the handler runs under (default), or `client-server`: a CLIENT span and a
   * SERVER child, as a call to another node is.
   */
  readonly localCallSpans?: LocalCallSpans;
}

/** Node settings after defaults and checks. */
export interface NodeSettings {
  readonly maxFrameBytes: number;
  readonly heartbeatMs: number;
  readonly failureTimeoutMs: number;
  readonly graceMs: number;
  readonly defaultTimeoutMs: number;
  readonly balancer: BalancerName;
  readonly retry: RetryPolicy | undefined;
  readonly breaker: Omit<CircuitBreakerOptions, "env"> | undefined;
}

const DEFAULTS = {
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  heartbeatIntervalMs: 200,
  failureTimeoutMs: 700,
  drainGraceMs: 5000,
  defaultTimeoutMs: 10_000,
} as const;

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

/** Checks node options at definition time and fills in defaults; throws CONFIGURATION. */
export function resolveSettings(options: NodeOptions): NodeSettings {
  if (typeof options.id !== "string" || !NODE_ID.test(options.id)) {
    throw new KeelError("CONFIGURATION", `node id '${String(options.id)}' must match ${NODE_ID}`);
  }
  if (options.transport === undefined) {
    throw new KeelError("CONFIGURATION", `node '${options.id}' needs a transport`);
  }
  if (options.transport.nodeId !== options.id) {
    throw new KeelError(
      "CONFIGURATION",
      `node '${options.id}' was given the transport of '${options.transport.nodeId}': it would be unreachable`,
    );
  }
  const heartbeatMs = positive(
    "heartbeatIntervalMs",
    options.heartbeatIntervalMs,
    DEFAULTS.heartbeatIntervalMs,
  );
  const failureTimeoutMs = positive(
    "failureTimeoutMs",
    options.failureTimeoutMs,
    DEFAULTS.failureTimeoutMs,
  );
  if (failureTimeoutMs <= heartbeatMs) {
    throw new KeelError(
      "CONFIGURATION",
      "node option 'failureTimeoutMs' must be longer than 'heartbeatIntervalMs'",
    );
  }
  const graceMs = options.drainGraceMs ?? DEFAULTS.drainGraceMs;
  if (!(graceMs >= 0))
    throw new KeelError("CONFIGURATION", "node option 'drainGraceMs' must be >= 0");
  const balancer = options.balancer ?? "p2c";
  checkBalancerName(balancer);
  const spans = options.localCallSpans;
  if (spans !== undefined && spans !== "one" && spans !== "client-server") {
    throw new KeelError(
      "CONFIGURATION",
      `node option 'localCallSpans' must be "one" or "client-server", not ${JSON.stringify(spans)}`,
    );
  }
  if (options.retry !== undefined && options.retry?.kind !== "retry") {
    throw new KeelError("CONFIGURATION", "node option 'retry' must be a policy from retry()");
  }
  // Breakers are made per endpoint later: build one now so bad options fail at definition time.
  if (options.breaker !== undefined && options.env !== undefined) {
    circuitBreaker({ ...options.breaker, env: options.env });
  }
  return {
    maxFrameBytes: positive("maxFrameBytes", options.maxFrameBytes, DEFAULTS.maxFrameBytes),
    heartbeatMs,
    failureTimeoutMs,
    graceMs,
    defaultTimeoutMs: positive(
      "defaultTimeoutMs",
      options.defaultTimeoutMs,
      DEFAULTS.defaultTimeoutMs,
    ),
    balancer,
    retry: options.retry,
    breaker: options.breaker,
  };
}
