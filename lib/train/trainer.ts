/**
 * `Trainer`: Keras-style `fit` / `evaluate` / `predict` for classifiers. The loop keeps loss
 * and metric sums on the device (read once per log interval or epoch), frees every step's
 * tensors with `tidy`, yields to the event loop so progress redraws and signals get through,
 * reseeds per epoch for reproducible runs, and writes resumable checkpoints — also when
 * interrupted with Ctrl-C.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Device, checkDevice } from '../tensor/dtype';
import { zeros, manualSeed } from '../tensor/creation';
import { cat } from '../tensor/ops';
import { tidy, keep } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { clipGradNorm_ } from '../nn/utils';
import { autocast, AutocastOptions, GradScaler } from '../amp';
import { Optimizer } from '../optim/optimizer';
import { mixSeed, checkSeed } from '../data/rng';
import { Batch } from '../data/dataset';
import { History, Logs } from './history';
import { BatchLogs, Callback, checkCallbacks, runHook } from './callback';
import { Scheduler, checkScheduler, needsMetric } from './callbacks';
import { Accumulator, MetricSpec, resolveMetrics } from './accumulator';
import { accumulateConfusion, confusionFromCounts, accumulateCalibration, binsFromSums, eceOfBins, ReliabilityBin } from './metrics';
import { fitTemperature, FitTemperatureOptions, TemperatureFit } from './calibration';
import { checkTemperature } from '../nn/classifier';
import { TTA, checkTTA, ttaLogits } from './tta';
import { Progress, Verbosity, ProgressStream } from './progress';
import { BatchSource, Source, toSource, splitForValidation } from './sources';
import { LossFn, TrainerOptions, FitOptions, EvaluateResult, Objective, ObjectiveContext, makeLoss, disposeBatch } from './options';

export { LossFn, TrainerOptions, FitOptions, EvaluateResult, Objective, ObjectiveContext };
import { saveCheckpoint, loadCheckpoint, restoreRngStates, restoreCallbackStates, CheckpointState } from './checkpoint';
import { GraphSteps, StepTensors, checkGraphOption } from './graph-steps';


/** Trains, evaluates and runs a classifier. */
export class Trainer {
  readonly model: Module;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly optimizer: Optimizer<any>;
  readonly scheduler: Scheduler | null;
  readonly schedulerInterval: 'batch' | 'epoch';
  readonly schedulerMonitor: string;
  readonly device: Device;
  readonly verbose: Verbosity;
  readonly logInterval: number;
  readonly mixedPrecision: false | 'bf16' | 'fp16';
  /** the callbacks of the running (or last) fit, whose states checkpoints keep */
  activeCallbacks: Callback[] = [];
  private autocastOptions: AutocastOptions | null = null;
  private scaler: GradScaler | null = null;
  /** the seed of reproducible runs (null: none) */
  seed: number | null;
  classNames: string[] | null;
  history = new History();
  /** optimizer steps taken (batches seen) since the start of training */
  globalStep = 0;
  /** optimizer steps this trainer has made (fewer than batches with accumulateSteps > 1) */
  optimizerSteps = 0;
  /** set by `stop()`; ends fit after the current step */
  stopTraining = false;
  stopReason: string | null = null;
  /** the last validation confusion matrix (rows: true, columns: predicted) */
  lastConfusion: number[][] | null = null;
  private readonly lossFn: LossFn;
  private readonly objective: Objective | null;
  private readonly metricSpecs: MetricSpec[];
  private readonly progressStream: ProgressStream | undefined;
  private interruptRequested = false;
  private epochStarts: [number, number][] = [];
  /** the cudaGraph mode's warm-up count (null: off) */
  private readonly graphWarmup: number | null;
  /** the recorded step of the running fit (cudaGraph mode) */
  graphSteps: GraphSteps | null = null;

