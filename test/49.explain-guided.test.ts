/**
 * kiln.explain.guidedBackprop / deconvolution / guidedGradCam and the native ops under them
 * (nn.functional.guidedRelu / deconvRelu): their backward on chosen inputs and gradients and by
 * finite differences where the rule is a true gradient, agreement with a plain-PyTorch transcription of
 * Captum's methods using real backward hooks (scripts/make-guided-fixtures.py → test/fixtures/guided.json)
 * on a small CNN and on resnet18, exact identities (no ReLU: the plain gradient; one ReLU layer by hand),
 * modes/hooks/grads left alone, bad arguments, no leaks. Runs on KILN_TEST_DEVICE (default 'cpu';
 * 'cuda' on the GPU machine, where the native backward runs as CUDA kernels): float64 on every device;
 * on CUDA the fixtures hold to TOL_SMALL / TOL_RESNET and identities to EXACT (cuDNN sums in another order).
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectKilnError, maxAbsDiff, values, DEVICE, ON_CPU, skipWithoutDevice, expectNoFileLeaks, fixture64 as fromFix, ShapedValues as Shaped } from './helpers';

const E = kiln.explain;
const { nn } = kiln;
const F = kiln.nn.functional;
const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'guided.json'), 'utf8'));

/** Relative agreement with the fixtures: the small CNN, resnet18; identities that hold bit for bit on the CPU. */
const TOL_SMALL = ON_CPU ? 1e-12 : 1e-10, TOL_RESNET = ON_CPU ? 1e-9 : 1e-8, EXACT = ON_CPU ? 0 : 1e-12;

/** max |a − ref| / max |ref| after checking the shapes. */
function relErr(a: kiln.Tensor, ref: Shaped): number {
  expect(a.shape).to.deep.equal(ref.shape);
  const r = fromFix(ref);
  const scale = Math.max(...ref.values.map(Math.abs));
  const d = maxAbsDiff(a, r) / scale;
  r.dispose();
  return d;
}

/** The fixture's small CNN in float64 (conv, BN, ReLU, pool, conv, ReLU, linear, LeakyReLU, linear). */
function smallCnn(): kiln.nn.Sequential {
  const m = new nn.Sequential(
    new nn.Conv2d(2, 4, 3, { padding: 1 }), new nn.BatchNorm2d(4), new nn.ReLU(), new nn.MaxPool2d(2),
    new nn.Conv2d(4, 6, 3, { padding: 1 }), new nn.ReLU(),
    new nn.Flatten(), new nn.Linear(96, 12), new nn.LeakyReLU(0.1), new nn.Linear(12, 5),
  ).to('float64');
  const own = m.stateDict();
  kiln.noGrad(() => {
    for (const [k, v] of Object.entries(FIX.small.weights as Record<string, Shaped>)) kiln.tidy(() => { own.get(k)!.copy_(fromFix(v)); });
  });
  m.to(DEVICE);
  return m.eval();
}

/** The zoo's resnet18 in float64 with the fixture's weights: shift + scale · (frac(43758.5453 · sin(12.9898 · i + phase)) − ½). */
function resnet18(): kiln.nn.Module {
  const m = kiln.models.resnet18({ numClasses: 10 }).to('float64');
  const own = m.stateDict();
  const formula = FIX.resnet18.formula as Record<string, [number, number, number]>;
  expect(Object.keys(formula).sort()).to.deep.equal([...own.keys()].filter((k) => !k.endsWith('num_batches_tracked')).sort());
  kiln.noGrad(() => {
    for (const [k, [shift, scale, phase]] of Object.entries(formula)) {
      const dst = own.get(k)!;
      kiln.tidy(() => {
        const t = kiln.arange(0, dst.numel, 1, { dtype: 'float64' }).mul(12.9898).add(phase).sin().mul(43758.5453);
        dst.copy_(t.sub(t.floor()).sub(0.5).mul(scale).add(shift).reshape(dst.shape));
      });
    }
  });
  m.to(DEVICE);
  return m.eval();
}

