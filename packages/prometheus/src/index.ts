/**
 * @keel/prometheus: Keel's metrics on prom-client, in your registry or its own, for a node's
 * `/metrics`.
 * @module
 */
export {
  createPrometheusMetrics,
  type PrometheusMetrics,
  type PrometheusMetricsOptions,
  type PromRegistry,
} from "./metrics.ts";
