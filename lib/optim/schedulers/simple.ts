/** Epoch-indexed schedules: StepLR, MultiStepLR, ExponentialLR, LinearLR, LambdaLR, CosineAnnealingLR, SequentialLR. */
import { KilnError, invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { AnyOptimizer, initialLrs, checkOptimizer, groupLrs, setLrs, num, int, checkOptions, checkState, numArray, stateInt, LRSchedulerBase, LRScheduler, SchedulerState } from './base';
export class StepLR extends LRSchedulerBase {
  readonly stepSize: number;
  readonly gamma: number;
  constructor(optimizer: AnyOptimizer, options: { stepSize: number; gamma?: number }) {
    super(optimizer);
    const o = checkOptions(options);
    this.stepSize = int('stepSize', o.stepSize, 1);
    this.gamma = num('gamma', o.gamma ?? 0.1, 'a non-negative number', (x) => x >= 0 && Number.isFinite(x));
    this.initialStep();
  }
  protected computeLr(): number[] {
    const lrs = groupLrs(this.optimizer);
    if (this.lastEpoch === 0 || this.lastEpoch % this.stepSize !== 0) return lrs;
    return lrs.map((lr) => lr * this.gamma);
  }
  protected override closedFormLr(): number[] {
    return this.baseLrs.map((b) => b * this.gamma ** Math.floor(this.lastEpoch / this.stepSize));
  }
}

/** Multiplies the lr by `gamma` at each milestone epoch (a repeated milestone applies gamma again). */
export class MultiStepLR extends LRSchedulerBase {
  readonly milestones: number[];
  readonly gamma: number;
  constructor(optimizer: AnyOptimizer, options: { milestones: number[]; gamma?: number }) {
    super(optimizer);
    const o = checkOptions(options);
    const m = o.milestones;
    if (!Array.isArray(m) || !m.every((x, i) => Number.isInteger(x) && x >= 0 && (i === 0 || x >= m[i - 1])))
      throw invalidParameterError('milestones', 'a non-decreasing array of non-negative integers', m);
    this.milestones = [...(m as number[])];
    this.gamma = num('gamma', o.gamma ?? 0.1, 'a non-negative number', (x) => x >= 0 && Number.isFinite(x));
    this.initialStep();
  }
  protected computeLr(): number[] {
    const count = this.milestones.filter((m) => m === this.lastEpoch).length;
    const lrs = groupLrs(this.optimizer);
    return count === 0 ? lrs : lrs.map((lr) => lr * this.gamma ** count);
  }
  protected override closedFormLr(): number[] {
    const passed = this.milestones.filter((m) => m <= this.lastEpoch).length;
    return this.baseLrs.map((b) => b * this.gamma ** passed);
  }
}

/** Multiplies the lr by `gamma` every epoch. */
export class ExponentialLR extends LRSchedulerBase {
  readonly gamma: number;
  constructor(optimizer: AnyOptimizer, options: { gamma: number }) {
    super(optimizer);
    const o = checkOptions(options);
    this.gamma = num('gamma', o.gamma, 'a non-negative number', (x) => x >= 0 && Number.isFinite(x));
    this.initialStep();
  }
  protected computeLr(): number[] {
    const lrs = groupLrs(this.optimizer);
    return this.lastEpoch === 0 ? lrs : lrs.map((lr) => lr * this.gamma);
  }
  protected override closedFormLr(): number[] {
    return this.baseLrs.map((b) => b * this.gamma ** this.lastEpoch);
  }
}

/** Scales the base lr by a factor going linearly from `startFactor` to `endFactor` over `totalIters` epochs (a warmup). */
export class LinearLR extends LRSchedulerBase {
  readonly startFactor: number;
  readonly endFactor: number;
  readonly totalIters: number;
  constructor(optimizer: AnyOptimizer, options: { startFactor?: number; endFactor?: number; totalIters?: number } = {}) {
    super(optimizer);
    const o = checkOptions(options);
    this.startFactor = num('startFactor', o.startFactor ?? 1 / 3, 'a number in (0, 1]', (x) => x > 0 && x <= 1);
    this.endFactor = num('endFactor', o.endFactor ?? 1, 'a number in [0, 1]', (x) => x >= 0 && x <= 1);
    this.totalIters = int('totalIters', o.totalIters ?? 5, 1);
    this.initialStep();
  }
  protected computeLr(): number[] {
    const lrs = groupLrs(this.optimizer);
    if (this.lastEpoch === 0) return lrs.map((lr) => lr * this.startFactor);
    if (this.lastEpoch > this.totalIters) return lrs;
    const d = this.endFactor - this.startFactor;
    return lrs.map((lr) => lr * (1 + d / (this.totalIters * this.startFactor + (this.lastEpoch - 1) * d)));
  }
  protected override closedFormLr(): number[] {
    const d = this.endFactor - this.startFactor;
    return this.baseLrs.map((b) => b * (this.startFactor + (d * Math.min(this.totalIters, this.lastEpoch)) / this.totalIters));
  }
}

/** lr = base lr × `lrLambda(epoch)` (one function, or one per parameter group). Functions are not saved in `stateDict`. */
export class LambdaLR extends LRSchedulerBase {
  private readonly lambdas: ((epoch: number) => number)[];
  constructor(optimizer: AnyOptimizer, options: { lrLambda: ((epoch: number) => number) | ((epoch: number) => number)[] }) {
    super(optimizer);
    const o = checkOptions(options);
    const n = this.optimizer.paramGroups.length;
    const l = o.lrLambda;
    if (Array.isArray(l)) {
      if (l.length !== n || !l.every((f) => typeof f === 'function')) throw invalidParameterError('lrLambda', `a function or ${n} functions (one per parameter group)`, l);
      this.lambdas = [...l];
    } else if (typeof l === 'function') {
      this.lambdas = new Array(n).fill(l);
    } else throw invalidParameterError('lrLambda', 'a function (epoch) => factor, or one per parameter group', l);
    this.initialStep();
  }
  protected computeLr(): number[] {
    return this.baseLrs.map((b, i) => {
      const f = this.lambdas[i](this.lastEpoch);
      if (typeof f !== 'number' || Number.isNaN(f)) throw new KilnError(`LambdaLR: lrLambda(${this.lastEpoch}) returned ${String(f)}, expected a number`, 'INVALID_ARGUMENT');
      return b * f;
    });
  }
}

// ------------------------------------------------------------------ cosine

/**
 * Cosine annealing from the base lr to `etaMin` over `tMax` epochs (PyTorch's recursive
 * form: after `tMax` the lr rises again, a cosine wave of period 2·tMax). For a linear warmup
 * in front, see `warmupCosine` or compose with `LinearLR` in a `SequentialLR`.
 */
export class CosineAnnealingLR extends LRSchedulerBase {
  readonly tMax: number;
  readonly etaMin: number;
  constructor(optimizer: AnyOptimizer, options: { tMax: number; etaMin?: number }) {
    super(optimizer);
    const o = checkOptions(options);
    this.tMax = int('tMax', o.tMax, 1);
    this.etaMin = num('etaMin', o.etaMin ?? 0, 'a non-negative number', (x) => x >= 0 && Number.isFinite(x));
    this.initialStep();
  }
  protected computeLr(): number[] {
    const e = this.lastEpoch, T = this.tMax, eta = this.etaMin;
    const lrs = groupLrs(this.optimizer);
    if (e === 0) return lrs;
    if (this.stepCount === 1 && e > 0) return this.closedFormLr();
    if ((((e - 1 - T) % (2 * T)) + 2 * T) % (2 * T) === 0)
      return lrs.map((lr, i) => lr + ((this.baseLrs[i] - eta) * (1 - Math.cos(Math.PI / T))) / 2);
    return lrs.map((lr) => ((1 + Math.cos((Math.PI * e) / T)) / (1 + Math.cos((Math.PI * (e - 1)) / T))) * (lr - eta) + eta);
  }
  protected override closedFormLr(): number[] {
    return this.baseLrs.map((b) => this.etaMin + ((b - this.etaMin) * (1 + Math.cos((Math.PI * this.lastEpoch) / this.tMax))) / 2);
  }
}

// ------------------------------------------------------------------ composition

/**
 * Runs `schedulers` one after another, switching at each of `milestones` (one fewer than
 * schedulers), exactly like PyTorch's SequentialLR — e.g. a LinearLR warmup then a cosine.
 * Construct the inner schedules on the same optimizer first.
 */
export class SequentialLR implements LRScheduler {
  readonly optimizer: AnyOptimizer;
  readonly schedulers: LRSchedulerBase[];
  readonly milestones: number[];
  lastEpoch: number;
  private lastLr: number[];
  constructor(optimizer: AnyOptimizer, options: { schedulers: LRSchedulerBase[]; milestones: number[] }) {
    this.optimizer = checkOptimizer(optimizer);
    const o = checkOptions(options);
    const s = o.schedulers, m = o.milestones;
    if (!Array.isArray(s) || s.length === 0 || !s.every((x) => x instanceof LRSchedulerBase))
      throw invalidParameterError('schedulers', 'a non-empty array of schedules (StepLR, LinearLR, CosineAnnealingLR, …)', s);
    s.forEach((x: LRSchedulerBase, i) => {
      if (x.optimizer !== this.optimizer) throw new KilnError(`SequentialLR: schedulers[${i}] belongs to a different optimizer`, 'INVALID_ARGUMENT');
    });
    if (!Array.isArray(m) || m.length !== s.length - 1 || !m.every((x, i) => Number.isInteger(x) && x >= 0 && (i === 0 || x >= m[i - 1])))
      throw invalidParameterError('milestones', `${s.length - 1} non-decreasing non-negative integers (one fewer than schedulers)`, m);
    this.schedulers = [...s];
    this.milestones = [...m];
    this.lastEpoch = 0;
    setLrs(this.optimizer, initialLrs.get(this.optimizer) ?? groupLrs(this.optimizer));
    for (const x of this.schedulers) x.lastEpoch -= 1;
    this.schedulers[0].initialStep();
    this.lastLr = this.schedulers[0].getLastLr();
  }
  step(_metric?: number | Tensor): void {
    this.lastEpoch += 1;
    const idx = this.milestones.filter((x) => x <= this.lastEpoch).length;
    const s = this.schedulers[idx];
    if (idx > 0 && this.milestones[idx - 1] === this.lastEpoch) s.stepTo(0);
    else s.step();
    this.lastLr = s.getLastLr();
  }
  getLastLr(): number[] {
    return [...this.lastLr];
  }
  stateDict(): SchedulerState {
    return { type: 'SequentialLR', lastEpoch: this.lastEpoch, lastLr: [...this.lastLr], schedulers: this.schedulers.map((x) => x.stateDict()) };
  }
  loadStateDict(state: SchedulerState): void {
    const s = checkState(state, 'SequentialLR');
    const inner = s.schedulers;
    if (!Array.isArray(inner) || inner.length !== this.schedulers.length)
      throw invalidParameterError('state.schedulers', `${this.schedulers.length} schedule states`, inner);
    const lastLr = numArray('lastLr', s.lastLr, this.optimizer.paramGroups.length);
    const lastEpoch = stateInt(s, 'lastEpoch');
    inner.forEach((x, i) => this.schedulers[i].loadStateDict(x as SchedulerState));
    this.lastEpoch = lastEpoch;
    this.lastLr = [...lastLr];
    setLrs(this.optimizer, lastLr);
  }
}

/**
 * A linear warmup from `warmupStartFactor`·lr to lr over `warmupSteps` steps, then cosine
 * annealing to `etaMin` over the remaining `totalSteps - warmupSteps` steps
 * (`SequentialLR([LinearLR, CosineAnnealingLR])`).
 */
export function warmupCosine(optimizer: AnyOptimizer, options: { warmupSteps: number; totalSteps: number; warmupStartFactor?: number; etaMin?: number }): SequentialLR {
  checkOptimizer(optimizer);
  const o = checkOptions(options);
  const warmupSteps = int('warmupSteps', o.warmupSteps, 1);
  const totalSteps = int('totalSteps', o.totalSteps, warmupSteps + 1);
  const warmup = new LinearLR(optimizer, { startFactor: (o.warmupStartFactor as number | undefined) ?? 0.01, endFactor: 1, totalIters: warmupSteps });
  const cosine = new CosineAnnealingLR(optimizer, { tMax: totalSteps - warmupSteps, etaMin: (o.etaMin as number | undefined) ?? 0 });
  return new SequentialLR(optimizer, { schedulers: [warmup, cosine], milestones: [warmupSteps] });
}

// ------------------------------------------------------------------ one cycle

/** OneCycleLR options (PyTorch's names in camelCase). */
