/** Options and result types of the Trainer, and the loss built from the `loss` option. */
import { invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Device } from '../tensor/dtype';
import { keep } from '../tensor/memory';
import { crossEntropy } from '../nn/functional';
import { Optimizer } from '../optim/optimizer';
import { Module } from '../nn/module';
import { Batch } from '../data/dataset';
import { Callback } from './callback';
import { Scheduler } from './callbacks';
import { MetricSpec } from './accumulator';
import type { ReliabilityBin } from './metrics';
import { Verbosity, ProgressStream } from './progress';
import { BatchSource } from './sources';
import { CudaGraphTrainOptions } from './graph-steps';

/** A loss: any function of (logits, targets) returning a scalar tensor. */
export type LossFn = (logits: Tensor, targets: Tensor) => Tensor;

/** What a training objective receives: the model, the batch on the trainer's device, the configured loss. */
export interface ObjectiveContext {
  model: Module;
  x: Tensor;
  y: Tensor;
  /** the trainer's loss (from the `loss` option) */
  loss: LossFn;
  /** optimizer steps taken so far */
  step: number;
}

/**
 * A training objective: what one step minimises, and the logits that the step's metrics are
 * computed on (against `targets` when it gives them, else the batch's labels). The default is
 * `loss(model(x), y)`; `kiln.robust` provides adversarial training, TRADES and an
 * input-gradient penalty, `kiln.train` MixUp and CutMix.
 */
export type Objective = (ctx: ObjectiveContext) => { logits: Tensor; loss: Tensor; targets?: Tensor };

/** Options of `new Trainer(model, options)`. */
export interface TrainerOptions {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  optimizer: Optimizer<any>;
  /** 'crossEntropy' (default), cross-entropy options `{labelSmoothing, weight}`, or a function */
  loss?: 'crossEntropy' | LossFn | { labelSmoothing?: number; weight?: Tensor };
  /** what each step minimises (default: the loss of the model's logits); see `kiln.robust` */
  objective?: Objective;
  /** metrics logged next to the loss (default ['accuracy']); 'top5' etc. or {name, fn} */
  metrics?: MetricSpec[];
  /** moves the model there and each batch to it (default: where the model's parameters are) */
  device?: Device;
  /** a learning-rate scheduler stepped by the trainer */
  scheduler?: Scheduler;
  /** step the scheduler after every optimizer step or every epoch (default 'epoch') */
  schedulerInterval?: 'batch' | 'epoch';
  /** logged value handed to a metric-driven scheduler (ReduceLROnPlateau) (default 'val_loss', else 'loss') */
  schedulerMonitor?: string;
  /** 'bf16' / 'fp16' autocast on CUDA (no effect on the CPU) */
  mixedPrecision?: false | 'bf16' | 'fp16';
  /** 0 silent, 1 live bar on a TTY / a line per epoch otherwise (default), 2 a line per epoch */
  verbose?: Verbosity;
  /** seeds libtorch at the start of every epoch from (seed, epoch) and shuffles {x, y} data: reproducible and resumable runs */
  seed?: number;
  /** steps between read-backs of the running loss for callbacks (default 50) */
  logInterval?: number;
  /** class names (for the confusion matrix); taken from the data when it has them */
  classNames?: string[];
  /** where progress is written (default process.stderr) */
  progressStream?: ProgressStream;
  /**
   * CUDA only: record the training step as a CUDA graph for the first batch's shape (after
   * `warmup` eager steps, default 3) and replay it for every batch of that shape; makes the
   * optimizer `capturable`. Not with fp16, a custom objective or accumulateSteps (README).
   */
  cudaGraph?: boolean | CudaGraphTrainOptions;
}

/** Options of `fit`. */
export interface FitOptions {
  /** train until this epoch count (counting from 0, so with initialEpoch 2 and epochs 5, three epochs run) */
  epochs: number;
  validation?: BatchSource;
  /** fraction of the training data held out for validation (tensors: the last part; data sets: stratified) */
  validationSplit?: number;
  /** batch size for {x, y} tensors and data sets (default 32) */
  batchSize?: number;
  /** shuffle {x, y} tensors and data sets every epoch (default true) */
  shuffle?: boolean;
  callbacks?: Callback[];
  initialEpoch?: number;
  /** clip the total gradient norm to this before each optimizer step */
  gradClipNorm?: number;
  /** sum gradients over this many batches per optimizer step (default 1) */
  accumulateSteps?: number;
  /** write a resumable checkpoint folder here after every epoch and on interruption */
  checkpointDir?: string;
  /** continue the run saved in this checkpoint folder */
  resumeFrom?: string;
  /** how to resume, shown when interrupted (default: a fit call with resumeFrom) */
  resumeHint?: string;
  /** strings stored in checkpoints (e.g. the CLI configuration) */
  checkpointExtra?: Record<string, unknown>;
  /** handle SIGINT: finish the step, checkpoint, return (default true) */
  handleSignals?: boolean;
}

/** What `evaluate` returns. */
export interface EvaluateResult {
  loss: number;
  /** accuracy and the other configured metrics */
  [metric: string]: unknown;
  samples: number;
  /** rows: true class, columns: predicted */
  confusionMatrix: number[][] | null;
  /** expected calibration error (15 bins) */
  ece: number;
  /** the 15 bins the ECE comes from (a reliability diagram: `plotReliability`); empty when the outputs are not [N, classes] logits */
  reliability: ReliabilityBin[];
}

/** Frees a batch's tensors. */
export function disposeBatch(b: Batch | null | undefined): void {
  b?.x?.dispose?.();
  b?.y?.dispose?.();
}

/** Builds the loss function from the `loss` option. */
export function makeLoss(loss: TrainerOptions['loss']): LossFn {
  if (loss === undefined || loss === 'crossEntropy') return (l, y) => crossEntropy(l, y);
  if (typeof loss === 'function') return loss;
  if (loss && typeof loss === 'object') {
    const ls = loss.labelSmoothing ?? 0;
    if (typeof ls !== 'number' || !(ls >= 0 && ls < 1)) throw invalidParameterError('Trainer: loss.labelSmoothing', 'a number in [0, 1)', ls);
    if (loss.weight !== undefined && !(loss.weight instanceof Tensor)) throw invalidParameterError('Trainer: loss.weight', 'a Tensor of class weights [C]', loss.weight);
    let weight = loss.weight;
    return (l, y) => {
      if (weight && weight.device !== l.device) weight = keep(weight.to({ device: l.device }));
      return crossEntropy(l, y, { labelSmoothing: ls, weight });
    };
  }
  throw invalidParameterError('Trainer: loss', "'crossEntropy', {labelSmoothing, weight} or a function (logits, targets) => scalar Tensor", loss);
}
