/**
 * `ModelEMA`: an exponential moving average of the model's weights (timm's ModelEmaV2, Keras's
 * `use_ema`, TensorFlow's ExponentialMovingAverage), kept on the model's device and updated after
 * every optimizer step: ema ← decay·ema + (1 − decay)·w for every floating-point entry of the state
 * dict (parameters and BatchNorm running statistics; integer buffers are copied).
 *
 * Validation runs on the averaged weights, and they stay in the model until the next epoch starts,
 * so what `EarlyStopping(restoreBestWeights)` and `ModelCheckpoint` keep is what was validated;
 * the raw weights are put back for training (and are what resumable checkpoints resume from). When
 * training ends the model holds the averaged weights (`applyAtEnd`, as Keras does).
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { keep } from '../tensor/memory';
import { isFloating } from '../tensor/dtype';
import { noGrad } from '../autograd';
import { Device } from '../tensor/dtype';
import { Module } from '../nn/module';
import { BatchNorm2d } from '../nn/layers';
import { Callback, CallbackState } from './callback';
import { BatchSource, toSource } from './sources';
import { disposeBatch } from './options';
import type { Trainer } from './trainer';

/** Options of `ModelEMA`. */
export interface ModelEMAOptions {
  /** the average's decay per update (default 0.999) */
  decay?: number;
  /** TensorFlow's `num_updates` warm-up: decay min(decay, (1 + n)/(10 + n)) at update n, so early weights fade fast (default false) */
  warmup?: boolean;
  /** 'exponential' (default): ema ← decay·ema + (1 − decay)·w; 'equal': the plain mean of the weights at every update (SWA, torch's AveragedModel) */
  average?: 'exponential' | 'equal';
  /** update after every `every`-th optimizer step (default 1), or at the end of every epoch ('epoch', as SWA) */
  every?: number | 'epoch';
  /** epochs before averaging starts (default 0); an exponential average starts from the weights at that epoch's start */
  startEpoch?: number;
  /** BatchNorm running statistics and other floating-point buffers: averaged like the weights ('average', default, as timm) or copied ('copy') */
  buffers?: 'average' | 'copy';
  /** validate on the averaged weights (default true) */
  validate?: boolean;
  /** leave the averaged weights in the model when training ends (default true); false puts the trained weights back */
  applyAtEnd?: boolean;
}

/** Keeps an exponential moving average of the weights during `Trainer.fit`; validates and ends with it. */
export class ModelEMA implements Callback {
  readonly decay: number;
  readonly warmup: boolean;
  readonly average: 'exponential' | 'equal';
  readonly every: number | 'epoch';
  readonly startEpoch: number;
  readonly buffers: 'average' | 'copy';
  readonly validate: boolean;
  readonly applyAtEnd: boolean;
  /** averages taken so far */
  updates = 0;
  private trainer: Trainer | null = null;
  private ema: Map<string, Tensor> | null = null;
  private averaged = new Set<string>();
  /** the trained weights while the averaged ones are in the model (between validation and the next epoch) */
  private stash: Map<string, Tensor> | null = null;
  /** the trainer's optimizer-step count last seen, and the optimizer steps counted since training began */
  private seenSteps = 0;
  private steps = 0;
  /** the running epoch, and whether its per-epoch update was made */
  private epoch = 0;
  private epochUpdated = false;

  constructor(o: ModelEMAOptions = {}) {
    if (o === null || typeof o !== 'object') throw invalidParameterError('ModelEMA(options)', 'an object', o);
    this.decay = o.decay ?? 0.999;
    if (typeof this.decay !== 'number' || !(this.decay >= 0 && this.decay < 1)) throw invalidParameterError('ModelEMA: decay', 'a number in [0, 1)', o.decay);
    this.average = o.average ?? 'exponential';
    if (this.average !== 'exponential' && this.average !== 'equal') throw invalidParameterError('ModelEMA: average', "'exponential' or 'equal'", o.average);
    this.every = o.every ?? 1;
    if (this.every !== 'epoch' && (!Number.isInteger(this.every) || this.every < 1)) throw invalidParameterError('ModelEMA: every', "a positive integer or 'epoch'", o.every);
    this.startEpoch = o.startEpoch ?? 0;
    if (!Number.isInteger(this.startEpoch) || this.startEpoch < 0) throw invalidParameterError('ModelEMA: startEpoch', 'an integer ≥ 0', o.startEpoch);
    this.buffers = o.buffers ?? 'average';
    if (this.buffers !== 'average' && this.buffers !== 'copy') throw invalidParameterError('ModelEMA: buffers', "'average' or 'copy'", o.buffers);
    for (const k of ['warmup', 'validate', 'applyAtEnd'] as const)
      if (o[k] !== undefined && typeof o[k] !== 'boolean') throw invalidParameterError(`ModelEMA: ${k}`, 'true or false', o[k]);
    this.warmup = o.warmup ?? false;
    this.validate = o.validate ?? true;
    this.applyAtEnd = o.applyAtEnd ?? true;
  }

