/**
 * Learning-rate schedules (PyTorch's `torch.optim.lr_scheduler`, same numbers): each one
 * sets `optimizer.paramGroups[i].options.lr` when it is constructed and on every `step()`.
 *
 * Call `optimizer.step()` then `scheduler.step()` once per epoch (or per batch for
 * OneCycleLR); `ReduceLROnPlateau.step(metric)` takes the monitored value. Every schedule
 * has `getLastLr()` and a plain JSON-able `stateDict()` / `loadStateDict()`.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Optimizer } from './optimizer';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOptimizer = Optimizer<any>;
type Options = Record<string, unknown> & { lr: number };

/** What every schedule offers. */
export interface LRScheduler {
  readonly optimizer: AnyOptimizer;
  /** Advances the schedule by one epoch/batch (`ReduceLROnPlateau` needs the metric). */
  step(metric?: number | Tensor): void;
  /** The learning rate of each parameter group as last set by this schedule. */
  getLastLr(): number[];
  /** The schedule's state as a plain JSON-able object. */
  stateDict(): SchedulerState;
  /** Restores `stateDict()`'s result (and sets the optimizer's learning rates to it). */
  loadStateDict(state: SchedulerState): void;
}

/** A schedule's state: `type` (the class name) and plain numbers, strings and arrays. */
export type SchedulerState = { type: string } & Record<string, unknown>;

// ------------------------------------------------------------------ helpers

/** The learning rate each group had when the first schedule was attached (PyTorch's `initial_lr`). */
const initialLrs = new WeakMap<AnyOptimizer, number[]>();

function checkOptimizer(optimizer: unknown): AnyOptimizer {
  if (!(optimizer instanceof Optimizer)) throw invalidParameterError('optimizer', 'an Optimizer (kiln.optim.SGD, Adam, …)', optimizer);
  return optimizer as AnyOptimizer;
}
function opts(o: AnyOptimizer, i: number): Options {
  return o.paramGroups[i].options as Options;
}
function groupLrs(o: AnyOptimizer): number[] {
  return o.paramGroups.map((g) => (g.options as Options).lr);
}
function setLrs(o: AnyOptimizer, lrs: number[]): void {
  lrs.forEach((lr, i) => (opts(o, i).lr = lr));
}
function num(name: string, v: unknown, what: string, ok: (x: number) => boolean): number {
  if (typeof v !== 'number' || Number.isNaN(v) || !ok(v)) throw invalidParameterError(name, what, v);
  return v;
}
function int(name: string, v: unknown, min: number): number {
  return num(name, v, `an integer >= ${min}`, (x) => Number.isInteger(x) && x >= min);
}
/** A number or one number per parameter group. */
function perGroup(name: string, v: unknown, n: number, what: string, ok: (x: number) => boolean): number[] {
  if (Array.isArray(v)) {
    if (v.length !== n) throw invalidParameterError(name, `${n} values (one per parameter group)`, v);
    return v.map((x, i) => num(`${name}[${i}]`, x, what, ok));
  }
  return new Array<number>(n).fill(num(name, v, `${what}, or an array of them (one per parameter group)`, ok));
}
function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T)) throw invalidParameterError(name, allowed.map((a) => `'${a}'`).join(' or '), v);
  return v as T;
}
function checkOptions(o: unknown): Record<string, unknown> {
  if (o === undefined) return {};
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw invalidParameterError('options', 'an options object', o);
  return o as Record<string, unknown>;
}
function checkState(s: unknown, type: string): SchedulerState {
  if (!s || typeof s !== 'object' || (s as SchedulerState).type !== type)
    throw invalidParameterError('state', `a ${type} stateDict() result`, s);
  return s as SchedulerState;
}
function numArray(name: string, v: unknown, n: number): number[] {
  if (!Array.isArray(v) || v.length !== n || !v.every((x) => typeof x === 'number'))
    throw invalidParameterError(`state.${name}`, `${n} numbers (one per parameter group)`, v);
  return v as number[];
}
function stateInt(s: SchedulerState, key: string): number {
  const v = s[key];
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidParameterError(`state.${key}`, 'an integer', v);
  return v;
}
/** JSON has no Infinity: encodes ±Infinity as strings. */
function encNum(v: number): number | string {
  return Number.isFinite(v) ? v : String(v);
}
function decNum(name: string, v: unknown): number {
  const x = typeof v === 'string' ? Number(v) : v;
  if (typeof x !== 'number' || Number.isNaN(x)) throw invalidParameterError(`state.${name}`, 'a number', v);
  return x;
}

