/** ReduceLROnPlateau: lowers the learning rate when a monitored metric stops improving. */
import { invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { AnyOptimizer, Options, checkOptimizer, groupLrs, setLrs, num, int, perGroup, oneOf, checkOptions, checkState, numArray, stateInt, encNum, decNum, LRScheduler, SchedulerState } from './base';
export interface ReduceLROnPlateauOptions {
  /** 'min' (default): reduce when the metric stops decreasing; 'max': stops increasing */
  mode?: 'min' | 'max';
  /** new lr = lr × factor (default 0.1) */
  factor?: number;
  /** epochs without improvement tolerated before reducing (default 10) */
  patience?: number;
  /** minimal improvement that counts (default 1e-4) */
  threshold?: number;
  /** 'rel' (default): relative to the best value; 'abs': absolute */
  thresholdMode?: 'rel' | 'abs';
  /** epochs to wait after a reduction before counting again (default 0) */
  cooldown?: number;
  /** lower bound on the lr, or one per group (default 0) */
  minLr?: number | number[];
  /** reductions smaller than this are skipped (default 1e-8) */
  eps?: number;
}

/** Reduces the lr by `factor` when a monitored metric has stopped improving for `patience` epochs. */
export class ReduceLROnPlateau implements LRScheduler {
  readonly optimizer: AnyOptimizer;
  readonly mode: 'min' | 'max';
  readonly factor: number;
  readonly patience: number;
  readonly threshold: number;
  readonly thresholdMode: 'rel' | 'abs';
  readonly cooldown: number;
  readonly minLrs: number[];
  readonly eps: number;
  best: number;
  numBadEpochs = 0;
  cooldownCounter = 0;
  lastEpoch = 0;
  private lastLr: number[];

  constructor(optimizer: AnyOptimizer, options: ReduceLROnPlateauOptions = {}) {
    this.optimizer = checkOptimizer(optimizer);
    const o = checkOptions(options) as ReduceLROnPlateauOptions;
    this.mode = oneOf('mode', o.mode ?? 'min', ['min', 'max'] as const);
    this.factor = num('factor', o.factor ?? 0.1, 'a number in [0, 1)', (x) => x >= 0 && x < 1);
    this.patience = int('patience', o.patience ?? 10, 0);
    this.threshold = num('threshold', o.threshold ?? 1e-4, 'a non-negative number', (x) => x >= 0 && Number.isFinite(x));
    this.thresholdMode = oneOf('thresholdMode', o.thresholdMode ?? 'rel', ['rel', 'abs'] as const);
    this.cooldown = int('cooldown', o.cooldown ?? 0, 0);
    this.minLrs = perGroup('minLr', o.minLr ?? 0, this.optimizer.paramGroups.length, 'a non-negative number', (x) => x >= 0 && Number.isFinite(x));
    this.eps = num('eps', o.eps ?? 1e-8, 'a non-negative number', (x) => x >= 0 && Number.isFinite(x));
    this.best = this.mode === 'min' ? Infinity : -Infinity;
    this.lastLr = groupLrs(this.optimizer);
  }

  private isBetter(a: number, best: number): boolean {
    if (this.mode === 'min') return this.thresholdMode === 'rel' ? a < best * (1 - this.threshold) : a < best - this.threshold;
    return this.thresholdMode === 'rel' ? a > best * (1 + this.threshold) : a > best + this.threshold;
  }

  /** Records the epoch's metric (a number or a one-element tensor) and reduces the lr if it has plateaued. */
  step(metric?: number | Tensor): void {
    let current: number;
    if (metric instanceof Tensor) {
      if (metric.numel !== 1) throw invalidParameterError('metric', 'a number or a one-element Tensor', metric);
      current = metric.item();
    } else if (typeof metric === 'number') current = metric;
    else throw invalidParameterError('metric', 'a number (the monitored value, e.g. validation loss)', metric);
    this.lastEpoch += 1;
    if (this.isBetter(current, this.best)) {
      this.best = current;
      this.numBadEpochs = 0;
    } else this.numBadEpochs += 1;
    if (this.cooldownCounter > 0) {
      this.cooldownCounter -= 1;
      this.numBadEpochs = 0;
    }
    if (this.numBadEpochs > this.patience) {
      this.optimizer.paramGroups.forEach((g, i) => {
        const old = (g.options as Options).lr;
        const next = Math.max(old * this.factor, this.minLrs[i]);
        if (old - next > this.eps) (g.options as Options).lr = next;
      });
      this.cooldownCounter = this.cooldown;
      this.numBadEpochs = 0;
    }
    this.lastLr = groupLrs(this.optimizer);
  }
  /** true while waiting after a reduction */
  get inCooldown(): boolean {
    return this.cooldownCounter > 0;
  }
  getLastLr(): number[] {
    return [...this.lastLr];
  }
  stateDict(): SchedulerState {
    return {
      type: 'ReduceLROnPlateau', mode: this.mode, best: encNum(this.best), numBadEpochs: this.numBadEpochs,
      cooldownCounter: this.cooldownCounter, lastEpoch: this.lastEpoch, lastLr: [...this.lastLr],
    };
  }
  loadStateDict(state: SchedulerState): void {
    const s = checkState(state, 'ReduceLROnPlateau');
    if (s.mode !== this.mode) throw invalidParameterError('state.mode', `'${this.mode}' (this schedule's mode)`, s.mode);
    const best = decNum('best', s.best);
    const lastLr = numArray('lastLr', s.lastLr, this.optimizer.paramGroups.length);
    const bad = stateInt(s, 'numBadEpochs'), cd = stateInt(s, 'cooldownCounter'), le = stateInt(s, 'lastEpoch');
    this.best = best;
    this.numBadEpochs = bad;
    this.cooldownCounter = cd;
    this.lastEpoch = le;
    this.lastLr = [...lastLr];
    setLrs(this.optimizer, lastLr);
  }
}
