/**
 * CUDA graphs for inference: a model's no-grad forward for one input shape is captured once
 * (after a few warm-up runs on a side stream, as `torch.cuda.graph` does) and then replayed
 * with one launch, which removes the per-kernel launch cost that dominates small batches.
 */
import { N } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { tidy, keepAll, release } from '../tensor/memory';
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

  /** Records the GPU work `fn` issues (a whole training step, say) for replay: see `recordGraph`. */
  static record<T>(device: string, fn: () => T): RecordedGraph<T> {
    return recordGraph(device, fn);
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

/** The recording in progress on this thread, if any (see `recordingGraph`). */
let recording: { hooks: (() => void)[] } | null = null;

/**
 * While `CudaGraph.record` runs: registers `hook` to run before each replay of the graph being
 * recorded (outside the graph), so host-side values the recorded work reads from device tensors —
 * a capturable optimizer's learning rate — are written before every launch. Returns whether a
 * recording is in progress (nothing is registered otherwise).
 */
export function onGraphReplay(hook: () => void): boolean {
  if (!recording) return false;
  recording.hooks.push(hook);
  return true;
}

/** Whether `CudaGraph.record` is recording now (work issued now is recorded, not run). */
export function recordingGraph(): boolean {
  return recording !== null;
}

/**
 * A stretch of GPU work recorded once by `CudaGraph.record` — typically a whole training step
 * (forward, loss, backward, optimizer update) — and replayed with one launch. It reads and writes
 * the same tensors every time: copy new inputs into the tensors it read (`copy_`) before `replay()`
 * and read its outputs from `result` after.
 */
export class RecordedGraph<T> extends NativeRunnable {
  /** what the recorded function returned (its tensors live as long as the graph, detached from autograd; replays rewrite them) */
  readonly result: T;
  readonly device: string;
  private readonly moves = weightMoveCount();

  /** @internal */
  constructor(handle: number, result: T, device: string, private readonly owned: Tensor[], private readonly hooks: (() => void)[]) {
    super(handle, 'this recorded CUDA graph');
    this.result = result;
    this.device = device;
  }

  /** Runs the recorded work again (asynchronously on the GPU, like any CUDA op). */
  replay(): void {
    const h = this.h;
    if (weightMoveCount() !== this.moves)
      throw new KilnError("a model's weights were moved or converted (to()) after this CUDA graph was recorded, and the graph still reads the old ones: record a new graph", 'INVALID_ARGUMENT');
    for (const hook of this.hooks) hook();
    N.graphReplay(h);
  }

  /** Frees the graph and the tensors of `result`. */
  override dispose(): void {
    super.dispose();
    for (const t of this.owned) release(t);
    this.owned.length = 0;
  }
}

/**
 * Records the GPU work `fn` issues on `device` into a CUDA graph instead of running it
 * (`torch.cuda.graph`): the ops are enqueued on a side stream under capture, so nothing is
 * computed until `replay()`. `fn` runs inside a `tidy`; the tensors it returns are kept for the
 * graph's life (`result`). Inside `fn` nothing may wait for the GPU or read a value back to the
 * CPU (`item()`, `toArray()`, a data-dependent shape): such an op fails the recording, and after a
 * capture a CUDA error invalidated, libtorch may leave its allocator in capture mode, so this process
 * then refuses further captures (an error thrown by JS code inside `fn` discards the recording only;
 * whatever the recorded ops would have written — gradients, say — was never computed, so clear it,
 * e.g. `optimizer.zeroGrad()`, before going on). Run the same work eagerly once or more first (cuDNN autotuning, optimizer
 * state). Optimizers taking part must be `capturable` so that their learning rate and step counts
 * are read on the device at each replay.
 */
export function recordGraph<T>(device: string, fn: () => T): RecordedGraph<T> {
  if (typeof device !== 'string') throw invalidParameterError('CudaGraph.record: device', "a CUDA device such as 'cuda' or 'cuda:0'", device);
  if (typeof fn !== 'function') throw invalidParameterError('CudaGraph.record: fn', 'a function', fn);
  if (!N.graphsBuilt()) throw new KilnError('CudaGraph.record: this Kiln build has no CUDA graph support (it needs a CUDA libtorch; see kiln.info().cudaGraphs)', 'CUDA_UNAVAILABLE');
  if (!device.startsWith('cuda')) throw new KilnError(`CudaGraph.record: CUDA graphs record work on a CUDA device, got '${device}'`, 'INVALID_ARGUMENT');
  if (recording) throw new KilnError('CudaGraph.record: a recording is already in progress (recordings do not nest)', 'INVALID_ARGUMENT');
  if (fn.constructor.name === 'AsyncFunction') throw new KilnError('CudaGraph.record: fn must be synchronous (the recording covers the ops it issues before it returns)', 'INVALID_ARGUMENT');
  const h = N.graphBegin(device);
  const rec = (recording = { hooks: [] as (() => void)[] });
  let result: T;
  try {
    result = tidy(fn);
    if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function')
      throw new KilnError('CudaGraph.record: fn returned a promise; it must do its work synchronously', 'INVALID_ARGUMENT');
    N.graphEnd(h);
  } catch (e) {
    N.graphAbort(h);
    N.freeRunnable(h);
    throw e;
  } finally {
    recording = null;
  }
  const kept = keepAll(result) as Tensor[];
  // the recorded autograd graph was captured, not run: kept, it would hold the parameters' gradient accumulators
  // (created on the capture's stream) — later eager backward passes would wait on that stream, and a second
  // recording's backward would be refused as stale (liveGraphLeaves)
  for (const t of kept) if (t instanceof Tensor) N.dropHistory(t.id);
  return new RecordedGraph(h, result, device, kept, rec.hooks);
}
