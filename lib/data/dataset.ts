/**
 * The `Dataset` interface, in-memory `TensorDataset`, and `Subset` (what the splits return).
 * Data sets that can assemble a whole batch at once implement `getBatch` (image folders:
 * parallel decode into one buffer) or `batchFromIndex` (in-memory tensors: one native
 * `indexSelect`, no per-sample JS); the DataLoader uses the fastest one available.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Device, checkDevice } from '../tensor/dtype';
import { tensor } from '../tensor/creation';
import { keep } from '../tensor/memory';

/** One example: an image [C, H, W] (float32 in 0..1, or uint8 in 0..255) and its class index. */
export interface Sample {
  x: Tensor;
  y: number;
}

/** A batch: images [B, C, H, W] (uint8 or float32) and int64 class indices [B]. */
export interface Batch {
  x: Tensor;
  y: Tensor;
}

/** Anything indexable that yields samples. `get` resolves to tensors the caller owns. */
export interface Dataset {
  readonly length: number;
  get(i: number): Promise<Sample>;
  /** class names, index = label, when known */
  readonly classNames?: string[];
  /** all labels without decoding any image, when cheap */
  labels?(): Int32Array;
  /** a whole batch at once (the caller owns the tensors); may drop unreadable samples */
  getBatch?(indices: ArrayLike<number>): Promise<Batch>;
  /** a whole batch from an int64 index tensor, on the native side (the caller owns the tensors) */
  batchFromIndex?(index: Tensor): Batch;
}

/** Checks that `ds` looks like a Dataset. */
export function checkDataset(ds: unknown, name = 'dataset'): Dataset {
  const d = ds as Dataset;
  if (!d || typeof d !== 'object' || typeof d.get !== 'function' || typeof d.length !== 'number' || !Number.isInteger(d.length) || d.length < 0)
    throw invalidParameterError(name, 'a Dataset (an object with length and async get(i))', ds);
  return d;
}

/** Validates a sample index. */
export function checkIndex(i: unknown, length: number): number {
  if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= length)
    throw invalidParameterError('index', `an integer in [0, ${length})`, i);
  return i;
}

/** The labels of every sample: from `labels()` when the data set has it, else by reading each sample. */
export async function labelsOf(ds: Dataset): Promise<Int32Array> {
  if (typeof ds.labels === 'function') return ds.labels();
  const out = new Int32Array(ds.length);
  for (let i = 0; i < ds.length; i++) {
    const s = await ds.get(i);
    s.x.dispose();
    out[i] = s.y;
  }
  return out;
}

/**
 * An in-memory data set: images `x` [N, C, H, W] (uint8 or float32) and labels `y` [N]
 * (any integer dtype; stored as int64). It takes ownership of both tensors (`dispose()` frees them).
 */
export class TensorDataset implements Dataset {
  readonly x: Tensor;
  readonly y: Tensor;
  readonly classNames?: string[];
  private _labels: Int32Array | null = null;

