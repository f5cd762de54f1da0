/**
 * kiln.explain.featureAblation / lime / kernelShap / gridMask: exact identities on linear models
 * (per-segment contributions w·(x − b), per-element ablation, Lime's and KernelShap's surrogates
 * recovering them, every coalition enumerated), agreement with a plain-PyTorch/NumPy/SciPy
 * transcription of Captum fed the same coalitions (scripts/make-ablation-fixtures.py →
 * test/fixtures/ablation.json), Lime's draws equal to Captum's under the same seed, the lasso's
 * optimality conditions, KernelShap's sampling distribution and near-efficiency, batching, bad
 * arguments, no leaks, seeds, and `kiln explain --method ablation|lime|kernelshap`. Runs on
 * KILN_TEST_DEVICE (default 'cpu'; 'cuda' on the GPU machine; gridMask, shapleyCoalitions and the CLI
 * stay on the CPU) in float64. Coalitions are drawn from the CPU generator and the surrogates fitted
 * on the CPU, so seeded runs agree across devices; on CUDA the fixtures hold to TOL_FIX, identities to
 * TOL_ID and what is bit for bit on the CPU to EXACT (cuDNN sums in another order).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { expect } from 'chai';
import * as kiln from '../lib';
import { explainCommand, EXPLAIN_FLAGS } from '../lib/cli/explain';
import { parseArgs, UsageError } from '../lib/cli/args';
import { expectKilnError, maxAbsDiff, values, DEVICE, ON_CPU, skipWithoutDevice, expectNoFileLeaks, fixture64 as fromFix, ShapedValues as Shaped } from './helpers';

const E = kiln.explain;
const { nn } = kiln;
const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'ablation.json'), 'utf8'));

const maskFromFix = (f: Shaped) => kiln.tensor(f.values, { shape: f.shape, dtype: 'int64', device: DEVICE });
/** Fixtures (1e-10 on the CPU), float64 identities (1e-12), and what holds bit for bit on the CPU. */
const TOL_FIX = ON_CPU ? 1e-10 : 1e-9, TOL_ID = ON_CPU ? 1e-12 : 1e-10, EXACT = ON_CPU ? 0 : 1e-12;
/** Standard normal float64 draws from the CPU generator, on DEVICE. */
const randn64 = (shape: number[]): kiln.Tensor => kiln.tidy(() => kiln.randn(shape, { dtype: 'float64' }).to(DEVICE));
/** gridMask on DEVICE. */
const gridOn = (h: number, w: number, cell: number): kiln.Tensor => kiln.tidy(() => E.gridMask(h, w, { cell }).to(DEVICE));

/** The fixture's CNN (conv, ReLU, max pool, linear) in float64 with its weights. */
function fixtureModel(): kiln.nn.Sequential {
  const m = new nn.Sequential(new nn.Conv2d(2, 4, 3, { padding: 1 }), new nn.ReLU(), new nn.MaxPool2d(2), new nn.Flatten(), new nn.Linear(64, 5)).to('float64');
  const state: Record<string, kiln.Tensor> = {};
  for (const [k, v] of Object.entries(FIX.model.weights as Record<string, Shaped>)) state[k] = fromFix(v, 'cpu');
  m.loadStateDict(state);
  for (const t of Object.values(state)) t.dispose();
  m.to(DEVICE);
  return m.eval();
}

function linearModel(inF: number, classes: number): kiln.nn.Sequential {
  const m = new nn.Sequential(new nn.Flatten(), new nn.Linear(inF, classes)).to('float64');
  m.to(DEVICE);
  return m.eval();
}

/** Records the batch size of every forward pass of `inner`. */
class Counting extends kiln.nn.Module {
  batches: number[] = [];
  constructor(private inner: kiln.nn.Module) {
    super();
  }
  forward(x: kiln.Tensor): kiln.Tensor {
    this.batches.push(x.size(0));
    return this.inner.call(x);
  }
}

/**
 * For a linear model: each element's contribution w_target ⊙ (x − b) [N, …] and its sums per
 * segment [N, M] (the segment sums through a one-hot of the mask).
 */
