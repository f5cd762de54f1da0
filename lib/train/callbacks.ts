/**
 * Built-in control callbacks: EarlyStopping (with best-weight restore however training
 * ends), TerminateOnNaN, LR-schedule stepping (per batch or per epoch) and ReduceLROnPlateau.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { keep } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Callback, CallbackState, BatchLogs, MonitorMode, resolveMode, monitored } from './callback';
import type { Logs } from './history';
import type { Trainer } from './trainer';

function num(v: unknown, name: string, min = -Infinity): number {
  if (typeof v !== 'number' || Number.isNaN(v) || v < min) throw invalidParameterError(name, min === -Infinity ? 'a number' : `a number ≥ ${min}`, v);
  return v;
}
function int(v: unknown, name: string, min = 0): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw invalidParameterError(name, `an integer ≥ ${min}`, v);
  return v;
}
function str(v: unknown, name: string): string {
  if (typeof v !== 'string' || v === '') throw invalidParameterError(name, 'a metric name such as val_loss', v);
  return v;
}
function needTrainer(t: Trainer | null, who: string): Trainer {
  if (!t) throw new KilnError(`${who} is used outside Trainer.fit (no trainer was set)`, 'INVALID_ARGUMENT');
  return t;
}

/** Options of `EarlyStopping`. */
export interface EarlyStoppingOptions {
  /** logged value to watch (default 'val_loss') */
  monitor?: string;
  /** smallest change that counts as an improvement (default 0) */
  minDelta?: number;
  /** epochs without improvement before stopping (default 0: stop at the first such epoch) */
  patience?: number;
  /** 'min', 'max' or 'auto' (from the name; default) */
  mode?: MonitorMode;
  /** the value must beat this before anything counts as an improvement */
  baseline?: number;
  /** put back the best epoch's weights when training ends — by stopping, finishing, NaN or interruption (default false) */
  restoreBestWeights?: boolean;
  /** epochs before counting starts (default 0) */
  startFromEpoch?: number;
  verbose?: boolean;
}

/** Stops training when the monitored value stops improving; optionally restores the best weights. */
export class EarlyStopping implements Callback {
  readonly monitor: string;
  readonly minDelta: number;
  readonly patience: number;
  readonly mode: 'min' | 'max';
  readonly baseline: number | undefined;
  readonly restoreBestWeights: boolean;
  readonly startFromEpoch: number;
  readonly verbose: boolean;
  /** best monitored value so far */
  best = NaN;
  /** epoch of the best value (-1 before any) */
  bestEpoch = -1;
  /** epoch at which training was stopped (-1 if it was not) */
  stoppedEpoch = -1;
  private wait = 0;
  private bestWeights: Map<string, Tensor> | null = null;
  private trainer: Trainer | null = null;

  constructor(o: EarlyStoppingOptions = {}) {
    if (o === null || typeof o !== 'object') throw invalidParameterError('EarlyStopping(options)', 'an object', o);
    this.monitor = str(o.monitor ?? 'val_loss', 'EarlyStopping: monitor');
    this.minDelta = Math.abs(num(o.minDelta ?? 0, 'EarlyStopping: minDelta'));
    this.patience = int(o.patience ?? 0, 'EarlyStopping: patience');
    this.mode = resolveMode(o.mode ?? 'auto', this.monitor, 'EarlyStopping');
    this.baseline = o.baseline === undefined ? undefined : num(o.baseline, 'EarlyStopping: baseline');
    this.restoreBestWeights = !!o.restoreBestWeights;
    this.startFromEpoch = int(o.startFromEpoch ?? 0, 'EarlyStopping: startFromEpoch');
    this.verbose = !!o.verbose;
  }

  setTrainer(t: Trainer): void {
    this.trainer = t;
  }

  private improves(v: number, ref: number): boolean {
    if (Number.isNaN(ref)) return true;
    return this.mode === 'min' ? v < ref - this.minDelta : v > ref + this.minDelta;
  }

  onTrainBegin(): void {
    this.wait = 0;
    this.best = NaN;
    this.bestEpoch = -1;
    this.stoppedEpoch = -1;
    this.freeWeights();
  }

  onEpochEnd(epoch: number, logs: Logs): void {
    const v = monitored(logs, this.monitor, 'EarlyStopping');
    if (v === undefined || epoch < this.startFromEpoch || Number.isNaN(v)) return;
    const ref = Number.isNaN(this.best) && this.baseline !== undefined ? this.baseline : this.best;
    this.wait++;
    if (this.improves(v, ref)) {
      this.best = v;
      this.bestEpoch = epoch;
      this.wait = 0;
      if (this.restoreBestWeights) this.snapshot();
      return;
    }
    if (Number.isNaN(this.best) && this.baseline === undefined) return;
    if (this.wait >= this.patience) {
      this.stoppedEpoch = epoch;
      const t = needTrainer(this.trainer, 'EarlyStopping');
      const bestTxt = this.bestEpoch >= 0 ? `best ${this.monitor} ${fmt(this.best)} at epoch ${this.bestEpoch + 1}` : `baseline ${this.baseline} never beaten`;
      t.stop(`EarlyStopping: ${this.monitor} did not improve for ${this.wait} epoch(s) (${bestTxt})`);
    }
  }

