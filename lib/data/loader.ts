/**
 * DataLoader: batches of a Dataset as NCHW float32 images and int64 labels, shuffled
 * (seeded, a new order every epoch), prefetched while the consumer computes.
 *
 *   for await (const { x, y } of loader) { … x.dispose(); y.dispose(); }
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Device, checkDevice } from '../tensor/dtype';
import { tensor, arange, randperm } from '../tensor/creation';
import { stack } from '../tensor/ops';
import { Dataset, Batch, checkDataset } from './dataset';
import { checkSeed, mixSeed, permutation } from './rng';
import { Sampler, checkSampler } from './sampler';
import { BatchTransform, forEvaluation } from './transforms';

/** Options of `DataLoader`. */
export interface DataLoaderOptions {
  /** samples per batch (default 32) */
  batchSize?: number;
  /** a new random order every epoch (default false) */
  shuffle?: boolean;
  /**
   * seed of the shuffle: epoch e uses a permutation derived from (seed, e), independent of
   * libtorch's generator. Without it, the order comes from `randperm` (set by `kiln.manualSeed`).
   */
  seed?: number;
  /**
   * which indices each epoch reads, in order (PyTorch's `sampler`): a `WeightedRandomSampler`
   * (e.g. over `classBalancedWeights(labels)`), a `SubsetRandomSampler`, or your own; excludes `shuffle`
   */
  sampler?: Sampler;
  /** drop the last, smaller batch (default false) */
  dropLast?: boolean;
  /** batches prepared ahead of the one being consumed (default 2; 0: none) */
  prefetch?: number;
  /** samples read at once for data sets without a batch method (default 16) */
  concurrency?: number;
  /** where batches go (default 'cpu'); copies are non-blocking */
  device?: Device;
  /** stage CUDA-bound batches in page-locked memory (default true when `device` is CUDA) */
  pinMemory?: boolean;
  /**
   * applied to each whole batch x (float32 [B, C, H, W] in 0..1 on `device`) just before it
   * is handed over, in batch order, so random transforms follow `kiln.manualSeed` reproducibly
   */
  transform?: BatchTransform;
  /**
   * the transform of evaluation copies of this loader (the validation part of `validationSplit`);
   * default `forEvaluation(transform)`: random augmentations dropped or made deterministic; null: none
   */
  evalTransform?: BatchTransform | null;
  /** convert uint8 images to float32 / 255 (default true); false hands uint8 over as is */
  toFloat?: boolean;
}

type Order = { kind: 'tensor'; t: Tensor } | { kind: 'array'; a: Int32Array };

/** Batches a data set; iterate with `for await`. Each batch's tensors belong to the consumer. */
export class DataLoader implements AsyncIterable<Batch> {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number | undefined;
  readonly sampler: Sampler | undefined;
  readonly dropLast: boolean;
  readonly prefetch: number;
  readonly concurrency: number;
  readonly device: Device;
  readonly pinMemory: boolean;
  readonly transform: BatchTransform | undefined;
  readonly evalTransform: BatchTransform | undefined;
  readonly toFloat: boolean;
  private _epoch = 0;

  constructor(dataset: Dataset, options: DataLoaderOptions = {}) {
    this.dataset = checkDataset(dataset);
    if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
    const int = (v: unknown, name: string, min: number, dflt: number, max = 2 ** 31 - 1) => {
      if (v === undefined) return dflt;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalidParameterError(name, `an integer in [${min}, ${max}]`, v);
      return v;
    };
    const bool = (v: unknown, name: string, dflt: boolean) => {
      if (v === undefined) return dflt;
      if (typeof v !== 'boolean') throw invalidParameterError(name, 'a boolean', v);
      return v;
    };
    this.batchSize = int(options.batchSize, 'batchSize', 1, 32);
    this.shuffle = bool(options.shuffle, 'shuffle', false);
    this.seed = options.seed === undefined ? undefined : checkSeed(options.seed);
    this.sampler = options.sampler === undefined ? undefined : checkSampler(options.sampler);
    if (this.sampler && this.shuffle) throw new KilnError('DataLoader: sampler and shuffle exclude each other (the sampler decides the order)', 'INVALID_ARGUMENT');
    this.dropLast = bool(options.dropLast, 'dropLast', false);
    // batches held in memory at once: a prefetch of 1e9 read the whole data set ahead
    this.prefetch = int(options.prefetch, 'prefetch', 0, 2, 64);
    this.concurrency = int(options.concurrency, 'concurrency', 1, 16, 1024);
    this.device = options.device === undefined ? 'cpu' : checkDevice(options.device);
    this.pinMemory = bool(options.pinMemory, 'pinMemory', this.device.startsWith('cuda'));
    if (options.transform !== undefined && typeof options.transform !== 'function') throw invalidParameterError('transform', 'a function (x: Tensor) => Tensor', options.transform);
    this.transform = options.transform;
    if (options.evalTransform !== undefined && options.evalTransform !== null && typeof options.evalTransform !== 'function')
      throw invalidParameterError('evalTransform', 'a function (x: Tensor) => Tensor or null', options.evalTransform);
    this.evalTransform = options.evalTransform === undefined ? forEvaluation(this.transform) : options.evalTransform ?? undefined;
    this.toFloat = bool(options.toFloat, 'toFloat', true);
  }