  constructor(model: Module, options: TrainerOptions) {
    if (!(model instanceof Module)) throw invalidParameterError('Trainer: model', 'a Module', model);
    if (!options || typeof options !== 'object') throw invalidParameterError('Trainer: options', 'an object with at least an optimizer', options);
    const o = options;
    if (!(o.optimizer instanceof Optimizer)) throw invalidParameterError('Trainer: optimizer', 'a kiln.optim optimizer (SGD, Adam, AdamW, RMSprop)', o.optimizer);
    this.model = model;
    this.optimizer = o.optimizer;
    this.scheduler = o.scheduler === undefined ? null : checkScheduler(o.scheduler, 'Trainer: scheduler');
    this.schedulerInterval = o.schedulerInterval ?? 'epoch';
    if (this.schedulerInterval !== 'batch' && this.schedulerInterval !== 'epoch') throw invalidParameterError('Trainer: schedulerInterval', "'batch' or 'epoch'", o.schedulerInterval);
    this.schedulerMonitor = o.schedulerMonitor ?? 'val_loss';
    this.metricSpecs = o.metrics ?? ['accuracy'];
    resolveMetrics(this.metricSpecs);
    this.lossFn = makeLoss(o.loss);
    if (o.objective !== undefined && typeof o.objective !== 'function') throw invalidParameterError('Trainer: objective', 'a function ({model, x, y, loss, step}) => {logits, loss}', o.objective);
    this.objective = o.objective ?? null;
    this.device = o.device === undefined ? ((model.parameters()[0]?.device ?? 'cpu') as Device) : checkDevice(o.device);
    if (o.device !== undefined) model.to(this.device);
    this.verbose = o.verbose ?? 1;
    if (![0, 1, 2].includes(this.verbose)) throw invalidParameterError('Trainer: verbose', '0, 1 or 2', o.verbose);
    this.seed = o.seed === undefined ? null : checkSeed(o.seed, 'Trainer: seed');
    this.logInterval = o.logInterval ?? 50;
    if (!Number.isInteger(this.logInterval) || this.logInterval < 1) throw invalidParameterError('Trainer: logInterval', 'a positive integer', o.logInterval);
    this.mixedPrecision = o.mixedPrecision ?? false;
    if (![false, 'bf16', 'fp16'].includes(this.mixedPrecision)) throw invalidParameterError('Trainer: mixedPrecision', "false, 'bf16' or 'fp16'", o.mixedPrecision);
    if (this.mixedPrecision) {
      const cuda = this.device.startsWith('cuda');
      if (this.mixedPrecision === 'fp16' && !cuda) throw new KilnError("Trainer: mixedPrecision 'fp16' needs a CUDA device (on the CPU use 'bf16')", 'INVALID_ARGUMENT');
      this.autocastOptions = { device: cuda ? 'cuda' : 'cpu', dtype: this.mixedPrecision === 'bf16' ? 'bfloat16' : 'float16' };
      // float16 gradients underflow without loss scaling; bfloat16 has float32's range
      if (this.mixedPrecision === 'fp16') this.scaler = new GradScaler();
    }
    if (o.classNames !== undefined && (!Array.isArray(o.classNames) || !o.classNames.every((c) => typeof c === 'string'))) throw invalidParameterError('Trainer: classNames', 'an array of strings', o.classNames);
    this.classNames = o.classNames ?? null;
    this.progressStream = o.progressStream;
    this.graphWarmup = checkGraphOption(o.cudaGraph, this.device, this.mixedPrecision, this.objective !== null);
    // a recorded update must read its lr and step counts on the device
    if (this.graphWarmup !== null) for (const g of this.optimizer.paramGroups) g.options.capturable = true;
  }

  /** Ends `fit` after the current step; `reason` is kept in `history.stopReason` and shown. */
  stop(reason = 'stopped by a callback'): void {
    this.stopTraining = true;
    this.stopReason ??= reason;
  }

  /** What SIGINT does during fit: finish the step, write a checkpoint (with checkpointDir) and return. */
  interrupt(): void {
    this.interruptRequested = true;
    this.stop('interrupted');
  }

  /** The epoch a global step belonged to. */
  stepEpoch(step: number): number {
    let e = 0;
    for (const [ep, first] of this.epochStarts) if (first <= step) e = ep;
    return e;
  }
  /** The batch index within its epoch of a global step. */
  stepBatch(step: number): number {
    let b = step;
    for (const [, first] of this.epochStarts) if (first <= step) b = step - first;
    return b;
  }