  constructor(x: Tensor, y: Tensor, options: { classNames?: string[] } = {}) {
    if (!(x instanceof Tensor) || x.isDisposed) throw invalidParameterError('x', 'a Tensor [N, C, H, W]', x);
    if (!(y instanceof Tensor) || y.isDisposed) throw invalidParameterError('y', 'a Tensor [N] of class indices', y);
    if (x.ndim !== 4) throw new KilnError(`TensorDataset: x must be [N, C, H, W], got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    if (x.dtype !== 'uint8' && x.dtype !== 'float32') throw invalidParameterError('x.dtype', "'uint8' or 'float32'", x.dtype);
    if (y.ndim !== 1 || y.size(0) !== x.size(0))
      throw new KilnError(`TensorDataset: y must be [${x.size(0)}] to match x, got shape [${y.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    if (!['int64', 'int32', 'uint8'].includes(y.dtype)) throw invalidParameterError('y.dtype', 'an integer dtype', y.dtype);
    if (options.classNames !== undefined && (!Array.isArray(options.classNames) || !options.classNames.every((c) => typeof c === 'string')))
      throw invalidParameterError('classNames', 'an array of strings', options.classNames);
    this.x = x;
    if (y.dtype === 'int64') this.y = y;
    else {
      this.y = y.to({ dtype: 'int64' });
      y.dispose();
    }
    this.classNames = options.classNames;
  }

  get length(): number {
    return this.x.size(0);
  }

  /** One sample; `x` is a new [C, H, W] tensor (a view of the stored data, same dtype). */
  async get(i: number): Promise<Sample> {
    checkIndex(i, this.length);
    return { x: this.x.select(0, i), y: this.labels()[i] };
  }

  /** The labels, read back once. */
  labels(): Int32Array {
    if (!this._labels) this._labels = Int32Array.from(this.y.dataSync() as BigInt64Array, Number);
    return this._labels;
  }

  /** The batch at `index` (int64 [B]), gathered natively (on the data's device). */
  batchFromIndex(index: Tensor): Batch {
    const dev = this.x.device;
    if (index.device === dev) return { x: this.x.indexSelect(0, index), y: this.y.indexSelect(0, index) };
    const idx = index.to({ device: dev });
    try {
      return { x: this.x.indexSelect(0, idx), y: this.y.indexSelect(0, idx) };
    } finally {
      idx.dispose();
    }
  }

  /**
   * Moves the stored images and labels to `device` in place (small data sets held on the GPU
   * skip the per-batch host→device copy); returns this.
   */
  to(device: Device): this {
    checkDevice(device);
    for (const key of ['x', 'y'] as const) {
      const moved = keep(this[key].to({ device }));
      this[key].dispose();
      (this as { -readonly [K in 'x' | 'y']: Tensor })[key] = moved;
    }
    return this;
  }

  async getBatch(indices: ArrayLike<number>): Promise<Batch> {
    const idx = indexTensor(indices, this.length);
    try {
      return this.batchFromIndex(idx);
    } finally {
      idx.dispose();
    }
  }

  /** Frees the stored tensors. */
  dispose(): void {
    this.x.dispose();
    this.y.dispose();
  }
}

/** An int64 index tensor from JS indices, checked against `length`. */
export function indexTensor(indices: ArrayLike<number>, length: number): Tensor {
  const a = Int32Array.from(indices as ArrayLike<number>);
  for (let k = 0; k < a.length; k++) if (a[k] < 0 || a[k] >= length || a[k] !== indices[k]) checkIndex(indices[k], length);
  return tensor(a, { dtype: 'int64' });
}

/** A view of some samples of another data set (what `randomSplit` and `stratifiedSplit` return). */
export class Subset implements Dataset {
  readonly dataset: Dataset;
  readonly indices: Int32Array;
  private _index: Tensor | null = null;

  constructor(dataset: Dataset, indices: ArrayLike<number>) {
    this.dataset = dataset;
    this.indices = Int32Array.from(indices);
    for (let k = 0; k < this.indices.length; k++) checkIndex(indices[k], dataset.length);
    if (typeof dataset.batchFromIndex === 'function') this.batchFromIndex = (index: Tensor) => this.nativeBatch(index);
  }
  get length(): number {
    return this.indices.length;
  }
  get classNames(): string[] | undefined {
    return this.dataset.classNames;
  }
  async get(i: number): Promise<Sample> {
    return this.dataset.get(this.indices[checkIndex(i, this.length)]);
  }
  labels(): Int32Array {
    if (typeof this.dataset.labels !== 'function') throw new KilnError('Subset.labels: the parent data set has no labels()', 'INVALID_ARGUMENT');
    const all = this.dataset.labels();
    return this.indices.map((i) => all[i]);
  }
  async getBatch(indices: ArrayLike<number>): Promise<Batch> {
    const parent = new Int32Array(indices.length);
    for (let k = 0; k < indices.length; k++) parent[k] = this.indices[checkIndex(indices[k], this.length)];
    if (typeof this.dataset.getBatch === 'function') return this.dataset.getBatch(parent);
    throw new KilnError('Subset.getBatch: the parent data set has no getBatch()', 'INVALID_ARGUMENT');
  }
  /** Present when the parent indexes natively: maps the batch index through this subset's indices natively. */
  batchFromIndex?: (index: Tensor) => Batch;

  private nativeBatch(index: Tensor): Batch {
    this._index ??= keep(tensor(this.indices, { dtype: 'int64' }));
    const parentIdx = this._index.indexSelect(0, index);
    try {
      return this.dataset.batchFromIndex!(parentIdx);
    } finally {
      parentIdx.dispose();
    }
  }
  /** Passes the DataLoader's end-of-epoch report on to the parent (image folders warn about skipped files). */
  reportSkipped(): void {
    (this.dataset as { reportSkipped?: () => void }).reportSkipped?.();
  }
  /** Frees the cached index tensor (not the parent's data). */
  dispose(): void {
    this._index?.dispose();
    this._index = null;
  }
}
