/**
 * kiln.explain.deepLift / deepLiftShap: agreement with a plain-PyTorch transcription of Captum's
 * DeepLift using real backward hooks (scripts/make-deeplift-fixtures.py → test/fixtures/deeplift.json),
 * summation-to-delta on a ReLU CNN and on resnet18, exact identities (a linear model, Captum's maxpool
 * rule worked by hand), DeepLiftShap as the mean over baselines, modes/hooks/grads left alone, refusals
 * and bad arguments, no leaks, and `kiln explain --method deeplift`. Runs on KILN_TEST_DEVICE (default
 * 'cpu'; 'cuda' on the GPU machine; the CLI test stays on the CPU). DeepLift draws nothing. On CUDA
 * the float64 cases hold to TOL_FIX / TOL_ID / EXACT (cuDNN sums in another order), and the float32
 * ones (summation to delta, the noise tunnel, side effects) run in float64 (CASE_DTYPE): float32
 * convolutions there are TF32 (~1e-3 relative), which breaks summation to delta at that level.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { expect } from 'chai';
import * as kiln from '../lib';
import { SqueezeExcitation } from '../lib/models/blocks';
import { explainCommand, EXPLAIN_FLAGS } from '../lib/cli/explain';
import { parseArgs } from '../lib/cli/args';
import { expectClose, expectKilnError, maxAbsDiff, values, DEVICE, ON_CPU, skipWithoutDevice, expectNoFileLeaks, fixture64 as fromFix, ShapedValues as Shaped } from './helpers';

const E = kiln.explain;
const { nn } = kiln;
const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'deeplift.json'), 'utf8'));

/** Fixtures (1e-10 on the CPU), float64 identities (1e-12), and what holds bit for bit on the CPU. */
const TOL_FIX = ON_CPU ? 1e-10 : 1e-9, TOL_ID = ON_CPU ? 1e-12 : 1e-10, EXACT = ON_CPU ? 0 : 1e-12;
/** The dtype of the float32 cases: float32 on the CPU, float64 on CUDA (TF32 convolutions; see above). */
const CASE_DTYPE: 'float32' | 'float64' = ON_CPU ? 'float32' : 'float64';
/** Standard normal `dtype` draws from the CPU generator, on DEVICE. */
const randnOn = (shape: number[], dtype: kiln.DType = CASE_DTYPE): kiln.Tensor => kiln.tidy(() => kiln.randn(shape, { dtype }).to(DEVICE));
/** Uniform [0, 1) `dtype` draws from the CPU generator, on DEVICE. */
const randOn = (shape: number[], dtype: kiln.DType = CASE_DTYPE): kiln.Tensor => kiln.tidy(() => kiln.rand(shape, { dtype }).to(DEVICE));

/** The fixture's CNN in float64 with its weights (conv, BN, ReLU, pool, conv, LeakyReLU, pool, linear, Sigmoid, linear, Tanh, linear). */
function fixtureModel(): kiln.nn.Sequential {
  const m = new nn.Sequential(
    new nn.Conv2d(2, 4, 3, { padding: 1 }), new nn.BatchNorm2d(4), new nn.ReLU(), new nn.MaxPool2d(2),
    new nn.Conv2d(4, 6, 3, { padding: 1 }), new nn.LeakyReLU(0.1), new nn.MaxPool2d(2, { stride: 2, padding: 1 }),
    new nn.Flatten(), new nn.Linear(54, 12), new nn.Sigmoid(), new nn.Linear(12, 8), new nn.Tanh(), new nn.Linear(8, 5),
  ).to('float64');
  const state: Record<string, kiln.Tensor> = {};
  for (const [k, v] of Object.entries(FIX.model.weights as Record<string, Shaped>)) state[k] = fromFix(v, 'cpu');
  m.loadStateDict(state);
  for (const t of Object.values(state)) t.dispose();
  m.to(DEVICE);
  return m.eval();
}

