/**
 * Counters, gauges and histograms whose call-path update is a field increment on a series object
 * the caller keeps: prom-client's own metrics hash their label set on every inc/observe (about
 * 0.3–0.5 µs each here, more than a whole tcp call's share of the server's CPU budget for four of
 * them). A family renders its series in prom-client's metric shape when the registry is scraped,
 * so the registry (and its default labels, content type and process metrics) stays prom-client's.
 */
import type { Metric, Registry } from "prom-client";

type Labels = Readonly<Record<string, string>>;

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

export class CounterSeries {
  value = 0;
  inc(): void {
    this.value++;
  }
}

/** A gauge's series; also what an up/down state is. */
export class GaugeSeries {
  value = 0;
  inc(): void {
    this.value++;
  }
  dec(): void {
    this.value--;
  }
  set(value: number): void {
    this.value = value;
  }
}

export class HistogramSeries {
  /** Observations per bucket (not cumulative); the last is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

type Kind = "counter" | "gauge" | "histogram";
type SeriesOf<K extends Kind> = K extends "histogram" ? HistogramSeries : K extends "gauge" ? GaugeSeries : CounterSeries;

/** One metric name and its series, one per label set. */
export class Family<K extends Kind> {
  readonly aggregator = "sum";
  private readonly series = new Map<string, { labels: Labels; state: SeriesOf<K> }>();

  constructor(
    readonly type: K,
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[] = [],
  ) {}

  /**
   * The family of that name in registry, made and registered the first time: nodes sharing a
   * registry (several services in one process) share its families and so its series.
   */
  static in<K extends Kind>(registry: Registry, type: K, name: string, help: string, bounds: readonly number[] = []): Family<K> {
    const existing = registry.getSingleMetric(name) as unknown;
    if (existing instanceof Family && existing.type === type) return existing as Family<K>;
    const family = new Family(type, name, help, bounds);
    family.registerIn(registry);
    return family;
  }

  registerIn(registry: Registry): void {
    // prom-client renders any metric by its name, help, type and get(); its typings name only its own classes.
    registry.registerMetric(this as unknown as Metric);
  }

  /** The series of labels, made once; keep it and update it on the call path. */
  labels(labels: Labels = {}): SeriesOf<K> {
    const key = JSON.stringify(labels);
    let entry = this.series.get(key);
    if (!entry) {
      const state = (this.type === "histogram" ? new HistogramSeries(this.bounds) : this.type === "gauge" ? new GaugeSeries() : new CounterSeries()) as SeriesOf<K>;
      this.series.set(key, (entry = { labels, state }));
    }
    return entry.state;
  }

  /** What prom-client's registry renders at a scrape. */
  async get(): Promise<{ name: string; help: string; type: K; aggregator: "sum"; values: Sample[] }> {
    const values: Sample[] = [];
    for (const { labels, state } of this.series.values()) {
      if (state instanceof HistogramSeries) {
        let cumulative = 0;
        state.bounds.forEach((le, i) => {
          cumulative += state.counts[i]!;
          values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le }, value: cumulative });
        });
        values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: "+Inf" }, value: state.count });
        values.push({ metricName: `${this.name}_sum`, labels: { ...labels }, value: state.sum });
        values.push({ metricName: `${this.name}_count`, labels: { ...labels }, value: state.count });
      } else {
        values.push({ labels: { ...labels }, value: state.value });
      }
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** registry.resetMetrics(): every series back to zero (the call path keeps its series objects). */
  reset(): void {
    for (const { state } of this.series.values()) {
      if (state instanceof HistogramSeries) {
        state.counts.fill(0);
        state.sum = state.count = 0;
      } else state.value = 0;
    }
  }
}