/** Number of forward hooks set on each module of `m`. */
const hookCounts = (m: kiln.nn.Module) => m.namedModules().map(([, mod]) => (mod as unknown as { _hooks: unknown[] })._hooks.length);

/** The vector-Jacobian product of `op` at `x` for the output gradient `g`. */
function vjp(op: (t: kiln.Tensor) => kiln.Tensor, x: kiln.Tensor, g: kiln.Tensor): kiln.Tensor {
  return kiln.tidy(() => kiln.enableGrad(() => {
    const xi = x.detach().requiresGrad_(true);
    return kiln.autograd.grad(op(xi), xi, { gradOutputs: g })[0]!;
  }));
}

describe(`49 Guided Backprop, Deconvolution and Guided Grad-CAM (${DEVICE})`, function () {
  this.timeout(120000);
  before(skipWithoutDevice);
  expectNoFileLeaks(false);

  describe('nn.functional.guidedRelu / deconvRelu (native autograd functions)', () => {
    it('forward is relu; backward follows each rule for every sign of x (incl. 0) and of the incoming gradient', () => {
      // x: < 0, < 0, = 0, = 0, > 0, > 0, > 0 against g: +, −, +, −, +, −, 0
      const x = kiln.tensor([-1.5, -1.5, 0, 0, 2, 2, 0.5], { device: DEVICE });
      const g = kiln.tensor([0.7, -0.7, 0.3, -0.3, 1.25, -1.25, 0], { device: DEVICE });
      for (const op of [F.guidedRelu, F.deconvRelu]) {
        const y = op(x), r = x.relu();
        expect(values(y)).to.deep.equal(values(r));
        expect(y.dtype).to.equal('float32');
        expect(y.device.startsWith(DEVICE)).to.equal(true);
        y.dispose();
        r.dispose();
      }
      const gb = vjp(F.guidedRelu, x, g), dc = vjp(F.deconvRelu, x, g), plain = vjp((t) => t.relu(), x, g);
      // guided: relu(g)·1[x > 0]; deconv: relu(g); the ordinary relu gradient: g·1[x > 0]
      expect(values(gb)).to.deep.equal([0, 0, 0, 0, 1.25, 0, 0].map((v) => Math.fround(v)));
      expect(values(dc)).to.deep.equal([0.7, 0, 0.3, 0, 1.25, 0, 0].map((v) => Math.fround(v)));
      expect(values(plain)).to.deep.equal([0, 0, 0, 0, 1.25, -1.25, 0].map((v) => Math.fround(v)));
      // a float64 [2, 3, 2] tensor keeps its dtype, shape and the rule elementwise
      const x3 = kiln.tensor([[[1, -1], [0, 2]], [[-3, 4], [0.5, -0.5]], [[6, 0], [-7, 8]]], { dtype: 'float64', device: DEVICE }).reshape([2, 3, 2]);
      const g3 = kiln.tensor([-1, 2, 3, -4, 5, 6, -7, 8, 9, 10, -11, 12], { dtype: 'float64', device: DEVICE }).reshape([2, 3, 2]);
      const gb3 = vjp(F.guidedRelu, x3, g3), dc3 = vjp(F.deconvRelu, x3, g3);
      expect([gb3.dtype, gb3.shape]).to.deep.equal(['float64', [2, 3, 2]]);
      expect(values(gb3)).to.deep.equal([0, 0, 0, 0, 0, 6, 0, 0, 9, 0, 0, 12]);
      expect(values(dc3)).to.deep.equal([0, 2, 3, 0, 5, 6, 0, 8, 9, 10, 0, 12]);
      // no gradient recorded for an input that does not require one
      const y = F.guidedRelu(x);
      expect(y.requiresGrad).to.equal(false);
      for (const t of [x, g, gb, dc, plain, x3, g3, gb3, dc3, y]) t.dispose();
    });

    it('where the rule is a true gradient (g ≥ 0), it matches central finite differences, also through a linear map', () => {
      kiln.manualSeed(49);
      // |pre-activations| ≥ 0.1 so a step of 1e-6 never crosses the kink
      const sign = kiln.randn([64], { dtype: 'float64', device: DEVICE }).sign();
      const x = kiln.rand([64], { dtype: 'float64', device: DEVICE }).add(0.1).mul(sign);
      const g = kiln.rand([64], { dtype: 'float64', device: DEVICE });
      const h = 1e-6;
      // relu is elementwise: perturbing every element at once gives each one's derivative
      const numeric = kiln.tidy(() => x.add(h).relu().sub(x.sub(h).relu()).div(2 * h).mul(g));
      const gb = vjp(F.guidedRelu, x, g), dc = vjp(F.deconvRelu, x, g);
      expect(maxAbsDiff(gb, numeric)).to.be.below(1e-8);
      // deconvolution passes g where x < 0 too: equal to the numeric gradient only where x > 0
      const pos = kiln.tidy(() => x.gt(0).to({ dtype: 'float64' }));
      const dcPos = kiln.tidy(() => dc.mul(pos)), dcNeg = kiln.tidy(() => dc.sub(dcPos)), gNeg = kiln.tidy(() => g.mul(pos.neg().add(1)));
      expect(maxAbsDiff(dcPos, numeric)).to.be.below(1e-8);
      expect(maxAbsDiff(dcNeg, gNeg)).to.equal(0);
      // sum(g · guidedRelu(A v)) w.r.t. v, by central differences along each coordinate
      const A = kiln.randn([16, 5], { dtype: 'float64', device: DEVICE });
      const v = kiln.randn([5], { dtype: 'float64', device: DEVICE });
      const g16 = kiln.rand([16], { dtype: 'float64', device: DEVICE });
      const f = (t: kiln.Tensor) => kiln.tidy(() => kiln.noGrad(() => A.matmul(t).relu().mul(g16).sum().item()));
      const fd = [0, 1, 2, 3, 4].map((i) => kiln.tidy(() => {
        const ei = kiln.tensor([0, 1, 2, 3, 4].map((j) => (j === i ? h : 0)), { dtype: 'float64', device: DEVICE });
        return (f(v.add(ei)) - f(v.sub(ei))) / (2 * h);
      }));
      const chain = kiln.tidy(() => kiln.enableGrad(() => {
        const vi = v.detach().requiresGrad_(true);
        return kiln.autograd.grad(F.guidedRelu(A.matmul(vi)).mul(g16).sum(), vi)[0]!;
      }));
      values(chain).forEach((c, i) => expect(c).to.be.closeTo(fd[i], 1e-7));
      for (const t of [sign, x, g, numeric, gb, dc, pos, dcPos, dcNeg, gNeg, A, v, g16, chain]) t.dispose();
    });

    it('bad inputs throw a clear KilnError', () => {
      const gone = kiln.zeros([3]);
      gone.dispose();
      expectKilnError(() => F.guidedRelu(gone), 'DISPOSED', 'input: the tensor was disposed');
      expectKilnError(() => F.deconvRelu(gone), 'DISPOSED', 'input: the tensor was disposed');
      expectKilnError(() => F.guidedRelu([1, -1] as never), 'INVALID_ARGUMENT', 'input');
      expectKilnError(() => F.deconvRelu(undefined as never), 'INVALID_ARGUMENT', 'input');
    });
  });

  describe("agreement with Captum's GuidedBackprop / Deconvolution / GuidedGradCam (plain PyTorch, backward hooks)", () => {
    it('small CNN (BN, max pool, a LeakyReLU left alone): all three methods and the plain gradient match to 1e-12', () => {
      const m = smallCnn();
      const c = FIX.small;
      const x = fromFix(c.x);
      const gb = E.guidedBackprop(m, x, { target: c.target });
      const dc = E.deconvolution(m, x, { target: c.target });
      const plain = E.saliency(m, x, { target: c.target, abs: false });
      expect(relErr(gb, c.guidedBackprop)).to.be.below(TOL_SMALL);
      expect(relErr(dc, c.deconvolution)).to.be.below(TOL_SMALL);
      expect(relErr(plain, c.gradient)).to.be.below(TOL_SMALL);
      // and the rules do change something here
      expect(maxAbsDiff(gb, plain)).to.be.above(1e-3);
      expect(maxAbsDiff(dc, plain)).to.be.above(1e-3);
      const cases = Object.entries(c.guidedGradCam as Record<string, Shaped>);
      expect(cases.map(([k]) => k)).to.deep.equal(['4:nearest', '4:bilinear', '5:bicubic', '1:area']);
      for (const [key, ref] of cases) {
        const [layer, mode] = key.split(':');
        // the layer by name, or as the module itself
        const a = E.guidedGradCam(m, x, { target: c.target, layer: layer === '5' ? m.get('5') : layer, interpolateMode: mode as 'nearest' });
        expect(relErr(a, ref), key).to.be.below(TOL_SMALL);
        a.dispose();
      }
      for (const t of [x, gb, dc, plain]) t.dispose();
      m.dispose();
    });

    it("resnet18 at 32×32 (BasicBlock's relu module called twice): logits, all three methods and the gradient match to 1e-9", () => {
      const m = resnet18();
      const c = FIX.resnet18;
      const x = fromFix(c.x);
      const logits = kiln.tidy(() => kiln.noGrad(() => m.call(x)));
      expect(relErr(logits, c.logits), 'the same network').to.be.below(TOL_RESNET);
      const gb = E.guidedBackprop(m, x, { target: c.target });
      const dc = E.deconvolution(m, x, { target: c.target });
      const target = kiln.tensor(c.target, { dtype: 'int64' }); // a tensor target, as a check of that path
      const plain = E.saliency(m, x, { target, abs: false });
      expect(relErr(plain, c.gradient)).to.be.below(TOL_RESNET);
      expect(relErr(gb, c.guidedBackprop)).to.be.below(TOL_RESNET);
      expect(relErr(dc, c.deconvolution)).to.be.below(TOL_RESNET);
      expect(maxAbsDiff(gb, plain)).to.be.above(1e-2);
      expect(maxAbsDiff(dc, plain)).to.be.above(1e-2);
      for (const [key, ref] of Object.entries(c.guidedGradCam as Record<string, Shaped>)) {
        const [layer, mode] = key.split(':');
        const a = E.guidedGradCam(m, x, { target: c.target, layer, interpolateMode: mode as 'nearest' });
        expect(relErr(a, ref), key).to.be.below(TOL_RESNET);
        a.dispose();
      }
      for (const t of [x, logits, target, gb, dc, plain]) t.dispose();
      m.dispose();
    });
  });

  describe('exact identities', () => {
    it('without ReLU modules, guided backprop = deconvolution = the signed gradient, bit for bit', () => {
      kiln.manualSeed(3);
      const m = new nn.Sequential(
        new nn.Conv2d(3, 4, 3, { padding: 1 }), new nn.Tanh(), new nn.AvgPool2d(2), new nn.Conv2d(4, 4, 3), new nn.LeakyReLU(0.2),
        new nn.Flatten(), new nn.Linear(16, 3),
      ).to('float64').eval();
      m.to(DEVICE);
      const x = kiln.randn([2, 3, 8, 8], { dtype: 'float64', device: DEVICE });
      const g = E.saliency(m, x, { target: [2, 0], abs: false });
      const gb = E.guidedBackprop(m, x, { target: [2, 0] });
      const dc = E.deconvolution(m, x, { target: [2, 0] });
      expect(maxAbsDiff(gb, g)).to.be.at.most(EXACT);
      expect(maxAbsDiff(dc, g)).to.be.at.most(EXACT);
      for (const t of [x, g, gb, dc]) t.dispose();
      m.dispose();
    });

    it('one ReLU layer, worked by hand (a pre-activation exactly 0, gradients of both signs)', () => {
      // z = W1·x + b1, logits = W2·relu(z); for target c the ReLU's output gradient is g = W2[c]
      const m = new nn.Sequential(new nn.Linear(3, 4), new nn.ReLU(), new nn.Linear(4, 2, { bias: false })).to('float64');
      const l1 = m.at(0) as kiln.nn.Linear, l2 = m.at(2) as kiln.nn.Linear;
      kiln.noGrad(() => kiln.tidy(() => {
        l1.weight.copy_(kiln.tensor([[1, 0, -1], [2, 1, 0], [0, -1, 1], [1, 1, 1]], { dtype: 'float64' }));
        l1.bias!.copy_(kiln.tensor([0, -1, 0.5, -3], { dtype: 'float64' }));
        l2.weight.copy_(kiln.tensor([[2, -1, 3, 0.5], [-1, 1, 1, -2]], { dtype: 'float64' }));
      }));
      m.to(DEVICE);
      const x = kiln.tensor([[1, 2, 1], [0, 0, 0]], { dtype: 'float64', device: DEVICE });
      // image 0, target 0: z = [0, 3, −0.5, 1], 1[z > 0] = [0, 1, 0, 1], g = [2, −1, 3, 0.5]
      //   guided:  relu(g)·1[z > 0] = [0, 0, 0, 0.5]  → W1ᵀ· = [0.5, 0.5, 0.5]
      //   deconv:  relu(g) = [2, 0, 3, 0.5]           → [2 + 0.5, −3 + 0.5, −2 + 3 + 0.5] = [2.5, −2.5, 1.5]
      //   plain:   g·1[z > 0] = [0, −1, 0, 0.5]       → [−2 + 0.5, −1 + 0.5, 0.5] = [−1.5, −0.5, 0.5]
      // image 1, target 1: z = b1 = [0, −1, 0.5, −3], 1[z > 0] = [0, 0, 1, 0], g = [−1, 1, 1, −2]
      //   guided: [0, 0, 1, 0] → [0, −1, 1]; deconv: [0, 1, 1, 0] → [2, 0, 1]; plain: [0, 0, 1, 0] → [0, −1, 1]
      const o = { target: [0, 1] };
      const gb = E.guidedBackprop(m, x, o), dc = E.deconvolution(m, x, o), plain = E.saliency(m, x, { ...o, abs: false });
      const clean = (t: kiln.Tensor) => values(t).map((v) => v + 0); // −0 → 0
      expect(clean(gb)).to.deep.equal([0.5, 0.5, 0.5, 0, -1, 1]);
      expect(clean(dc)).to.deep.equal([2.5, -2.5, 1.5, 2, 0, 1]);
      expect(clean(plain)).to.deep.equal([-1.5, -0.5, 0.5, 0, -1, 1]);
      for (const t of [x, gb, dc, plain]) t.dispose();
      m.dispose();
    });

    it('guidedGradCam = guidedBackprop × the upsampled ReLU Grad-CAM map; at the input resolution with nearest, no resizing', () => {
      const m = smallCnn();
      const x = fromFix(FIX.small.x);
      const t = [1, 2, 0];
      const ggc = E.guidedGradCam(m, x, { target: t, layer: '4', interpolateMode: 'bilinear' });
      const expected = kiln.tidy(() => {
        const cam = E.layerGradCam(m, x, { target: t, layer: '4', relu: true });
        expect(cam.shape).to.deep.equal([3, 1, 4, 4]);
        return E.guidedBackprop(m, x, { target: t }).mul(F.interpolate(cam, { size: [8, 8], mode: 'bilinear', alignCorners: false }));
      });
      expect(maxAbsDiff(ggc, expected)).to.be.at.most(EXACT);
      // layer '2' (the first ReLU, 8×8 like the input): no interpolation, the map multiplies directly
      const full = E.guidedGradCam(m, x, { target: t, layer: '2' });
      const direct = kiln.tidy(() => E.guidedBackprop(m, x, { target: t }).mul(E.layerGradCam(m, x, { target: t, layer: '2', relu: true })));
      expect(maxAbsDiff(full, direct)).to.be.at.most(EXACT);
      // the default layer is defaultCamLayer's
      const dflt = E.guidedGradCam(m, x, { target: t });
      const named = E.guidedGradCam(m, x, { target: t, layer: E.defaultCamLayer(m, x) });
      expect(maxAbsDiff(dflt, named)).to.be.at.most(EXACT);
      for (const a of [x, ggc, expected, full, direct, dflt, named]) a.dispose();
      m.dispose();
    });

    it('guidedBackprop is a noise-tunnel method: with stdevs 0 the SmoothGrad mean equals it', () => {
      const m = smallCnn();
      const x = fromFix(FIX.small.x);
      const gb = E.guidedBackprop(m, x, { target: 1 });
      const nt = E.noiseTunnel(m, x, { target: 1, method: E.guidedBackprop, stdevs: 0, samples: 3 });
      expect(maxAbsDiff(nt, gb)).to.be.below(TOL_SMALL);
      for (const t of [x, gb, nt]) t.dispose();
      m.dispose();
    });

    it('the noise comes from the CPU generator: one seed gives the same SmoothGrad on this device as on the CPU', () => {
      const m = smallCnn();
      const x = fromFix(FIX.small.x);
      const run = (mod: kiln.nn.Module, input: kiln.Tensor) => {
        kiln.manualSeed(11);
        return kiln.tidy(() => E.noiseTunnel(mod, input, { target: 1, method: E.guidedBackprop, stdevs: 0.3, samples: 4 }).cpu());
      };
      const here = run(m, x);
      const again = run(m, x);
      expect(maxAbsDiff(here, again), 'seeded runs repeat').to.be.at.most(EXACT);
      const mc = smallCnn().to('cpu'); // the same fixture weights
      const xc = x.cpu();
      const onCpu = run(mc, xc);
      expect(maxAbsDiff(here, onCpu)).to.be.below(TOL_SMALL);
      for (const t of [x, xc, here, again, onCpu]) t.dispose();
      m.dispose();
      mc.dispose();
    });
  });

  describe('side effects', () => {
    it("leaves every module's mode, the hooks and .grad alone (also after an error)", () => {
      const m = smallCnn();
      m.train();
      m.at(1).eval(); // mixed modes stay as they were
      const modes = () => m.namedModules().map(([, mod]) => mod.training);
      const before = modes();
      let userCalls = 0;
      const removeUser = m.at(2).registerForwardHook(() => { userCalls++; });
      const hooks = hookCounts(m);
      const x = fromFix(FIX.small.x);
      const outs = [E.guidedBackprop(m, x, { target: 1 }), E.deconvolution(m, x, { target: 1 }), E.guidedGradCam(m, x, { target: 1, layer: '4' })];
      expect(modes()).to.deep.equal(before);
      expect(hookCounts(m)).to.deep.equal(hooks);
      expect(userCalls, "the user's hook ran on each forward (guidedGradCam: Grad-CAM's and guided backprop's)").to.equal(4);
      for (const p of m.parameters()) expect(p.grad).to.equal(null);
      const live = kiln.memory().numTensors;
      expectKilnError(() => E.guidedBackprop(m, x, { target: 7 }), 'INVALID_ARGUMENT', 'target class 7 is out of range', '5 classes');
      expectKilnError(() => E.deconvolution(m, x, { target: 5 }), 'INVALID_ARGUMENT', 'target class 5 is out of range');
      expectKilnError(() => E.guidedGradCam(m, x, { target: 9, layer: '4' }), 'INVALID_ARGUMENT', 'target class 9 is out of range');
      expect(kiln.memory().numTensors).to.equal(live);
      expect(modes()).to.deep.equal(before);
      expect(hookCounts(m)).to.deep.equal(hooks);
      removeUser();
      m.eval();
      expect(m.runsNatively, 'no hooks left: the native path is back').to.equal(true);
      for (const t of [x, ...outs]) t.dispose();
      m.dispose();
    });

    it('leaks no tensors over repeated calls', () => {
      const m = smallCnn();
      const x = fromFix(FIX.small.x);
      const target = kiln.tensor([4, 0, 2], { dtype: 'int64', device: DEVICE });
      const start = kiln.memory().numTensors;
      for (let i = 0; i < 4; i++) {
        const outs = [E.guidedBackprop(m, x, { target }), E.deconvolution(m, x, { target: 3 }), E.guidedGradCam(m, x, { target, layer: '5', interpolateMode: 'bilinear' }), E.guidedGradCam(m, x, { target: 2 })];
        expect(kiln.memory().numTensors - start).to.equal(4);
        for (const t of outs) t.dispose();
        expect(kiln.memory().numTensors).to.equal(start);
      }
      for (const t of [x, target]) t.dispose();
      m.dispose();
    });
  });

  describe('bad arguments', () => {
    it('each throws a clear KilnError, leaking nothing', () => {
      const m = smallCnn();
      const x = fromFix(FIX.small.x);
      const flat = kiln.zeros([3, 128], { dtype: 'float64' });
      const ints = kiln.randint(0, 3, [3, 2, 8, 8]);
      const vec = kiln.zeros([128], { dtype: 'float64' });
      const gone = kiln.zeros([3, 2, 8, 8], { dtype: 'float64' });
      gone.dispose();
      const lin = new nn.Sequential(new nn.Flatten(), new nn.Linear(128, 5)).to('float64');
      const stranger = new nn.Conv2d(2, 2, 1);
      const before = kiln.memory().numTensors;
      for (const [fn, name] of [[E.guidedBackprop, 'guidedBackprop'], [E.deconvolution, 'deconvolution']] as const) {
        expectKilnError(() => fn({ call: (t: kiln.Tensor) => t } as never, x, { target: 0 }), 'INVALID_ARGUMENT', `${name}: model`, 'kiln.nn Module');
        expectKilnError(() => fn(m, gone, { target: 0 }), 'DISPOSED', 'input: the tensor was disposed');
        expectKilnError(() => fn(m, ints, { target: 0 }), 'INVALID_ARGUMENT', `${name}: input must be floating-point`);
        expectKilnError(() => fn(m, vec, { target: 0 }), 'INVALID_ARGUMENT', `${name}: input must be a batch`);
        expectKilnError(() => fn(m, x, undefined as never), 'INVALID_ARGUMENT', `${name}: options`);
        expectKilnError(() => fn(m, x, {} as never), 'INVALID_ARGUMENT', `${name}: target`);
        expectKilnError(() => fn(m, x, { target: [0, 1] }), 'INVALID_ARGUMENT', 'target', '3 class indices');
        expectKilnError(() => fn(m, x, { target: -1 }), 'INVALID_ARGUMENT', 'target');
      }
      const G = E.guidedGradCam;
      expectKilnError(() => G({ call: (t: kiln.Tensor) => t } as never, x, { target: 0 }), 'INVALID_ARGUMENT', 'guidedGradCam: model', 'kiln.nn Module');
      expectKilnError(() => G(m, gone, { target: 0, layer: '4' }), 'DISPOSED', 'input: the tensor was disposed');
      expectKilnError(() => G(m, x, { target: 0, layer: '4', interpolateMode: 'linear' as never }), 'INVALID_ARGUMENT', 'interpolateMode', "'nearest', 'bilinear', 'bicubic' or 'area'");
      expectKilnError(() => G(lin, flat, { target: 0, layer: '1' }), 'INVALID_ARGUMENT', 'guidedGradCam: input must be images [N, C, H, W], got shape [3, 128]');
      expectKilnError(() => G(m, x, { target: 0, layer: 'features.9' }), 'INVALID_ARGUMENT', "guidedGradCam: layer: no submodule 'features.9'");
      expectKilnError(() => G(m, x, { target: 0, layer: stranger }), 'INVALID_ARGUMENT', 'guidedGradCam: layer is not a submodule of the model');
      expectKilnError(() => G(m, x, { target: 0, layer: 7 as never }), 'INVALID_ARGUMENT', 'guidedGradCam: layer');
      expectKilnError(() => G(m, x, { target: 0, layer: '7' }), 'INVALID_ARGUMENT', "guidedGradCam: layer '7' must output [N, K, h, w] feature maps, got shape [3, 12]");
      expectKilnError(() => G(m, x, undefined as never), 'INVALID_ARGUMENT', 'guidedGradCam: options');
      expectKilnError(() => G(m, x, { layer: '4' } as never), 'INVALID_ARGUMENT', 'guidedGradCam: target');
      expect(kiln.memory().numTensors).to.equal(before);
      for (const t of [x, flat, ints, vec]) t.dispose();
      for (const mod of [m, lin, stranger]) mod.dispose();
    });
  });
});
