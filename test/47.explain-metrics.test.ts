/**
 * kiln.explain: GradientShap and Captum's explanation metrics (infidelity, max-sensitivity).
 * Exact identities on linear models (delta 0 per draw, IG with one baseline, infidelity 0 for the
 * exact local attribution, sensitivity 0 for constant saliency), expectations computed here from
 * the recorded draws, and a nonlinear CNN against plain-PyTorch transcriptions fed the same draws
 * (scripts/make-explain-metrics-fixtures.py → test/fixtures/explain-metrics.json). Runs on
 * KILN_TEST_DEVICE (default 'cpu'; 'cuda' on the GPU machine). Every random draw comes from the CPU
 * generator, so a seeded run draws the same numbers on both devices. On CUDA the float64 identities
 * hold to TOL_ID, and the fixture CNN (float32 on the CPU) runs in float64 (CASE_DTYPE): float32
 * convolutions there are TF32 (~1e-3 relative), which infidelity and max-sensitivity, differences of
 * nearby outputs, would amplify past any tolerance that still tests them; the fixture's float32
 * numbers are exact in float64 and meet the CPU's tolerances there.
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectClose, expectKilnError, maxAbsDiff, values, DEVICE, ON_CPU, skipWithoutDevice, expectNoFileLeaks } from './helpers';

const E = kiln.explain;
const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'explain-metrics.json'), 'utf8'));

type Enc = { shape: number[]; data: number[] };
/** The fixture CNN's dtype: float32 on the CPU, float64 on CUDA (TF32 convolutions; see above). */
const CASE_DTYPE: kiln.DType = ON_CPU ? 'float32' : 'float64';
/** Identities of float64 linear models (1e-12 on the CPU), and what holds bit for bit on the CPU. */
const TOL_ID = ON_CPU ? 1e-12 : 1e-10, EXACT = ON_CPU ? 0 : 1e-12;
const fromFix = (f: Enc, device: kiln.Device = DEVICE): kiln.Tensor => kiln.tensor(f.data, { shape: f.shape, dtype: CASE_DTYPE, device });
/** Seeded repeats: identical on the CPU; on CUDA within EXACT (cuDNN's backward may sum in another order). */
function expectRepeat(got: number[], first: number[]): void {
  if (ON_CPU) expect(got).to.deep.equal(first);
  else expectClose(got, first, 0, EXACT);
}

/** The fixture's CNN (conv → tanh → adaptive pool → linear) with its weights, in eval mode. */
function fixtureModel(): kiln.nn.Sequential {
  const m = new kiln.nn.Sequential(new kiln.nn.Conv2d(2, 3, 3, { padding: 1 }), new kiln.nn.Tanh(), new kiln.nn.AdaptiveAvgPool2d(2), new kiln.nn.Flatten(), new kiln.nn.Linear(12, 3));
  const state: Record<string, kiln.Tensor> = {};
  for (const [k, v] of Object.entries(FIX.model as Record<string, Enc>)) state[k] = fromFix(v, 'cpu');
  m.to(CASE_DTYPE);
  m.loadStateDict(state);
  for (const t of Object.values(state)) t.dispose();
  m.to(DEVICE);
  return m.eval();
}

function linearModel(inF: number, classes: number): kiln.nn.Sequential {
  const m = new kiln.nn.Sequential(new kiln.nn.Flatten(), new kiln.nn.Linear(inF, classes)).to('float64');
  m.to(DEVICE);
  return m.eval();
}

/** Row `cls` of the linear model's weight, as a JS array. */
function weightRow(m: kiln.nn.Sequential, cls: number): number[] {
  const w = (m.at(1) as kiln.nn.Linear).weight;
  return kiln.tidy(() => values(w.select(0, cls)));
}

/** Standard normal float64 draws from the CPU generator, on DEVICE. */
const randn64 = (shape: number[]): kiln.Tensor => kiln.tidy(() => kiln.randn(shape, { dtype: 'float64' }).to(DEVICE));
/** Uniform [0, 1) float64 draws from the CPU generator, on DEVICE. */
const rand64 = (shape: number[]): kiln.Tensor => kiln.tidy(() => kiln.rand(shape, { dtype: 'float64' }).to(DEVICE));