  /** Writes a resumable checkpoint folder of the current state (at an epoch boundary). */
  async saveCheckpoint(dir: string, extra: Record<string, unknown> = {}): Promise<void> {
    await saveCheckpoint(dir, this, { epoch: this.history.length > 0 ? this.history.epoch[this.history.length - 1] + 1 : 0, batchInEpoch: 0, partial: null, extra });
  }

  /** Restores weights, optimizer, scheduler, history and step count from a checkpoint folder. */
  loadCheckpoint(dir: string): CheckpointState {
    const st = loadCheckpoint(dir, this);
    this.history = History.fromJSON(st.history);
    this.history.interrupted = false;
    this.history.stopReason = null;
    this.globalStep = st.globalStep;
    if (this.seed === null && st.seed !== null) this.seed = st.seed;
    return st;
  }

  /** Trains for `epochs` epochs on `train`; returns the history (also `trainer.history`). */
  async fit(train: BatchSource, options: FitOptions): Promise<History> {
    if (!options || typeof options !== 'object') throw invalidParameterError('fit: options', 'an object with epochs', options);
    const o = options;
    if (!Number.isInteger(o.epochs) || o.epochs < 1) throw invalidParameterError('fit: epochs', 'a positive integer', o.epochs);
    const accum = o.accumulateSteps ?? 1;
    if (!Number.isInteger(accum) || accum < 1) throw invalidParameterError('fit: accumulateSteps', 'a positive integer', o.accumulateSteps);
    if (o.gradClipNorm !== undefined && (typeof o.gradClipNorm !== 'number' || !(o.gradClipNorm > 0))) throw invalidParameterError('fit: gradClipNorm', 'a positive number', o.gradClipNorm);
    if (o.validation !== undefined && o.validationSplit !== undefined) throw new KilnError('fit: give either validation or validationSplit, not both', 'INVALID_ARGUMENT');
    if (o.checkpointDir !== undefined && (typeof o.checkpointDir !== 'string' || !o.checkpointDir)) throw invalidParameterError('fit: checkpointDir', 'a folder path', o.checkpointDir);
    if (this.graphWarmup !== null && accum > 1) throw new KilnError('fit: accumulateSteps cannot be combined with the trainer\'s cudaGraph mode (a recorded step always updates the weights)', 'INVALID_ARGUMENT');
    const callbacks = checkCallbacks(o.callbacks);
    this.activeCallbacks = callbacks;
    let resume: CheckpointState | null = null;
    if (o.resumeFrom !== undefined) resume = this.loadCheckpoint(o.resumeFrom);
    else if (!o.initialEpoch) {
      this.history = new History();
      this.globalStep = 0;
    }
    let initialEpoch = o.initialEpoch ?? resume?.epoch ?? 0;
    if (!Number.isInteger(initialEpoch) || initialEpoch < 0) {
      if (o.initialEpoch === undefined && resume) throw new KilnError(`${o.resumeFrom}: the checkpoint's epoch ${JSON.stringify(resume.epoch)} is not a non-negative integer (damaged checkpoint)`, 'IO');
      throw invalidParameterError('fit: initialEpoch', 'a non-negative integer', o.initialEpoch);
    }
    let skip = resume && initialEpoch === resume.epoch ? resume.batchInEpoch : 0;
    const seed = this.seed ?? 0;
    let trainData: unknown = train, valData: unknown = o.validation;
    if (o.validationSplit !== undefined) ({ train: trainData, validation: valData } = await splitForValidation(train, o.validationSplit, seed, o));
    const src = toSource(trainData, 'fit: train', { batchSize: o.batchSize, shuffle: o.shuffle ?? true, seed });
    if (src.length === 0) throw new KilnError('fit: the training data has no batches (an empty data set, or dropLast with fewer samples than a batch)', 'INVALID_ARGUMENT');
    const val = valData === undefined ? null : toSource(valData, 'fit: validation', { batchSize: o.batchSize });
    this.classNames ??= src.classNames ?? val?.classNames ?? null;

    const metrics = resolveMetrics(this.metricSpecs);
    const acc = new Accumulator(metrics, this.device);
    const progress = new Progress(this.verbose, this.progressStream);
    this.stopTraining = false;
    this.stopReason = null;
    this.interruptRequested = false;
    const onSigint = () => {
      if (this.interruptRequested) {
        process.stderr.write('\nSecond interrupt: exiting without a checkpoint\n');
        process.exit(130);
      }
      progress.message('\nInterrupt: finishing the current step…', true);
      this.interrupt();
    };
    const handle = o.handleSignals ?? true;
    if (handle) process.on('SIGINT', onSigint);
    for (const c of callbacks) c.setTrainer?.(this);
    const graphs = (this.graphSteps = this.graphWarmup === null ? null : new GraphSteps(this.device, this.graphWarmup));
    // a state loaded since the constructor (resumeFrom, loadCheckpoint) may have turned capturable off
    if (graphs) for (const g of this.optimizer.paramGroups) g.options.capturable = true;
    let epoch = initialEpoch;
    try {
      await runHook(callbacks, 'onTrainBegin', { epochs: o.epochs, initialEpoch });
      if (o.resumeFrom !== undefined) restoreCallbackStates(o.resumeFrom, callbacks);
      for (; epoch < o.epochs && !this.stopTraining; epoch++) {
        const t0 = Date.now() - (skip > 0 && resume?.partial ? resume.partial.seconds * 1000 : 0);
        this.epochStarts.push([epoch, this.globalStep - skip]);
        if (this.seed !== null) manualSeed(skip > 0 ? mixSeed(this.seed, epoch, skip) : mixSeed(this.seed, epoch));
        this.model.train();
        acc.reset(skip > 0 && resume?.partial ? resume.partial.sums : undefined, skip > 0 && resume?.partial ? resume.partial.samples : 0);
        await runHook(callbacks, 'onEpochBegin', epoch, {});
        progress.epochBegin(epoch, o.epochs, src.length, t0); // a resumed epoch's images and time so far both count
        let b = 0, lastYield = Date.now(), pending = 0;
        for await (const batch of src.batches(epoch)) {
          if (b < skip) {
            if (src.owned) disposeBatch(batch);
            b++;
            // the next batch is the first one the interrupted run did not train on: continue its random stream
            if (b === skip && o.resumeFrom !== undefined) restoreRngStates(o.resumeFrom);
            continue;
          }
          const { x, y } = this.onDevice(batch, src.owned);
          const size = y.size(0);
          const bl: BatchLogs = { batch: b, step: this.globalStep, size, lr: this.optimizer.lr };
          let replayed = false;
          try {
            if (callbacks.length) await runHook(callbacks, 'onBatchBegin', b, bl);
            const step = this.globalStep;
            replayed = graphs?.step(x, y, (sx, sy) => this.recordedStep(sx, sy, o.gradClipNorm), (t) => acc.update(t.logits, t.targets, t.loss, step)) ?? false;
            if (!replayed) this.trainStep(x, y, acc, accum);
          } finally {
            disposeBatch({ x, y });
            if (src.owned && (batch.x !== x || batch.y !== y)) disposeBatch(batch);
          }
          pending++;
          const last = src.length !== undefined && b + 1 >= src.length;
          if (pending >= accum || last) {
            if (replayed) this.optimizerSteps++; // the replayed graph made the update
            else this.optimizerStep(o.gradClipNorm);
            pending = 0;
            if (this.scheduler && this.schedulerInterval === 'batch' && !needsMetric(this.scheduler)) this.scheduler.step();
          }
          this.globalStep++;
          b++;
          if (this.globalStep % this.logInterval === 0 || progress.due()) {
            const r = await acc.read();
            Object.assign(bl, r.means);
            if (r.nonFiniteStep >= 0) bl.nonFiniteStep = r.nonFiniteStep;
            progress.update(b, acc.samples, r.means);
          }
          if (callbacks.length) await runHook(callbacks, 'onBatchEnd', b - 1, bl);
          if (Date.now() - lastYield >= 25) {
            await new Promise<void>((r) => setImmediate(r));
            lastYield = Date.now();
          }
          if (this.stopTraining) break;
        }
        if (pending > 0) this.optimizerStep(o.gradClipNorm);
        const r = await acc.read();
        if (this.interruptRequested) {
          // interrupted inside the epoch: save where we are
          if (o.checkpointDir) {
            await saveCheckpoint(o.checkpointDir, this, { epoch, batchInEpoch: b, partial: { sums: r.sums, samples: acc.samples, seconds: (Date.now() - t0) / 1000 }, extra: o.checkpointExtra ?? {} });
          }
          progress.message(this.interruptMessage(epoch, b, src.length, o), true);
          break;
        }
        skip = 0;
        const logs: Logs = { ...r.means };
        if (r.nonFiniteStep >= 0) logs.nonFiniteStep = r.nonFiniteStep;
        if (val) {
          if (callbacks.length) await runHook(callbacks, 'onValidationBegin', epoch, logs);
          const v = await this.evaluateSource(val, metrics, false);
          const vlogs: Logs = {};
          for (const [k, value] of Object.entries(v.means)) logs[`val_${k}`] = vlogs[`val_${k}`] = value;
          this.lastConfusion = v.confusion;
          if (callbacks.length) await runHook(callbacks, 'onValidationEnd', epoch, vlogs);
        }
        logs.lr = this.optimizer.lr;
        logs.seconds = (Date.now() - t0) / 1000;
        if (this.scheduler && needsMetric(this.scheduler)) {
          const m = logs[this.schedulerMonitor] ?? logs.loss;
          this.scheduler.step(m);
        } else if (this.scheduler && this.schedulerInterval === 'epoch') this.scheduler.step();
        const recorded = { ...logs };
        delete recorded.nonFiniteStep;
        this.history.record(epoch, recorded);
        progress.epochEnd(recorded, b, acc.samples);
        await runHook(callbacks, 'onEpochEnd', epoch, logs);
        if (o.checkpointDir) await saveCheckpoint(o.checkpointDir, this, { epoch: epoch + 1, batchInEpoch: 0, partial: null, extra: o.checkpointExtra ?? {} });
        if (this.interruptRequested) {
          progress.message(this.interruptMessage(epoch + 1, 0, src.length, o), true);
          epoch++;
          break;
        }
      }
      if (this.stopReason && !this.interruptRequested) progress.message(this.stopReason);
    } finally {
      if (handle) process.removeListener('SIGINT', onSigint);
      acc.dispose();
      graphs?.release();
      this.history.stopReason = this.stopReason;
      this.history.interrupted = this.interruptRequested;
      await runHook(callbacks, 'onTrainEnd', { epochs: this.history.length });
    }
    return this.history;
  }

