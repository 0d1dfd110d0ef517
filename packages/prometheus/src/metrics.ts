import { type ELDHistogram, monitorEventLoopDelay } from "node:perf_hooks";
import {
  createMemoryMetrics,
  type MemoryMetrics,
  type MetricFamily,
  type MetricsEndpoint,
} from "@keel/core";
import { CONTENT_TYPE, formatExposition } from "./exposition.ts";

/** Options of `createPrometheusMetrics`. */
export interface PrometheusMetricsOptions {
  /**
   * Measure the event loop's lag (`keel_event_loop_lag_seconds`) with `perf_hooks`; default true.
   * `resolutionMs` is the sampling period (default 10 ms).
   */
  readonly eventLoopLag?: boolean | { readonly resolutionMs?: number };
}

/**
 * Metrics for one process, exported in the Prometheus text format: give it to nodes as their
 * `metrics` option and to `startAdminServer` as its `/metrics` endpoint.
 */
export interface PrometheusMetrics extends MemoryMetrics, MetricsEndpoint {
  /** `text/plain; version=0.0.4; charset=utf-8`. */
  readonly contentType: string;
  /** Collects every metric and writes the exposition text. */
  render(): Promise<string>;
  /** Stops measuring the event loop; recorded values stay readable. */
  close(): void;
}

/** The lag statistics exported per scrape, from the event-loop delay histogram (nanoseconds). */
const LAG_STATS = ["mean", "p50", "p90", "p99", "max"] as const;

function lagOf(h: ELDHistogram, stat: (typeof LAG_STATS)[number]): number {
  switch (stat) {
    case "mean":
      return h.mean;
    case "p50":
      return h.percentile(50);
    case "p90":
      return h.percentile(90);
    case "p99":
      return h.percentile(99);
    case "max":
      return h.max;
  }
}

/**
 * Creates Prometheus metrics: recording goes to in-memory series (a field update on hot paths);
 * `render()` collects them into the text exposition format. Nothing is process-global: each call
 * makes its own set, and several nodes may share one (their series differ by the `node` label).
 * @example
 * const metrics = createPrometheusMetrics();
 * const node = createNode({ id: "orders-1", transport, services: [orders], metrics });
 * await node.start();
 * await startAdminServer(node, { port: 9464, metrics }); // GET /metrics
 */
export function createPrometheusMetrics(options: PrometheusMetricsOptions = {}): PrometheusMetrics {
  const memory = createMemoryMetrics();
  const lagOption = options.eventLoopLag ?? true;
  let monitor: ELDHistogram | undefined;
  if (lagOption !== false) {
    const resolution = lagOption === true ? 10 : (lagOption.resolutionMs ?? 10);
    monitor = monitorEventLoopDelay({ resolution });
    monitor.enable();
    const lag = memory.gauge({
      name: "keel_event_loop_lag_seconds",
      help: "Event loop delay of this process since the previous scrape (mean, p50, p90, p99, max), from perf_hooks.",
      labelNames: ["stat"],
    });
    const h = monitor;
    memory.onCollect(() => {
      // Before the first sample the histogram reports NaN or huge sentinels: export 0 instead.
      const sampled = h.count > 0;
      for (const stat of LAG_STATS) lag.set({ stat }, sampled ? lagOf(h, stat) / 1e9 : 0);
      h.reset();
    });
  }
  const collect = (): MetricFamily[] => memory.collect();
  return {
    counter: memory.counter,
    gauge: memory.gauge,
    histogram: memory.histogram,
    onCollect: memory.onCollect,
    collect,
    value: memory.value,
    contentType: CONTENT_TYPE,
    render: () => Promise.resolve(formatExposition(collect())),
    close() {
      monitor?.disable();
      monitor = undefined;
    },
  };
}
