/**
 * @keel/prometheus: Keel's metrics in the Prometheus text format, for a node's `/metrics`.
 * @module
 */
export { CONTENT_TYPE, formatExposition } from "./exposition.ts";
export {
  createPrometheusMetrics,
  type PrometheusMetrics,
  type PrometheusMetricsOptions,
} from "./metrics.ts";
