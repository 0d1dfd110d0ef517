import { KeelError } from "../errors/index.ts";

/** The value of each of a metric's label names, for one series. */
export type LabelValues<L extends string> = { readonly [K in L]: string };

/** How a metric is declared: its label names are fixed when it is created. */
export interface MetricOptions<L extends string> {
  /** Prometheus-style name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (Keel's own start with `keel_`). */
  readonly name: string;
  /** One line saying what it measures. */
  readonly help: string;
  readonly labelNames: readonly L[];
}

/** A histogram's declaration: its bucket upper bounds, ascending. */
export interface HistogramOptions<L extends string> extends MetricOptions<L> {
  /** Upper bounds, ascending and finite (`+Inf` is implied); default `DEFAULT_SECONDS_BUCKETS`. */
  readonly buckets?: readonly number[];
}

/** One series of a counter, resolved once and kept (no lookup per increment). */
export interface CounterSeries {
  inc(value?: number): void;
}

/** One series of a gauge. */
export interface GaugeSeries {
  set(value: number): void;
  inc(value?: number): void;
  dec(value?: number): void;
}

/** One series of a histogram. */
export interface HistogramSeries {
  observe(value: number): void;
}

/** A monotonic count. */
export interface Counter<L extends string> {
  /** The series with these label values; keep it for hot paths. */
  labels(values: LabelValues<L>): CounterSeries;
  inc(values: LabelValues<L>, value?: number): void;
}

/** A value that goes up and down. */
export interface Gauge<L extends string> {
  labels(values: LabelValues<L>): GaugeSeries;
  set(values: LabelValues<L>, value: number): void;
  /** Forgets a series (e.g. the breaker of a peer that left), so it is no longer exported. */
  remove(values: LabelValues<L>): void;
}

/** A distribution over fixed buckets. */
export interface Histogram<L extends string> {
  labels(values: LabelValues<L>): HistogramSeries;
  observe(values: LabelValues<L>, value: number): void;
}

/**
 * The metrics port: Keel records through it, an adapter (`@keel/prometheus`) exports. Asking twice
 * for a metric with the same name, type and labels returns the same metric, so several nodes may
 * share one `Metrics`; a clash in type or labels throws CONFIGURATION.
 */
export interface Metrics {
  counter<L extends string>(options: MetricOptions<L>): Counter<L>;
  gauge<L extends string>(options: MetricOptions<L>): Gauge<L>;
  histogram<L extends string>(options: HistogramOptions<L>): Histogram<L>;
  /**
   * Registers a function run before each export, for values read rather than counted (queue
   * depths, registry size); returns a function that unregisters it.
   */
  onCollect(collect: () => void): () => void;
}

/** Buckets for request durations in seconds: 0.5 ms to 10 s. */
export const DEFAULT_SECONDS_BUCKETS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]);

const NOOP_SERIES: CounterSeries & GaugeSeries & HistogramSeries = Object.freeze({
  inc() {},
  dec() {},
  set() {},
  observe() {},
});
const NOOP_METRIC: Counter<string> & Gauge<string> & Histogram<string> = Object.freeze({
  labels: () => NOOP_SERIES,
  inc() {},
  set() {},
  remove() {},
  observe() {},
});

/** Metrics that record nothing. A node without `metrics` skips recording altogether. */
export const noopMetrics: Metrics = Object.freeze({
  counter: () => NOOP_METRIC,
  gauge: () => NOOP_METRIC,
  histogram: () => NOOP_METRIC,
  onCollect: () => () => {},
});

// ---- an in-memory implementation ------------------------------------------------------------------

/** One series in a snapshot. */
export type SeriesSnapshot =
  | { readonly labels: Readonly<Record<string, string>>; readonly value: number }
  | {
      readonly labels: Readonly<Record<string, string>>;
      /** Cumulative counts per upper bound, `+Inf` last (equal to `count`). */
      readonly buckets: readonly { readonly le: number; readonly count: number }[];
      readonly sum: number;
      readonly count: number;
    };

/** One metric and its series, as an exporter reads them. */
export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  readonly labelNames: readonly string[];
  readonly series: readonly SeriesSnapshot[];
}