  private interruptMessage(epoch: number, batch: number, total: number | undefined, o: FitOptions): string {
    const where = batch > 0 ? `during epoch ${epoch + 1} after batch ${batch}${total ? `/${total}` : ''}` : `after epoch ${epoch}`;
    if (!o.checkpointDir) return `Interrupted ${where}; no checkpointDir was given, so nothing was saved.`;
    const hint = o.resumeHint ?? `trainer.fit(data, { …, resumeFrom: '${o.checkpointDir}' })`;
    return `Interrupted ${where}. Checkpoint written to ${o.checkpointDir}. Resume with: ${hint}`;
  }

  /** Moves a batch to the trainer's device (new tensors only when it is elsewhere). */
  private onDevice(b: Batch, owned: boolean): Batch {
    if (!b || !(b.x instanceof Tensor) || !(b.y instanceof Tensor)) throw invalidParameterError('batch', '{x: Tensor, y: Tensor}', b);
    const x = b.x.device === this.device ? (owned ? b.x : b.x.view(b.x.shape)) : b.x.to({ device: this.device, nonBlocking: true });
    const y = b.y.device === this.device ? (owned ? b.y : b.y.view(b.y.shape)) : b.y.to({ device: this.device, nonBlocking: true });
    return { x, y };
  }

  /**
   * One training step on one batch, as Keras's `train_on_batch`: forward, loss, backward and an
   * optimizer step (with the trainer's objective, mixed precision and the given gradient clipping)
   * in train mode; returns the loss (one read-back). Callbacks and schedulers are not involved.
   */
  trainOnBatch(x: Tensor, y: Tensor, options: { gradClipNorm?: number } = {}): number {
    if (!(x instanceof Tensor) || !(y instanceof Tensor)) throw invalidParameterError('trainOnBatch: x, y', 'two Tensors (inputs and targets)', x instanceof Tensor ? y : x);
    if (options === null || typeof options !== 'object') throw invalidParameterError('trainOnBatch: options', 'an object', options);
    if (options.gradClipNorm !== undefined && (typeof options.gradClipNorm !== 'number' || !(options.gradClipNorm > 0))) throw invalidParameterError('trainOnBatch: gradClipNorm', 'a positive number', options.gradClipNorm);
    const b = this.onDevice({ x, y }, false);
    let value = NaN;
    try {
      this.model.train();
      this.trainStep(b.x, b.y, null, 1, (loss) => { value = loss.item(); });
      this.optimizerStep(options.gradClipNorm);
      this.globalStep++;
    } finally {
      disposeBatch(b);
    }
    return value;
  }

