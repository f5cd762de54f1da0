/**
 * Prometheus metrics for the inference server: counters, gauges and histograms with labels,
 * rendered in the Prometheus text exposition format (version 0.0.4). No dependency.
 */
import { invalidParameterError } from '../errors';

/** Label names to values of one series. */
export type MetricLabels = Record<string, string>;

/** Escapes a label value as the text format requires (backslash, quote, newline). */
function escape(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(labels: MetricLabels, extra?: [string, string]): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escape(extra[1])}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function keyOf(labels: MetricLabels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function fmt(v: number): string {
  return v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : String(v);
}

/** Something the registry can render. */
interface Metric {
  readonly name: string;
  render(): string;
}

abstract class Base implements Metric {
  constructor(readonly name: string, readonly help: string, readonly type: string) {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw invalidParameterError('metric name', 'a Prometheus metric name', name);
  }
  protected header(): string {
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`;
  }
  abstract render(): string;
}

/** Removes the series whose labels include every one of `match` (e.g. a model version that was unregistered). */
function dropMatching<T extends { labels: MetricLabels }>(series: Map<string, T>, match: MetricLabels): void {
  for (const [k, s] of series) if (Object.entries(match).every(([name, v]) => s.labels[name] === v)) series.delete(k);
}

/** A monotonically increasing count per label set. */
export class Counter extends Base {
  private values = new Map<string, { labels: MetricLabels; value: number }>();
  constructor(name: string, help: string) {
    super(name, help, 'counter');
  }
  /** Adds `by` (default 1) to the series with these labels. */
  inc(labels: MetricLabels = {}, by = 1): void {
    const k = keyOf(labels);
    const s = this.values.get(k);
    if (s) s.value += by;
    else this.values.set(k, { labels: { ...labels }, value: by });
  }
  /** The current value of one series (0 if never incremented). */
  get(labels: MetricLabels = {}): number {
    return this.values.get(keyOf(labels))?.value ?? 0;
  }
  /** Removes the series whose labels include `match`. */
  drop(match: MetricLabels): void {
    dropMatching(this.values, match);
  }
  render(): string {
    let out = this.header();
    for (const s of this.values.values()) out += `${this.name}${labelText(s.labels)} ${fmt(s.value)}\n`;
    return out;
  }
}

/** One labelled value of a gauge. */
export interface GaugeSample {
  labels: MetricLabels;
  value: number;
}

/**
 * A value that goes up and down; `collect` (if given) supplies it just before rendering: one number, or one
 * sample per label set (e.g. a queue depth per model).
 */
export class Gauge extends Base {
  private value = 0;
  constructor(name: string, help: string, private readonly collect?: () => number | GaugeSample[]) {
    super(name, help, 'gauge');
  }
  set(v: number): void {
    this.value = v;
  }
  inc(by = 1): void {
    this.value += by;
  }
  dec(by = 1): void {
    this.value -= by;
  }
  /** The current value (of the series with these labels, for a labelled gauge; 0 if absent). */
  get(labels: MetricLabels = {}): number {
    const v = this.samples();
    return v.find((s) => keyOf(s.labels) === keyOf(labels))?.value ?? 0;
  }
  render(): string {
    return this.header() + this.samples().map((s) => `${this.name}${labelText(s.labels)} ${fmt(s.value)}\n`).join('');
  }
  private samples(): GaugeSample[] {
    const v = this.collect ? this.collect() : this.value;
    return typeof v === 'number' ? [{ labels: {}, value: v }] : v;
  }
}

/** Cumulative buckets, sum and count per label set (Prometheus histogram semantics). */
export class Histogram extends Base {
  private series = new Map<string, { labels: MetricLabels; counts: number[]; sum: number; count: number }>();
  readonly buckets: number[];
  constructor(name: string, help: string, buckets: number[]) {
    super(name, help, 'histogram');
    if (!Array.isArray(buckets) || buckets.length === 0 || buckets.some((b, i) => typeof b !== 'number' || (i > 0 && b <= buckets[i - 1])))
      throw invalidParameterError('buckets', 'a non-empty increasing array of numbers', buckets);
    this.buckets = [...buckets];
  }
  /** Records one observation. */
  observe(v: number, labels: MetricLabels = {}): void {
    const k = keyOf(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { labels: { ...labels }, counts: new Array(this.buckets.length).fill(0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) s.counts[i]++;
    s.sum += v;
    s.count++;
  }
  /** Count and sum of one series. */
  get(labels: MetricLabels = {}): { count: number; sum: number } {
    const s = this.series.get(keyOf(labels));
    return { count: s?.count ?? 0, sum: s?.sum ?? 0 };
  }
  /** Removes the series whose labels include `match`. */
  drop(match: MetricLabels): void {
    dropMatching(this.series, match);
  }
  render(): string {
    let out = this.header();
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => {
        out += `${this.name}_bucket${labelText(s.labels, ['le', fmt(b)])} ${s.counts[i]}\n`;
      });
      out += `${this.name}_bucket${labelText(s.labels, ['le', '+Inf'])} ${s.count}\n`;
      out += `${this.name}_sum${labelText(s.labels)} ${fmt(s.sum)}\n`;
      out += `${this.name}_count${labelText(s.labels)} ${s.count}\n`;
    }
    return out;
  }
}

/** A set of metrics rendered together for `GET /metrics`. */
export class Registry {
  private metrics: Metric[] = [];
  /** Adds a metric (names must be unique) and returns it. */
  register<M extends Metric>(m: M): M {
    if (this.metrics.some((x) => x.name === m.name)) throw invalidParameterError('metric', 'a unique name', m.name);
    this.metrics.push(m);
    return m;
  }
  /** The Prometheus text format of every metric. */
  render(): string {
    return this.metrics.map((m) => m.render()).join('');
  }
}

/** The content type of `Registry.render()`'s output. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Default latency buckets in seconds (1 ms … 10 s). */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Batch-size buckets. */
export const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