  /** Restores the best weights however training ended (also after an error or interruption). */
  onTrainEnd(): void {
    if (this.restoreBestWeights && this.bestWeights && this.trainer) {
      const model = this.trainer.model;
      model.loadStateDict(this.bestWeights);
      if (this.verbose) process.stderr.write(`EarlyStopping: restored the weights of epoch ${this.bestEpoch + 1} (${this.monitor} ${fmt(this.best)})\n`);
    }
    this.freeWeights();
  }

  /** best value, its epoch, the patience counter and (with restoreBestWeights) the best weights */
  stateDict(): CallbackState {
    return { json: { best: encodeNum(this.best), bestEpoch: this.bestEpoch, wait: this.wait }, tensors: this.bestWeights ?? undefined };
  }

  loadStateDict(s: CallbackState): void {
    this.best = decodeNum(s.json.best);
    this.bestEpoch = Number(s.json.bestEpoch ?? -1);
    this.wait = Number(s.json.wait ?? 0);
    this.freeWeights();
    if (s.tensors && s.tensors.size) {
      const copy = new Map<string, Tensor>();
      noGrad(() => { for (const [k, v] of s.tensors!) copy.set(k, keep(v.clone())); });
      this.bestWeights = copy;
    }
  }

  private snapshot(): void {
    this.freeWeights();
    const t = needTrainer(this.trainer, 'EarlyStopping');
    const copy = new Map<string, Tensor>();
    noGrad(() => {
      for (const [k, v] of t.model.stateDict()) copy.set(k, keep(v.clone()));
    });
    this.bestWeights = copy;
  }

  private freeWeights(): void {
    if (this.bestWeights) for (const v of this.bestWeights.values()) v.dispose();
    this.bestWeights = null;
  }
}

/** JSON has no NaN/Infinity: numbers that may be non-finite travel as strings. */
export function encodeNum(v: number): number | string {
  return Number.isFinite(v) ? v : String(v);
}
export function decodeNum(v: unknown): number {
  return typeof v === 'number' ? v : Number(v ?? NaN);
}

function fmt(v: number): string {
  return Number.isFinite(v) ? (+v.toPrecision(5)).toString() : String(v);
}

/**
 * Stops training as soon as the loss becomes NaN or infinite, with a message naming the
 * step. The check costs no device sync: the trainer tracks the first non-finite step on the
 * device and reports it at its read-back steps (`logInterval`) and at the end of each epoch.
 */
export class TerminateOnNaN implements Callback {
  private trainer: Trainer | null = null;
  /** the global step whose loss was first non-finite (-1: none) */
  step = -1;
  setTrainer(t: Trainer): void {
    this.trainer = t;
  }
  onTrainBegin(): void {
    this.step = -1;
  }
  onBatchEnd(_batch: number, logs: BatchLogs): void {
    if (logs.nonFiniteStep !== undefined && this.step < 0) this.fire(logs.nonFiniteStep);
  }
  onEpochEnd(epoch: number, logs: Logs): void {
    if (this.step >= 0) return;
    if (logs.nonFiniteStep !== undefined) this.fire(logs.nonFiniteStep);
    else if (logs.loss !== undefined && !Number.isFinite(logs.loss)) this.fire(-1, epoch);
  }
  private fire(step: number, epoch?: number): void {
    const t = needTrainer(this.trainer, 'TerminateOnNaN');
    this.step = step;
    const where = step >= 0 ? `at step ${step} (epoch ${t.stepEpoch(step) + 1}, batch ${t.stepBatch(step)})` : `in epoch ${(epoch ?? 0) + 1}`;
    t.stop(`TerminateOnNaN: the loss became NaN or infinite ${where}; training stopped`);
  }
}

/** What a learning-rate scheduler provides (kiln.optim's schedulers have this shape). */
export interface Scheduler {
  /** advances the schedule; plateau schedulers take the monitored metric */
  step(metric?: number): void;
  getLastLr(): number[];
  stateDict(): object;
  loadStateDict(state: object): void;
}

/** Checks that `s` has a scheduler's methods. */
export function checkScheduler(s: unknown, name = 'scheduler'): Scheduler {
  const o = s as Scheduler;
  if (!o || typeof o !== 'object' || typeof o.step !== 'function' || typeof o.getLastLr !== 'function')
    throw invalidParameterError(name, 'a learning-rate scheduler (an object with step() and getLastLr())', s);
  return o;
}

/** Whether a scheduler adapts to a metric (ReduceLROnPlateau-like), so `step` needs a value. */
export function needsMetric(s: Scheduler): boolean {
  return s.constructor?.name === 'ReduceLROnPlateau' || (s as { needsMetric?: boolean }).needsMetric === true;
}

/** Options of `LRSchedulerCallback`. */
export interface LRSchedulerCallbackOptions {
  /** step after every optimizer step ('batch') or after every epoch ('epoch', default) */
  interval?: 'batch' | 'epoch';
  /** for metric-driven schedulers: the logged value passed to step() (default 'val_loss', falling back to 'loss') */
  monitor?: string;
}

