/**
 * CUDA graphs behind the dynamic batcher (TensorRT's and Triton's batch-size profiles): the served
 * model's forward is captured once per bucket size (1, 2, 4, … up to maxBatchSize) at start-up, and
 * each batch is padded with zero images up to the smallest bucket that holds it, replayed with one
 * launch, and its rows cut back out. Larger batches (a single request over the largest bucket) run
 * the model as it is.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { DType } from '../tensor/dtype';
import { zeros } from '../tensor/creation';
import { cat } from '../tensor/ops';
import { tidy, keep } from '../tensor/memory';
import { Module } from '../nn/module';
import { CudaGraph } from '../nn/graph';
import { BatchModel } from './batcher';

/** A captured forward for one batch shape (`CudaGraph`, or a stand-in in tests). */
export interface CapturedForward {
  forwardAsync(x: Tensor): Promise<Tensor>;
  dispose(): void;
}

/** Captures `model`'s forward for inputs shaped like `example`. */
export type CaptureFn = (model: Module, example: Tensor) => CapturedForward;

/** What the graphs are captured for: the per-image shape and how batches arrive (the batcher's conversion). */
export interface GraphedShape {
  device: string;
  /** [C, H, W] */
  image: number[];
  dtype?: DType;
  channelsLast?: boolean;
}

/** The bucket sizes of `cudaGraphs: true`: powers of two up to `maxBatchSize`, and `maxBatchSize` itself. */
export function defaultBuckets(maxBatchSize: number): number[] {
  const b: number[] = [];
  for (let n = 1; n < maxBatchSize; n *= 2) b.push(n);
  b.push(maxBatchSize);
  return b;
}

/** Checks a `cudaGraphs` option: true, or ascending positive bucket sizes. */
export function checkBuckets(option: unknown, maxBatchSize: number): number[] | null {
  if (option === undefined || option === false) return null;
  if (option === true) return defaultBuckets(maxBatchSize);
  if (!Array.isArray(option) || option.length === 0 || !option.every((n, i) => Number.isInteger(n) && n >= 1 && (i === 0 || n > option[i - 1])))
    throw invalidParameterError('cudaGraphs', 'true, or ascending positive batch sizes to capture', option);
  return option as number[];
}

/** A model behind the batcher whose batches replay CUDA graphs, one per bucket size. */
export class GraphedBatches implements BatchModel {
  /** the captured batch sizes, ascending */
  readonly buckets: number[];
  private readonly graphs = new Map<number, CapturedForward>();
  /** batches that ran the model as it is (larger than every bucket) */
  uncaptured = 0;

  /**
   * Captures `model` (in eval mode, on `shape.device`) for every bucket now. `capture` defaults to
   * `CudaGraph.capture`; a capture that fails frees the ones made before it and throws.
   */
  constructor(readonly model: Module, buckets: number[], private readonly shape: GraphedShape, capture: CaptureFn = (m, x) => CudaGraph.capture(m, x)) {
    if (!(model instanceof Module)) throw new KilnError('cudaGraphs: the served model must be a kiln.nn Module (built from Kiln layers)', 'INVALID_ARGUMENT');
    this.buckets = [...buckets];
    try {
      for (const n of this.buckets) {
        const example = this.input(n);
        try {
          this.graphs.set(n, capture(model, example));
        } finally {
          example.dispose();
        }
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** A zero batch of n images as the batcher delivers them. */
  private input(n: number): Tensor {
    return tidy(() => this.laidOut(zeros([n, ...this.shape.image], { device: this.shape.device as never, dtype: this.shape.dtype })));
  }

  /** `t` in the memory layout the graphs were captured for. */
  private laidOut(t: Tensor): Tensor {
    return this.shape.channelsLast ? t.contiguous('channelsLast') : t;
  }

  /** The smallest bucket holding n images, or null. */
  bucketFor(n: number): number | null {
    return this.buckets.find((b) => b >= n) ?? null;
  }

  async forwardAsync(x: Tensor): Promise<Tensor> {
    const n = x.shape[0];
    const b = this.bucketFor(n);
    if (b === null) {
      this.uncaptured++;
      return this.model.forwardAsync(x);
    }
    const padded = b === n ? x : keep(tidy(() => this.laidOut(cat([x, zeros([b - n, ...x.shape.slice(1)], { device: x.device, dtype: x.dtype })], 0))));
    let y: Tensor;
    try {
      y = await this.graphs.get(b)!.forwardAsync(padded);
    } finally {
      if (padded !== x) padded.dispose();
    }
    if (b === n) return y;
    const rows = keep(tidy(() => y.narrow(0, 0, n).contiguous()));
    y.dispose();
    return rows;
  }

  parameters(): Tensor[] {
    return this.model.parameters();
  }

  /** Frees the graphs (not the model). */
  dispose(): void {
    for (const g of this.graphs.values()) g.dispose();
    this.graphs.clear();
  }
}
