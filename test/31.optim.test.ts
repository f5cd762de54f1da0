/** Optimizers: parity with PyTorch (fixtures), param groups, lr, zeroGrad, state round trip, grad clipping, bad arguments. */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { FixtureTensor, expectClose, expectKilnError, fromFixture, values } from './helpers';

interface OptimCase {
  kiln: { type: 'SGD' | 'Adam' | 'AdamW' | 'RMSprop'; options: Record<string, unknown>; groups?: Record<string, unknown>[] };
  params: FixtureTensor[];
  grads: FixtureTensor[][];
  after1: FixtureTensor[];
  after3: FixtureTensor[];
}
interface ClipCase {
  args: { max_norm?: number; norm_type?: number | string; clip_value?: number };
  grads: FixtureTensor[];
  after: FixtureTensor[];
  total: number | null;
}

function loadFixture(): { cases: Record<string, OptimCase>; clip: Record<string, ClipCase> } {
  const candidates = [path.resolve(__dirname, 'fixtures', 'nn-optim.json'), path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'nn-optim.json')];
  const file = candidates.find((f) => fs.existsSync(f));
  if (!file) throw new Error('nn-optim.json not found; run /usr/bin/python3 scripts/make-nn-fixtures.py');
  return JSON.parse(fs.readFileSync(file, 'utf8')) as { cases: Record<string, OptimCase>; clip: Record<string, ClipCase> };
}
const FIX = loadFixture();

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOpt = kiln.optim.Optimizer<any>;

function makeOptimizer(c: OptimCase['kiln'], params: kiln.Tensor[]): AnyOpt {
  const p = c.groups ? c.groups.map((g, i) => ({ params: [params[i]], ...g })) : params;
  const o = c.options as never;
  switch (c.type) {
    case 'SGD': return new kiln.optim.SGD(p as never, o);
    case 'Adam': return new kiln.optim.Adam(p as never, o);
    case 'AdamW': return new kiln.optim.AdamW(p as never, o);
    case 'RMSprop': return new kiln.optim.RMSprop(p as never, o);
  }
}
function setGrads(params: kiln.Tensor[], grads: FixtureTensor[]): void {
  params.forEach((p, i) => {
    const g = fromFixture(grads[i]);
    p.grad = g;
    g.dispose();
  });
}
function check(params: kiln.Tensor[], expected: FixtureTensor[], what: string): void {
  params.forEach((p, i) => {
    try {
      expectClose(p, expected[i].data, 1e-5, 1e-6, expected[i].shape);
    } catch (e) {
      throw new Error(`${what}, param ${i}: ${(e as Error).message}`);
    }
  });
}

