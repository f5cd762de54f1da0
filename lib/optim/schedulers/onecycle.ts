/** OneCycleLR (PyTorch's semantics, with momentum cycling). */
import { KilnError, invalidParameterError } from '../../errors';
import { AnyOptimizer, initialLrs, opts, num, int, perGroup, oneOf, checkOptions, numArray, decNum, LRSchedulerBase, SchedulerState } from './base';
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
