/**
 * CUDA graphs for inference: a model's no-grad forward for one input shape is captured once
 * (after a few warm-up runs on a side stream, as `torch.cuda.graph` does) and then replayed
 * with one launch, which removes the per-kernel launch cost that dominates small batches.
 */
import { N } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { Module, weightMoveCount } from './module';
import { ScriptModule } from './jit';
import { NativeRunnable } from './runnable';

/** Options of `CudaGraph.capture`. */
export interface CudaGraphOptions {
  /** forward passes before the capture (cuDNN autotuning, allocator warm-up; default 3) */
  warmup?: number;
}

/** Whether this build can capture CUDA graphs (a CUDA libtorch; see `kiln.info().cudaGraphs`). */
export function cudaGraphsAvailable(): boolean {
  return N.graphsBuilt();
}

/** A captured inference forward of a model for one input shape, dtype and CUDA device. */
export class CudaGraph extends NativeRunnable {
  /** the input shape the graph was captured for */
  readonly inputShape: number[];
  readonly dtype: string;
  readonly device: string;

  private readonly moves = weightMoveCount();

  private constructor(handle: number, example: Tensor) {
    super(handle, 'this CUDA graph');
    this.inputShape = example.shape;
    this.dtype = example.dtype;
    this.device = example.device;
  }

  /**
   * Captures `model`'s forward for inputs shaped like `example` (on a CUDA device). The model
   * must run natively — built from Kiln's layers, in eval mode, without hooks (every zoo model),
   * or a TorchScript module. Weights are read at each replay, so in-place updates of their values
   * (an optimizer step, `copy_`) are seen; moving or converting them (`to()`) or changing the
   * module's structure needs a new capture (replays then refuse to run). Nothing else should
   * use the GPU while a capture runs on libtorch 1.x (global capture mode); a capture that
   * fails leaves libtorch's allocator unusable for captures, so later ones are refused.
   */
  static capture(model: Module | ScriptModule, example: Tensor, options: CudaGraphOptions = {}): CudaGraph {
    idOf(example, 'example');
    if (options === null || typeof options !== 'object') throw invalidParameterError('CudaGraph.capture: options', 'an object', options);
    const warmup = options.warmup ?? 3;
    if (!Number.isInteger(warmup) || warmup < 1 || warmup > 100) throw invalidParameterError('CudaGraph.capture: warmup', 'an integer 1…100', options.warmup);
    if (!N.graphsBuilt()) throw new KilnError('CudaGraph.capture: this Kiln build has no CUDA graph support (it needs a CUDA libtorch; see kiln.info().cudaGraphs)', 'CUDA_UNAVAILABLE');
    if (!example.device.startsWith('cuda')) throw new KilnError(`CudaGraph.capture: the example input must be on a CUDA device, got '${example.device}'`, 'INVALID_ARGUMENT');
    let h: number;
    let weights: Tensor[];
    if (model instanceof ScriptModule) {
      h = model.runnableHandle();
      weights = [...model.stateDict().values()];
    } else if (model instanceof Module) {
      h = model.program();
      if (h < 0) throw new KilnError('CudaGraph.capture: the model must run natively — built from Kiln layers, in eval mode (model.eval()), without hooks', 'INVALID_ARGUMENT');
      weights = [...model.parameters(), ...model.buffers()];
    } else throw invalidParameterError('CudaGraph.capture: model', 'a Module or a TorchScript module', model);
    try {
      // the graph keeps the weights' storage alive, whatever later happens to the module
      return new CudaGraph(N.graphCapture(h, example.id, warmup, weights.map((w) => w.id)), example);
    } finally {
      if (model instanceof ScriptModule) for (const w of weights) w.dispose();
    }
  }

  private check(x: Tensor): number {
    const id = idOf(x, 'input');
    if (weightMoveCount() !== this.moves)
      throw new KilnError("a model's weights were moved or converted (to()) after this CUDA graph was captured, and the graph still reads the old ones: capture a new graph", 'INVALID_ARGUMENT');
    if (x.device !== this.device || x.dtype !== this.dtype || x.shape.length !== this.inputShape.length || x.shape.some((d, i) => d !== this.inputShape[i]))
      throw new KilnError(`this CUDA graph was captured for [${this.inputShape.join(', ')}] ${this.dtype} on ${this.device}, got [${x.shape.join(', ')}] ${x.dtype} on ${x.device} (capture one graph per input shape)`, 'INVALID_ARGUMENT');
    return id;
  }

  /** Replays the graph on `x` (same shape, dtype and device as the example); returns a new output tensor. */
  call(x: Tensor): Tensor {
    return new Tensor(N.runSync(this.h, this.check(x), false));
  }

  /** `call` on a native worker thread. */
  async forwardAsync(x: Tensor): Promise<Tensor> {
    return new Tensor(await N.runAsync(this.h, this.check(x)));
  }

}