  /** Forward, loss, backward, device-side accumulation (or `onLoss`); the step's tensors are freed. */
  private trainStep(x: Tensor, y: Tensor, acc: Accumulator | null, accum: number, onLoss?: (loss: Tensor) => void): void {
    const step = this.globalStep;
    tidy(() => {
      const { logits, loss, targets } = this.forwardBackward(x, y, accum);
      acc?.update(logits, targets, loss, step);
      onLoss?.(loss);
    });
  }

  /** Forward and loss (under autocast when on), then backward of the loss divided by `accum`. */
  private forwardBackward(x: Tensor, y: Tensor, accum: number): StepTensors {
    const step = this.globalStep;
    const [logits, loss, targets] = this.amp(() => {
      if (this.objective) {
        const r = this.objective({ model: this.model, x, y, loss: this.lossFn, step });
        if (!r || !(r.logits instanceof Tensor)) throw new KilnError('the training objective must return {logits: Tensor, loss: Tensor}', 'INVALID_ARGUMENT');
        if (r.targets !== undefined && !(r.targets instanceof Tensor)) throw new KilnError('the training objective returned targets that are not a Tensor', 'INVALID_ARGUMENT');
        return [r.logits, r.loss, r.targets ?? y] as const;
      }
      const out = this.model.call(x);
      return [out, this.lossFn(out, y), y] as const;
    });
    if (!(loss instanceof Tensor) || loss.numel !== 1) throw new KilnError(`the loss function must return a one-element Tensor, got ${loss instanceof Tensor ? `shape [${loss.shape.join(', ')}]` : typeof loss}`, 'INVALID_ARGUMENT');
    const scaled = accum > 1 ? loss.div(accum) : loss;
    (this.scaler ? this.scaler.scaleLoss(scaled) : scaled).backward();
    return { logits, loss, targets };
  }