function linearContributions(m: kiln.nn.Sequential, x: kiln.Tensor, base: kiln.Tensor | number, target: number[], mask: kiln.Tensor, count: number): { perElement: kiln.Tensor; perSegment: kiln.Tensor } {
  return kiln.tidy(() => {
    const w = (m.at(1) as kiln.nn.Linear).weight.indexSelect(0, kiln.tensor(target, { dtype: 'int64', device: x.device as kiln.Device })).reshape(x.shape);
    const perElement = x.sub(base).mul(w);
    const oh = mask.expand(x.shape).reshape([x.size(0), -1]).oneHot(count).to({ dtype: 'float64' }); // [N, P, M]
    const perSegment = perElement.reshape([x.size(0), 1, -1]).matmul(oh).squeeze(1);
    return { perElement, perSegment };
  });
}

/** Spreads per-segment values [N, M] over the elements of each image: [N, …]. */
function spread(perSegment: kiln.Tensor, mask: kiln.Tensor, shape: number[]): kiln.Tensor {
  return kiln.tidy(() => perSegment.gather(1, mask.expand(shape).reshape([shape[0], -1])).reshape(shape));
}

/** f(x)[t] per image. */
function logitsAt(m: kiln.nn.Module, x: kiln.Tensor, target: number[]): number[] {
  return kiln.tidy(() => kiln.noGrad(() => values(m.call(x).gather(1, kiln.tensor(target.map((t) => [t]), { dtype: 'int64', device: x.device as kiln.Device })).squeeze(1))));
}

/** Every coalition of `count` segments as rows [2^count, count] (row r: the bits of r). */
function allCoalitions(count: number): kiln.Tensor {
  const rows = Array.from({ length: 2 ** count }, (_, r) => Array.from({ length: count }, (_, j) => (r >> j) & 1));
  return kiln.tensor(rows, { dtype: 'float64' });
}

/** The lasso's optimality conditions on centred weighted data, worst violation: |g_j − α sign β_j| (β_j ≠ 0), max(|g_j| − α, 0) (β_j = 0). */
function lassoKktViolation(z: number[][], y: number[], w: number[], beta: number[], alpha: number): number {
  const W = w.reduce((a, v) => a + v, 0);
  const M = beta.length;
  const zm = Array.from({ length: M }, (_, j) => z.reduce((a, row, i) => a + w[i] * row[j], 0) / W);
  const ym = y.reduce((a, v, i) => a + w[i] * v, 0) / W;
  const r = y.map((v, i) => v - ym - z[i].reduce((a, zij, j) => a + (zij - zm[j]) * beta[j], 0));
  let worst = 0;
  for (let j = 0; j < M; j++) {
    const g = z.reduce((a, row, i) => a + w[i] * (row[j] - zm[j]) * r[i], 0) / W;
    worst = Math.max(worst, beta[j] !== 0 ? Math.abs(g - alpha * Math.sign(beta[j])) : Math.max(Math.abs(g) - alpha, 0));
  }
  return worst;
}

const rowsOf = (c: Shaped, cols: number): number[][] => Array.from({ length: c.values.length / cols }, (_, i) => c.values.slice(i * cols, (i + 1) * cols));