  setTrainer(t: Trainer): void {
    this.trainer = t;
  }

  /** The decay used by update number `n` (0-based): n/(n + 1) for the equal average. */
  decayAt(n: number): number {
    if (this.average === 'equal') return n / (n + 1);
    return this.warmup ? Math.min(this.decay, (1 + n) / (10 + n)) : this.decay;
  }

  /** The averaged weights (the callback's own tensors: copy them to keep them past training), or null before training. */
  weights(): Map<string, Tensor> | null {
    return this.ema;
  }

  onTrainBegin(): void {
    const t = this.need();
    this.free();
    this.updates = 0;
    this.steps = 0;
    this.epoch = 0;
    this.epochUpdated = false;
    this.seenSteps = t.optimizerSteps;
    const ema = new Map<string, Tensor>();
    this.averaged = new Set();
    const params = new Set(t.model.namedParameters().map(([n]) => n));
    noGrad(() => {
      for (const [k, v] of t.model.stateDict()) {
        ema.set(k, keep(v.clone()));
        if (isFloating(v.dtype) && (params.has(k) || this.buffers === 'average')) this.averaged.add(k);
      }
    });
    this.ema = ema;
  }

  onEpochBegin(epoch: number): void {
    this.putBack();
    this.epoch = epoch;
    this.epochUpdated = false;
    // an exponential average that starts later starts from the weights it starts at
    if (epoch === this.startEpoch && this.startEpoch > 0 && this.updates === 0 && this.ema) {
      const t = this.need();
      noGrad(() => { for (const [k, v] of t.model.stateDict()) this.ema!.get(k)?.copy_(v); });
    }
  }

  onBatchEnd(): void {
    const t = this.need();
    if (!this.ema || t.optimizerSteps === this.seenSteps) return; // no optimizer step yet (gradient accumulation)
    this.seenSteps = t.optimizerSteps;
    if (this.every === 'epoch' || this.epoch < this.startEpoch) return;
    if (++this.steps % this.every === 0) this.update();
  }

  /** Averages the model's current weights in. */
  private update(): void {
    const t = this.need();
    const d = this.decayAt(this.updates);
    noGrad(() => {
      for (const [k, v] of t.model.stateDict()) {
        const e = this.ema!.get(k);
        if (!e) continue;
        if (this.averaged.has(k)) e.lerp_(v, 1 - d);
        else e.copy_(v);
      }
    });
    this.updates++;
  }

  /** The end of an epoch's training (before its validation, or at its end without one). */
  private epochTrained(): void {
    if (this.every !== 'epoch' || this.epochUpdated || this.epoch < this.startEpoch || !this.ema || this.stash) return;
    this.epochUpdated = true;
    this.update();
  }

  onValidationBegin(): void {
    this.epochTrained();
    if (this.validate && this.updates > 0) this.swapIn();
  }

  onEpochEnd(): void {
    this.epochTrained();
  }

  onTrainEnd(): void {
    try {
      if (this.applyAtEnd && this.updates > 0) {
        if (this.stash) this.dropStash(); // the averaged weights are in the model already (or what a callback before this one restored)
        else this.swapIn(false);
      } else this.putBack();
    } finally {
      this.free();
    }
  }

  /** updates taken and the averaged weights (`ema.<key>`), and the trained weights while those are swapped out (`raw.<key>`) */
  stateDict(): CallbackState {
    const tensors = new Map<string, Tensor>();
    for (const [k, v] of this.ema ?? []) tensors.set(`ema.${k}`, v);
    for (const [k, v] of this.stash ?? []) tensors.set(`raw.${k}`, v);
    return { json: { updates: this.updates, steps: this.steps, epochUpdated: this.epochUpdated, swapped: this.stash !== null }, tensors };
  }