  /** The whole step that cudaGraph mode records: forward, backward and the weight update; returns the metrics' tensors. */
  private recordedStep(x: Tensor, y: Tensor, clip: number | undefined): StepTensors {
    const t = this.forwardBackward(x, y, 1);
    this.updateWeights(clip);
    return t; // without an objective, targets is the static label tensor itself: each replay's copy makes it the batch's labels
  }

  /** Runs fn under autocast when mixed precision is on. */
  private amp<T>(fn: () => T): T {
    return this.autocastOptions ? autocast(fn, this.autocastOptions) : fn();
  }

  private optimizerStep(clip: number | undefined): void {
    this.updateWeights(clip);
    this.optimizerSteps++;
  }

  /** Gradient clipping, the optimizer's update (through the scaler when fp16) and zeroing the gradients. */
  private updateWeights(clip: number | undefined): void {
    if (this.scaler) this.scaler.unscale_(this.optimizer); // clip the true gradients
    if (clip !== undefined) clipGradNorm_(this.model.parameters().filter((p) => p.requiresGrad), clip).dispose();
    if (this.scaler) {
      this.scaler.step(this.optimizer); // skipped when fp16 gradients overflowed
      this.scaler.update();
    } else this.optimizer.step();
    this.optimizer.zeroGrad();
  }