  /** Batches per epoch. */
  get length(): number {
    const n = this.sampler?.length ?? this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** Epochs started so far (the next epoch's number). */
  get epoch(): number {
    return this._epoch;
  }
  /** Sets the number of the next epoch (to resume a run: its shuffle order follows the seed and this number). */
  setEpoch(epoch: number): void {
    if (!Number.isInteger(epoch) || epoch < 0) throw invalidParameterError('epoch', 'a non-negative integer', epoch);
    this._epoch = epoch;
  }

  private order(epoch: number, native: boolean): Order {
    const n = this.dataset.length;
    if (this.sampler) {
      const a = this.sampler.indices(epoch);
      if (!(a instanceof Int32Array) || a.length !== this.sampler.length)
        throw new KilnError(`DataLoader: sampler.indices(${epoch}) must return an Int32Array of sampler.length (${this.sampler.length}) indices`, 'INVALID_ARGUMENT');
      for (let i = 0; i < a.length; i++)
        if (a[i] < 0 || a[i] >= n) throw new KilnError(`DataLoader: the sampler gave index ${a[i]}, outside the data set's ${n} samples`, 'INVALID_ARGUMENT');
      return native ? { kind: 'tensor', t: tensor(a, { dtype: 'int64' }) } : { kind: 'array', a };
    }
    if (!this.shuffle) return native ? { kind: 'tensor', t: arange(n) } : { kind: 'array', a: Int32Array.from({ length: n }, (_, i) => i) };
    if (this.seed !== undefined) {
      const p = permutation(n, mixSeed(this.seed, epoch));
      return native ? { kind: 'tensor', t: tensor(p, { dtype: 'int64' }) } : { kind: 'array', a: p };
    }
    const t = randperm(n);
    if (native) return { kind: 'tensor', t };
    const a = Int32Array.from(t.dataSync() as BigInt64Array, Number);
    t.dispose();
    return { kind: 'array', a };
  }

  /** Reads batch k (uint8 or float, on the CPU), moved to the device. */
  private async produce(order: Order, k: number): Promise<Batch> {
    const start = k * this.batchSize;
    const len = Math.min(this.batchSize, (order.kind === 'tensor' ? order.t.size(0) : order.a.length) - start);
    let b: Batch;
    if (order.kind === 'tensor') {
      const idx = order.t.narrow(0, start, len);
      try {
        b = this.dataset.batchFromIndex!(idx);
      } finally {
        idx.dispose();
      }
    } else {
      const ids = order.a.subarray(start, start + len);
      b = typeof this.dataset.getBatch === 'function' ? checkBatch(await this.dataset.getBatch(ids), ids.length, 'dataset.getBatch()') : await this.readSamples(ids);
    }
    if (this.device !== 'cpu') {
      // page-locked staging makes the host→device copies asynchronous (PyTorch's pin_memory=True)
      const move = (t: Tensor): Tensor => {
        if (!this.pinMemory || t.device !== 'cpu') return t.to({ device: this.device, nonBlocking: true });
        const pinned = t.pinMemory();
        try {
          return pinned.to({ device: this.device, nonBlocking: true });
        } finally {
          pinned.dispose();
        }
      };
      const x = move(b.x);
      const y = move(b.y);
      b.x.dispose();
      b.y.dispose();
      b = { x, y };
    }
    return b;
  }

  /** Collation for data sets with only `get`: reads with bounded concurrency, stacks natively. */
  private async readSamples(ids: Int32Array): Promise<Batch> {
    const xs: Tensor[] = new Array(ids.length);
    const ys = new Int32Array(ids.length);
    let next = 0;
    let failed = false; // after the first failure the other workers stop, and what they still get is freed
    const worker = async () => {
      while (next < ids.length && !failed) {
        const j = next++;
        let s: { x?: unknown; y?: unknown } | undefined;
        try {
          s = await this.dataset.get(ids[j]);
        } catch (e) {
          failed = true;
          throw e;
        }
        if (failed) {
          if (s?.x instanceof Tensor) s.x.dispose();
          return;
        }
        if (!s || typeof s !== 'object') {
          failed = true;
          throw new KilnError(`DataLoader: dataset.get(${ids[j]}) must return a sample {x, y}, got ${s === null ? 'null' : typeof s}`, 'INVALID_ARGUMENT');
        }
        xs[j] = s.x as Tensor;
        if (!Number.isInteger(s.y) || (s.y as number) < 0 || (s.y as number) > 2 ** 31 - 1) {
          failed = true;
          throw new KilnError(`DataLoader: dataset.get(${ids[j]}) gave the label ${JSON.stringify(s.y) ?? String(s.y)}, not a class index (an integer ≥ 0)`, 'INVALID_ARGUMENT');
        }
        ys[j] = s.y as number;
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(this.concurrency, ids.length) }, worker));
      for (const x of xs) if (!(x instanceof Tensor) || x.ndim !== 3) throw new KilnError(`DataLoader: dataset.get() must return x as a [C, H, W] tensor, got ${x instanceof Tensor ? `shape [${x.shape.join(', ')}]` : typeof x}`, 'INVALID_ARGUMENT');
      // stacking would promote a mix (uint8 and float32) to float32, and the uint8 images would miss their / 255
      const mixed = xs.find((x) => x.dtype !== xs[0].dtype);
      if (mixed) throw new KilnError(`DataLoader: the samples of one batch have different dtypes (${xs[0].dtype} and ${mixed.dtype}); return one dtype from dataset.get()`, 'INVALID_ARGUMENT');
      return { x: stack(xs), y: tensor(ys, { dtype: 'int64' }) };
    } catch (e) {
      failed = true;
      throw e;
    } finally {
      for (const x of xs) if (x instanceof Tensor) x.dispose();
    }
  }