  /** Restores the average; when the checkpoint was written with the averaged weights in the model, puts the trained ones back. */
  loadStateDict(s: CallbackState): void {
    const t = this.need();
    if (!this.ema) throw new KilnError('ModelEMA: loadStateDict before training began', 'INVALID_ARGUMENT');
    this.updates = Number(s.json.updates ?? 0);
    this.steps = Number(s.json.steps ?? 0);
    this.epochUpdated = !!s.json.epochUpdated;
    const raw = new Map<string, Tensor>();
    noGrad(() => {
      for (const [k, v] of s.tensors ?? []) {
        if (k.startsWith('ema.') && this.ema!.has(k.slice(4))) this.ema!.get(k.slice(4))!.copy_(v);
        else if (k.startsWith('raw.')) raw.set(k.slice(4), v);
      }
      if (s.json.swapped && raw.size) t.model.loadStateDict(raw, { strict: false });
    });
  }

  /** Puts the averaged weights into the model, keeping the trained ones to put back (unless `keepRaw` is false). */
  private swapIn(keepRaw = true): void {
    const t = this.need();
    if (!this.ema || this.stash) return;
    const stash = new Map<string, Tensor>();
    noGrad(() => {
      for (const [k, v] of t.model.stateDict()) {
        const e = this.ema!.get(k);
        if (!e) continue;
        if (keepRaw) stash.set(k, keep(v.clone()));
        v.copy_(e);
      }
    });
    if (keepRaw) this.stash = stash;
  }

  /** Puts the trained weights back into the model (after validation). */
  private putBack(): void {
    if (!this.stash) return;
    const t = this.need();
    noGrad(() => {
      for (const [k, v] of t.model.stateDict()) {
        const s = this.stash!.get(k);
        if (s) v.copy_(s);
      }
    });
    this.dropStash();
  }

  private dropStash(): void {
    for (const v of this.stash?.values() ?? []) v.dispose();
    this.stash = null;
  }

  private free(): void {
    this.dropStash();
    for (const v of this.ema?.values() ?? []) v.dispose();
    this.ema = null;
  }

  private need(): Trainer {
    if (!this.trainer) throw new KilnError('ModelEMA is used outside Trainer.fit (no trainer was set)', 'INVALID_ARGUMENT');
    return this.trainer;
  }
}

/**
 * Recomputes every BatchNorm2d's running statistics as their plain average over one pass of
 * `data` (torch.optim.swa_utils.update_bn): statistics reset, momentum null (cumulative average),
 * train mode, no gradients; momenta and modes are restored. For averaged weights (ModelEMA with
 * `buffers: 'copy'`, SWA), whose statistics no longer match. Returns the number of layers updated.
 */
export async function updateBatchNorm(model: Module, data: BatchSource, options: { batchSize?: number } = {}): Promise<number> {
  if (!(model instanceof Module)) throw invalidParameterError('updateBatchNorm: model', 'a Module', model);
  if (options === null || typeof options !== 'object') throw invalidParameterError('updateBatchNorm: options', 'an object', options);
  const layers = model.namedModules().map(([, m]) => m).filter((m): m is BatchNorm2d => m instanceof BatchNorm2d && m.runningMean !== null);
  if (layers.length === 0) return 0;
  const src = toSource(data, 'updateBatchNorm: data', { batchSize: options.batchSize, shuffle: false });
  const device = (model.parameters()[0] ?? layers[0].runningMean!).device;
  const modes = model.namedModules().map(([, m]) => m.training);
  const momenta = layers.map((l) => l.momentum);
  try {
    noGrad(() => {
      for (const l of layers) {
        l.runningMean!.zero_();
        l.runningVar!.fill_(1);
        l.numBatchesTracked?.zero_();
        l.momentum = null;
      }
    });
    model.train();
    for await (const batch of src.batches(0)) {
      try {
        const x = batch.x.device === device ? batch.x : batch.x.to({ device: device as Device });
        try {
          noGrad(() => model.call(x).dispose());
        } finally {
          if (x !== batch.x) x.dispose();
        }
      } finally {
        if (src.owned) disposeBatch(batch);
      }
    }
  } finally {
    layers.forEach((l, i) => { l.momentum = momenta[i]; });
    model.namedModules().forEach(([, m], i) => { m.training = modes[i]; });
  }
  return layers.length;
}