/** Metrics kept in memory: recording is a field update; `collect()` snapshots every family. */
export interface MemoryMetrics extends Metrics {
  /** Runs the collect hooks, then snapshots every metric (series sorted by label values). */
  collect(): MetricFamily[];
  /** The value of one counter or gauge series, or of a histogram's count; undefined if absent. */
  value(name: string, labels?: Readonly<Record<string, string>>): number | undefined;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

class CounterCell implements CounterSeries {
  value = 0;
  readonly labels: Readonly<Record<string, string>>;
  constructor(labels: Readonly<Record<string, string>>) {
    this.labels = labels;
  }
  inc(value = 1): void {
    if (!(value >= 0)) {
      throw new KeelError("INVALID_ARGUMENT", `a counter only goes up (got ${value})`);
    }
    this.value += value;
  }
}

class GaugeCell implements GaugeSeries {
  value = 0;
  readonly labels: Readonly<Record<string, string>>;
  constructor(labels: Readonly<Record<string, string>>) {
    this.labels = labels;
  }
  set(value: number): void {
    this.value = value;
  }
  inc(value = 1): void {
    this.value += value;
  }
  dec(value = 1): void {
    this.value -= value;
  }
}

class HistogramCell implements HistogramSeries {
  /** Non-cumulative counts per bucket; the last one is `+Inf`. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  readonly labels: Readonly<Record<string, string>>;
  readonly #bounds: readonly number[];
  constructor(labels: Readonly<Record<string, string>>, bounds: readonly number[]) {
    this.labels = labels;
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

type Cell = CounterCell | GaugeCell | HistogramCell;

/** One declared metric: its cells by joined label values. */
class Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  readonly labelNames: readonly string[];
  readonly buckets: readonly number[];
  readonly cells = new Map<string, Cell>();
  readonly #make: (labels: Readonly<Record<string, string>>) => Cell;

  constructor(
    options: MetricOptions<string>,
    type: "counter" | "gauge" | "histogram",
    buckets: readonly number[],
    make: (labels: Readonly<Record<string, string>>) => Cell,
  ) {
    this.name = options.name;
    this.help = options.help;
    this.type = type;
    this.labelNames = [...options.labelNames];
    this.buckets = buckets;
    this.#make = make;
  }

  cell(values: Readonly<Record<string, string>>): Cell {
    const names = this.labelNames;
    let key = "";
    for (let i = 0; i < names.length; i++) {
      const v = values[names[i]!];
      if (typeof v !== "string") {
        throw new KeelError(
          "INVALID_ARGUMENT",
          `metric '${this.name}' needs a string value for label '${names[i]}'`,
        );
      }
      key = i === 0 ? v : `${key}\u0000${v}`;
    }
    let cell = this.cells.get(key);
    if (cell === undefined) {
      if (Object.keys(values).length !== names.length) {
        const extra = Object.keys(values).filter((k) => !names.includes(k));
        throw new KeelError(
          "INVALID_ARGUMENT",
          `metric '${this.name}' has no label '${extra[0]}' (its labels: ${names.join(", ")})`,
        );
      }
      const labels: Record<string, string> = {};
      for (const n of names) labels[n] = values[n]!;
      cell = this.#make(Object.freeze(labels));
      this.cells.set(key, cell);
    }
    return cell;
  }

  remove(values: Readonly<Record<string, string>>): void {
    this.cells.delete(this.labelNames.map((n) => values[n]).join("\u0000"));
  }

  snapshot(): MetricFamily {
    const keys = [...this.cells.keys()].sort();
    const series: SeriesSnapshot[] = keys.map((k) => {
      const cell = this.cells.get(k)!;
      if (!(cell instanceof HistogramCell)) return { labels: cell.labels, value: cell.value };
      let running = 0;
      const buckets = [...this.buckets, Number.POSITIVE_INFINITY].map((le, i) => {
        running += cell.counts[i]!;
        return { le, count: running };
      });
      return { labels: cell.labels, buckets, sum: cell.sum, count: cell.count };
    });
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      labelNames: this.labelNames,
      series,
    };
  }
}