// ------------------------------------------------------------------ base

/**
 * Base of the epoch-indexed schedules (PyTorch's `_LRScheduler`). Subclasses compute the
 * next learning rates in `computeLr()` (PyTorch's chainable form, reading the groups'
 * current lr) and optionally `closedFormLr()` (used when a SequentialLR jumps to epoch 0).
 */
export abstract class LRSchedulerBase implements LRScheduler {
  readonly optimizer: AnyOptimizer;
  /** The groups' learning rates when the first schedule was attached to the optimizer. */
  readonly baseLrs: number[];
  /** Epoch index (number of `step()` calls since construction). */
  lastEpoch = -1;
  /** @internal number of step calls (PyTorch's `_step_count`) */
  stepCount = 0;
  protected lastLr: number[] = [];

  constructor(optimizer: unknown) {
    this.optimizer = checkOptimizer(optimizer);
    let init = initialLrs.get(this.optimizer);
    if (!init || init.length !== this.optimizer.paramGroups.length) {
      init = groupLrs(this.optimizer);
      initialLrs.set(this.optimizer, init);
    }
    this.baseLrs = [...init];
  }

  /** The next learning rates (lastEpoch already advanced). */
  protected abstract computeLr(): number[];
  /** The learning rates at `lastEpoch` from the base rates (defaults to `computeLr`). */
  protected closedFormLr(): number[] {
    return this.computeLr();
  }
  /** Extra state of the subclass (plain JSON values). */
  protected extraState(): Record<string, unknown> {
    return {};
  }
  /** Restores `extraState()`. */
  protected loadExtraState(_s: SchedulerState): void {}

  /** PyTorch's `_initial_step`: called at the end of each subclass constructor. */
  /** @internal */ initialStep(): void {
    this.stepCount = 0;
    this.step();
  }

  /** Advances one epoch and sets the groups' learning rates. A metric, if given, is ignored. */
  step(_metric?: number | Tensor): void {
    this.stepCount++;
    this.lastEpoch++;
    this.apply(this.computeLr());
  }
  /** @internal Jumps to `epoch` using the closed form (PyTorch's deprecated `step(epoch)`). */
  stepTo(epoch: number): void {
    this.stepCount++;
    this.lastEpoch = epoch;
    this.apply(this.closedFormLr());
  }
  protected apply(lrs: number[]): void {
    setLrs(this.optimizer, lrs);
    this.lastLr = groupLrs(this.optimizer);
  }
  getLastLr(): number[] {
    return [...this.lastLr];
  }

  stateDict(): SchedulerState {
    return { type: this.constructor.name, lastEpoch: this.lastEpoch, stepCount: this.stepCount, baseLrs: [...this.baseLrs], lastLr: [...this.lastLr], ...this.extraState() };
  }
  loadStateDict(state: SchedulerState): void {
    const s = checkState(state, this.constructor.name);
    const n = this.optimizer.paramGroups.length;
    const baseLrs = numArray('baseLrs', s.baseLrs, n);
    const lastLr = numArray('lastLr', s.lastLr, n);
    const lastEpoch = stateInt(s, 'lastEpoch'), stepCount = stateInt(s, 'stepCount');
    this.loadExtraState(s);
    (this.baseLrs as number[]).splice(0, n, ...baseLrs);
    this.lastEpoch = lastEpoch;
    this.stepCount = stepCount;
    this.lastLr = [...lastLr];
    setLrs(this.optimizer, lastLr);
  }
}

// ------------------------------------------------------------------ simple decays

/** Multiplies the lr by `gamma` every `stepSize` epochs. */
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
export interface OneCycleOptions {
  /** peak lr, or one per parameter group */
  maxLr: number | number[];
  /** total steps; or give `epochs` and `stepsPerEpoch` */
  totalSteps?: number;
  epochs?: number;
  stepsPerEpoch?: number;
  /** fraction of the cycle spent increasing the lr (default 0.3) */
  pctStart?: number;
  annealStrategy?: 'cos' | 'linear';
  /** cycle momentum (SGD/RMSprop `momentum`, Adam/AdamW `betas[0]`) inversely to the lr (default true) */
  cycleMomentum?: boolean;
  baseMomentum?: number | number[];
  maxMomentum?: number | number[];
  /** initial lr = maxLr / divFactor (default 25) */
  divFactor?: number;
  /** min lr = initial lr / finalDivFactor (default 1e4) */
  finalDivFactor?: number;
  /** three phases (up, down to initial, annihilate) as in the paper, instead of fastai's two */
  threePhase?: boolean;
}
interface Phase { endStep: number; startLr: 'initialLr' | 'maxLr'; endLr: 'initialLr' | 'maxLr' | 'minLr'; startMomentum: 'maxMomentum' | 'baseMomentum'; endMomentum: 'maxMomentum' | 'baseMomentum' }

