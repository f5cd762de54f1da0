/**
 * Samplers: which data set indices a DataLoader reads each epoch, in which order (PyTorch's
 * `sampler=`). `WeightedRandomSampler` draws indices in proportion to per-sample weights (with
 * `classBalancedWeights`, every class equally often: the usual fix for imbalanced data);
 * `SubsetRandomSampler` shuffles a fixed subset. Both are seeded per epoch like the loader's
 * shuffle: from (seed, epoch) with the data pipeline's own generator, or, without a seed, from
 * libtorch's generator (so they follow `kiln.manualSeed`).
 */
import { KilnError, invalidParameterError } from '../errors';
import { randint } from '../tensor/creation';
import { checkSeed, mixSeed, rng, shuffleInPlace } from './rng';

/** What a DataLoader asks a sampler: how many indices an epoch has, and which. */
export interface Sampler {
  /** indices per epoch */
  readonly length: number;
  /** the data set indices of epoch `epoch`, in the order they are read */
  indices(epoch: number): Int32Array;
}

/** The epoch's generator: from (seed, epoch), or one draw from libtorch's generator. */
function epochRng(seed: number | undefined, epoch: number): () => number {
  if (seed !== undefined) return rng(mixSeed(seed, epoch));
  const t = randint(0, 2 ** 31 - 1, [1]);
  try {
    return rng(t.item());
  } finally {
    t.dispose();
  }
}

/** Options of `WeightedRandomSampler`. */
export interface WeightedRandomSamplerOptions {
  /** indices per epoch (default: as many as there are weights) */
  numSamples?: number;
  /** draw with replacement (default true, as PyTorch); without, an index appears at most once per epoch */
  replacement?: boolean;
  /** seed of the draws (default: libtorch's generator) */
  seed?: number;
}

/**
 * Draws `numSamples` indices per epoch, index i with probability weights[i] / Σ weights
 * (PyTorch's WeightedRandomSampler). Without replacement it draws successively without
 * putting back (Efraimidis–Spirakis keys u^(1/w), the same distribution as torch.multinomial).
 */
export class WeightedRandomSampler implements Sampler {
  readonly length: number;
  readonly replacement: boolean;
  readonly seed: number | undefined;
  private readonly weights: Float64Array;
  private readonly cumulative: Float64Array;

  constructor(weights: ArrayLike<number>, options: WeightedRandomSamplerOptions = {}) {
    if (!weights || typeof weights !== 'object' || typeof (weights as ArrayLike<number>).length !== 'number' || weights.length === 0)
      throw invalidParameterError('WeightedRandomSampler: weights', 'a non-empty array of non-negative numbers', weights);
    if (options === null || typeof options !== 'object') throw invalidParameterError('WeightedRandomSampler: options', 'an object', options);
    this.weights = Float64Array.from(weights as ArrayLike<number>);
    let positive = 0;
    this.cumulative = new Float64Array(this.weights.length);
    let sum = 0;
    this.weights.forEach((w, i) => {
      if (typeof (weights as ArrayLike<unknown>)[i] !== 'number' || !Number.isFinite(w) || w < 0)
        throw invalidParameterError(`WeightedRandomSampler: weights[${i}]`, 'a finite number ≥ 0', (weights as ArrayLike<unknown>)[i]);
      if (w > 0) positive++;
      sum += w;
      this.cumulative[i] = sum;
    });
    if (positive === 0) throw new KilnError('WeightedRandomSampler: every weight is 0: nothing can be drawn', 'INVALID_ARGUMENT');
    this.replacement = options.replacement ?? true;
    if (typeof this.replacement !== 'boolean') throw invalidParameterError('WeightedRandomSampler: replacement', 'a boolean', options.replacement);
    const n = options.numSamples ?? this.weights.length;
    if (!Number.isInteger(n) || n < 1) throw invalidParameterError('WeightedRandomSampler: numSamples', 'a positive integer', options.numSamples);
    if (!this.replacement && n > positive)
      throw new KilnError(`WeightedRandomSampler: ${n} samples without replacement, but only ${positive} weights are positive`, 'INVALID_ARGUMENT');
    this.length = n;
    this.seed = options.seed === undefined ? undefined : checkSeed(options.seed, 'WeightedRandomSampler: seed');
  }

  indices(epoch: number): Int32Array {
    const r = epochRng(this.seed, epoch);
    const out = new Int32Array(this.length);
    const c = this.cumulative, total = c[c.length - 1];
    if (this.replacement) {
      for (let k = 0; k < out.length; k++) {
        const u = r() * total;
        let lo = 0, hi = c.length - 1; // first i with c[i] > u
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (c[mid] > u) hi = mid;
          else lo = mid + 1;
        }
        out[k] = lo;
      }
      return out;
    }
    // the numSamples largest keys log(u)/w (monotone in u^(1/w)); zero weights never drawn
    const keys: [number, number][] = [];
    this.weights.forEach((w, i) => { if (w > 0) keys.push([Math.log(1 - r()) / w, i]); });
    keys.sort((a, b) => b[0] - a[0]);
    for (let k = 0; k < out.length; k++) out[k] = keys[k][1];
    return out;
  }
}

/** Reads the given indices in a new random order every epoch (PyTorch's SubsetRandomSampler). */
export class SubsetRandomSampler implements Sampler {
  readonly length: number;
  readonly seed: number | undefined;
  private readonly subset: Int32Array;

  constructor(indices: ArrayLike<number>, options: { seed?: number } = {}) {
    if (!indices || typeof indices !== 'object' || typeof (indices as ArrayLike<number>).length !== 'number' || indices.length === 0)
      throw invalidParameterError('SubsetRandomSampler: indices', 'a non-empty array of data set indices', indices);
    for (let i = 0; i < indices.length; i++)
      if (!Number.isInteger(indices[i]) || indices[i] < 0) throw invalidParameterError(`SubsetRandomSampler: indices[${i}]`, 'a non-negative integer', indices[i]);
    this.subset = Int32Array.from(indices);
    this.length = this.subset.length;
    this.seed = options?.seed === undefined ? undefined : checkSeed(options.seed, 'SubsetRandomSampler: seed');
  }

  indices(epoch: number): Int32Array {
    const out = this.subset.slice();
    shuffleInPlace(out, epochRng(this.seed, epoch));
    return out;
  }
}

/** Per-sample weights 1 / (count of the sample's class): a WeightedRandomSampler over them draws every class equally often. */
export function classBalancedWeights(labels: ArrayLike<number>): Float64Array {
  if (!labels || typeof labels !== 'object' || typeof (labels as ArrayLike<number>).length !== 'number' || labels.length === 0)
    throw invalidParameterError('classBalancedWeights: labels', 'a non-empty array of class indices', labels);
  const counts = new Map<number, number>();
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0) throw invalidParameterError(`classBalancedWeights: labels[${i}]`, 'a class index (integer ≥ 0)', y);
    counts.set(y, (counts.get(y) ?? 0) + 1);
  }
  return Float64Array.from({ length: labels.length }, (_, i) => 1 / counts.get(labels[i])!);
}

/** Checks a DataLoader's `sampler` option. */
export function checkSampler(s: unknown): Sampler {
  if (!s || typeof s !== 'object' || typeof (s as Sampler).indices !== 'function' || !Number.isInteger((s as Sampler).length) || (s as Sampler).length < 1)
    throw invalidParameterError('sampler', 'an object with length (a positive integer) and indices(epoch) => Int32Array, e.g. a WeightedRandomSampler', s);
  return s as Sampler;
}