function checkOptions(options: MetricOptions<string>, histogram: boolean): void {
  if (typeof options?.name !== "string" || !METRIC_NAME.test(options.name)) {
    throw new KeelError(
      "CONFIGURATION",
      `metric name '${String(options?.name)}' must match ${METRIC_NAME}`,
    );
  }
  if (typeof options.help !== "string" || options.help === "") {
    throw new KeelError("CONFIGURATION", `metric '${options.name}' needs a help text`);
  }
  const seen = new Set<string>();
  for (const label of options.labelNames ?? []) {
    if (!LABEL_NAME.test(label) || label.startsWith("__") || (histogram && label === "le")) {
      throw new KeelError(
        "CONFIGURATION",
        `metric '${options.name}': '${label}' is not a valid label name`,
      );
    }
    if (seen.has(label)) {
      throw new KeelError("CONFIGURATION", `metric '${options.name}' repeats label '${label}'`);
    }
    seen.add(label);
  }
}

function checkBuckets(name: string, buckets: readonly number[]): readonly number[] {
  if (buckets.length === 0) {
    throw new KeelError("CONFIGURATION", `histogram '${name}' needs at least one bucket`);
  }
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i]!;
    if (!Number.isFinite(b) || (i > 0 && !(b > buckets[i - 1]!))) {
      throw new KeelError(
        "CONFIGURATION",
        `histogram '${name}': buckets must be finite and strictly ascending`,
      );
    }
  }
  return Object.freeze([...buckets]);
}

/**
 * Metrics kept in memory: for tests, and as the recording side of exporters. Series are resolved
 * once (`labels(...)`) and then updated with plain field writes.
 * @example
 * const metrics = createMemoryMetrics();
 * const node = createNode({ id: "a", env, transport, services, metrics });
 * // ... run a workload ...
 * metrics.value("keel_client_requests_total", { node: "a", service: "orders@1", action: "place", outcome: "ok" });
 */
export function createMemoryMetrics(): MemoryMetrics {
  const families = new Map<string, Family>();
  const hooks = new Set<() => void>();

  function declare(
    options: MetricOptions<string>,
    type: "counter" | "gauge" | "histogram",
    buckets: readonly number[],
    make: (labels: Readonly<Record<string, string>>) => Cell,
  ): Family {
    checkOptions(options, type === "histogram");
    const existing = families.get(options.name);
    if (existing !== undefined) {
      const same =
        existing.type === type &&
        existing.labelNames.join(",") === options.labelNames.join(",") &&
        existing.buckets.join(",") === buckets.join(",");
      if (!same) {
        throw new KeelError(
          "CONFIGURATION",
          `metric '${options.name}' is already declared with another type, labels or buckets`,
        );
      }
      return existing;
    }
    const family = new Family(options, type, buckets, make);
    families.set(options.name, family);
    return family;
  }

  return {
    counter<L extends string>(options: MetricOptions<L>): Counter<L> {
      const f = declare(options, "counter", [], (labels) => new CounterCell(labels));
      return {
        labels: (values) => f.cell(values) as CounterCell,
        inc: (values, value) => (f.cell(values) as CounterCell).inc(value),
      };
    },
    gauge<L extends string>(options: MetricOptions<L>): Gauge<L> {
      const f = declare(options, "gauge", [], (labels) => new GaugeCell(labels));
      return {
        labels: (values) => f.cell(values) as GaugeCell,
        set: (values, value) => (f.cell(values) as GaugeCell).set(value),
        remove: (values) => f.remove(values),
      };
    },
    histogram<L extends string>(options: HistogramOptions<L>): Histogram<L> {
      const bounds = checkBuckets(options.name, options.buckets ?? DEFAULT_SECONDS_BUCKETS);
      const f = declare(
        options,
        "histogram",
        bounds,
        (labels) => new HistogramCell(labels, bounds),
      );
      return {
        labels: (values) => f.cell(values) as HistogramCell,
        observe: (values, value) => (f.cell(values) as HistogramCell).observe(value),
      };
    },
    onCollect(collect) {
      hooks.add(collect);
      return () => hooks.delete(collect);
    },
    collect() {
      for (const hook of hooks) hook();
      return [...families.values()].map((f) => f.snapshot());
    },
    value(name, labels = {}) {
      const f = families.get(name);
      if (f === undefined) return undefined;
      const key = f.labelNames.map((n) => labels[n] ?? "").join("\u0000");
      const cell = f.cells.get(key);
      if (cell === undefined) return undefined;
      return cell instanceof HistogramCell ? cell.count : cell.value;
    },
  };
}