/** A ReLU CNN on DEVICE: conv, batch norm (non-trivial running statistics), max pools (one overlapping), linear layers. */
function reluCnn(dtype: 'float32' | 'float64' = CASE_DTYPE): kiln.nn.Sequential {
  kiln.manualSeed(48);
  const m = new nn.Sequential(
    new nn.Conv2d(3, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(), new nn.MaxPool2d(3, { stride: 1, padding: 1 }),
    new nn.Conv2d(8, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(), new nn.MaxPool2d(2),
    new nn.Flatten(), new nn.Linear(8 * 6 * 6, 16), new nn.ReLU(), new nn.Linear(16, 4),
  );
  randomiseBatchNorm(m);
  m.to(dtype);
  m.to(DEVICE);
  return m.eval();
}

/** Gives every BatchNorm2d running statistics and affine parameters away from the identity. */
function randomiseBatchNorm(m: kiln.nn.Module): void {
  kiln.noGrad(() => {
    for (const [, mod] of m.namedModules())
      if (mod instanceof nn.BatchNorm2d) {
        const c = mod.numFeatures;
        kiln.tidy(() => {
          mod.runningMean!.copy_(kiln.randn([c]).mul(0.2));
          mod.runningVar!.copy_(kiln.rand([c]).add(0.5));
          mod.weight!.copy_(kiln.rand([c]).add(0.5));
          mod.bias!.copy_(kiln.randn([c]).mul(0.1));
        });
      }
  });
}

/** f(x)[target] − f(baseline)[target] per image, computed with plain forwards (no DeepLift hooks). */
function gap(m: kiln.nn.Module, x: kiln.Tensor, base: kiln.Tensor, target: number[]): number[] {
  return kiln.tidy(() => kiln.noGrad(() => {
    const idx = kiln.tensor(target.map((t) => [t]), { dtype: 'int64', device: x.device as kiln.Device });
    const b = base.expand(x.shape).contiguous();
    return values(m.call(x).gather(1, idx).squeeze(1).sub(m.call(b).gather(1, idx).squeeze(1)));
  }));
}

/** Σ attributions per image. */
const sums = (a: kiln.Tensor) => kiln.tidy(() => values(a.flatten(1).sum(1)));

/** Number of forward hooks set on each module of `m`. */
const hookCounts = (m: kiln.nn.Module) => m.namedModules().map(([, mod]) => (mod as unknown as { _hooks: unknown[] })._hooks.length);

describe(`48 DeepLift and DeepLiftShap (${DEVICE})`, function () {
  this.timeout(120000);
  before(skipWithoutDevice);
  expectNoFileLeaks(false);

  describe("agreement with Captum's rules (plain-PyTorch transcription with backward hooks)", () => {
    for (const name of ['zeroBaseline', 'perImageBaseline'] as const) {
      it(`deepLift, ${name}: attributions and delta match to 1e-10 (float64)`, () => {
        const m = fixtureModel();
        const x = fromFix(FIX.x);
        const c = FIX.cases[name];
        const base = fromFix(c.baselines);
        const r = name === 'zeroBaseline'
          ? E.deepLift(m, x, { target: FIX.target, returnConvergenceDelta: true }) // default baselines: 0
          : E.deepLift(m, x, { target: FIX.target, baselines: base, returnConvergenceDelta: true });
        const ref = fromFix(c.attributions);
        expect(r.attributions.shape).to.deep.equal([3, 2, 8, 8]);
        expect(maxAbsDiff(r.attributions, ref)).to.be.below(TOL_FIX);
        values(r.delta).forEach((v, i) => expect(v).to.be.closeTo(c.delta.values[i], TOL_FIX));
        // summation to delta, against plain forwards
        const g = gap(m, x, base, FIX.target);
        sums(r.attributions).forEach((s, i) => expect(s - g[i]).to.be.closeTo(0, TOL_FIX));
        if (name === 'zeroBaseline') {
          // the same model's gradient × input matches the fixture's, and DeepLift is something else here
          const ixg = E.inputXGradient(m, x, { target: FIX.target });
          const refIxg = fromFix(c.inputXGradient);
          expect(maxAbsDiff(ixg, refIxg)).to.be.below(TOL_FIX);
          expect(maxAbsDiff(ixg, r.attributions)).to.be.above(1e-3);
          for (const t of [ixg, refIxg]) t.dispose();
        }
        for (const t of [x, base, r.attributions, r.delta, ref]) t.dispose();
        m.dispose();
      });
    }

    it('where |Δin| < eps inside the network (ordinary ReLU and max-pool gradients reaching inputs with Δ ≠ 0): matches to 1e-10', () => {
      const c = FIX.cases.epsRegion;
      const m = new nn.Sequential(new nn.Conv2d(2, 3, 1), new nn.ReLU(), new nn.MaxPool2d(2), new nn.Flatten(), new nn.Linear(48, 3)).to('float64');
      const state: Record<string, kiln.Tensor> = {};
      for (const [k, v] of Object.entries(c.weights as Record<string, Shaped>)) state[k] = fromFix(v, 'cpu');
      m.loadStateDict(state);
      m.to(DEVICE);
      const [x, base, ref] = [fromFix(c.x), fromFix(c.baselines), fromFix(c.attributions)];
      const r = E.deepLift(m.eval(), x, { target: c.target, baselines: base, returnConvergenceDelta: true });
      expect(maxAbsDiff(r.attributions, ref)).to.be.below(TOL_FIX);
      values(r.delta).forEach((v) => expect(Math.abs(v)).to.be.below(TOL_FIX));
      for (const t of [...Object.values(state), x, base, ref, r.attributions, r.delta]) t.dispose();
      m.dispose();
    });

    it('deepLiftShap against 4 baselines: the mean attributions and the 12 pair deltas match to 1e-10', () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x);
      const c = FIX.cases.shap;
      const dist = fromFix(c.baselines);
      const r = E.deepLiftShap(m, x, { target: FIX.target, baselines: dist, returnConvergenceDelta: true });
      const ref = fromFix(c.attributions);
      expect(r.attributions.shape).to.deep.equal([3, 2, 8, 8]);
      expect(r.delta.shape).to.deep.equal([12]);
      expect(maxAbsDiff(r.attributions, ref)).to.be.below(TOL_FIX);
      values(r.delta).forEach((v, i) => expect(v).to.be.closeTo(c.delta.values[i], TOL_FIX));
      for (const t of [x, dist, r.attributions, r.delta, ref]) t.dispose();
      m.dispose();
    });
  });

  describe('summation to delta', () => {
    it('on a ReLU CNN (conv, BN in eval mode, overlapping and plain max pools, linear): |delta| < 1e-4', () => {
      const m = reluCnn();
      kiln.manualSeed(1);
      const x = randnOn([4, 3, 12, 12]);
      const base = kiln.tidy(() => randnOn([4, 3, 12, 12]).mul(0.3));
      const zeros = kiln.zeros([1, 3, 12, 12], { dtype: CASE_DTYPE, device: DEVICE });
      const target = [0, 1, 2, 3];
      for (const baselines of [undefined, base]) {
        const r = E.deepLift(m, x, { target, baselines, returnConvergenceDelta: true });
        const g = gap(m, x, baselines ?? zeros, target);
        const s = sums(r.attributions);
        s.forEach((v, i) => expect(Math.abs(v - g[i]), `image ${i}`).to.be.below(1e-4));
        values(r.delta).forEach((v, i) => expect(v).to.be.closeTo(s[i] - g[i], 1e-5));
        expect(Math.max(...g.map(Math.abs)), 'a non-trivial gap').to.be.above(1e-2);
        r.attributions.dispose();
        r.delta.dispose();
      }
      for (const t of [x, base, zeros]) t.dispose();
      m.dispose();
    });

    it("on the zoo's resnet18 at 32×32 (BN eval, 3×3/2 max pool, residual blocks): |delta| < 1e-4, also for deepLiftShap", () => {
      kiln.manualSeed(18);
      const m = kiln.models.resnet18({ numClasses: 10 });
      randomiseBatchNorm(m);
      m.to(CASE_DTYPE);
      m.to(DEVICE);
      m.eval();
      // both ReLUs of every BasicBlock go through its relu module, so DeepLift's hooks see them
      const block = m.get('layer2.1');
      let calls = 0;
      const remove = block.get('relu').registerForwardHook(() => { calls++; });
      const x = randnOn([2, 3, 32, 32]);
      kiln.tidy(() => { kiln.noGrad(() => m.call(x)); });
      remove();
      expect(calls).to.equal(2);
      const r = E.deepLift(m, x, { target: [3, 7], returnConvergenceDelta: true });
      const zeros = kiln.zeros([1, 3, 32, 32], { dtype: CASE_DTYPE, device: DEVICE });
      const g = gap(m, x, zeros, [3, 7]);
      sums(r.attributions).forEach((s, i) => expect(Math.abs(s - g[i])).to.be.below(1e-4));
      values(r.delta).forEach((d) => expect(Math.abs(d)).to.be.below(1e-4));
      const dist = randOn([3, 3, 32, 32]);
      const shap = E.deepLiftShap(m, x, { target: 5, baselines: dist, returnConvergenceDelta: true });
      expect(shap.delta.shape).to.deep.equal([6]);
      values(shap.delta).forEach((d) => expect(Math.abs(d)).to.be.below(1e-4));
      for (const t of [x, zeros, dist, r.attributions, r.delta, shap.attributions, shap.delta]) t.dispose();
      m.dispose();
    });

    it("on the zoo's mobilenet_v2 (ReLU6, depthwise convs, inverted residuals): |delta| small; efficientnet_b0's squeeze-excitation and mobilenet_v3's Hardswish are refused", () => {
      kiln.manualSeed(21);
      const m = kiln.models.create('mobilenet_v2', { numClasses: 10 });
      randomiseBatchNorm(m);
      m.to(CASE_DTYPE);
      m.to(DEVICE);
      m.eval();
      const x = randnOn([2, 3, 32, 32]);
      const zeros = kiln.zeros([1, 3, 32, 32], { dtype: CASE_DTYPE, device: DEVICE });
      const r = E.deepLift(m, x, { target: [1, 4], returnConvergenceDelta: true });
      const g = gap(m, x, zeros, [1, 4]);
      sums(r.attributions).forEach((s, i) => expect(Math.abs(s - g[i]), `image ${i}: Σ attributions vs f(x) − f(0) = ${g[i]}`).to.be.below(1e-4 * Math.max(1, Math.abs(g[i]))));
      for (const t of [x, zeros, r.attributions, r.delta]) t.dispose();
      m.dispose();
      const e = kiln.models.create('efficientnet_b0', { numClasses: 10 });
      e.to(DEVICE);
      e.eval();
      const xe = randnOn([1, 3, 32, 32], 'float32');
      expect(() => E.deepLift(e, xe, { target: 0 })).to.throw(kiln.KilnError, /module 'features\.0\.2' is not supported: SiLU/);
      const se = new nn.Sequential(new nn.Conv2d(3, 4, 3), new SqueezeExcitation(4, 2, new nn.ReLU()), new nn.Flatten(), new nn.Linear(4 * 30 * 30, 2));
      se.to(DEVICE);
      se.eval();
      expect(() => E.deepLift(se, xe, { target: 0 })).to.throw(kiln.KilnError, /module '1' is not supported: squeeze-excitation multiplies two paths/);
      const v3 = kiln.models.create('mobilenet_v3_small', { numClasses: 10 });
      v3.to(DEVICE);
      v3.eval();
      expect(() => E.deepLift(v3, xe, { target: 0 })).to.throw(kiln.KilnError, /module 'features\.0\.2' is not supported: Hardswish/);
      xe.dispose();
      e.dispose();
      se.dispose();
      v3.dispose();
    });
  });

  describe('exact identities', () => {
    it('on a linear model: zero baseline gives gradient × input; a baseline gives w·(x − baseline)', () => {
      kiln.manualSeed(5);
      const m = new nn.Sequential(new nn.Flatten(), new nn.Linear(12, 3)).to('float64');
      m.to(DEVICE);
      m.eval();
      const x = randnOn([2, 3, 2, 2], 'float64');
      const a = E.deepLift(m, x, { target: [2, 0] });
      const ixg = E.inputXGradient(m, x, { target: [2, 0] });
      expect(maxAbsDiff(a, ixg)).to.be.below(TOL_ID);
      const base = kiln.full([1, 3, 2, 2], 0.5, { dtype: 'float64', device: DEVICE });
      const b = E.deepLift(m, x, { target: [2, 0], baselines: base });
      const scalar = E.deepLift(m, x, { target: [2, 0], baselines: 0.5 });
      const w = (m.at(1) as kiln.nn.Linear).weight;
      const expected = kiln.tidy(() => kiln.stack([x.select(0, 0).sub(0.5).flatten().mul(w.select(0, 2)), x.select(0, 1).sub(0.5).flatten().mul(w.select(0, 0))]).reshape(2, 3, 2, 2));
      expect(maxAbsDiff(b, expected)).to.be.below(TOL_ID);
      expect(maxAbsDiff(scalar, expected)).to.be.below(TOL_ID);
      for (const t of [x, a, ixg, base, b, scalar, expected]) t.dispose();
      m.dispose();
    });

    it("max pooling follows Captum's rule, worked by hand on two 2×2 windows", () => {
      // window 1: x = [[3, 0], [0, 1]], b = [[0, 2], [0, 0]] → max(o_x, o_b) = 3, A = 3 − 2 = 1 at x's argmax:
      //   multiplier A/Δin = 1/3 at (0, 0), attribution 1 (= Δout); gradient × Δin would give 3
      // window 2: x = [[1, 0], [0, 0]], b = [[0, 0], [0, 4]] → max = 4, B = 1 − 4 = −3 at b's argmax:
      //   multiplier −3/(0 − 4) at (1, 3), attribution −3 (= Δout); nothing at x's argmax (0, 2)
      const m = new nn.Sequential(new nn.MaxPool2d(2), new nn.Flatten()).to('float64');
      m.to(DEVICE);
      const x = kiln.tensor([[[[3, 0, 1, 0], [0, 1, 0, 0]]], [[[3, 0, 1, 0], [0, 1, 0, 0]]]], { dtype: 'float64', device: DEVICE });
      const base = kiln.tensor([[[[0, 2, 0, 0], [0, 0, 0, 4]]]], { dtype: 'float64', device: DEVICE });
      const r = E.deepLift(m, x, { target: [0, 1], baselines: base, returnConvergenceDelta: true });
      const want = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -3];
      if (ON_CPU) {
        expect(values(r.attributions).map((v) => v + 0)).to.deep.equal(want); // + 0: −0 → 0
        expect(values(r.delta).map((v) => v + 0)).to.deep.equal([0, 0]);
      } else {
        expectClose(r.attributions, want, 0, EXACT);
        expectClose(r.delta, [0, 0], 0, EXACT);
      }
      // a 3×3 pool with stride 1 (overlapping windows): the unpoolings add up, so the sum still holds
      const o = new nn.Sequential(new nn.MaxPool2d(3, { stride: 1, padding: 1 }), new nn.Flatten()).to('float64');
      o.to(DEVICE);
      kiln.manualSeed(6);
      const xs = randnOn([3, 2, 5, 5], 'float64'), bs = randnOn([3, 2, 5, 5], 'float64');
      const ro = E.deepLift(o, xs, { target: [0, 17, 49], baselines: bs, returnConvergenceDelta: true });
      values(ro.delta).forEach((d) => expect(Math.abs(d)).to.be.below(TOL_ID));
      for (const t of [x, base, r.attributions, r.delta, xs, bs, ro.attributions, ro.delta]) t.dispose();
    });

    it('deepLiftShap is the mean of deepLift over the baselines', () => {
      const m = reluCnn('float64');
      kiln.manualSeed(7);
      const x = randnOn([2, 3, 12, 12], 'float64');
      const dist = randnOn([3, 3, 12, 12], 'float64');
      const target = kiln.tensor([1, 3], { dtype: 'int64', device: DEVICE });
      const shap = E.deepLiftShap(m, x, { target, baselines: dist, returnConvergenceDelta: true });
      const each = [0, 1, 2].map((j) => kiln.tidy(() => E.deepLift(m, x, { target, baselines: dist.narrow(0, j, 1), returnConvergenceDelta: true })));
      const mean = kiln.tidy(() => each[0].attributions.add(each[1].attributions).add(each[2].attributions).div(3));
      expect(maxAbsDiff(shap.attributions, mean)).to.be.below(TOL_ID);
      // deltas image-major: (image 0, baseline 0..2), (image 1, baseline 0..2)
      const d = values(shap.delta);
      for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) expect(d[i * 3 + j]).to.be.closeTo(values(each[j].delta)[i], TOL_ID);
      for (const t of [x, dist, target, shap.attributions, shap.delta, mean, ...each.flatMap((e) => [e.attributions, e.delta])]) t.dispose();
      m.dispose();
    });
  });

  describe('with the noise tunnel', () => {
    it('deepLift is a noise-tunnel method: with stdevs 0 the SmoothGrad mean equals deepLift', () => {
      const m = reluCnn();
      kiln.manualSeed(10);
      const x = randnOn([2, 3, 12, 12]);
      const base = randOn([1, 3, 12, 12]);
      const dl = E.deepLift(m, x, { target: [1, 2], baselines: base });
      const nt = E.noiseTunnel(m, x, { target: [1, 2], method: E.deepLift, methodOptions: { baselines: base }, stdevs: 0, samples: 3 });
      expect(maxAbsDiff(nt, dl)).to.be.below(1e-6);
      for (const t of [x, base, dl, nt]) t.dispose();
      m.dispose();
    });
  });

  describe('side effects', () => {
    it("restores every module's mode and hooks (also after an error), leaves .grad alone and batch-norm statistics untouched", () => {
      const m = reluCnn();
      m.train();
      m.at(5).eval(); // mixed modes come back as they were
      const modes = () => m.namedModules().map(([, mod]) => mod.training);
      const before = modes();
      let userCalls = 0;
      const removeUser = m.at(2).registerForwardHook(() => { userCalls++; });
      const hooks = hookCounts(m);
      const bn = m.at(1) as kiln.nn.BatchNorm2d;
      const stats = [values(bn.runningMean!), values(bn.runningVar!), values(bn.numBatchesTracked!)];
      kiln.manualSeed(8);
      const x = randnOn([2, 3, 12, 12]);
      const a = E.deepLift(m, x, { target: 1 });
      expect(modes()).to.deep.equal(before);
      expect(hookCounts(m)).to.deep.equal(hooks);
      expect(userCalls, "the user's hook ran once, on the [inputs; baselines] batch").to.equal(1);
      expect([values(bn.runningMean!), values(bn.runningVar!), values(bn.numBatchesTracked!)]).to.deep.equal(stats);
      for (const p of m.parameters()) expect(p.grad).to.equal(null);
      // it ran in eval mode: the same as with the whole model in eval mode
      m.eval();
      const b = E.deepLift(m, x, { target: 1 });
      expect(maxAbsDiff(a, b)).to.be.at.most(EXACT);
      m.train();
      m.at(5).eval();
      // an error inside the hooked forward (a target out of range) restores modes and hooks and frees everything
      const live = kiln.memory().numTensors;
      expectKilnError(() => E.deepLift(m, x, { target: 9 }), 'INVALID_ARGUMENT', 'target class 9 is out of range', '4 classes');
      expect(kiln.memory().numTensors).to.equal(live);
      expect(modes()).to.deep.equal(before);
      expect(hookCounts(m)).to.deep.equal(hooks);
      removeUser();
      m.eval();
      expect(m.runsNatively, 'no hooks left: the native path is back').to.equal(true);
      for (const t of [x, a, b]) t.dispose();
      m.dispose();
    });

    it('leaks no tensors over repeated calls', () => {
      const m = reluCnn();
      kiln.manualSeed(9);
      const x = randnOn([2, 3, 12, 12]);
      const dist = randnOn([2, 3, 12, 12]);
      const start = kiln.memory().numTensors;
      for (let i = 0; i < 4; i++) {
        const a = E.deepLift(m, x, { target: [0, 2] });
        const r = E.deepLift(m, x, { target: 1, baselines: dist, returnConvergenceDelta: true });
        const s = E.deepLiftShap(m, x, { target: 3, baselines: dist, returnConvergenceDelta: true });
        expect(kiln.memory().numTensors - start).to.equal(5);
        for (const t of [a, r.attributions, r.delta, s.attributions, s.delta]) t.dispose();
        expect(kiln.memory().numTensors).to.equal(start);
      }
      for (const t of [x, dist]) t.dispose();
      m.dispose();
    });
  });

  describe('bad arguments and unsupported models', () => {
    it('each throws a clear KilnError, leaking nothing', () => {
      const m = reluCnn('float32');
      const x = randnOn([2, 3, 12, 12], 'float32');
      const wrong = kiln.zeros([2, 3, 12, 11]);
      const three = kiln.zeros([3, 3, 12, 12], { device: DEVICE });
      const one = kiln.zeros([1, 3, 12, 12]);
      const ints = kiln.randint(0, 3, [2, 3, 12, 12]);
      const gone = kiln.zeros([2, 3, 12, 12]);
      gone.dispose();
      const gelu = new nn.Sequential(new nn.Flatten(), new nn.Linear(432, 4), new nn.GELU(), new nn.Linear(4, 2));
      const silu = new nn.Sequential(new nn.Flatten(), new nn.SiLU(), new nn.Linear(432, 2));
      const hswish = new nn.Sequential(new nn.Flatten(), new nn.Linear(432, 4), new nn.Hardswish(), new nn.Linear(4, 2));
      const hsigmoid = new nn.Sequential(new nn.Flatten(), new nn.Hardsigmoid(), new nn.Linear(432, 2));
      const soft = new nn.Sequential(new nn.Flatten(), new nn.Linear(432, 2), new nn.Softmax(1));
      const r9 = kiln.models.resnet9({ numClasses: 2, inChannels: 3 });
      const air = kiln.models.airbench94({ numClasses: 2, widths: [4, 4, 4] });
      const before = kiln.memory().numTensors;
      expectKilnError(() => E.deepLift(m, x, { target: 0, baselines: wrong }), 'INVALID_ARGUMENT', 'baselines must be a number or a Tensor of shape [2, 3, 12, 12] or [1, 3, 12, 12], got [2, 3, 12, 11]');
      expectKilnError(() => E.deepLift(m, x, { target: 0, baselines: three }), 'INVALID_ARGUMENT', 'got [3, 3, 12, 12]');
      expectKilnError(() => E.deepLift(m, x, { target: 0, baselines: NaN }), 'INVALID_ARGUMENT', 'baselines');
      expectKilnError(() => E.deepLift(m, x, { target: 0, baselines: 'zero' as never }), 'INVALID_ARGUMENT', 'baselines', 'a Tensor');
      expectKilnError(() => E.deepLift(m, x, { target: 4 }), 'INVALID_ARGUMENT', 'target class 4 is out of range', '4 classes');
      expectKilnError(() => E.deepLift(m, x, { target: [0, -1] }), 'INVALID_ARGUMENT', 'target');
      expectKilnError(() => E.deepLift(m, x, undefined as never), 'INVALID_ARGUMENT', 'options');
      expectKilnError(() => E.deepLift(m, x, { target: 0, eps: -1 }), 'INVALID_ARGUMENT', 'eps');
      expectKilnError(() => E.deepLift(m, gone, { target: 0 }), 'DISPOSED', 'input: the tensor was disposed');
      expectKilnError(() => E.deepLift(m, x, { target: 0, baselines: gone }), 'DISPOSED', 'baselines: the tensor was disposed');
      expectKilnError(() => E.deepLift(m, ints, { target: 0 }), 'INVALID_ARGUMENT', 'floating-point');
      expectKilnError(() => E.deepLiftShap(m, x, { target: 0, baselines: one }), 'INVALID_ARGUMENT', 'distribution [B, 3, 12, 12] with B ≥ 2', 'use deepLift');
      expectKilnError(() => E.deepLiftShap(m, x, { target: 0, baselines: wrong }), 'INVALID_ARGUMENT', 'got [2, 3, 12, 11]');
      expectKilnError(() => E.deepLiftShap(m, x, { target: 0, baselines: 0 as never }), 'INVALID_ARGUMENT', 'baselines', 'B ≥ 2');
      expectKilnError(() => E.deepLiftShap(m, x, { target: 0, baselines: gone }), 'DISPOSED', 'baselines: the tensor was disposed');
      expectKilnError(() => E.deepLiftShap(m, x, { target: 5, baselines: three }), 'INVALID_ARGUMENT', 'target class 5 is out of range');
      // models DeepLift cannot treat as Captum's rules intend
      expectKilnError(() => E.deepLift({ call: (t: kiln.Tensor) => t } as never, x, { target: 0 }), 'INVALID_ARGUMENT', 'kiln.nn Module');
      expectKilnError(() => E.deepLift(gelu, x, { target: 0 }), 'INVALID_ARGUMENT', "module '2' is not supported: GELU has no DeepLift rule");
      expectKilnError(() => E.deepLiftShap(silu, x, { target: 0, baselines: three }), 'INVALID_ARGUMENT', "module '1' is not supported: SiLU");
      expectKilnError(() => E.deepLift(hswish, x, { target: 0 }), 'INVALID_ARGUMENT', "module '2' is not supported: Hardswish has no DeepLift rule");
      expectKilnError(() => E.deepLiftShap(hsigmoid, x, { target: 0, baselines: three }), 'INVALID_ARGUMENT', "module '1' is not supported: Hardsigmoid has no DeepLift rule");
      expectKilnError(() => E.deepLift(soft, x, { target: 0 }), 'INVALID_ARGUMENT', 'Softmax', 'explain the logits');
      expectKilnError(() => E.deepLift(r9, x, { target: 0 }), 'INVALID_ARGUMENT', "module 'pool' is not supported: AdaptiveMaxPool2d");
      expectKilnError(() => E.deepLift(air, x, { target: 0 }), 'INVALID_ARGUMENT', 'GELU');
      expect(kiln.memory().numTensors).to.equal(before);
      for (const t of [x, wrong, three, one, ints]) t.dispose();
      for (const mod of [m, gelu, silu, hswish, hsigmoid, soft, r9, air]) mod.dispose();
    });
  });

  describe('kiln explain --method deeplift', () => {
    let dir: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-deeplift-'));
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('writes one overlay PNG per image against a zero baseline, leaking nothing', async () => {
      kiln.manualSeed(41);
      const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 4 });
      kiln.saveModel(path.join(dir, 'model', 'model.safetensors'), m, {
        classNames: JSON.stringify(['a', 'b', 'c']), inputSize: JSON.stringify([16, 16]), channels: '3',
        mean: JSON.stringify([0.5, 0.5, 0.5]), std: JSON.stringify([0.25, 0.25, 0.25]),
      });
      m.dispose();
      const image = path.join(dir, 'red.png');
      await sharp({ create: { width: 20, height: 16, channels: 3, background: { r: 220, g: 30, b: 30 } } })
        .composite([{ input: Buffer.from('<svg width="20" height="16"><circle cx="10" cy="8" r="5" fill="white"/></svg>') }]).png().toFile(image);
      const out = path.join(dir, 'out');
      const { flags, positional } = parseArgs(['--model', path.join(dir, 'model'), '--method', 'deeplift', '--out', out, '--size', '48', image], EXPLAIN_FLAGS, 'explain');
      const lines: string[] = [];
      const before = kiln.memory().numTensors;
      expect(await explainCommand(flags, positional, (s) => lines.push(s))).to.equal(0);
      expect(kiln.memory().numTensors).to.equal(before);
      expect(lines).to.have.length(1);
      expect(lines[0]).to.match(/red\.png: predicted [abc] \(\d+\.\d%\) · deeplift for [abc]/);
      const meta = await sharp(path.join(out, 'red.deeplift.png')).metadata();
      expect([meta.width, meta.height]).to.deep.equal([48, 48]); // the model's 16×16 input, scaled to --size
    });
  });
});