/**
 * The 1cycle policy, exactly as PyTorch's OneCycleLR: the lr rises from maxLr/divFactor to
 * maxLr over pctStart of the steps, then anneals to initialLr/finalDivFactor, while momentum
 * moves the opposite way. Step it once per batch; it accepts `totalSteps` steps.
 */
export class OneCycleLR extends LRSchedulerBase {
  readonly totalSteps: number;
  readonly pctStart: number;
  readonly annealStrategy: 'cos' | 'linear';
  readonly cycleMomentum: boolean;
  readonly threePhase: boolean;
  private readonly useBeta1: boolean;
  private readonly phases: Phase[];
  private readonly groups: { initialLr: number; maxLr: number; minLr: number; maxMomentum: number; baseMomentum: number }[];
  private lastMomentum: number[] = [];

  constructor(optimizer: AnyOptimizer, options: OneCycleOptions) {
    super(optimizer);
    const o = checkOptions(options) as Partial<OneCycleOptions>;
    const n = this.optimizer.paramGroups.length;
    if (o.totalSteps !== undefined) this.totalSteps = int('totalSteps', o.totalSteps, 1);
    else if (o.epochs !== undefined || o.stepsPerEpoch !== undefined) this.totalSteps = int('epochs', o.epochs, 1) * int('stepsPerEpoch', o.stepsPerEpoch, 1);
    else throw invalidParameterError('totalSteps', 'a positive integer (or epochs and stepsPerEpoch)', undefined);
    this.pctStart = num('pctStart', o.pctStart ?? 0.3, 'a number in [0, 1]', (x) => x >= 0 && x <= 1);
    this.annealStrategy = oneOf('annealStrategy', o.annealStrategy ?? 'cos', ['cos', 'linear'] as const);
    const divFactor = num('divFactor', o.divFactor ?? 25, 'a positive number', (x) => x > 0 && Number.isFinite(x));
    const finalDivFactor = num('finalDivFactor', o.finalDivFactor ?? 1e4, 'a positive number', (x) => x > 0 && Number.isFinite(x));
    this.threePhase = o.threePhase ?? false;
    if (typeof this.threePhase !== 'boolean') throw invalidParameterError('threePhase', 'a boolean', o.threePhase);
    this.cycleMomentum = o.cycleMomentum ?? true;
    if (typeof this.cycleMomentum !== 'boolean') throw invalidParameterError('cycleMomentum', 'a boolean', o.cycleMomentum);
    const maxLrs = perGroup('maxLr', o.maxLr, n, 'a positive number', (x) => x > 0 && Number.isFinite(x));
    const T = this.totalSteps, p = this.pctStart;
    this.phases = this.threePhase
      ? [
        { endStep: p * T - 1, startLr: 'initialLr', endLr: 'maxLr', startMomentum: 'maxMomentum', endMomentum: 'baseMomentum' },
        { endStep: 2 * p * T - 2, startLr: 'maxLr', endLr: 'initialLr', startMomentum: 'baseMomentum', endMomentum: 'maxMomentum' },
        { endStep: T - 1, startLr: 'initialLr', endLr: 'minLr', startMomentum: 'maxMomentum', endMomentum: 'maxMomentum' },
      ]
      : [
        { endStep: p * T - 1, startLr: 'initialLr', endLr: 'maxLr', startMomentum: 'maxMomentum', endMomentum: 'baseMomentum' },
        { endStep: T - 1, startLr: 'maxLr', endLr: 'minLr', startMomentum: 'baseMomentum', endMomentum: 'maxMomentum' },
      ];
    const first = opts(this.optimizer, 0);
    this.useBeta1 = 'betas' in first;
    let maxM: number[] = new Array<number>(n).fill(0), baseM: number[] = new Array<number>(n).fill(0);
    if (this.cycleMomentum) {
      if (!('betas' in first) && !('momentum' in first))
        throw new KilnError('OneCycleLR: cycleMomentum needs an optimizer with momentum (SGD, RMSprop) or betas (Adam, AdamW); pass cycleMomentum: false', 'INVALID_ARGUMENT');
      maxM = perGroup('maxMomentum', o.maxMomentum ?? 0.95, n, 'a number in [0, 1)', (x) => x >= 0 && x < 1);
      baseM = perGroup('baseMomentum', o.baseMomentum ?? 0.85, n, 'a number in [0, 1)', (x) => x >= 0 && x < 1);
    }
    this.groups = maxLrs.map((maxLr, i) => {
      const initialLr = maxLr / divFactor;
      return { initialLr, maxLr, minLr: initialLr / finalDivFactor, maxMomentum: maxM[i], baseMomentum: baseM[i] };
    });
    // PyTorch sets each group's initial_lr to maxLr / divFactor
    (this.baseLrs as number[]).splice(0, n, ...this.groups.map((g) => g.initialLr));
    initialLrs.set(this.optimizer, [...this.baseLrs]);
    if (this.cycleMomentum) this.groups.forEach((g, i) => this.setMomentum(i, g.maxMomentum));
    this.initialStep();
  }