describe('31 optimizers', () => {
  describe('parity with PyTorch: one and three steps', () => {
    for (const [name, c] of Object.entries(FIX.cases)) {
      it(name, () => {
        const params = c.params.map((p) => fromFixture(p, true));
        const opt = makeOptimizer(c.kiln, params);
        for (let s = 0; s < 3; s++) {
          setGrads(params, c.grads[s]);
          opt.step();
          if (s === 0) check(params, c.after1, `${name} after 1 step`);
        }
        check(params, c.after3, `${name} after 3 steps`);
        opt.dispose();
        params.forEach((p) => p.dispose());
      });
    }

    it('parameters without a gradient are skipped', () => {
      const a = kiln.tensor([1, 2], { requiresGrad: true });
      const b = kiln.tensor([3, 4], { requiresGrad: true });
      const opt = new kiln.optim.Adam([a, b], { lr: 0.1 });
      a.grad = kiln.tensor([1, 1]);
      opt.step();
      expect(values(b)).to.deep.equal([3, 4]);
      expect(values(a)[0]).to.be.closeTo(0.9, 1e-6);
      opt.dispose();
      a.dispose();
      b.dispose();
    });

    it('SGD (multi-tensor): a parameter that skips steps keeps its momentum; gradients are left as they were', () => {
      // by hand: buf starts at the first gradient it sees, then buf = 0.9·buf + g; nesterov d = g + 0.9·buf
      const a = kiln.tensor([1, 2], { requiresGrad: true }), b = kiln.tensor([3, 4], { requiresGrad: true });
      const opt = new kiln.optim.SGD([a, b], { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.5 });
      a.grad = kiln.tensor([1, -1]);
      opt.step(); // a: g' = g + 0.5·a = [1.5, 0]; buf = g'; d = g' + 0.9·buf = [2.85, 0]; a = [0.715, 2]; b has no gradient
      expect(values(b)).to.deep.equal([3, 4]);
      b.grad = kiln.tensor([2, 2]);
      opt.step(); // a: g' = [1.3575, 0]; buf = [2.7075, 0]; d = [3.79425, 0]; b: its first step
      expect(values(a.grad!)).to.deep.equal([1, -1]);
      expect(values(b.grad!)).to.deep.equal([2, 2]);
      const wa = values(a), wb = values(b);
      [0.715 - 0.379425, 2].forEach((v, i) => expect(wa[i]).to.be.closeTo(v, 1e-6));
      // b: g' = [3.5, 4]; buf = g'; d = 1.9·g' = [6.65, 7.6]
      [3 - 0.665, 4 - 0.76].forEach((v, i) => expect(wb[i]).to.be.closeTo(v, 1e-6));
      expect(opt.stateDict().steps).to.deep.equal([[2, 1]]);
      opt.dispose();
      a.dispose();
      b.dispose();
    });
  });

  describe('parameter groups and lr', () => {
    it('groups keep their own lr/weightDecay and inherit the rest', () => {
      const a = kiln.zeros([2], { requiresGrad: true }), b = kiln.zeros([2], { requiresGrad: true });
      const opt = new kiln.optim.SGD([{ params: [a], weightDecay: 0.1 }, { params: [b], lr: 0.01 }], { lr: 0.1, momentum: 0.9 });
      expect(opt.paramGroups[0].options).to.include({ lr: 0.1, weightDecay: 0.1, momentum: 0.9 });
      expect(opt.paramGroups[1].options).to.include({ lr: 0.01, weightDecay: 0, momentum: 0.9 });
      a.dispose();
      b.dispose();
    });

    it('lr get/set: all groups or one', () => {
      const a = kiln.zeros([2], { requiresGrad: true }), b = kiln.zeros([2], { requiresGrad: true });
      const opt = new kiln.optim.Adam([{ params: [a] }, { params: [b], lr: 0.5 }], { lr: 0.1 });
      expect(opt.lr).to.equal(0.1);
      expect(opt.getLr(1)).to.equal(0.5);
      opt.setLr(0.2, 1);
      expect(opt.getLr(1)).to.equal(0.2);
      expect(opt.getLr(0)).to.equal(0.1);
      opt.lr = 0.05;
      expect([opt.getLr(0), opt.getLr(1)]).to.deep.equal([0.05, 0.05]);
      expectKilnError(() => opt.setLr(-1), 'INVALID_ARGUMENT', 'lr', 'non-negative', 'number -1');
      expectKilnError(() => opt.setLr(0.1, 2), 'INVALID_ARGUMENT', 'group', 'below 2');
      expectKilnError(() => opt.getLr(5), 'INVALID_ARGUMENT', 'group');
      a.dispose();
      b.dispose();
    });

    it('a changed lr is used by the next step', () => {
      const a = kiln.tensor([1], { requiresGrad: true });
      const opt = new kiln.optim.SGD([a], { lr: 1 });
      opt.lr = 0.25;
      a.grad = kiln.tensor([2]);
      opt.step();
      expect(values(a)).to.deep.equal([0.5]);
      a.dispose();
    });
  });

  describe('capturable (lr and step counts read on the device, for CUDA graphs)', () => {
    for (const [name, c] of Object.entries(FIX.cases)) {
      it(`${name}: same as PyTorch`, () => {
        const params = c.params.map((p) => fromFixture(p, true));
        const opt = makeOptimizer({ ...c.kiln, options: { ...c.kiln.options, capturable: true } }, params);
        for (let s = 0; s < 3; s++) {
          setGrads(params, c.grads[s]);
          opt.step();
          if (s === 0) check(params, c.after1, `${name} (capturable) after 1 step`);
        }
        check(params, c.after3, `${name} (capturable) after 3 steps`);
        expect(opt.stateDict().steps.flat().every((n) => n === 3), 'device step counts').to.equal(true);
        opt.dispose();
        params.forEach((p) => p.dispose());
      });
    }

    /** Trains two copies of the same parameters with the same gradients, one optimizer capturable; returns both. */
    function twin(make: (p: kiln.Tensor[], capturable: boolean) => AnyOpt, steps: (opt: AnyOpt, s: number) => void, n = 6): kiln.Tensor[][] {
      return [false, true].map((capturable) => {
        kiln.manualSeed(5);
        const params = [kiln.randn([4, 3]).requiresGrad_(true), kiln.randn([3]).requiresGrad_(true)];
        const opt = make(params, capturable);
        for (let s = 0; s < n; s++) {
          steps(opt, s);
          kiln.manualSeed(100 + s);
          params.forEach((p) => {
            const g = kiln.randn(p.shape);
            p.grad = g;
            g.dispose();
          });
          opt.step();
        }
        opt.dispose();
        return params;
      });
    }

    it('follows lr changes between steps (a schedule), in every group', () => {
      const makers: [string, (p: kiln.Tensor[], capturable: boolean) => AnyOpt][] = [
        ['SGD', (p, capturable) => new kiln.optim.SGD([{ params: [p[0]] }, { params: [p[1]], lr: 0.02 }], { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01, capturable })],
        ['AdamW', (p, capturable) => new kiln.optim.AdamW([{ params: [p[0]] }, { params: [p[1]], lr: 0.02 }], { lr: 0.1, amsgrad: true, capturable })],
        ['RMSprop', (p, capturable) => new kiln.optim.RMSprop([{ params: [p[0]] }, { params: [p[1]], lr: 0.02 }], { lr: 0.01, momentum: 0.5, centered: true, capturable })],
      ];
      for (const [name, make] of makers) {
        const [plain, capt] = twin(make, (opt, s) => {
          opt.setLr(0.1 / (s + 1), 0);
          if (s === 3) opt.setLr(0.001, 1);
        });
        plain.forEach((p, i) => {
          expectClose(capt[i], values(p), 1e-6, 1e-7);
          p.dispose();
          capt[i].dispose();
        });
        void name;
      }
    });

    it('knows whether a group\'s parameters have always stepped together (Adam\'s one-count capturable update, libtorch 2.1+)', () => {
      const a = kiln.tensor([1, 2], { requiresGrad: true }), b = kiln.tensor([3], { requiresGrad: true });
      const opt = new kiln.optim.Adam([a, b], { lr: 0.1, capturable: true });
      const uniform = () => (opt as unknown as { state: { uniform: boolean }[] }).state[0].uniform;
      const grads = (...ps: kiln.Tensor[]) => ps.forEach((p) => { const g = kiln.onesLike(p); p.grad = g; g.dispose(); });
      grads(a, b);
      opt.step();
      opt.step();
      expect(uniform()).to.equal(true);
      a.grad = null; // b steps alone: the counts differ from the next step on, for good
      opt.step();
      b.grad = null;
      grads(a); // a catches up alone
      opt.step();
      expect(opt.stateDict().steps).to.deep.equal([[3, 3]]);
      expect(uniform(), 'equal counts again, but they once differed').to.equal(false);
      const sd = opt.stateDict();
      opt.loadStateDict(sd);
      expect(uniform(), 'a loaded state with equal counts').to.equal(true);
      opt.dispose();
      for (const t of [a, b]) t.dispose();
    });

    it('device scalars are remade, counts kept, when the parameters change dtype (the lr follows their dtype)', () => {
      const run = (capturable: boolean) => {
        kiln.manualSeed(4);
        const m = new kiln.nn.Linear(3, 2);
        const opt = new kiln.optim.Adam(m.parameters(), { lr: 0.1, capturable });
        const x = kiln.randn([5, 3]);
        const step = () => kiln.tidy(() => {
          const loss = m.call(x.to(m.weight.dtype)).square().mean();
          loss.backward();
          opt.step();
          opt.zeroGrad();
        });
        step();
        step();
        m.to('float64');
        step();
        expect(opt.stateDict().steps).to.deep.equal([[3, 3]]);
        const w = values(m.weight);
        x.dispose();
        opt.dispose();
        m.dispose();
        return w;
      };
      const plain = run(false), capt = run(true);
      capt.forEach((v, i) => expect(v).to.be.closeTo(plain[i], 1e-6));
    });

    it('state round trip through the device step counts; turning capturable off keeps the counts', () => {
      const a = kiln.tensor([1, 2], { requiresGrad: true }), b = kiln.tensor([1, 2], { requiresGrad: true });
      const opt = new kiln.optim.Adam([a], { lr: 0.1, capturable: true });
      const opt2 = new kiln.optim.Adam([b], { lr: 0.5, capturable: true });
      const grad = (p: kiln.Tensor, v: number[]) => { const g = kiln.tensor(v); p.grad = g; g.dispose(); };
      for (let s = 0; s < 2; s++) {
        grad(a, [1, -1]);
        opt.step();
      }
      grad(b, [3, 3]);
      opt2.step(); // its device counts exist before the load overwrites them
      const sd = opt.stateDict();
      expect(sd.steps).to.deep.equal([[2]]);
      expect(sd.groups[0].capturable).to.equal(true);
      opt2.loadStateDict(sd);
      expect(opt2.stateDict().steps).to.deep.equal([[2]]);
      kiln.noGrad(() => b.copy_(a));
      grad(a, [0.5, 0.25]);
      grad(b, [0.5, 0.25]);
      opt.step();
      opt2.step(); // the loaded lr (0.1) and bias correction (step 3)
      expect(values(b)).to.deep.equal(values(a));
      opt2.paramGroups[0].options.capturable = false;
      grad(b, [1, 1]);
      opt2.step();
      expect(opt2.stateDict().steps).to.deep.equal([[4]]);
      for (const t of [a, b]) t.dispose();
      opt.dispose();
      opt2.dispose();
    });

    it('CudaGraph.record says why it cannot record here (no CUDA graphs or a CPU device), before running anything', () => {
      let ran = false;
      const e = expectKilnError(() => kiln.nn.CudaGraph.record('cpu', () => { ran = true; }), kiln.nn.cudaGraphsAvailable() ? 'INVALID_ARGUMENT' : 'CUDA_UNAVAILABLE');
      expect(e.message).to.match(kiln.nn.cudaGraphsAvailable() ? /CUDA device, got 'cpu'/ : /no CUDA graph support/);
      expect(ran).to.equal(false);
      expect(kiln.nn.recordingGraph()).to.equal(false);
      expectKilnError(() => kiln.nn.CudaGraph.record(3 as never, () => 0), 'INVALID_ARGUMENT', 'device');
      expectKilnError(() => kiln.nn.CudaGraph.record('cuda', 'fn' as never), 'INVALID_ARGUMENT', 'fn', 'a function');
    });
  });

  describe('zeroGrad', () => {
    it('setToNone (default) removes gradients; setToNone=false zeroes them', () => {
      const a = kiln.tensor([1, 2], { requiresGrad: true });
      const opt = new kiln.optim.SGD([a], { lr: 0.1 });
      a.grad = kiln.tensor([3, 4]);
      opt.zeroGrad(false);
      const g = a.grad;
      expect(g).to.not.equal(null);
      expect(values(g!)).to.deep.equal([0, 0]);
      g!.dispose();
      opt.zeroGrad();
      expect(a.grad).to.equal(null);
      a.dispose();
    });
  });

  describe('stateDict / loadStateDict', () => {
    for (const name of ['sgd_nesterov', 'adam_amsgrad', 'adamw_groups', 'rmsprop_centered_momentum']) {
      it(`${name}: a restored optimizer makes the identical next step`, () => {
        const c = FIX.cases[name];
        const p1 = c.params.map((p) => fromFixture(p, true));
        const opt1 = makeOptimizer(c.kiln, p1);
        for (let s = 0; s < 2; s++) {
          setGrads(p1, c.grads[s]);
          opt1.step();
        }
        const sd = opt1.stateDict();
        expect(sd.groups.length).to.equal(c.kiln.groups ? c.kiln.groups.length : 1);
        expect(sd.tensors.size).to.be.greaterThan(0);
        // a second model at the same point: same param values, fresh optimizer, loaded state
        const p2 = p1.map((p) => kiln.tensor(values(p), { shape: p.shape, requiresGrad: true }));
        const opt2 = makeOptimizer(c.kiln, p2);
        opt2.loadStateDict(sd);
        setGrads(p1, c.grads[2]);
        setGrads(p2, c.grads[2]);
        opt1.step();
        opt2.step();
        p1.forEach((p, i) => expect(values(p2[i])).to.deep.equal(values(p)));
        check(p2, c.after3, name);
        opt1.dispose();
        opt2.dispose();
        [...p1, ...p2].forEach((p) => p.dispose());
      });
    }

    it('restores lr and step counts; rejects a mismatched state', () => {
      const a = kiln.zeros([2], { requiresGrad: true });
      const opt = new kiln.optim.Adam([a], { lr: 0.1 });
      a.grad = kiln.ones([2]);
      opt.step();
      opt.lr = 0.02;
      const sd = opt.stateDict();
      expect(sd.steps).to.deep.equal([[1]]);
      const b = kiln.zeros([2], { requiresGrad: true });
      const opt2 = new kiln.optim.Adam([b], { lr: 0.1 });
      opt2.loadStateDict(sd);
      expect(opt2.lr).to.equal(0.02);
      expect(opt2.stateDict().steps).to.deep.equal([[1]]);
      const c = kiln.zeros([2], { requiresGrad: true });
      const two = new kiln.optim.Adam([{ params: [b] }, { params: [c] }]);
      expectKilnError(() => two.loadStateDict(sd), 'INVALID_ARGUMENT', '1 parameter groups', 'has 2');
      const wide = new kiln.optim.Adam([b, c]);
      expectKilnError(() => wide.loadStateDict(sd), 'INVALID_ARGUMENT', 'group 0 has 1 parameters', 'has 2');
      expectKilnError(() => opt2.loadStateDict({} as never), 'INVALID_ARGUMENT', 'state');
      [opt, opt2].forEach((o) => o.dispose());
      [a, b, c].forEach((t) => t.dispose());
    });
  });

  describe('gradient clipping (PyTorch numbers)', () => {
    for (const [name, c] of Object.entries(FIX.clip)) {
      it(name, () => {
        const ps = c.grads.map((g) => kiln.zeros(g.shape, { requiresGrad: true }));
        setGrads(ps, c.grads);
        if (c.args.clip_value !== undefined) {
          kiln.nn.utils.clipGradValue_(ps, c.args.clip_value);
        } else {
          const normType = c.args.norm_type === undefined ? 2 : Number(c.args.norm_type);
          const total = kiln.nn.utils.clipGradNorm_(ps, c.args.max_norm!, { normType });
          expectClose(total, [c.total!]);
          total.dispose();
        }
        ps.forEach((p, i) => {
          const g = p.grad!;
          expectClose(g, c.after[i].data, 1e-5, 1e-6, c.after[i].shape);
          g.dispose();
          p.dispose();
        });
      });
    }

    it('parameters without gradients are ignored', () => {
      const a = kiln.zeros([2], { requiresGrad: true }), b = kiln.zeros([2], { requiresGrad: true });
      a.grad = kiln.tensor([3, 4]);
      const total = kiln.nn.utils.clipGradNorm_([a, b], 1);
      expect(total.item()).to.be.closeTo(5, 1e-6);
      expectClose(a.grad!, [0.6, 0.8]);
      kiln.nn.utils.clipGradValue_([a, b], 0.7);
      expect(b.grad).to.equal(null);
      [a, b, total].forEach((t) => t.dispose());
    });

    it('bad arguments', () => {
      const a = kiln.zeros([2], { requiresGrad: true });
      expectKilnError(() => kiln.nn.utils.clipGradNorm_([a], 0), 'INVALID_ARGUMENT', 'maxNorm', 'positive');
      expectKilnError(() => kiln.nn.utils.clipGradNorm_([a], 1, { normType: -2 }), 'INVALID_ARGUMENT', 'normType');
      expectKilnError(() => kiln.nn.utils.clipGradNorm_('x' as never, 1), 'INVALID_ARGUMENT', 'params');
      expectKilnError(() => kiln.nn.utils.clipGradNorm_([3 as never], 1), 'INVALID_ARGUMENT', 'params[0]');
      expectKilnError(() => kiln.nn.utils.clipGradValue_([a], -1), 'INVALID_ARGUMENT', 'clipValue', 'positive');
      a.dispose();
    });
  });

  describe('bad arguments throw KilnErrors', () => {
    const p = kiln.zeros([2], { requiresGrad: true });
    const frozen = kiln.zeros([2]);
    after(() => {
      p.dispose();
      frozen.dispose();
    });
    const bad: [string, () => unknown, string[]][] = [
      ['no params', () => new kiln.optim.SGD([], { lr: 0.1 }), ['params', 'non-empty']],
      ['params not an array', () => new kiln.optim.Adam(p as never), ['params']],
      ['a non-tensor param', () => new kiln.optim.SGD([{ params: [3 as never] }], { lr: 0.1 }), ['params[0].params[0]']],
      ['a group without params', () => new kiln.optim.SGD([{ lr: 0.1 } as never], { lr: 0.1 }), ['params[0]', 'params: Tensor[]']],
      ['a frozen param', () => new kiln.optim.SGD([frozen], { lr: 0.1 }), ['does not require grad']],
      ['SGD lr', () => new kiln.optim.SGD([p], { lr: -0.1 }), ['lr', 'number -0.1']],
      ['SGD lr missing', () => new kiln.optim.SGD([p], {} as never), ['lr', 'undefined']],
      ['SGD momentum', () => new kiln.optim.SGD([p], { lr: 0.1, momentum: -1 }), ['momentum']],
      ['SGD weightDecay', () => new kiln.optim.SGD([p], { lr: 0.1, weightDecay: NaN }), ['weightDecay', 'NaN']],
      ['SGD nesterov without momentum', () => new kiln.optim.SGD([p], { lr: 0.1, nesterov: true }), ['nesterov', 'momentum > 0']],
      ['SGD nesterov with dampening', () => new kiln.optim.SGD([p], { lr: 0.1, momentum: 0.9, nesterov: true, dampening: 0.1 }), ['nesterov', 'dampening 0']],
      ['a group with a bad lr', () => new kiln.optim.SGD([{ params: [p], lr: -1 }], { lr: 0.1 }), ['lr']],
      ['Adam lr', () => new kiln.optim.Adam([p], { lr: -1 }), ['lr']],
      ['Adam betas', () => new kiln.optim.Adam([p], { betas: [0.9, 1] }), ['betas', '[0, 1)']],
      ['Adam betas shape', () => new kiln.optim.Adam([p], { betas: [0.9] as never }), ['betas']],
      ['Adam eps', () => new kiln.optim.Adam([p], { eps: -1e-8 }), ['eps']],
      ['AdamW weightDecay', () => new kiln.optim.AdamW([p], { weightDecay: -0.01 }), ['weightDecay']],
      ['RMSprop alpha', () => new kiln.optim.RMSprop([p], { alpha: 1.5 }), ['alpha', '[0, 1]']],
      ['RMSprop momentum', () => new kiln.optim.RMSprop([p], { momentum: -0.5 }), ['momentum']],
      ['RMSprop eps', () => new kiln.optim.RMSprop([p], { eps: 'small' as never }), ['eps', "string 'small'"]],
      ['capturable not a boolean', () => new kiln.optim.Adam([p], { capturable: 1 as never }), ['capturable', 'boolean']],
    ];
    for (const [name, fn, fragments] of bad) it(name, () => expectKilnError(fn, 'INVALID_ARGUMENT', ...fragments));
  });
});
