/** LR schedules: parity with PyTorch's lr_scheduler (fixtures), state save/restore, bad arguments. */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import {
  LRScheduler, StepLR, MultiStepLR, ExponentialLR, LinearLR, LambdaLR, CosineAnnealingLR, SequentialLR, warmupCosine,
  OneCycleLR, ReduceLROnPlateau, LRSchedulerBase,
} from '../lib/optim/schedulers';
import { expectClose, expectKilnError } from './helpers';

interface SchedCase {
  kiln: { type: string; options?: Record<string, unknown> };
  optimizer: { type: 'SGD' | 'Adam' | 'AdamW'; lr: number[]; momentum?: number };
  steps: number;
  lr: number[][];
  momentum?: number[][];
  metrics?: number[];
}

function loadFixture(): Record<string, SchedCase> {
  const candidates = [path.resolve(__dirname, 'fixtures', 'nn-schedulers.json'), path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'nn-schedulers.json')];
  const file = candidates.find((f) => fs.existsSync(f));
  if (!file) throw new Error('nn-schedulers.json not found; run /usr/bin/python3 scripts/make-nn-fixtures.py');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { cases: Record<string, SchedCase> }).cases;
}
const CASES = loadFixture();

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOpt = kiln.optim.Optimizer<any>;
const params: kiln.Tensor[] = [];
function makeOptimizer(o: SchedCase['optimizer']): AnyOpt {
  const groups = o.lr.map((lr) => {
    const p = kiln.zeros([1], { requiresGrad: true });
    params.push(p);
    return { params: [p], lr };
  });
  if (o.type === 'SGD') return new kiln.optim.SGD(groups, { lr: o.lr[0], momentum: o.momentum ?? 0 });
  if (o.type === 'Adam') return new kiln.optim.Adam(groups, { lr: o.lr[0] });
  return new kiln.optim.AdamW(groups, { lr: o.lr[0] });
}

function makeScheduler(c: SchedCase, opt: AnyOpt): LRScheduler {
  const o = (c.kiln.options ?? {}) as never;
  switch (c.kiln.type) {
    case 'StepLR': return new StepLR(opt, o);
    case 'MultiStepLR': return new MultiStepLR(opt, o);
    case 'ExponentialLR': return new ExponentialLR(opt, o);
    case 'CosineAnnealingLR': return new CosineAnnealingLR(opt, o);
    case 'LinearLR': return new LinearLR(opt, o);
    case 'OneCycleLR': return new OneCycleLR(opt, o);
    case 'ReduceLROnPlateau': return new ReduceLROnPlateau(opt, o);
    case 'LambdaLR': return new LambdaLR(opt, { lrLambda: [(e) => 0.97 ** e, (e) => 1 / (1 + e)] });
    case 'warmupCosine': {
      const w = c.kiln.options as { warmupSteps: number; warmupStartFactor: number; tMax: number; etaMin: number };
      return warmupCosine(opt, { warmupSteps: w.warmupSteps, totalSteps: w.warmupSteps + w.tMax, warmupStartFactor: w.warmupStartFactor, etaMin: w.etaMin });
    }
    case 'sequentialThree': {
      const a = new LinearLR(opt, { startFactor: 0.5, totalIters: 4 });
      const b = new StepLR(opt, { stepSize: 5, gamma: 0.5 });
      const e = new ExponentialLR(opt, { gamma: 0.9 });
      return new SequentialLR(opt, { schedulers: [a, b, e], milestones: [6, 20] });
    }
    default: throw new Error(`unknown fixture type ${c.kiln.type}`);
  }
}

function momentumOf(opt: AnyOpt): number[] {
  return opt.paramGroups.map((g) => {
    const o = g.options as { betas?: number[]; momentum?: number };
    return o.betas ? o.betas[0] : o.momentum!;
  });
}

/** Runs a schedule from step `from` to `to` and checks lr (and momentum) against the fixture. */
function checkRun(name: string, c: SchedCase, opt: AnyOpt, s: LRScheduler, from: number, to: number): void {
  for (let i = from; i <= to; i++) {
    if (i > 0) s.step(c.metrics ? c.metrics[i - 1] : undefined);
    const groupsLr = opt.paramGroups.map((g) => g.options.lr as number);
    try {
      expectClose(groupsLr, c.lr[i], 1e-10, 1e-15);
      expectClose(s.getLastLr(), c.lr[i], 1e-10, 1e-15);
      if (c.momentum) expectClose(momentumOf(opt), c.momentum[i], 1e-10, 1e-15);
    } catch (e) {
      throw new Error(`${name}, step ${i}: ${(e as Error).message}`);
    }
  }
}