  private setMomentum(i: number, m: number): void {
    const o = opts(this.optimizer, i);
    if (this.useBeta1) o.betas = [m, ...(o.betas as number[]).slice(1)];
    else o.momentum = m;
  }
  private momentumOf(i: number): number {
    const o = opts(this.optimizer, i);
    return this.useBeta1 ? (o.betas as number[])[0] : (o.momentum as number);
  }
  private anneal(start: number, end: number, pct: number): number {
    if (this.annealStrategy === 'cos') return end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1);
    return (end - start) * pct + start;
  }

  protected computeLr(): number[] {
    const stepNum = this.lastEpoch;
    if (stepNum > this.totalSteps)
      throw new KilnError(`OneCycleLR: tried to step ${stepNum + 1} times; the specified number of total steps is ${this.totalSteps}`, 'INVALID_ARGUMENT');
    return this.groups.map((g, gi) => {
      let start = 0;
      for (let i = 0; i < this.phases.length; i++) {
        const ph = this.phases[i];
        if (stepNum <= ph.endStep || i === this.phases.length - 1) {
          const pct = (stepNum - start) / (ph.endStep - start);
          if (this.cycleMomentum) this.setMomentum(gi, this.anneal(g[ph.startMomentum], g[ph.endMomentum], pct));
          return this.anneal(g[ph.startLr], g[ph.endLr], pct);
        }
        start = ph.endStep;
      }
      /* c8 ignore next */
      throw new KilnError('OneCycleLR: no phase', 'NATIVE');
    });
  }
  protected override apply(lrs: number[]): void {
    super.apply(lrs);
    this.lastMomentum = this.optimizer.paramGroups.map((_g, i) => this.momentumOf(i));
  }
  /** The momentum (or beta1) of each group as last set (meaningful when `cycleMomentum`). */
  getLastMomentum(): number[] {
    return [...this.lastMomentum];
  }
  protected override extraState(): Record<string, unknown> {
    return { totalSteps: this.totalSteps, lastMomentum: [...this.lastMomentum], groups: this.groups.map((g) => ({ ...g })) };
  }
  protected override loadExtraState(s: SchedulerState): void {
    if (s.totalSteps !== this.totalSteps) throw invalidParameterError('state.totalSteps', `${this.totalSteps} (this schedule's totalSteps)`, s.totalSteps);
    const n = this.optimizer.paramGroups.length;
    const groups = s.groups;
    if (!Array.isArray(groups) || groups.length !== n) throw invalidParameterError('state.groups', `${n} group entries`, groups);
    const mom = numArray('lastMomentum', s.lastMomentum, n);
    groups.forEach((g: Record<string, unknown>, i) => {
      for (const k of ['initialLr', 'maxLr', 'minLr', 'maxMomentum', 'baseMomentum'] as const) this.groups[i][k] = decNum(`groups[${i}].${k}`, g[k]);
    });
    this.lastMomentum = [...mom];
    if (this.cycleMomentum) mom.forEach((m, i) => this.setMomentum(i, m));
  }
}

// ------------------------------------------------------------------ plateau

/** ReduceLROnPlateau options (PyTorch's names in camelCase). */
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