describe(`48b FeatureAblation, Lime and KernelShap (${DEVICE})`, function () {
  this.timeout(120000);
  before(skipWithoutDevice);
  expectNoFileLeaks(false);

  describe('gridMask', () => {
    it('numbers square cells row-major, cutting the last row and column at the border', () => {
      const g = E.gridMask(5, 7, { cell: 3 });
      expect(g.dtype).to.equal('int64');
      expect(g.arraySync()).to.deep.equal([
        [0, 0, 0, 1, 1, 1, 2],
        [0, 0, 0, 1, 1, 1, 2],
        [0, 0, 0, 1, 1, 1, 2],
        [3, 3, 3, 4, 4, 4, 5],
        [3, 3, 3, 4, 4, 4, 5],
      ]);
      const d = E.gridMask(32, 24); // default cell: 24 / 8 = 3 → 11 × 8 cells
      expect(d.shape).to.deep.equal([32, 24]);
      expect(kiln.tidy(() => d.amax([0, 1]).item())).to.equal(11 * 8 - 1);
      expect(kiln.tidy(() => values(d.select(0, 3)).slice(0, 7))).to.deep.equal([8, 8, 8, 9, 9, 9, 10]);
      for (const t of [g, d]) t.dispose();
    });

    it('rejects bad sizes and cells', () => {
      expectKilnError(() => E.gridMask(0, 4), 'INVALID_ARGUMENT', 'gridMask: h', 'positive integer');
      expectKilnError(() => E.gridMask(4, 2.5), 'INVALID_ARGUMENT', 'gridMask: w');
      expectKilnError(() => E.gridMask(4, 4, { cell: 0 }), 'INVALID_ARGUMENT', 'gridMask: cell');
      expectKilnError(() => E.gridMask(4, 4, { cell: 1.5 }), 'INVALID_ARGUMENT', 'gridMask: cell');
    });
  });

  describe('featureAblation', () => {
    it('on a linear model: every element gets w·(x − b) summed over its segment (grid mask, tensor baseline)', () => {
      kiln.manualSeed(3);
      const m = linearModel(3 * 6 * 6, 4);
      const x = randn64([2, 3, 6, 6]);
      const base = randn64([1, 3, 6, 6]);
      const mask = gridOn(6, 6, 4); // 4 uneven cells: 4×4, 4×2, 2×4, 2×2
      const before = kiln.memory().numTensors;
      const a = E.featureAblation(m, x, { target: [2, 0], featureMask: mask, baselines: base });
      expect(kiln.memory().numTensors).to.equal(before + 1);
      const { perElement, perSegment } = linearContributions(m, x, base, [2, 0], mask, 4);
      const expected = spread(perSegment, mask, x.shape);
      expect(a.shape).to.deep.equal([2, 3, 6, 6]);
      expect(maxAbsDiff(a, expected)).to.be.below(TOL_ID);
      expect(Math.min(...values(perSegment).map(Math.abs))).to.be.above(0.01); // no segment is trivially zero
      for (const t of [x, base, mask, a, perElement, perSegment, expected]) t.dispose();
      m.dispose();
    });

    it('without a mask: per element, w ⊙ (x − b), for a scalar baseline', () => {
      kiln.manualSeed(4);
      const m = linearModel(2 * 3 * 3, 3);
      const x = randn64([3, 2, 3, 3]);
      const a = E.featureAblation(m, x, { target: 1, baselines: 0.5 });
      const mask = kiln.tidy(() => kiln.arange(0, 18, 1, { dtype: 'int64', device: DEVICE }).reshape([2, 3, 3]));
      const { perElement, perSegment } = linearContributions(m, x, 0.5, [1, 1, 1], mask, 18);
      expect(maxAbsDiff(a, perElement)).to.be.below(TOL_ID);
      for (const t of [x, a, mask, perElement, perSegment]) t.dispose();
      m.dispose();
    });

    for (const [name, maskKey, baseKey] of [
      ['grid3Zero', 'grid3', 0], ['perImageTensor', 'perImage', 'tensor'], ['perChannelScalar', 'perChannel', 0.25], ['noMask', null, 'tensor'],
    ] as const) {
      it(`matches Captum's FeatureAblation transcription on a CNN to 1e-10: ${name}`, () => {
        const m = fixtureModel();
        const x = fromFix(FIX.x);
        const mask = maskKey ? maskFromFix(FIX.masks[maskKey]) : undefined;
        const base = baseKey === 'tensor' ? fromFix(FIX.baselines) : baseKey;
        const a = E.featureAblation(m, x, { target: FIX.target, featureMask: mask, baselines: base, perturbationsPerEval: 4 });
        const ref = fromFix(FIX.featureAblation[name]);
        expect(maxAbsDiff(a, ref)).to.be.below(TOL_FIX);
        for (const t of [x, a, ref, mask, base]) if (t instanceof kiln.Tensor) t.dispose();
        m.dispose();
      });
    }

    it('evaluates perturbationsPerEval segments per forward pass, each on the whole batch, with the same result', () => {
      const inner = fixtureModel();
      const x = fromFix(FIX.x);
      const mask = maskFromFix(FIX.masks.grid3); // 9 segments
      const ref = fromFix(FIX.featureAblation.grid3Zero);
      for (const [per, batches] of [[1, [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]], [4, [2, 8, 8, 2]], [undefined, [2, 18]]] as const) {
        const m = new Counting(inner);
        const a = E.featureAblation(m, x, { target: FIX.target, featureMask: mask, perturbationsPerEval: per });
        expect(m.batches).to.deep.equal(batches);
        expect(maxAbsDiff(a, ref)).to.be.below(TOL_FIX);
        a.dispose();
      }
      for (const t of [x, mask, ref]) t.dispose();
      inner.dispose();
    });
  });

  describe('lime', () => {
    const cases = FIX.lime.cases;

    for (const surrogate of ['lasso', 'ridge', 'linear'] as const) {
      it(`with Captum's coalitions and cosine kernel, the ${surrogate} surrogate matches the NumPy/SciPy reference`, () => {
        const m = fixtureModel();
        const x = fromFix(FIX.x);
        const mask = maskFromFix(FIX.masks.grid3);
        const z = maskFromFix(cases.cosine.coalitions);
        const coef = E.lime(m, x, { target: FIX.target, featureMask: mask, coalitions: z, surrogate, returnInputShape: false });
        expect(coef.shape).to.deep.equal([2, 9]);
        const got = coef.arraySync() as number[][];
        cases.cosine.images.forEach((img: Record<string, { coef: number[] }>, i: number) => {
          const tol = surrogate === 'lasso' ? 1e-7 : ON_CPU ? 1e-11 : 1e-9; // SciPy's L-BFGS-B stops near, not at, the optimum (measured: 2e-8)
          got[i].forEach((v, j) => expect(v, `image ${i} segment ${j}`).to.be.closeTo(img[surrogate].coef[j], tol));
        });
        for (const t of [x, mask, z, coef]) t.dispose();
        m.dispose();
      });
    }

    it('the lasso coefficients satisfy its optimality conditions to 1e-12 (cosine and Euclidean kernels, α 0.01 and 0.05)', () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x);
      const mask = maskFromFix(FIX.masks.grid3);
      const base = fromFix(FIX.baselines);
      for (const [name, opts] of [['cosine', { alpha: 0.01 }], ['euclidean', { alpha: 0.05, distanceMode: 'euclidean' as const, kernelWidth: 3, baselines: base }]] as const) {
        const c = cases[name];
        const z = maskFromFix(c.coalitions);
        const coef = E.lime(m, x, { target: FIX.target, featureMask: mask, coalitions: z, returnInputShape: false, ...opts });
        const got = coef.arraySync() as number[][];
        if (name === 'euclidean') expect(got.flat().filter((v) => v === 0).length, 'coefficients the lasso sets to exactly 0').to.equal(4);
        c.images.forEach((img: { y: number[]; w: number[]; lasso: { coef: number[] } }, i: number) => {
          expect(lassoKktViolation(rowsOf(c.coalitions, 9), img.y, img.w, got[i], opts.alpha)).to.be.below(TOL_ID);
          got[i].forEach((v, j) => expect(v).to.be.closeTo(img.lasso.coef[j], 1e-7));
        });
        for (const t of [z, coef]) t.dispose();
      }
      for (const t of [x, mask, base]) t.dispose();
      m.dispose();
    });

    it("draws Captum's coalitions under the same seed (bernoulli(½), row by row)", () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x);
      const x0 = x.narrow(0, 0, 1);
      const mask = maskFromFix(FIX.masks.grid3);
      kiln.manualSeed(FIX.lime.seed);
      const coef = E.lime(m, x0, { target: FIX.target[0], featureMask: mask, samples: FIX.lime.samples, surrogate: 'linear', returnInputShape: false });
      const ref = FIX.lime.cases.cosine.images[0].linear.coef as number[];
      values(coef).forEach((v, j) => expect(v).to.be.closeTo(ref[j], ON_CPU ? 1e-9 : 1e-8));
      for (const t of [x, x0, mask, coef]) t.dispose();
      m.dispose();
    });

    it('on a linear model with equal weights (kernelWidth Infinity) and the linear surrogate: exactly w·(x − b) per segment', () => {
      kiln.manualSeed(5);
      const m = linearModel(3 * 8 * 8, 4);
      const x = randn64([2, 3, 8, 8]);
      const mask = gridOn(8, 8, 3); // 9 segments
      const base = randn64([3, 8, 8]);
      const coef = E.lime(m, x, { target: [3, 1], featureMask: mask, baselines: base, samples: 40, kernelWidth: Infinity, surrogate: 'linear', returnInputShape: false });
      const { perElement, perSegment } = linearContributions(m, x, base, [3, 1], mask, 9);
      expect(maxAbsDiff(coef, perSegment)).to.be.below(TOL_FIX);
      // with returnInputShape (the default), each element holds its segment's coefficient
      kiln.manualSeed(5);
      const spreadOut = E.lime(m, x, { target: [3, 1], featureMask: mask, baselines: base, samples: 40, kernelWidth: Infinity, surrogate: 'linear' });
      const expected = spread(perSegment, mask, x.shape);
      expect(maxAbsDiff(spreadOut, expected)).to.be.below(TOL_FIX);
      for (const t of [x, mask, base, coef, perElement, perSegment, spreadOut, expected]) t.dispose();
      m.dispose();
    });

    it('repeats under a seed, differs across seeds, and evaluates perturbationsPerEval images per pass', () => {
      const inner = fixtureModel();
      const x = fromFix(FIX.x);
      const mask = maskFromFix(FIX.masks.grid3);
      const run = (seed: number, per?: number) => {
        const m = new Counting(inner);
        kiln.manualSeed(seed);
        const a = E.lime(m, x, { target: FIX.target, featureMask: mask, samples: 25, perturbationsPerEval: per, returnInputShape: false });
        return { a, batches: m.batches };
      };
      const r1 = run(21, 10), r2 = run(21), r3 = run(22);
      expect(r1.batches).to.deep.equal([10, 10, 5, 10, 10, 5]);
      expect(r2.batches).to.deep.equal([25, 25]);
      expect(maxAbsDiff(r1.a, r2.a)).to.be.at.most(EXACT);
      expect(maxAbsDiff(r1.a, r3.a)).to.be.above(1e-3);
      for (const t of [x, mask, r1.a, r2.a, r3.a]) t.dispose();
      inner.dispose();
    });
  });

  describe('kernelShap', () => {
    for (const name of ['determined', 'underdetermined'] as const) {
      it(`with Captum's sampled coalitions matches the NumPy least-squares reference: ${name}`, () => {
        const m = fixtureModel();
        const x = fromFix(FIX.x);
        const mask = maskFromFix(FIX.masks.grid3);
        const c = FIX.kernelShap.cases[name];
        const z = maskFromFix(c.coalitions);
        const base = name === 'determined' ? fromFix(FIX.baselines) : 0;
        const coef = E.kernelShap(m, x, { target: FIX.target, featureMask: mask, coalitions: z, baselines: base, returnInputShape: false });
        const got = coef.arraySync() as number[][];
        c.images.forEach((img: { linear: { coef: number[] } }, i: number) =>
          got[i].forEach((v, j) => expect(v, `image ${i} segment ${j}`).to.be.closeTo(img.linear.coef[j], 1e-7 * Math.max(1, Math.abs(img.linear.coef[j])))));
        for (const t of [x, mask, z, coef, base]) if (t instanceof kiln.Tensor) t.dispose();
        m.dispose();
      });
    }

    it('on a linear model, every one of the 2^M coalitions: exactly the per-segment contributions, summing to f(x) − f(b)', () => {
      kiln.manualSeed(6);
      const m = linearModel(2 * 6 * 6, 3);
      const x = randn64([2, 2, 6, 6]);
      const mask = gridOn(6, 6, 2); // 9 segments → 512 coalitions
      const base = randn64([1, 2, 6, 6]);
      const z = allCoalitions(9);
      const coef = E.kernelShap(m, x, { target: [0, 2], featureMask: mask, baselines: base, coalitions: z, returnInputShape: false });
      const { perElement, perSegment } = linearContributions(m, x, base, [0, 2], mask, 9);
      expect(maxAbsDiff(coef, perSegment)).to.be.below(TOL_FIX);
      const b2 = kiln.tidy(() => base.expand(x.shape).contiguous());
      const fb = logitsAt(m, b2, [0, 2]);
      const gap = logitsAt(m, x, [0, 2]).map((v, i) => v - fb[i]);
      b2.dispose();
      kiln.tidy(() => values(coef.sum(1))).forEach((s, i) => expect(s).to.be.closeTo(gap[i], TOL_FIX));
      // and with its own random coalitions (more samples than segments): the same
      kiln.manualSeed(6);
      const drawn = E.kernelShap(m, x, { target: [0, 2], featureMask: mask, baselines: base, samples: 30, returnInputShape: false });
      expect(maxAbsDiff(drawn, perSegment)).to.be.below(TOL_FIX);
      for (const t of [x, mask, base, z, coef, perElement, perSegment, drawn]) t.dispose();
      m.dispose();
    });

    it('on a CNN: the heavy end points make Σφ = f(x) − f(b) to 1e-4, which equal weights miss', () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x);
      const mask = maskFromFix(FIX.masks.grid3);
      kiln.manualSeed(8);
      const coef = E.kernelShap(m, x, { target: FIX.target, featureMask: mask, samples: 30, returnInputShape: false });
      const zero = kiln.zerosLike(x);
      const f0 = logitsAt(m, zero, FIX.target);
      const gap = logitsAt(m, x, FIX.target).map((v, i) => v - f0[i]);
      const sums = kiln.tidy(() => values(coef.sum(1)));
      sums.forEach((s, i) => expect(Math.abs(s - gap[i])).to.be.below(1e-4 * Math.max(1, Math.abs(gap[i]))));
      // the same coalitions with equal weights (Lime, linear surrogate, kernelWidth Infinity) do not sum to the gap
      kiln.manualSeed(8);
      const z = E.shapleyCoalitions(30, 9);
      const x0 = x.narrow(0, 0, 1);
      const flat = E.lime(m, x0, { target: FIX.target[0], featureMask: mask, coalitions: z, kernelWidth: Infinity, surrogate: 'linear', returnInputShape: false });
      expect(Math.abs(kiln.tidy(() => flat.sum().item()) - gap[0])).to.be.above(1e-2);
      for (const t of [x, x0, mask, coef, zero, z, flat]) t.dispose();
      m.dispose();
    });

    it("shapleyCoalitions: all ones, all zeros, then sizes k ∈ 1 … M−1 distributed ∝ (M − 1) / (k (M − k)), repeatable", () => {
      const M = 6, S = 20002;
      kiln.manualSeed(9);
      const z = E.shapleyCoalitions(S, M);
      kiln.manualSeed(9);
      const again = E.shapleyCoalitions(S, M);
      expect(maxAbsDiff(z, again)).to.equal(0);
      const sizes = kiln.tidy(() => values(z.sum(1)));
      expect(sizes[0]).to.equal(M);
      expect(sizes[1]).to.equal(0);
      const counts = new Array(M + 1).fill(0);
      for (const s of sizes.slice(2)) counts[s]++;
      expect(counts[0] + counts[M]).to.equal(0);
      const p = Array.from({ length: M - 1 }, (_, i) => (M - 1) / ((i + 1) * (M - 1 - i)));
      const total = p.reduce((a, v) => a + v, 0);
      for (let k = 1; k < M; k++) {
        const expected = ((S - 2) * p[k - 1]) / total;
        expect(Math.abs(counts[k] - expected), `size ${k}`).to.be.below(4 * Math.sqrt(expected)); // within 4σ
      }
      // within one size, each segment is on equally often: k/M of the rows
      const size2 = kiln.tidy(() => {
        const rows = z.index(z.sum(1).eq(2));
        return { n: rows.size(0), perSegment: values(rows.sum(0)) };
      });
      for (const c of size2.perSegment) expect(Math.abs(c - size2.n / 3)).to.be.below(4 * Math.sqrt((size2.n * 2) / 9));
      for (const t of [z, again]) t.dispose();
    });
  });

  describe('bad arguments', () => {
    it('each throws a clear KilnError naming the problem, leaking nothing', () => {
      kiln.manualSeed(10);
      const m = linearModel(2 * 4 * 4, 3);
      const x = randn64([2, 2, 4, 4]);
      const mask = E.gridMask(4, 4, { cell: 2 });
      const dead = E.gridMask(4, 4, { cell: 2 });
      dead.dispose();
      const deadBase = kiln.zerosLike(x);
      deadBase.dispose();
      const bad = {
        float: kiln.zeros([4, 4]),
        bool: kiln.zeros([4, 4], { dtype: 'bool' }),
        shape: kiln.zeros([3, 4], { dtype: 'int64' }),
        negative: kiln.full([4, 4], -1, { dtype: 'int64' }),
        gap: kiln.tensor([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 4, 4]], { dtype: 'int64' }),
        one: kiln.zeros([4, 4], { dtype: 'int64' }),
        coalShape: kiln.ones([5, 3]),
        coalValues: kiln.tensor([[1, 0, 2, 0]]),
        coalOk: kiln.tensor([[1, 0, 1, 0], [0, 1, 1, 1]]),
        base: kiln.zeros([3, 4, 4], { dtype: 'float64' }),
        intInput: kiln.zeros([2, 2, 4, 4], { dtype: 'int64' }),
      };
      const before = kiln.memory().numTensors;
      const t = { target: 0 };
      for (const fn of [E.featureAblation, E.lime, E.kernelShap] as const) {
        const name = fn === E.featureAblation ? 'featureAblation' : fn === E.lime ? 'lime' : 'kernelShap';
        const call = (o: Record<string, unknown>) => () => (fn as (m: kiln.nn.Module, x: kiln.Tensor, o: unknown) => kiln.Tensor)(m, x, { ...t, featureMask: mask, ...o });
        expectKilnError(call({ featureMask: bad.float }), 'INVALID_ARGUMENT', `${name}: featureMask must hold integer segment ids, got float32`);
        expectKilnError(call({ featureMask: bad.bool }), 'INVALID_ARGUMENT', 'featureMask must hold integer segment ids, got bool');
        expectKilnError(call({ featureMask: bad.shape }), 'INVALID_ARGUMENT', 'featureMask of shape [3, 4] does not broadcast to the input [2, 2, 4, 4]');
        expectKilnError(call({ featureMask: bad.negative }), 'INVALID_ARGUMENT', 'negative segment id (-1)');
        expectKilnError(call({ featureMask: bad.gap }), 'INVALID_ARGUMENT', 'empty segments (no element has id 1, 3)');
        expectKilnError(call({ featureMask: dead }), 'DISPOSED', 'featureMask');
        expectKilnError(call({ featureMask: [[0, 1]] }), 'INVALID_ARGUMENT', 'featureMask: expected an integer Tensor');
        expectKilnError(call({ baselines: bad.base }), 'INVALID_ARGUMENT', 'baselines of shape [3, 4, 4] does not broadcast');
        expectKilnError(call({ baselines: deadBase }), 'DISPOSED', 'baselines: the tensor was disposed');
        expectKilnError(call({ baselines: NaN }), 'INVALID_ARGUMENT', 'baselines: expected a finite number');
        expectKilnError(call({ perturbationsPerEval: 0 }), 'INVALID_ARGUMENT', 'perturbationsPerEval: expected a positive integer');
        expectKilnError(call({ target: undefined }), 'INVALID_ARGUMENT', 'target');
        expectKilnError(() => (fn as (m: kiln.nn.Module, x: unknown, o: unknown) => kiln.Tensor)(m, bad.intInput, { ...t, featureMask: mask }), 'INVALID_ARGUMENT', 'input must be floating-point');
      }
      for (const fn of [E.lime, E.kernelShap] as const) {
        const call = (o: Record<string, unknown>) => () => (fn as (m: kiln.nn.Module, x: kiln.Tensor, o: unknown) => kiln.Tensor)(m, x, { ...t, featureMask: mask, ...o });
        expectKilnError(call({ featureMask: undefined }), 'INVALID_ARGUMENT', 'featureMask: expected an integer Tensor of segment ids');
        expectKilnError(call({ samples: 0 }), 'INVALID_ARGUMENT', 'samples: expected a positive integer');
        expectKilnError(call({ samples: 2.5 }), 'INVALID_ARGUMENT', 'samples');
        expectKilnError(call({ coalitions: bad.coalShape }), 'INVALID_ARGUMENT', 'coalitions must be [S, 4]', 'got [5, 3]');
        expectKilnError(call({ coalitions: bad.coalValues }), 'INVALID_ARGUMENT', 'coalitions must hold only 0 and 1');
        expectKilnError(call({ coalitions: bad.coalOk, samples: 3 }), 'INVALID_ARGUMENT', 'samples (3) differs from the number of coalitions given (2)');
        expectKilnError(call({ returnInputShape: 'yes' }), 'INVALID_ARGUMENT', 'returnInputShape');
      }
      const lime = (o: Record<string, unknown>) => () => E.lime(m, x, { ...t, featureMask: mask, ...o } as kiln.explain.LimeOptions);
      expectKilnError(lime({ kernelWidth: 0 }), 'INVALID_ARGUMENT', 'kernelWidth: expected a number > 0');
      expectKilnError(lime({ kernelWidth: 'wide' }), 'INVALID_ARGUMENT', 'kernelWidth');
      expectKilnError(lime({ distanceMode: 'manhattan' }), 'INVALID_ARGUMENT', "distanceMode: expected 'cosine' or 'euclidean'");
      expectKilnError(lime({ surrogate: 'svm' }), 'INVALID_ARGUMENT', "surrogate: expected 'lasso', 'ridge' or 'linear'");
      expectKilnError(lime({ alpha: -1 }), 'INVALID_ARGUMENT', 'alpha: expected a finite number ≥ 0');
      expectKilnError(lime({ surrogate: 'ridge', alpha: 0 }), 'INVALID_ARGUMENT', 'alpha: expected a finite number > 0');
      expectKilnError(lime({ surrogate: 'linear', alpha: 1 }), 'INVALID_ARGUMENT', 'the linear surrogate has none');
      expectKilnError(() => E.kernelShap(m, x, { ...t, featureMask: bad.one }), 'INVALID_ARGUMENT', 'kernelShap: the feature mask has one segment');
      expectKilnError(() => E.featureAblation(m, x, undefined as unknown as kiln.explain.FeatureAblationOptions), 'INVALID_ARGUMENT', 'featureAblation: options');
      expect(kiln.memory().numTensors).to.equal(before);
      for (const v of [...Object.values(bad), x, mask]) v.dispose();
      m.dispose();
    });
  });

  describe('memory', () => {
    it('repeated calls leave no tensor behind', () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x);
      const mask = maskFromFix(FIX.masks.grid3);
      const z = maskFromFix(FIX.kernelShap.cases.determined.coalitions);
      const x0 = x.narrow(0, 0, 1);
      const calls = [
        () => E.featureAblation(m, x, { target: FIX.target, featureMask: mask, perturbationsPerEval: 2 }),
        () => E.featureAblation(m, x0, { target: 1 }),
        () => E.lime(m, x, { target: FIX.target, featureMask: mask, samples: 12, perturbationsPerEval: 5 }),
        () => E.lime(m, x, { target: FIX.target, featureMask: mask, samples: 12, surrogate: 'ridge', distanceMode: 'euclidean' }),
        () => E.kernelShap(m, x, { target: FIX.target, featureMask: mask, samples: 12 }),
        () => E.kernelShap(m, x, { target: FIX.target, featureMask: mask, coalitions: z, returnInputShape: false }),
      ];
      for (const call of calls) {
        call().dispose(); // warm-up
        const before = kiln.memory().numTensors;
        for (let i = 0; i < 3; i++) call().dispose();
        expect(kiln.memory().numTensors).to.equal(before);
      }
      for (const t of [x, x0, mask, z]) t.dispose();
      m.dispose();
    });
  });

  describe('kiln explain --method ablation|lime|kernelshap|shapley', () => {
    let dir: string;
    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-ablation-'));
      kiln.manualSeed(42);
      const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 4 });
      kiln.saveModel(path.join(dir, 'model', 'model.safetensors'), m, {
        classNames: JSON.stringify(['a', 'b', 'c']), inputSize: JSON.stringify([16, 16]), channels: '3',
        mean: JSON.stringify([0.5, 0.5, 0.5]), std: JSON.stringify([0.25, 0.25, 0.25]),
      });
      m.dispose();
      await sharp({ create: { width: 20, height: 16, channels: 3, background: { r: 30, g: 200, b: 30 } } })
        .composite([{ input: Buffer.from('<svg width="20" height="16"><rect x="4" y="4" width="8" height="8" fill="white"/></svg>') }]).png().toFile(path.join(dir, 'green.png'));
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    for (const [method, extra] of [['ablation', ['--cell', '4']], ['lime', ['--cell', '4', '--samples', '12']], ['kernelshap', []], ['shapley', ['--cell', '8', '--samples', '3']], ['lrp', []]] as const) {
      it(`${['--method', method, ...extra].join(' ')} writes one overlay PNG per image, leaking nothing`, async () => {
        const out = path.join(dir, `out-${method}`);
        const { flags, positional } = parseArgs(['--model', path.join(dir, 'model'), '--method', method, ...extra, '--out', out, '--size', '32', path.join(dir, 'green.png')], EXPLAIN_FLAGS, 'explain');
        const lines: string[] = [];
        const before = kiln.memory().numTensors;
        expect(await explainCommand(flags, positional, (s) => lines.push(s))).to.equal(0);
        expect(kiln.memory().numTensors).to.equal(before);
        expect(lines).to.have.length(1);
        expect(lines[0]).to.match(new RegExp(`green\\.png: predicted [abc] \\(\\d+\\.\\d%\\) · ${method} for [abc]`));
        const meta = await sharp(path.join(out, `green.${method}.png`)).metadata();
        expect([meta.width, meta.height]).to.deep.equal([32, 32]);
      });
    }

    it('refuses a --cell larger than the input', async () => {
      const { flags, positional } = parseArgs(['--model', path.join(dir, 'model'), '--method', 'lime', '--cell', '17', '--out', path.join(dir, 'x'), path.join(dir, 'green.png')], EXPLAIN_FLAGS, 'explain');
      let err: unknown;
      try {
        await explainCommand(flags, positional, () => undefined);
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(UsageError);
      expect((err as Error).message).to.include("--cell 17 is larger than the model's 16×16 input");
    });
  });
});
