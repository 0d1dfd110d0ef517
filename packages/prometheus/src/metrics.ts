import {
  type Counter,
  createMemoryMetrics,
  DEFAULT_SECONDS_BUCKETS,
  type Gauge,
  type Histogram,
  type HistogramOptions,
  KeelError,
  type MemoryMetrics,
  type MetricFamily,
  type MetricOptions,
  type MetricsEndpoint,
  type SeriesSnapshot,
} from "@keel/core";
import {
  collectDefaultMetrics,
  type OpenMetricsContentType,
  Counter as PromCounter,
  Gauge as PromGauge,
  Histogram as PromHistogram,
  Registry,
} from "prom-client";

/** A prom-client registry, in the Prometheus text format or OpenMetrics. */
export type PromRegistry = Registry | Registry<OpenMetricsContentType>;

/** Options of `createPrometheusMetrics`. */
export interface PrometheusMetricsOptions {
  /**
   * The prom-client registry Keel's metrics join, next to yours. Default: a new `Registry` of its
   * own (never prom-client's global `register` unless you pass it).
   */
  readonly registry?: PromRegistry;
  /**
   * prom-client's default metrics (`collectDefaultMetrics`: process CPU, memory, file descriptors,
   * heap, GC, event-loop lag as `nodejs_eventloop_lag_*`) in the registry; `{ prefix }` puts a
   * prefix before their names. Default: on for a registry Keel creates, off for yours (you may
   * collect them already).
   */
  readonly defaultMetrics?: boolean | { readonly prefix?: string };
}

/**
 * Keel's metrics in a prom-client registry: give it to nodes as their `metrics` option and to
 * `startAdminServer` as its `/metrics` endpoint. `value()` and `collect()` read what was recorded.
 */
export interface PrometheusMetrics extends MemoryMetrics, MetricsEndpoint {
  /** The prom-client registry the metrics are registered in (the one given, or Keel's own). */
  readonly registry: PromRegistry;
  /** The registry's content type: `text/plain; version=0.0.4; charset=utf-8` unless OpenMetrics. */
  readonly contentType: string;
  /** `registry.metrics()`: every metric of the registry (Keel's, yours, the default ones) as text. */
  render(): Promise<string>;
  /**
   * Unregisters from the registry what this call registered (prom-client cannot stop its default
   * metrics' event-loop and GC monitors); recorded values stay readable through `value()`.
   */
  close(): void;
}

/**
 * prom-client's default gauges whose names end in `_total`: `promtool check metrics` rejects them
 * (only counters may), and each is the sum of the gauge of the same name without `_total`.
 */
const MISNAMED_DEFAULTS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
] as const;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/**
 * One prom-client histogram series as prom-client 15 keeps it: counts per upper bound (not
 * cumulative), sum and count. prom-client has no way to set them, so Keel writes its records into
 * the histogram's `hashMap` at collect time; the tests check exact buckets, so a change there in
 * prom-client fails them rather than exporting wrong numbers.
 */
interface HistogramRecord {
  readonly labels: Readonly<Record<string, string>>;
  readonly bucketValues: Record<number, number>;
  readonly sum: number;
  readonly count: number;
}

function histogramRecords(series: readonly SeriesSnapshot[]): Record<string, HistogramRecord> {
  const records: Record<string, HistogramRecord> = {};
  for (let i = 0; i < series.length; i++) {
    const s = series[i]!;
    if (!("buckets" in s)) continue;
    const bucketValues: Record<number, number> = {};
    let below = 0;
    for (const b of s.buckets) {
      if (b.le === Number.POSITIVE_INFINITY) continue; // prom-client writes +Inf from the count
      bucketValues[b.le] = b.count - below;
      below = b.count;
    }
    records[i] = { labels: s.labels, bucketValues, sum: s.sum, count: s.count };
  }
  return records;
}

/**
 * Creates Keel's metrics on prom-client. Hot paths record into series resolved once (a field
 * update, no label lookup, no allocation); each prom-client `Counter`, `Gauge` and `Histogram`
 * reads them in its `collect()` when the registry is scraped, after the port's `onCollect` hooks
 * have run: prom-client's own `labels(...)` children build a label string and look their series
 * up on every update, which on a call's eight updates costs more than the call. Nothing is
 * process-global: each call has its own series; nodes may share them (they differ by `node`).
 * @example
 * const metrics = createPrometheusMetrics(); // or { registry } to join your prom-client registry
 * const node = createNode({ id: "orders-1", transport, services: [orders], metrics });
 * await node.start();
 * await startAdminServer(node, { port: 9464, metrics }); // GET /metrics
 */
