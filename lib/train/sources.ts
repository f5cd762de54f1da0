/**
 * What `fit`, `evaluate` and `predict` accept as data, normalised to "batches of epoch e":
 * a DataLoader (its epoch is set, so seeded shuffles follow the epoch number), a Dataset
 * (wrapped in a DataLoader), a pair of tensors `{x, y}` (sliced into batches, shuffled from
 * the seed and epoch), an array of batches (reused every epoch, never disposed) or any
 * other (async) iterable of `{x, y}` batches (whose tensors are disposed after use).
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { Dataset, Batch, Subset } from '../data/dataset';
import { DataLoader } from '../data/loader';
import { stratifiedSplit } from '../data/split';
import { mixSeed, permutation } from '../data/rng';

/** A pair of tensors: images [N, …] and targets [N]. */
export interface TensorPair {
  x: Tensor;
  y: Tensor;
}

/** Data accepted by the trainer. */
export type BatchSource = DataLoader | Dataset | TensorPair | Batch[] | AsyncIterable<Batch> | Iterable<Batch>;

/** Normalised data: batches of epoch e, their count when known, whether the trainer owns (disposes) them. */
export interface Source {
  batches(epoch: number): AsyncIterable<Batch> | Iterable<Batch>;
  length: number | undefined;
  /** samples, when known */
  size: number | undefined;
  owned: boolean;
  /** class names, when the data knows them */
  classNames?: string[];
}

/** `{x, y}` tensors — not a Dataset that also has them (a TensorDataset goes through a DataLoader, which scales uint8 images). */
function isTensorPair(d: unknown): d is TensorPair {
  return !!d && typeof d === 'object' && (d as TensorPair).x instanceof Tensor && (d as TensorPair).y instanceof Tensor && !(Symbol.asyncIterator in (d as object)) && typeof (d as Dataset).get !== 'function';
}
function isDataset(d: unknown): d is Dataset {
  return !!d && typeof d === 'object' && typeof (d as Dataset).get === 'function' && typeof (d as Dataset).length === 'number' && !(Symbol.asyncIterator in (d as object));
}

/** In-memory tensors cut into batches (shuffled per epoch from the seed when asked). */
export class TensorBatches implements Iterable<Batch> {
  constructor(readonly x: Tensor, readonly y: Tensor, readonly batchSize: number, readonly shuffle: boolean, readonly seed: number, public epoch = 0) {
    if (x.size(0) !== y.size(0)) throw new KilnError(`data: x has ${x.size(0)} samples but y has ${y.size(0)}`, 'INVALID_ARGUMENT');
  }
  get length(): number {
    return Math.ceil(this.x.size(0) / this.batchSize);
  }
  *[Symbol.iterator](): Iterator<Batch> {
    const n = this.x.size(0);
    const order = this.shuffle ? tensor(permutation(n, mixSeed(this.seed, this.epoch)), { dtype: 'int64', device: this.x.device }) : null;
    try {
      for (let s = 0; s < n; s += this.batchSize) {
        const len = Math.min(this.batchSize, n - s);
        if (order) {
          const idx = order.narrow(0, s, len);
          const b = { x: this.x.indexSelect(0, idx), y: this.y.indexSelect(0, idx) };
          idx.dispose();
          yield b;
        } else yield { x: this.x.narrow(0, s, len), y: this.y.narrow(0, s, len) };
      }
    } finally {
      order?.dispose();
    }
  }
}