/** Steps a scheduler per batch or per epoch (what `Trainer`'s `scheduler` option does internally). */
export class LRSchedulerCallback implements Callback {
  readonly scheduler: Scheduler;
  readonly interval: 'batch' | 'epoch';
  readonly monitor: string;
  constructor(scheduler: Scheduler, o: LRSchedulerCallbackOptions = {}) {
    this.scheduler = checkScheduler(scheduler);
    if (o === null || typeof o !== 'object') throw invalidParameterError('LRSchedulerCallback(options)', 'an object', o);
    this.interval = o.interval ?? 'epoch';
    if (this.interval !== 'batch' && this.interval !== 'epoch') throw invalidParameterError('interval', "'batch' or 'epoch'", o.interval);
    this.monitor = o.monitor ?? 'val_loss';
  }
  onBatchEnd(): void {
    if (this.interval === 'batch' && !needsMetric(this.scheduler)) this.scheduler.step();
  }
  onEpochEnd(_epoch: number, logs: Logs): void {
    if (needsMetric(this.scheduler)) {
      const v = logs[this.monitor] ?? (this.monitor === 'val_loss' ? logs.loss : undefined);
      if (v !== undefined) this.scheduler.step(v);
      else monitored(logs, this.monitor, 'LRSchedulerCallback');
    } else if (this.interval === 'epoch') this.scheduler.step();
  }
}

/** Options of `ReduceLROnPlateau`. */
export interface ReduceLROnPlateauOptions {
  monitor?: string;
  /** new lr = lr · factor (default 0.1) */
  factor?: number;
  /** epochs without improvement before reducing (default 10) */
  patience?: number;
  mode?: MonitorMode;
  /** relative improvement threshold (default 1e-4) */
  minDelta?: number;
  /** epochs to wait after a reduction (default 0) */
  cooldown?: number;
  /** lower bound of the lr (default 0) */
  minLr?: number;
  verbose?: boolean;
}

/** Divides the learning rate when the monitored value plateaus (Keras' callback). */
export class ReduceLROnPlateau implements Callback {
  readonly monitor: string;
  readonly factor: number;
  readonly patience: number;
  readonly mode: 'min' | 'max';
  readonly minDelta: number;
  readonly cooldown: number;
  readonly minLr: number;
  readonly verbose: boolean;
  private best = NaN;
  private wait = 0;
  private cooldownLeft = 0;
  private trainer: Trainer | null = null;
  constructor(o: ReduceLROnPlateauOptions = {}) {
    if (o === null || typeof o !== 'object') throw invalidParameterError('ReduceLROnPlateau(options)', 'an object', o);
    this.monitor = str(o.monitor ?? 'val_loss', 'ReduceLROnPlateau: monitor');
    this.factor = num(o.factor ?? 0.1, 'ReduceLROnPlateau: factor', 0);
    if (!(this.factor < 1 && this.factor > 0)) throw invalidParameterError('ReduceLROnPlateau: factor', 'a number in (0, 1)', o.factor);
    this.patience = int(o.patience ?? 10, 'ReduceLROnPlateau: patience');
    this.mode = resolveMode(o.mode ?? 'auto', this.monitor, 'ReduceLROnPlateau');
    this.minDelta = num(o.minDelta ?? 1e-4, 'ReduceLROnPlateau: minDelta', 0);
    this.cooldown = int(o.cooldown ?? 0, 'ReduceLROnPlateau: cooldown');
    this.minLr = num(o.minLr ?? 0, 'ReduceLROnPlateau: minLr', 0);
    this.verbose = !!o.verbose;
  }
  setTrainer(t: Trainer): void {
    this.trainer = t;
  }
  onTrainBegin(): void {
    this.best = NaN;
    this.wait = 0;
    this.cooldownLeft = 0;
  }
  onEpochEnd(epoch: number, logs: Logs): void {
    const v = monitored(logs, this.monitor, 'ReduceLROnPlateau');
    if (v === undefined || Number.isNaN(v)) return;
    const better = Number.isNaN(this.best) || (this.mode === 'min' ? v < this.best * (1 - Math.sign(this.best) * this.minDelta) : v > this.best * (1 + Math.sign(this.best) * this.minDelta));
    if (this.cooldownLeft > 0) {
      this.cooldownLeft--;
      this.wait = 0;
    }
    if (better) {
      this.best = v;
      this.wait = 0;
      return;
    }
    if (this.cooldownLeft > 0) return;
    if (++this.wait > this.patience) {
      const opt = needTrainer(this.trainer, 'ReduceLROnPlateau').optimizer;
      for (let g = 0; g < opt.paramGroups.length; g++) {
        const old = opt.getLr(g);
        const lr = Math.max(old * this.factor, this.minLr);
        if (old - lr > 1e-12) {
          opt.setLr(lr, g);
          if (this.verbose && g === 0) process.stderr.write(`ReduceLROnPlateau: epoch ${epoch + 1}: lr ${old} → ${lr}\n`);
        }
      }
      this.cooldownLeft = this.cooldown;
      this.wait = 0;
    }
  }
}
