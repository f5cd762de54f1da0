/**
 * Running sums of loss and metrics kept on the device, so the training loop never reads a
 * scalar back per step: each step adds `[loss·n, correct, top-k correct, …]` into one
 * float64 vector and records the first step whose loss was not finite; the host reads the
 * vector once per log interval or epoch.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Device } from '../tensor/dtype';
import { zeros, full, tensor } from '../tensor/creation';
import { stack, where, cat } from '../tensor/ops';
import { keep, tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { correctCount, topKCorrectCount } from './metrics';

/** A metric computed per batch: a built-in name ('accuracy', 'top5', …) or `{name, fn}` returning the batch mean as a scalar tensor. */
export type MetricSpec = string | { name: string; fn: (logits: Tensor, targets: Tensor) => Tensor };

interface Metric {
  name: string;
  /** the batch's sum (not mean) as a scalar tensor */
  sum(logits: Tensor, y: Tensor, n: number): Tensor;
}

/** Resolves metric specs (validating names). */
export function resolveMetrics(specs: unknown): Metric[] {
  if (specs === undefined) specs = ['accuracy'];
  if (!Array.isArray(specs)) throw invalidParameterError('metrics', "an array of metric names ('accuracy', 'top5') or {name, fn}", specs);
  const seen = new Set<string>();
  return specs.map((s, i): Metric => {
    let m: Metric;
    if (s === 'accuracy' || s === 'acc') m = { name: 'accuracy', sum: (l, y) => correctCount(l, y) };
    else if (typeof s === 'string' && /^top(\d+)(_accuracy)?$/.test(s)) {
      const k = Number(/^top(\d+)/.exec(s)![1]);
      if (k < 1) throw invalidParameterError(`metrics[${i}]`, 'top-k with k ≥ 1', s);
      m = { name: `top${k}_accuracy`, sum: (l, y) => topKCorrectCount(l, y, k) };
    } else if (s && typeof s === 'object' && typeof s.name === 'string' && s.name && typeof s.fn === 'function') {
      const fn = s.fn as (l: Tensor, y: Tensor) => Tensor;
      m = {
        name: s.name,
        sum: (l, y, n) => {
          const v = fn(l, y);
          if (!(v instanceof Tensor) || v.numel !== 1) throw new KilnError(`metric '${s.name}' must return a one-element Tensor (the batch mean)`, 'INVALID_ARGUMENT');
          return v.detach().reshape([]).mul(n);
        },
      };
    } else throw invalidParameterError(`metrics[${i}]`, "'accuracy', 'topK' (e.g. 'top5') or {name, fn}", s);
    if (seen.has(m.name) || m.name === 'loss') throw invalidParameterError(`metrics[${i}]`, 'a metric name used once (and not "loss")', m.name);
    seen.add(m.name);
    return m;
  });
}

/** Device-side running sums for one pass over data. */
export class Accumulator {
  readonly names: string[];
  samples = 0;
  private sums: Tensor;
  private bad: Tensor;

  constructor(readonly metrics: Metric[], readonly device: Device) {
    this.names = ['loss', ...metrics.map((m) => m.name)];
    this.sums = keep(zeros([this.names.length], { dtype: 'float64', device }));
    this.bad = keep(full([], -1, { dtype: 'float64', device }));
  }

  /** Adds one batch: `loss` is the batch mean; `step` is recorded if the loss is not finite. */
  update(logits: Tensor, y: Tensor, loss: Tensor, step: number): void {
    const n = y.size(0);
    this.samples += n;
    tidy(() => noGrad(() => {
      const l = loss.detach().reshape([]).to({ dtype: 'float64' });
      const parts = [l.mul(n), ...this.metrics.map((m) => m.sum(logits, y, n).to({ dtype: 'float64', device: this.device }))];
      this.sums.add_(stack(parts));
      const nf = l.isfinite().logicalNot();
      this.bad.copy_(where(this.bad.lt(0).logicalAnd(nf), step, this.bad));
    }));
  }

  /** Reads the running means (loss and metrics) and the first non-finite step (-1 if none). */
  async read(): Promise<{ means: Record<string, number>; sums: number[]; nonFiniteStep: number }> {
    const bad = this.bad.reshape([1]);
    const both = cat([this.sums, bad]);
    bad.dispose();
    let d: Float64Array;
    try {
      d = (await both.data()) as Float64Array;
    } finally {
      both.dispose();
    }
    const sums = Array.from(d.subarray(0, this.names.length));
    const means: Record<string, number> = {};
    this.names.forEach((k, i) => (means[k] = this.samples > 0 ? sums[i] / this.samples : NaN));
    return { means, sums, nonFiniteStep: d[this.names.length] };
  }

  /** Sets the sums (restoring an interrupted epoch) or zeroes them. */
  reset(sums?: number[], samples = 0): void {
    if (sums) {
      if (sums.length !== this.names.length) throw new KilnError(`checkpoint has ${sums.length} running sums, this trainer logs ${this.names.length} (${this.names.join(', ')})`, 'INVALID_ARGUMENT');
      const t = tensor(Float64Array.from(sums), { device: this.device });
      this.sums.copy_(t);
      t.dispose();
    } else this.sums.zero_();
    this.samples = samples;
  }

  dispose(): void {
    this.sums.dispose();
    this.bad.dispose();
  }
}