/** Normalises `data` (see the module comment). `batchSize`/`shuffle`/`seed` apply to tensors and datasets. */
export function toSource(data: unknown, name: string, o: { batchSize?: number; shuffle?: boolean; seed?: number | null } = {}): Source {
  const batchSize = o.batchSize ?? 32;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw invalidParameterError('batchSize', 'a positive integer', o.batchSize);
  if (data instanceof DataLoader) {
    return { batches: (e) => { data.setEpoch(e); return data; }, length: data.length, size: data.sampler?.length ?? data.dataset.length, owned: true, classNames: data.dataset.classNames };
  }
  if (isTensorPair(data)) {
    const tb = new TensorBatches(data.x, data.y, batchSize, o.shuffle ?? false, o.seed ?? 0);
    return { batches: (e) => { tb.epoch = e; return tb; }, length: tb.length, size: data.x.size(0), owned: true };
  }
  if (isDataset(data)) return toSource(new DataLoader(data, { batchSize, shuffle: o.shuffle ?? false, seed: o.seed ?? undefined }), name, o);
  if (Array.isArray(data)) {
    data.forEach((b, i) => {
      if (!b || !(b.x instanceof Tensor) || !(b.y instanceof Tensor)) throw invalidParameterError(`${name}[${i}]`, 'a batch {x: Tensor, y: Tensor}', b);
    });
    return { batches: () => data, length: data.length, size: data.reduce((a, b) => a + b.x.size(0), 0), owned: false };
  }
  if (data && typeof data === 'object' && (Symbol.asyncIterator in data || Symbol.iterator in data)) {
    const it = data as AsyncIterable<Batch> & { length?: unknown; setEpoch?: (e: number) => void };
    const len = typeof it.length === 'number' ? it.length : undefined;
    return { batches: (e) => { it.setEpoch?.(e); return it; }, length: len, size: undefined, owned: true };
  }
  throw invalidParameterError(name, 'a DataLoader, a Dataset, {x, y} tensors, an array of {x, y} batches or an (async) iterable of batches', data);
}

/**
 * Splits training data for `validationSplit`: tensors keep their last fraction for validation
 * (as Keras); a DataLoader or Dataset is split with class proportions kept (seeded), and the
 * validation part uses the loader's `evalTransform` (its augmentations dropped).
 */
export async function splitForValidation(data: unknown, fraction: number, seed: number, o: { batchSize?: number }): Promise<{ train: unknown; validation: unknown }> {
  if (typeof fraction !== 'number' || !(fraction > 0 && fraction < 1)) throw invalidParameterError('validationSplit', 'a number in (0, 1)', fraction);
  if (isTensorPair(data)) {
    const n = data.x.size(0);
    const nv = Math.max(1, Math.round(n * fraction));
    if (nv >= n) throw new KilnError(`validationSplit ${fraction} leaves no training samples out of ${n}`, 'INVALID_ARGUMENT');
    return {
      train: { x: data.x.narrow(0, 0, n - nv), y: data.y.narrow(0, 0, n - nv) },
      validation: { x: data.x.narrow(0, n - nv, nv), y: data.y.narrow(0, n - nv, nv) },
    };
  }
  const loader = data instanceof DataLoader ? data : null;
  if (loader?.sampler) throw new KilnError("validationSplit cannot split a DataLoader with a sampler (the sampler's indices refer to the whole data set): split the data first (stratifiedSplit) and pass `validation`", 'INVALID_ARGUMENT');
  const ds = loader ? loader.dataset : isDataset(data) ? data : null;
  if (!ds) throw new KilnError('validationSplit needs {x, y} tensors, a Dataset or a DataLoader; pass `validation` data for other sources', 'INVALID_ARGUMENT');
  const [tr, va] = await stratifiedSplit(ds, [1 - fraction, fraction], seed);
  const mk = (s: Subset, train: boolean) => new DataLoader(s, {
    batchSize: loader?.batchSize ?? o.batchSize ?? 32,
    shuffle: train ? loader?.shuffle ?? true : false,
    seed: loader?.seed ?? seed,
    dropLast: train ? loader?.dropLast : false,
    prefetch: loader?.prefetch,
    device: loader?.device,
    // validation images are not augmented: the loader's evaluation transform (random steps dropped)
    transform: train ? loader?.transform : loader?.evalTransform,
    toFloat: loader?.toFloat,
  });
  return { train: mk(tr, true), validation: mk(va, false) };
}