/** Rows of a [M, …] tensor as JS arrays. */
function rows(t: kiln.Tensor): number[][] {
  const v = values(t);
  const p = v.length / t.size(0);
  return Array.from({ length: t.size(0) }, (_, i) => v.slice(i * p, (i + 1) * p));
}

const dot = (a: number[], b: number[]): number => a.reduce((s, v, i) => s + v * b[i], 0);

describe(`47 GradientShap and explanation metrics (${DEVICE})`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);
  expectNoFileLeaks(true);

  describe('gradientShap', () => {
    it('on a linear model: delta is 0 for every draw, and one draw equals (x − b)⊙w for one of the baselines', () => {
      kiln.manualSeed(2);
      const m = linearModel(12, 3);
      const x = randn64([2, 3, 2, 2]);
      const bases = randn64([4, 3, 2, 2]);
      const r = E.gradientShap(m, x, { target: [1, 2], baselines: bases, samples: 7, stdevs: 0.4, returnConvergenceDelta: true });
      expect(r.attributions.shape).to.deep.equal([2, 3, 2, 2]);
      expect(r.delta!.shape).to.deep.equal([14]);
      expect(Math.max(...values(r.delta!).map(Math.abs))).to.be.below(TOL_ID);
      // one draw without noise: the attribution is (x_i − b_j)⊙w_target for some baseline j
      const one = E.gradientShap(m, x, { target: [1, 2], baselines: bases, samples: 1 });
      const xs = rows(x), bs = rows(bases), got = rows(one.attributions);
      [1, 2].forEach((cls, i) => {
        const w = weightRow(m, cls);
        const errs = bs.map((b) => Math.max(...w.map((wk, k) => Math.abs((xs[i][k] - b[k]) * wk - got[i][k]))));
        expect(Math.min(...errs), `image ${i}`).to.be.below(TOL_ID);
      });
      for (const t of [x, bases, r.attributions, r.delta!, one.attributions]) t.dispose();
      m.dispose();
    });

    it('on a linear model its mean tends to (x − E[baseline])⊙w, with and without input noise (within 5 standard errors)', () => {
      kiln.manualSeed(3);
      const m = linearModel(8, 2);
      const x = randn64([2, 2, 2, 2]);
      const bases = rand64([5, 2, 2, 2]);
      const S = 4000;
      const xs = rows(x), bs = rows(bases);
      const P = xs[0].length;
      const mean = Array.from({ length: P }, (_, k) => bs.reduce((s, b) => s + b[k], 0) / bs.length);
      const sd = Array.from({ length: P }, (_, k) => Math.sqrt(bs.reduce((s, b) => s + (b[k] - mean[k]) ** 2, 0) / bs.length));
      for (const stdevs of [0, 0.5]) {
        const a = E.gradientShap(m, x, { target: 1, baselines: bases, samples: S, stdevs }).attributions;
        const got = rows(a);
        const w = weightRow(m, 1);
        for (let i = 0; i < 2; i++)
          for (let k = 0; k < P; k++) {
            // per draw (x + ε − b_J)·w: variance w²(Var b + stdevs²)
            const se = Math.abs(w[k]) * Math.sqrt(sd[k] ** 2 + stdevs ** 2) / Math.sqrt(S);
            expect(Math.abs(got[i][k] - (xs[i][k] - mean[k]) * w[k]), `stdevs ${stdevs}, image ${i}, element ${k}`).to.be.at.most(5 * se + TOL_ID);
          }
        a.dispose();
      }
      for (const t of [x, bases]) t.dispose();
      m.dispose();
    });

    it('with one baseline and stdevs 0 equals integrated gradients on a linear model; multiplyByInputs false gives w', () => {
      kiln.manualSeed(4);
      const m = linearModel(12, 3);
      const x = randn64([3, 3, 2, 2]);
      const b = randn64([3, 2, 2]); // one image [C, H, W]
      const shap = E.gradientShap(m, x, { target: [0, 1, 2], baselines: b, samples: 3 });
      const ig = E.integratedGradients(m, x, { target: [0, 1, 2], baseline: b, steps: 5 });
      expect(maxAbsDiff(shap.attributions, ig.attributions)).to.be.below(TOL_ID);
      const grads = kiln.tidy(() => E.gradientShap(m, x, { target: [0, 1, 2], baselines: b.unsqueeze(0), samples: 2, stdevs: 0.3, multiplyByInputs: false }));
      const sal = E.saliency(m, x, { target: [0, 1, 2], abs: false });
      expect(maxAbsDiff(grads.attributions, sal)).to.be.below(TOL_ID);
      expect(grads.delta).to.equal(undefined);
      for (const t of [x, b, shap.attributions, ig.attributions, ig.delta, grads.attributions, sal]) t.dispose();
      m.dispose();
    });

    it('on a nonlinear CNN matches the plain-PyTorch transcription with the same seeded draws, for any internalBatchSize', () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x), bases = fromFix(FIX.baselines);
      for (const c of FIX.gradientShap as { seed: number; samples: number; stdevs: number; attributions: Enc; delta: Enc }[]) {
        for (const internalBatchSize of [undefined, 2, 5]) {
          kiln.manualSeed(c.seed);
          const r = E.gradientShap(m, x, { target: FIX.target, baselines: bases, samples: c.samples, stdevs: c.stdevs, returnConvergenceDelta: true, internalBatchSize });
          expectClose(r.attributions, c.attributions.data, 1e-4, 1e-6, c.attributions.shape);
          expectClose(r.delta!, c.delta.data, 1e-4, 1e-6, c.delta.shape);
          r.attributions.dispose();
          r.delta!.dispose();
        }
      }
      for (const t of [x, bases]) t.dispose();
      m.dispose();
    });

    it('is reproducible with kiln.manualSeed, differs with another seed, and leaks no tensors', () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x), bases = fromFix(FIX.baselines);
      const run = (seed: number): number[] => {
        kiln.manualSeed(seed);
        const r = E.gradientShap(m, x, { target: 1, baselines: bases, samples: 3, stdevs: 0.2, returnConvergenceDelta: true });
        const v = [...values(r.attributions), ...values(r.delta!)];
        r.attributions.dispose();
        r.delta!.dispose();
        return v;
      };
      const first = run(5);
      const before = kiln.memory().numTensors;
      expectRepeat(run(5), first);
      expect(run(6)).to.not.deep.equal(first);
      for (let i = 0; i < 3; i++) run(7);
      expect(kiln.memory().numTensors).to.equal(before);
      for (const t of [x, bases]) t.dispose();
      m.dispose();
    });

    // tensors made inline for the checks are freed by the test's tidy
    it('rejects bad arguments with clear errors', () => kiln.tidy(() => {
      const m = linearModel(12, 3);
      const x = randn64([2, 3, 2, 2]);
      const b = kiln.zeros([4, 3, 2, 2]);
      const gone = kiln.zeros([4, 3, 2, 2]);
      gone.dispose();
      expectKilnError(() => E.gradientShap(m, x, { target: 0 } as never), 'INVALID_ARGUMENT', 'baselines');
      expectKilnError(() => E.gradientShap(m, x, { target: 0, baselines: kiln.zeros([4, 3, 2, 3]) }), 'INVALID_ARGUMENT', 'baselines must be [B, 3, 2, 2]', 'got [4, 3, 2, 3]');
      expectKilnError(() => E.gradientShap(m, x, { target: 0, baselines: kiln.zeros([4, 3, 2, 2], { dtype: 'int64' }) }), 'INVALID_ARGUMENT', 'baselines must be floating-point');
      expectKilnError(() => E.gradientShap(m, x, { target: 0, baselines: gone }), 'DISPOSED', 'baselines');
      expectKilnError(() => E.gradientShap(m, x, { target: 0, baselines: [0, 1] as never }), 'INVALID_ARGUMENT', 'baselines', 'a Tensor');
      expectKilnError(() => E.gradientShap(m, x, { target: 0, baselines: b, samples: 0 }), 'INVALID_ARGUMENT', 'samples');
      expectKilnError(() => E.gradientShap(m, x, { target: 0, baselines: b, stdevs: -0.1 }), 'INVALID_ARGUMENT', 'stdevs');
      expectKilnError(() => E.gradientShap(m, x, { target: 0, baselines: b, multiplyByInputs: 'no' as never }), 'INVALID_ARGUMENT', 'multiplyByInputs');
      expectKilnError(() => E.gradientShap(m, x, { target: 0, baselines: b, multiplyByInputs: false, returnConvergenceDelta: true }), 'INVALID_ARGUMENT', 'returnConvergenceDelta needs multiplyByInputs');
      expectKilnError(() => E.gradientShap(m, x, { target: 0, baselines: b, internalBatchSize: 0 }), 'INVALID_ARGUMENT', 'internalBatchSize');
      expectKilnError(() => E.gradientShap(m, x, { target: 3, baselines: b }), 'INVALID_ARGUMENT', 'target class 3 is out of range');
      expectKilnError(() => E.gradientShap(m, kiln.zeros([2, 12], { dtype: 'int64' }), { target: 0, baselines: b }), 'INVALID_ARGUMENT', 'floating-point');
      for (const t of [x, b]) t.dispose();
      m.dispose();
    }));
  });

  describe('infidelity', () => {
    /** A perturbation function replaying recorded perturbations I (rows image-major: image i's draw j at i·S + j). */
    const replay = (I: kiln.Tensor) => (xe: kiln.Tensor): [kiln.Tensor, kiln.Tensor] => [I, xe.sub(I)];

    it('is 0 for the exact local attribution w of a linear model and (Σ I·d)² on average for w + d; normalize forgives scale', () => {
      kiln.manualSeed(8);
      const m = linearModel(12, 3);
      const x = randn64([2, 3, 2, 2]);
      const S = 6;
      const I = kiln.tidy(() => randn64([2 * S, 3, 2, 2]).mul(0.1));
      const d = kiln.tidy(() => randn64([2, 3, 2, 2]).mul(0.05));
      const targets = [2, 0];
      const wAttr = kiln.tidy(() => kiln.stack(targets.map((c) => (m.at(1) as kiln.nn.Linear).weight.select(0, c))).reshape([2, 3, 2, 2]));
      const wrong = wAttr.add(d), scaled = wAttr.mul(3);
      // a squared residual: (1e-12)² on the CPU, (TOL_ID)² on CUDA
      const exactTol = ON_CPU ? 1e-24 : TOL_ID ** 2;
      const exact = E.infidelity(m, x, wAttr, { target: targets, perturb: replay(I), samples: S });
      expect(Math.max(...values(exact))).to.be.below(exactTol);
      const exactScaled = E.infidelity(m, x, scaled, { target: targets, perturb: replay(I), samples: S, normalize: true });
      expect(Math.max(...values(exactScaled))).to.be.below(exactTol);
      // expectations from the recorded I, computed here
      const Is = rows(I), ds = rows(d), ws = rows(wAttr), wr = rows(wrong);
      const plainWant = [0, 1].map((i) => Is.slice(i * S, (i + 1) * S).reduce((s, Ik) => s + dot(Ik, ds[i]) ** 2, 0) / S);
      const normWant = [0, 1].map((i) => {
        const a = Is.slice(i * S, (i + 1) * S).map((Ik) => dot(Ik, wr[i]));
        const b = Is.slice(i * S, (i + 1) * S).map((Ik) => dot(Ik, ws[i])); // f(x) − f(x − I) = w·I
        const beta = dot(a, b) / dot(a, a);
        return a.reduce((s, ak, k) => s + (beta * ak - b[k]) ** 2, 0) / S;
      });
      const plain = E.infidelity(m, x, wrong, { target: targets, perturb: replay(I), samples: S });
      const norm = E.infidelity(m, x, wrong, { target: targets, perturb: replay(I), samples: S, normalize: true });
      expect(plainWant[0]).to.be.above(1e-6);
      const rtol = ON_CPU ? 1e-9 : 1e-8;
      expectClose(plain, plainWant, rtol, 1e-18);
      expectClose(norm, normWant, rtol, 1e-18);
      expect(values(norm)[0]).to.be.below(plainWant[0]);
      for (const t of [x, I, d, wAttr, wrong, scaled, exact, exactScaled, plain, norm]) t.dispose();
      m.dispose();
    });

    it('on a nonlinear CNN matches captum.metrics.infidelity transcribed, with recorded and with seeded default perturbations, in any chunking', () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x);
      const rec = FIX.infidelity.recorded, seeded = FIX.infidelity.seeded;
      const I = fromFix(rec.perturbation), sal = fromFix(rec.saliency);
      // the attribution scored is the signed saliency; kiln's equals the reference's
      const ours = E.saliency(m, x, { target: FIX.target, abs: false });
      expectClose(ours, rec.saliency.data, 1e-4, 1e-6, rec.saliency.shape);
      const S = rec.samples;
      for (const normalize of [false, true]) {
        const got = E.infidelity(m, x, sal, { target: FIX.target, perturb: replay(I), samples: S, normalize });
        expectClose(got, (normalize ? rec.normalized : rec.plain).data, 1e-5, 1e-9);
        got.dispose();
      }
      // chunks of one draw: the replay picks rows i·S + (draw) for the draws of each call
      let start = 0;
      const chunked = (xe: kiln.Tensor): [kiln.Tensor, kiln.Tensor] => {
        const k = xe.size(0) / 2;
        const idx = kiln.tensor([0, 1].flatMap((i) => Array.from({ length: k }, (_, j) => i * S + start + j)), { dtype: 'int64', device: DEVICE });
        start += k;
        const Ik = I.indexSelect(0, idx);
        return [Ik, xe.sub(Ik)];
      };
      const byOne = E.infidelity(m, x, sal, { target: FIX.target, perturb: chunked, samples: S, maxExamplesPerBatch: 3 });
      expect(start).to.equal(S);
      expectClose(byOne, rec.plain.data, 1e-5, 1e-9);
      kiln.manualSeed(seeded.seed);
      const def = E.infidelity(m, x, sal, { target: FIX.target, samples: seeded.samples, noiseScale: seeded.noiseScale });
      expectClose(def, seeded.plain.data, 1e-5, 1e-9);
      for (const t of [x, I, sal, ours, byOne, def]) t.dispose();
      m.dispose();
    });

    it('is reproducible with kiln.manualSeed and leaks no tensors', () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x), sal = fromFix(FIX.infidelity.recorded.saliency);
      const run = (seed: number): number[] => {
        kiln.manualSeed(seed);
        const r = E.infidelity(m, x, sal, { target: 0, samples: 4, noiseScale: 0.2 });
        const v = values(r);
        r.dispose();
        return v;
      };
      const first = run(1);
      const before = kiln.memory().numTensors;
      expectRepeat(run(1), first);
      expect(run(2)).to.not.deep.equal(first);
      for (let i = 0; i < 3; i++) run(3);
      expect(kiln.memory().numTensors).to.equal(before);
      for (const t of [x, sal]) t.dispose();
      m.dispose();
    });

    // tensors made inline for the checks are freed by the test's tidy
    it('rejects bad arguments with clear errors', () => kiln.tidy(() => {
      const m = linearModel(12, 3);
      const x = randn64([2, 3, 2, 2]);
      const a = kiln.zerosLike(x);
      const gone = kiln.zerosLike(x);
      gone.dispose();
      const bad = kiln.zeros([2, 12], { dtype: 'float64' });
      expectKilnError(() => E.infidelity(m, x, bad, { target: 0 }), 'INVALID_ARGUMENT', 'attributions must have shape [2, 3, 2, 2]', 'got [2, 12]');
      expectKilnError(() => E.infidelity(m, x, gone, { target: 0 }), 'DISPOSED', 'attributions');
      expectKilnError(() => E.infidelity(m, x, 'a' as never, { target: 0 }), 'INVALID_ARGUMENT', 'attributions must be a Tensor');
      expectKilnError(() => E.infidelity(m, x, a, undefined as never), 'INVALID_ARGUMENT', 'options');
      expectKilnError(() => E.infidelity(m, x, a, { target: 0, samples: 1.5 }), 'INVALID_ARGUMENT', 'samples');
      expectKilnError(() => E.infidelity(m, x, a, { target: 0, normalize: 1 as never }), 'INVALID_ARGUMENT', 'normalize');
      expectKilnError(() => E.infidelity(m, x, a, { target: 0, noiseScale: -1 }), 'INVALID_ARGUMENT', 'noiseScale');
      expectKilnError(() => E.infidelity(m, x, a, { target: 0, maxExamplesPerBatch: 1 }), 'INVALID_ARGUMENT', 'maxExamplesPerBatch', 'at least the batch size (2)');
      expectKilnError(() => E.infidelity(m, x, a, { target: 0, perturb: 3 as never }), 'INVALID_ARGUMENT', 'perturb');
      expectKilnError(() => E.infidelity(m, x, a, { target: 0, perturb: ((xe: kiln.Tensor) => xe.mul(1)) as never }), 'INVALID_ARGUMENT', 'perturb must return [perturbation, perturbed input]');
      expectKilnError(() => E.infidelity(m, x, a, { target: 0, perturb: (xe) => [xe.flatten(1), xe.mul(1)] }), 'INVALID_ARGUMENT', 'the perturbation must have shape [20, 3, 2, 2]');
      expectKilnError(() => E.infidelity(m, x, a, { target: 9 }), 'INVALID_ARGUMENT', 'target class 9 is out of range');
      for (const t of [x, a, bad]) t.dispose();
      m.dispose();
    }));
  });

  describe('sensitivityMax', () => {
    it('of saliency on a linear model is 0 (the gradient does not move), in every norm', () => {
      kiln.manualSeed(9);
      const m = linearModel(12, 3);
      const x = randn64([3, 3, 2, 2]);
      const explain: kiln.explain.ExplanationFunction = (xb, o) => E.saliency(m, xb, { target: o.target! });
      for (const norm of ['fro', 'inf', 1] as const) {
        const s = E.sensitivityMax(explain, x, { target: [0, 1, 2], norm, perturbRadius: 0.5 });
        expect(s.shape).to.deep.equal([3]);
        if (ON_CPU) expect(values(s)).to.deep.equal([0, 0, 0]);
        else expectClose(s, [0, 0, 0], 0, EXACT);
        s.dispose();
      }
      x.dispose();
      m.dispose();
    });

    it('of the identity explanation is max‖δ‖ / ‖x‖ over the recorded perturbations δ (inf and 1-norms)', () => {
      kiln.manualSeed(10);
      const x = randn64([2, 5]);
      const S = 4;
      const delta = kiln.tidy(() => rand64([2 * S, 5]).mul(0.2).sub(0.1));
      const perturb = (xe: kiln.Tensor): kiln.Tensor => xe.add(delta);
      const xs = rows(x), ds = rows(delta);
      for (const [norm, f] of [['inf', (v: number[]) => Math.max(...v.map(Math.abs))], [1, (v: number[]) => v.reduce((s, e) => s + Math.abs(e), 0)]] as const) {
        const s = E.sensitivityMax((xb) => xb.mul(1), x, { samples: S, norm, perturb });
        const want = [0, 1].map((i) => Math.max(...ds.slice(i * S, (i + 1) * S).map((d) => f(d) / f(xs[i]))));
        expectClose(s, want, ON_CPU ? 1e-12 : 1e-10, ON_CPU ? 1e-15 : 1e-13);
        s.dispose();
      }
      for (const t of [x, delta]) t.dispose();
    });

    it('of saliency on a nonlinear CNN matches captum.metrics.sensitivity_max transcribed (recorded and seeded perturbations)', () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x);
      const rec = FIX.sensitivity.recorded, seeded = FIX.sensitivity.seeded;
      const xp = fromFix(rec.perturbed);
      const explain: kiln.explain.ExplanationFunction = (xb, o) => E.saliency(m, xb, { target: o.target! });
      for (const norm of ['fro', 'inf'] as const) {
        for (const maxExamplesPerBatch of [undefined, 4]) {
          let start = 0;
          const perturb = (xe: kiln.Tensor): kiln.Tensor => {
            const k = xe.size(0) / 2;
            const idx = kiln.tensor([0, 1].flatMap((i) => Array.from({ length: k }, (_, j) => i * rec.samples + start + j)), { dtype: 'int64', device: DEVICE });
            start += k;
            return xp.indexSelect(0, idx);
          };
          const s = E.sensitivityMax(explain, x, { target: FIX.target, samples: rec.samples, norm, perturb, maxExamplesPerBatch });
          expect(start).to.equal(rec.samples);
          expectClose(s, rec[norm].data, 1e-5, 1e-7);
          s.dispose();
        }
      }
      kiln.manualSeed(seeded.seed);
      const s = E.sensitivityMax(explain, x, { target: FIX.target, samples: seeded.samples, perturbRadius: seeded.perturbRadius });
      expectClose(s, seeded.fro.data, 1e-5, 1e-7);
      for (const t of [x, xp, s]) t.dispose();
      m.dispose();
    });

    it('takes explanations returning { attributions } (integrated gradients, gradientShap), is seeded, and leaks no tensors', () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x), bases = fromFix(FIX.baselines);
      const ig: kiln.explain.ExplanationFunction = (xb, o) => E.integratedGradients(m, xb, { target: o.target!, steps: 4 });
      const shap: kiln.explain.ExplanationFunction = (xb, o) => E.gradientShap(m, xb, { target: o.target!, baselines: bases, samples: 2 });
      const run = (f: kiln.explain.ExplanationFunction, seed: number): number[] => {
        kiln.manualSeed(seed);
        const s = E.sensitivityMax(f, x, { target: 1, samples: 3 });
        const v = values(s);
        s.dispose();
        return v;
      };
      const first = run(ig, 1);
      const before = kiln.memory().numTensors;
      expect(first.every((v) => v > 0 && Number.isFinite(v))).to.equal(true);
      expectRepeat(run(ig, 1), first);
      expect(run(ig, 2)).to.not.deep.equal(first);
      const sh = run(shap, 3);
      expect(sh.every((v) => v > 0 && Number.isFinite(v))).to.equal(true);
      expectRepeat(run(shap, 3), sh);
      expect(kiln.memory().numTensors).to.equal(before);
      for (const t of [x, bases]) t.dispose();
      m.dispose();
    });

    // tensors made inline for the checks are freed by the test's tidy
    it('rejects bad arguments with clear errors', () => kiln.tidy(() => {
      const m = linearModel(12, 3);
      const x = randn64([2, 3, 2, 2]);
      const sal: kiln.explain.ExplanationFunction = (xb, o) => E.saliency(m, xb, { target: o.target ?? 0 });
      expectKilnError(() => E.sensitivityMax('saliency' as never, x), 'INVALID_ARGUMENT', 'explain', 'a function');
      expectKilnError(() => E.sensitivityMax(sal, x, { norm: 'l3' as never }), 'INVALID_ARGUMENT', 'norm');
      expectKilnError(() => E.sensitivityMax(sal, x, { norm: 0.5 }), 'INVALID_ARGUMENT', 'norm');
      expectKilnError(() => E.sensitivityMax(sal, x, { perturbRadius: -1 }), 'INVALID_ARGUMENT', 'perturbRadius');
      expectKilnError(() => E.sensitivityMax(sal, x, { samples: 0 }), 'INVALID_ARGUMENT', 'samples');
      expectKilnError(() => E.sensitivityMax(sal, x, { target: 7 }), 'INVALID_ARGUMENT', 'target class 7 is out of range');
      expectKilnError(() => E.sensitivityMax(() => 3 as never, x), 'INVALID_ARGUMENT', 'explain must return a Tensor');
      expectKilnError(() => E.sensitivityMax((xb) => xb.narrow(0, 0, 1), x), 'INVALID_ARGUMENT', 'explain returned shape [1, 3, 2, 2] for a batch of 2');
      expectKilnError(() => E.sensitivityMax(sal, x, { perturb: (xe) => xe.flatten(1) }), 'INVALID_ARGUMENT', 'the perturbed input must have shape [20, 3, 2, 2]');
      expectKilnError(() => E.sensitivityMax(sal, x, { maxExamplesPerBatch: 1 }), 'INVALID_ARGUMENT', 'maxExamplesPerBatch');
      expectKilnError(() => E.sensitivityMax(sal, kiln.zeros([2], { dtype: 'float64' })), 'INVALID_ARGUMENT', 'input must be a batch');
      x.dispose();
      m.dispose();
    }));
  });
});