export function createPrometheusMetrics(options: PrometheusMetricsOptions = {}): PrometheusMetrics {
  const memory = createMemoryMetrics();
  const registry: PromRegistry = options.registry ?? new Registry();
  /** Names this call registered in the registry, Keel's and the default metrics. */
  const registered: string[] = [];

  const defaults = options.defaultMetrics ?? options.registry === undefined;
  if (defaults !== false) {
    const prefix = defaults === true ? "" : (defaults.prefix ?? "");
    if (prefix !== "" && !NAME.test(prefix)) {
      throw new KeelError("CONFIGURATION", `default metrics prefix '${prefix}' must match ${NAME}`);
    }
    if (registry.getSingleMetric(`${prefix}process_cpu_user_seconds_total`) !== undefined) {
      throw new KeelError(
        "CONFIGURATION",
        `the registry already has prom-client's default metrics (prefix '${prefix}'): pass defaultMetrics: false`,
      );
    }
    const before = new Set(registry.getMetricsAsArray().map((m) => m.name));
    collectDefaultMetrics({ register: registry, prefix });
    for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(prefix + name);
    for (const m of registry.getMetricsAsArray()) if (!before.has(m.name)) registered.push(m.name);
  }

  // prom-client calls every metric's collect() in one synchronous pass per scrape: the first one
  // runs the hooks and snapshots the series; the others read that snapshot.
  let snapshot: Map<string, MetricFamily> | undefined;
  const seriesOf = (name: string): readonly SeriesSnapshot[] => {
    if (snapshot === undefined) {
      const families = new Map<string, MetricFamily>();
      for (const f of memory.collect()) families.set(f.name, f);
      snapshot = families;
      queueMicrotask(() => {
        snapshot = undefined;
      });
    }
    return snapshot.get(name)?.series ?? [];
  };

  /** Registers one prom-client metric for a Keel metric, on its first declaration. */
  const exported = new Set<string>();
  let closed = false;
  const register = (name: string, make: () => void): void => {
    if (closed || exported.has(name)) return;
    try {
      make();
    } catch (err) {
      throw new KeelError(
        "CONFIGURATION",
        `metric '${name}' is already in the prom-client registry (your own, or another createPrometheusMetrics on the same registry)`,
        { cause: err },
      );
    }
    exported.add(name);
    registered.push(name);
  };
  const registers = [registry];

  return {
    counter<L extends string>(o: MetricOptions<L>): Counter<L> {
      const counter = memory.counter(o);
      const name = o.name;
      register(name, () => {
        new PromCounter<string>({
          name,
          help: o.help,
          labelNames: o.labelNames,
          registers,
          collect() {
            this.reset();
            for (const s of seriesOf(name)) if ("value" in s) this.inc(s.labels, s.value);
          },
        });
      });
      return counter;
    },
    gauge<L extends string>(o: MetricOptions<L>): Gauge<L> {
      const gauge = memory.gauge(o);
      const name = o.name;
      register(name, () => {
        new PromGauge<string>({
          name,
          help: o.help,
          labelNames: o.labelNames,
          registers,
          collect() {
            this.reset(); // series removed from Keel's gauge (a peer's breaker) go too
            for (const s of seriesOf(name)) if ("value" in s) this.set(s.labels, s.value);
          },
        });
      });
      return gauge;
    },
    histogram<L extends string>(o: HistogramOptions<L>): Histogram<L> {
      const histogram = memory.histogram(o);
      const name = o.name;
      register(name, () => {
        new PromHistogram<string>({
          name,
          help: o.help,
          labelNames: o.labelNames,
          buckets: [...(o.buckets ?? DEFAULT_SECONDS_BUCKETS)],
          registers,
          collect() {
            Reflect.set(this, "hashMap", histogramRecords(seriesOf(name)));
          },
        });
      });
      return histogram;
    },
    onCollect: memory.onCollect,
    collect: memory.collect,
    value: memory.value,
    registry,
    get contentType(): string {
      return registry.contentType;
    },
    render: () => registry.metrics(),
    close() {
      closed = true;
      for (const name of registered.splice(0)) registry.removeSingleMetric(name);
    },
  };
}