describe('32 LR schedulers', () => {
  after(() => params.forEach((p) => p.dispose()));

  describe('parity with PyTorch (lr of each group after construction and after each step)', () => {
    for (const [name, c] of Object.entries(CASES)) {
      it(`${name}: ${c.steps} steps`, () => {
        const opt = makeOptimizer(c.optimizer);
        const s = makeScheduler(c, opt);
        checkRun(name, c, opt, s, 0, c.steps);
      });
    }

    it('OneCycleLR refuses to step past totalSteps', () => {
      const c = CASES.onecycle_cos_sgd;
      const opt = makeOptimizer(c.optimizer);
      const s = new OneCycleLR(opt, { maxLr: 0.1, totalSteps: 100 });
      for (let i = 0; i < 100; i++) s.step();
      expectKilnError(() => s.step(), 'INVALID_ARGUMENT', 'tried to step 102 times', 'total steps is 100');
    });

    it('OneCycleLR cycles betas[0] of Adam without touching betas[1]', () => {
      const opt = makeOptimizer({ type: 'Adam', lr: [0.01] });
      const s = new OneCycleLR(opt, { maxLr: 0.01, totalSteps: 10 });
      expect((opt.paramGroups[0].options as { betas: number[] }).betas).to.deep.equal([0.95, 0.999]);
      s.step();
      const b = (opt.paramGroups[0].options as { betas: number[] }).betas;
      expect(b[1]).to.equal(0.999);
      expect(b[0]).to.be.below(0.95);
      expect(s.getLastMomentum()).to.deep.equal([b[0]]);
    });

    it('the schedules drive a real optimizer: SGD with OneCycleLR trains', () => {
      const w = kiln.tensor([3, -2], { requiresGrad: true });
      const opt = new kiln.optim.SGD([w], { lr: 0.1, momentum: 0.9 });
      const s = new OneCycleLR(opt, { maxLr: 0.2, totalSteps: 50 });
      for (let i = 0; i < 50; i++) {
        opt.zeroGrad();
        const loss = w.square().sum();
        loss.backward();
        loss.dispose();
        opt.step();
        s.step();
      }
      expect(Math.abs(Number(w.dataSync()[0]))).to.be.below(0.05);
      opt.dispose();
      w.dispose();
    });
  });

  describe('state save/restore mid-schedule continues identically', () => {
    for (const name of ['step', 'multistep', 'cosine_wrap', 'warmup_cosine', 'sequential_three', 'onecycle_cos_sgd', 'onecycle_linear_adam',
      'onecycle_three_phase_adamw_groups', 'plateau_min', 'plateau_max_abs_cooldown', 'lambda', 'linear']) {
      it(name, () => {
        const c = CASES[name];
        const mid = Math.floor(c.steps * 0.45);
        const opt = makeOptimizer(c.optimizer);
        const s = makeScheduler(c, opt);
        checkRun(name, c, opt, s, 0, mid);
        // through JSON, as a checkpoint would
        const saved = JSON.parse(JSON.stringify(s.stateDict())) as ReturnType<LRScheduler['stateDict']>;
        // a fresh optimizer and schedule, restored from the state, go on exactly as the original
        const opt2 = makeOptimizer(c.optimizer);
        const s2 = makeScheduler(c, opt2);
        s2.loadStateDict(saved);
        checkRun(`${name} (restored)`, c, opt2, s2, mid + 1, c.steps);
        checkRun(`${name} (original)`, c, opt, s, mid + 1, c.steps);
      });
    }

    it('ReduceLROnPlateau state is JSON-safe (best = Infinity survives)', () => {
      const opt = makeOptimizer({ type: 'SGD', lr: [0.1] });
      const s = new ReduceLROnPlateau(opt);
      const st = JSON.parse(JSON.stringify(s.stateDict())) as ReturnType<LRScheduler['stateDict']>;
      const s2 = new ReduceLROnPlateau(opt);
      s2.loadStateDict(st);
      expect(s2.best).to.equal(Infinity);
    });

    it('loadStateDict rejects another schedule\'s state', () => {
      const opt = makeOptimizer({ type: 'SGD', lr: [0.1] });
      const a = new StepLR(opt, { stepSize: 3 });
      const b = new ExponentialLR(opt, { gamma: 0.9 });
      expectKilnError(() => b.loadStateDict(a.stateDict()), 'INVALID_ARGUMENT', 'state', 'ExponentialLR');
      expectKilnError(() => a.loadStateDict(null as never), 'INVALID_ARGUMENT', 'state');
      const two = makeOptimizer({ type: 'SGD', lr: [0.1, 0.2] });
      const c = new StepLR(two, { stepSize: 3 });
      expectKilnError(() => c.loadStateDict(a.stateDict()), 'INVALID_ARGUMENT', 'state.baseLrs', '2 numbers');
    });
  });

  describe('behaviour', () => {
    it('getLastLr returns a copy; baseLrs are the lrs when the first schedule was attached', () => {
      const opt = makeOptimizer({ type: 'SGD', lr: [0.1, 0.3] });
      const s = new StepLR(opt, { stepSize: 1, gamma: 0.5 });
      s.step();
      const l = s.getLastLr();
      l[0] = 42;
      expect(s.getLastLr()).to.deep.equal([0.05, 0.15]);
      expect(s.baseLrs).to.deep.equal([0.1, 0.3]);
      const s2 = new ExponentialLR(opt, { gamma: 0.5 });
      expect(s2.baseLrs).to.deep.equal([0.1, 0.3]);
      expect(s2.getLastLr()).to.deep.equal([0.05, 0.15]);
    });

    it('chainable schedules follow external lr changes (as PyTorch)', () => {
      const opt = makeOptimizer({ type: 'SGD', lr: [1] });
      const s = new ExponentialLR(opt, { gamma: 0.5 });
      s.step();
      opt.setLr(10, 0);
      s.step();
      expect(s.getLastLr()).to.deep.equal([5]);
    });

    it('ReduceLROnPlateau accepts a one-element tensor as metric', () => {
      const opt = makeOptimizer({ type: 'SGD', lr: [1] });
      const s = new ReduceLROnPlateau(opt, { patience: 0, factor: 0.5 });
      const m = kiln.tensor([2]);
      s.step(m);
      s.step(m);
      m.dispose();
      expect(s.getLastLr()).to.deep.equal([0.5]);
      expect(s.inCooldown).to.equal(false);
    });

    it('every base schedule is an LRSchedulerBase', () => {
      const opt = makeOptimizer({ type: 'SGD', lr: [1] });
      expect(new CosineAnnealingLR(opt, { tMax: 3 })).to.be.instanceOf(LRSchedulerBase);
    });
  });

  describe('bad arguments throw KilnErrors', () => {
    const opt = () => makeOptimizer({ type: 'SGD', lr: [0.1, 0.2] });
    const bad: [string, () => unknown, string[]][] = [
      ['optimizer', () => new StepLR({} as never, { stepSize: 1 }), ['optimizer', 'an Optimizer']],
      ['options', () => new StepLR(opt(), null as never), ['options']],
      ['StepLR stepSize', () => new StepLR(opt(), { stepSize: 0 }), ['stepSize', 'integer >= 1', 'number 0']],
      ['StepLR stepSize float', () => new StepLR(opt(), { stepSize: 1.5 }), ['stepSize']],
      ['StepLR gamma', () => new StepLR(opt(), { stepSize: 2, gamma: -1 }), ['gamma', 'non-negative']],
      ['MultiStepLR milestones', () => new MultiStepLR(opt(), { milestones: [5, 3] }), ['milestones', 'non-decreasing']],
      ['MultiStepLR milestones type', () => new MultiStepLR(opt(), { milestones: 3 as never }), ['milestones']],
      ['ExponentialLR gamma', () => new ExponentialLR(opt(), { gamma: NaN }), ['gamma', 'NaN']],
      ['ExponentialLR no gamma', () => new ExponentialLR(opt(), {} as never), ['gamma', 'undefined']],
      ['LinearLR startFactor', () => new LinearLR(opt(), { startFactor: 0 }), ['startFactor', '(0, 1]']],
      ['LinearLR endFactor', () => new LinearLR(opt(), { endFactor: 2 }), ['endFactor']],
      ['LinearLR totalIters', () => new LinearLR(opt(), { totalIters: 0 }), ['totalIters']],
      ['CosineAnnealingLR tMax', () => new CosineAnnealingLR(opt(), { tMax: -3 }), ['tMax']],
      ['CosineAnnealingLR etaMin', () => new CosineAnnealingLR(opt(), { tMax: 3, etaMin: -1 }), ['etaMin']],
      ['LambdaLR lrLambda', () => new LambdaLR(opt(), { lrLambda: 3 as never }), ['lrLambda', 'function']],
      ['LambdaLR lrLambda count', () => new LambdaLR(opt(), { lrLambda: [() => 1] }), ['lrLambda', '2 functions']],
      ['LambdaLR lambda result', () => new LambdaLR(opt(), { lrLambda: () => 'x' as never }), ['lrLambda(0)', 'expected a number']],
      ['OneCycleLR no steps', () => new OneCycleLR(opt(), { maxLr: 0.1 }), ['totalSteps']],
      ['OneCycleLR totalSteps', () => new OneCycleLR(opt(), { maxLr: 0.1, totalSteps: 0 }), ['totalSteps']],
      ['OneCycleLR epochs', () => new OneCycleLR(opt(), { maxLr: 0.1, epochs: 2 }), ['stepsPerEpoch']],
      ['OneCycleLR maxLr', () => new OneCycleLR(opt(), { maxLr: -1, totalSteps: 10 }), ['maxLr', 'positive']],
      ['OneCycleLR maxLr per group', () => new OneCycleLR(opt(), { maxLr: [0.1], totalSteps: 10 }), ['maxLr', '2 values']],
      ['OneCycleLR pctStart', () => new OneCycleLR(opt(), { maxLr: 0.1, totalSteps: 10, pctStart: 1.5 }), ['pctStart', '[0, 1]']],
      ['OneCycleLR annealStrategy', () => new OneCycleLR(opt(), { maxLr: 0.1, totalSteps: 10, annealStrategy: 'exp' as never }), ['annealStrategy', "'cos' or 'linear'"]],
      ['OneCycleLR divFactor', () => new OneCycleLR(opt(), { maxLr: 0.1, totalSteps: 10, divFactor: 0 }), ['divFactor']],
      ['OneCycleLR finalDivFactor', () => new OneCycleLR(opt(), { maxLr: 0.1, totalSteps: 10, finalDivFactor: -1 }), ['finalDivFactor']],
      ['OneCycleLR momentum', () => new OneCycleLR(opt(), { maxLr: 0.1, totalSteps: 10, maxMomentum: 1.2 }), ['maxMomentum']],
      ['OneCycleLR threePhase', () => new OneCycleLR(opt(), { maxLr: 0.1, totalSteps: 10, threePhase: 'yes' as never }), ['threePhase', 'boolean']],
      ['ReduceLROnPlateau mode', () => new ReduceLROnPlateau(opt(), { mode: 'up' as never }), ['mode', "'min' or 'max'"]],
      ['ReduceLROnPlateau factor', () => new ReduceLROnPlateau(opt(), { factor: 1 }), ['factor', '[0, 1)']],
      ['ReduceLROnPlateau patience', () => new ReduceLROnPlateau(opt(), { patience: -1 }), ['patience']],
      ['ReduceLROnPlateau threshold', () => new ReduceLROnPlateau(opt(), { threshold: -0.1 }), ['threshold']],
      ['ReduceLROnPlateau thresholdMode', () => new ReduceLROnPlateau(opt(), { thresholdMode: 'pct' as never }), ['thresholdMode']],
      ['ReduceLROnPlateau cooldown', () => new ReduceLROnPlateau(opt(), { cooldown: 0.5 }), ['cooldown']],
      ['ReduceLROnPlateau minLr', () => new ReduceLROnPlateau(opt(), { minLr: [0.1, 0.2, 0.3] }), ['minLr', '2 values']],
      ['ReduceLROnPlateau eps', () => new ReduceLROnPlateau(opt(), { eps: -1 }), ['eps']],
      ['ReduceLROnPlateau metric', () => new ReduceLROnPlateau(opt()).step(), ['metric', 'undefined']],
      ['ReduceLROnPlateau metric tensor', () => new ReduceLROnPlateau(opt()).step(kiln.zeros([2])), ['metric', 'one-element']],
      ['SequentialLR schedulers', () => new SequentialLR(opt(), { schedulers: [], milestones: [] }), ['schedulers']],
      ['SequentialLR milestones', () => { const o = opt(); return new SequentialLR(o, { schedulers: [new StepLR(o, { stepSize: 1 }), new StepLR(o, { stepSize: 2 })], milestones: [] }); }, ['milestones', 'one fewer']],
      ['SequentialLR other optimizer', () => { const o = opt(); return new SequentialLR(o, { schedulers: [new StepLR(opt(), { stepSize: 1 })], milestones: [] }); }, ['different optimizer']],
      ['warmupCosine totalSteps', () => warmupCosine(opt(), { warmupSteps: 10, totalSteps: 5 }), ['totalSteps', 'integer >= 11']],
    ];
    for (const [name, fn, fragments] of bad) it(name, () => expectKilnError(fn, 'INVALID_ARGUMENT', ...fragments));

    it('OneCycleLR cycleMomentum needs momentum or betas', () => {
      class Plain extends kiln.optim.SGD {}
      const o = new Plain([kiln.zeros([1], { requiresGrad: true })], { lr: 0.1 });
      delete (o.paramGroups[0].options as Partial<kiln.optim.SGDOptions>).momentum;
      expectKilnError(() => new OneCycleLR(o, { maxLr: 0.1, totalSteps: 10 }), 'INVALID_ARGUMENT', 'cycleMomentum');
      expect(() => new OneCycleLR(o, { maxLr: 0.1, totalSteps: 10, cycleMomentum: false })).not.to.throw();
    });
  });
});