  /**
   * Loss and metrics of the model on `data` (eval mode, no gradients), with the confusion matrix and ECE. With
   * `temperature` (from `calibrate`), the logits are divided by it first: the loss and ECE of the calibrated model.
   * `tta` averages the logits over flipped (and shifted) views of each image (`kiln.train.ttaLogits`).
   */
  async evaluate(data: BatchSource, options: { batchSize?: number; temperature?: number; tta?: TTA } = {}): Promise<EvaluateResult> {
    if (options === null || typeof options !== 'object') throw invalidParameterError('evaluate: options', 'an object', options);
    const temperature = options.temperature === undefined ? 1 : checkTemperature(options.temperature, 'evaluate: temperature');
    const tta = checkTTA(options.tta, 'evaluate: tta');
    const src = toSource(data, 'evaluate: data', { batchSize: options.batchSize });
    const r = await this.evaluateSource(src, resolveMetrics(this.metricSpecs), true, temperature, tta);
    if (r.confusion) this.lastConfusion = r.confusion;
    return { ...r.means, samples: r.samples, confusionMatrix: r.confusion, ece: r.bins ? eceOfBins(r.bins) : NaN, reliability: r.bins ?? [] } as EvaluateResult;
  }

  /**
   * Temperature scaling: the T that makes the model's softmax probabilities on `data` (held-out images, not the test
   * set) best calibrated — the minimum of their negative log-likelihood, found exactly (`fitTemperature`). The model
   * is not changed: divide its logits by `temperature` (`evaluate(data, { temperature })`, the `temperature` of a
   * served model, `kiln train --calibrate`).
   */
  async calibrate(data: BatchSource, options: { batchSize?: number; tta?: TTA } & FitTemperatureOptions = {}): Promise<TemperatureFit> {
    if (options === null || typeof options !== 'object') throw invalidParameterError('calibrate: options', 'an object', options);
    const tta = checkTTA(options.tta, 'calibrate: tta');
    if (options.bins !== undefined && (!Number.isInteger(options.bins) || options.bins < 1)) throw invalidParameterError('calibrate: bins', 'a positive integer', options.bins);
    const src = toSource(data, 'calibrate: data', { batchSize: options.batchSize });
    const logits: Tensor[] = [], targets: Tensor[] = [];
    try {
      await this.forEachEvalBatch(src, (x, y) => {
        const out = this.amp(() => ttaLogits((v) => this.model.call(v), x, tta));
        if (!(out instanceof Tensor) || out.ndim !== 2 || y.ndim !== 1)
          throw new KilnError(`calibrate: the model must give logits [N, classes] for class-index targets [N], got ${out instanceof Tensor ? `[${out.shape.join(', ')}]` : typeof out} for [${y.shape.join(', ')}]`, 'INVALID_ARGUMENT');
        logits.push(keep(out.float()));
        targets.push(keep(y.to({ dtype: 'int64' })));
      });
      if (logits.length === 0) throw new KilnError('calibrate: the data has no batches', 'INVALID_ARGUMENT');
      return tidy(() => fitTemperature(cat(logits), cat(targets), { bins: options.bins }));
    } finally {
      for (const t of [...logits, ...targets]) t.dispose();
    }
  }

  /**
   * Runs `fn` on every batch of `src` moved to the trainer's device, in eval mode without gradients, inside a tidy
   * scope (what it keeps, it `keep`s), freeing the batches and yielding to the event loop every 25 ms.
   */
  private async forEachEvalBatch(src: Source, fn: (x: Tensor, y: Tensor) => void): Promise<void> {
    const wasTraining = this.model.training;
    this.model.eval();
    let lastYield = Date.now();
    try {
      for await (const batch of src.batches(0)) {
        const { x, y } = this.onDevice(batch, src.owned);
        try {
          tidy(() => noGrad(() => fn(x, y)));
        } finally {
          disposeBatch({ x, y });
          if (src.owned && (batch.x !== x || batch.y !== y)) disposeBatch(batch);
        }
        if (Date.now() - lastYield >= 25) {
          await new Promise<void>((r) => setImmediate(r));
          lastYield = Date.now();
        }
      }
    } finally {
      this.model.train(wasTraining);
    }
  }

