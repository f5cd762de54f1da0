/**
 * Recorded training steps — the Trainer's `cudaGraph` mode, and `GraphSteps` for hand-written
 * loops: the training step (forward, loss, backward, gradient clipping, optimizer update) is
 * recorded once as a CUDA graph for the batch shape of the first batch, after a few eager warm-up
 * steps, and replayed for every later batch of that shape — one launch per step instead of one
 * per kernel, which is what bounds small models on a fast GPU. Batches of another shape (a short
 * last batch) take the eager step, which reads the same device-side optimizer state.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { keep } from '../tensor/memory';
import { RecordedGraph, cudaGraphsAvailable, recordGraph } from '../nn/graph';
import { weightMoveCount } from '../nn/module';

/** What a recorded step leaves for the metrics: its logits, loss and the targets they are scored against. */
export interface StepTensors {
  logits: Tensor;
  loss: Tensor;
  targets: Tensor;
}

/** The `cudaGraph` option of the Trainer. */
export interface CudaGraphTrainOptions {
  /** eager steps at the recorded shape before recording (cuDNN autotuning, optimizer state; default 3) */
  warmup?: number;
}

/** Checks the option and the trainer's set-up; returns the warm-up count (null: the mode is off). */
export function checkGraphOption(option: unknown, device: string, mixedPrecision: unknown, hasObjective: boolean): number | null {
  if (option === undefined || option === false) return null;
  if (option !== true && (option === null || typeof option !== 'object')) throw invalidParameterError('Trainer: cudaGraph', 'true, false or {warmup}', option);
  const warmup = option === true ? 3 : ((option as CudaGraphTrainOptions).warmup ?? 3);
  if (!Number.isInteger(warmup) || warmup < 1 || warmup > 100) throw invalidParameterError('Trainer: cudaGraph.warmup', 'an integer 1…100', warmup);
  if (!device.startsWith('cuda')) throw new KilnError(`Trainer: cudaGraph records training steps on a CUDA device; this trainer runs on '${device}'`, 'INVALID_ARGUMENT');
  if (!cudaGraphsAvailable()) throw new KilnError('Trainer: cudaGraph needs a Kiln build with CUDA graph support (a CUDA libtorch; see kiln.info().cudaGraphs)', 'CUDA_UNAVAILABLE');
  if (mixedPrecision === 'fp16') throw new KilnError("Trainer: cudaGraph cannot record fp16 training (the gradient scaler reads overflow checks back to the CPU every step); use mixedPrecision 'bf16'", 'INVALID_ARGUMENT');
  if (hasObjective) throw new KilnError('Trainer: cudaGraph cannot record a custom objective (objectives may draw random numbers on the CPU or read values back, which a recorded graph would freeze); train it without cudaGraph', 'INVALID_ARGUMENT');
  return warmup;
}

/**
 * One recorded training step and the static input tensors it reads. Use: for each batch,
 * `if (!steps.step(x, y, stepFn, after)) stepFn(x, y)` with a `stepFn` that does the whole step on
 * its arguments (its optimizers `capturable`), and `release()` at the end or when the step's
 * structure changes (a layer frozen or unfrozen).
 */
export class GraphSteps<T = StepTensors> {
  private graph: RecordedGraph<T> | null = null;
  private x: Tensor | null = null;
  private y: Tensor | null = null;
  private shape: string | null = null;
  private eager = 0;
  private moves = -1;
  /** steps replayed from the graph (for tests and logs) */
  replays = 0;

  /** @param warmup eager steps at the recorded shape before recording (default 3) */
  constructor(private readonly device: string, private readonly warmup = 3) {
    if (!Number.isInteger(warmup) || warmup < 1 || warmup > 100) throw invalidParameterError('GraphSteps: warmup', 'an integer 1…100', warmup);
  }

  /**
   * Trains on (x, y) through the recorded graph when the batch has the recorded shape and the
   * warm-up is done (recording the step first if needed): `record` issues one whole step on the
   * static inputs; `after` receives the step's tensors. Returns false when the caller must take an
   * eager step instead.
   */
  step(x: Tensor, y: Tensor, record: (x: Tensor, y: Tensor) => T, after?: (t: T) => void): boolean {
    const shape = `${x.shape}|${x.dtype}|${y.shape}|${y.dtype}`;
    this.shape ??= shape;
    if (shape !== this.shape) return false;
    if (this.graph && this.moves !== weightMoveCount()) this.release(); // weights were moved: the graph reads stale memory
    if (!this.graph) {
      if (this.eager < this.warmup) {
        this.eager++;
        return false;
      }
      if (cudaGraphsAvailable() && (!x.device.startsWith('cuda') || !y.device.startsWith('cuda')))
        throw new KilnError(`GraphSteps (CudaGraph.record): the batch is on '${x.device.startsWith('cuda') ? y.device : x.device}'; a recorded step runs on ${this.device}`, 'INVALID_ARGUMENT');
      const sx = keep(x.clone()), sy = keep(y.clone());
      try {
        this.graph = recordGraph(this.device, () => record(sx, sy));
      } catch (e) {
        sx.dispose();
        sy.dispose();
        throw e;
      }
      this.x = sx;
      this.y = sy;
      this.moves = weightMoveCount();
      // the recording ran nothing: the replay below trains on this batch
    } else {
      this.x!.copy_(x);
      this.y!.copy_(y);
    }
    this.graph.replay();
    this.replays++;
    after?.(this.graph.result);
    return true;
  }

  /** Frees the graph and its static tensors (the next step warms up and records again). */
  release(): void {
    this.graph?.dispose();
    this.x?.dispose();
    this.y?.dispose();
    this.graph = this.x = this.y = null;
    this.eager = 0;
  }
}