  /** uint8 → float32 / 255, then the transform. */
  private finish(b: Batch): Batch {
    let x = b.x;
    const dtype = x.dtype;
    if (this.toFloat && dtype !== 'float32') {
      const f = x.to({ dtype: 'float32' });
      x.dispose();
      if (dtype === 'uint8') f.div_(255); // in place: one pass less over the batch
      x = f;
    }
    if (this.transform) {
      let t: Tensor;
      try {
        t = this.transform(x);
      } catch (e) {
        x.dispose();
        b.y.dispose();
        throw e;
      }
      const n = b.y.size(0);
      if (!(t instanceof Tensor) || t.ndim < 1 || t.size(0) !== n) {
        const got = t instanceof Tensor ? `shape [${t.shape.join(', ')}] for ${n} labels`
          : (t as unknown) instanceof Promise ? 'a Promise (transforms run synchronously: no async functions)' : typeof t;
        x.dispose();
        b.y.dispose();
        if (t instanceof Tensor && t !== x) t.dispose();
        throw new KilnError(`DataLoader: transform must return a Tensor with the batch's ${n} images, got ${got}`, 'INVALID_ARGUMENT');
      }
      if (t !== x) x.dispose();
      x = t;
    }
    return { x, y: b.y };
  }

  /** One epoch of batches. Each `for await` starts a new epoch (a new order when shuffling). */
  async *[Symbol.asyncIterator](): AsyncGenerator<Batch, void, undefined> {
    const native = typeof this.dataset.batchFromIndex === 'function';
    const order = this.order(this._epoch++, native);
    const nb = this.length;
    const queue: Promise<Batch>[] = [];
    let next = 0;
    // `prefetch` batches are read ahead of the one the consumer holds.
    const fill = (ahead: number) => {
      while (queue.length < ahead && next < nb) {
        const p = this.produce(order, next++);
        p.catch(() => undefined); // awaited below; avoid an unhandled rejection meanwhile
        queue.push(p);
      }
    };
    try {
      fill(this.prefetch + 1);
      while (queue.length > 0) {
        const b = await queue.shift()!;
        fill(this.prefetch); // start the next read before handing this batch over
        if (b.x.size(0) === 0) {
          b.x.dispose();
          b.y.dispose();
          continue;
        }
        yield this.finish(b);
      }
      (this.dataset as { reportSkipped?: () => void }).reportSkipped?.();
    } finally {
      if (order.kind === 'tensor') order.t.dispose();
      for (const p of queue.splice(0)) {
        const b = await p.catch(() => null);
        b?.x.dispose();
        b?.y.dispose();
      }
    }
  }
}

/**
 * Checks what a data set's getBatch gave for `n` indices: {x, y} tensors with as many images as labels, at most `n`
 * (fewer where it skipped unreadable files); a refused batch is freed.
 */
function checkBatch(b: unknown, n: number, who: string): Batch {
  const bb = b as Partial<Batch> | null | undefined;
  const ok = !!bb && bb.x instanceof Tensor && bb.y instanceof Tensor && bb.x.ndim === 4 && bb.y.ndim === 1 && bb.x.size(0) === bb.y.size(0) && bb.y.size(0) <= n;
  if (ok) return bb as Batch;
  const what = !bb || typeof bb !== 'object' ? String(bb)
    : `x ${bb.x instanceof Tensor ? `[${bb.x.shape.join(', ')}]` : typeof bb.x}, y ${bb.y instanceof Tensor ? `[${bb.y.shape.join(', ')}]` : typeof bb.y}`;
  for (const t of [bb?.x, bb?.y]) if (t instanceof Tensor) t.dispose();
  throw new KilnError(`DataLoader: ${who} must return {x: [B, C, H, W], y: [B]} tensors, B ≤ ${n} (the indices asked for), got ${what}`, 'INVALID_ARGUMENT');
}