  private async evaluateSource(src: Source, metrics: ReturnType<typeof resolveMetrics>, calibration: boolean, temperature = 1, tta: TTA = 'none'): Promise<{ means: Record<string, number>; samples: number; confusion: number[][] | null; bins: ReliabilityBin[] | null }> {
    const acc = new Accumulator(metrics, this.device);
    let cm: Tensor | null = null, cal: Tensor | null = null, classes = 0;
    try {
      await this.forEachEvalBatch(src, (x, y) => {
        const raw = this.amp(() => ttaLogits((v) => this.model.call(v), x, tta));
        const logits = temperature === 1 ? raw : raw.div(temperature);
        const loss = this.lossFn(logits, y);
        acc.update(logits, y, loss, -1);
        if (logits.ndim === 2 && y.ndim === 1) {
          if (!cm) {
            classes = logits.size(1);
            cm = keep(zeros([classes * classes], { dtype: 'float64', device: this.device }));
            if (calibration) cal = keep(zeros([3, 15], { dtype: 'float64', device: this.device }));
          }
          accumulateConfusion(cm, logits, y, classes);
          if (cal) accumulateCalibration(cal, logits, y, 15);
        }
      });
      const r = await acc.read();
      const c = cm as Tensor | null, k = cal as Tensor | null;
      return { means: r.means, samples: acc.samples, confusion: c ? confusionFromCounts(c, classes) : null, bins: k ? binsFromSums(k) : null };
    } finally {
      acc.dispose();
      (cm as Tensor | null)?.dispose();
      (cal as Tensor | null)?.dispose();
    }
  }

  /**
   * The model's outputs for a tensor of inputs [N, …] or for data batches (targets ignored),
   * computed in batches in eval mode without gradients; returns one CPU tensor [N, C]
   * (probabilities with `softmax: true`). With `temperature` (from `calibrate`) the outputs are divided by it first;
   * `tta` averages them over flipped (and shifted) views of each image.
   */
  async predict(data: Tensor | BatchSource, options: { batchSize?: number; softmax?: boolean; temperature?: number; tta?: TTA } = {}): Promise<Tensor> {
    if (options === null || typeof options !== 'object') throw invalidParameterError('predict: options', 'an object', options);
    const temperature = options.temperature === undefined ? 1 : checkTemperature(options.temperature, 'predict: temperature');
    const tta = checkTTA(options.tta, 'predict: tta');
    const bs = options.batchSize ?? 256;
    if (!Number.isInteger(bs) || bs < 1) throw invalidParameterError('predict: batchSize', 'a positive integer', options.batchSize);
    const wasTraining = this.model.training;
    this.model.eval();
    const outs: Tensor[] = [];
    try {
      const run = (x: Tensor) => outs.push(tidy(() => noGrad(() => {
        const xd = x.device === this.device ? x : x.to({ device: this.device });
        const out = this.amp(() => ttaLogits((v) => this.model.call(v), xd, tta));
        const scaled = temperature === 1 ? out : out.div(temperature);
        const o2 = options.softmax ? scaled.softmax(1) : scaled;
        return o2.device === 'cpu' ? (o2 === x ? o2.clone() : o2) : o2.cpu();
      })));
      if (data instanceof Tensor) {
        if (data.isDisposed) throw invalidParameterError('predict: data', 'a live Tensor', data);
        const n = data.size(0);
        for (let s = 0; s < n; s += bs) {
          const part = data.narrow(0, s, Math.min(bs, n - s));
          try {
            run(part);
          } finally {
            part.dispose();
          }
          await new Promise<void>((r) => setImmediate(r));
        }
      } else {
        const src = toSource(data, 'predict: data', { batchSize: bs });
        for await (const b of src.batches(0)) {
          try {
            run(b.x);
          } finally {
            if (src.owned) disposeBatch(b);
          }
        }
      }
      if (outs.length === 0) throw new KilnError('predict: no inputs', 'INVALID_ARGUMENT');
      return cat(outs);
    } finally {
      for (const t of outs) t.dispose();
      this.model.train(wasTraining);
    }
  }
}

