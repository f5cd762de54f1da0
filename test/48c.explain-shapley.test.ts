/**
 * kiln.explain.shapleyValueSampling / shapleyValues (and featurePermutation): agreement with a plain-PyTorch transcription of Captum's
 * ShapleyValueSampling and ShapleyValues (scripts/make-shapley-fixtures.py → test/fixtures/shapley.json) under the
 * same seed, the permutations drawn equal to torch.randperm's, efficiency (the attributions of each image add up to
 * f(x) − f(baseline)), exactness on linear models, batching, bad arguments, no leaks and `kiln explain --method
 * shapley`. Runs on KILN_TEST_DEVICE (default 'cpu') in float64; permutations come from the CPU generator.
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectKilnError, maxAbsDiff, DEVICE, ON_CPU, skipWithoutDevice, fixture64 as fromFix, ShapedValues as Shaped } from './helpers';

const E = kiln.explain;
const { nn } = kiln;
const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'shapley.json'), 'utf8'));
const TOL = ON_CPU ? 1e-10 : 1e-9;
const gridOn = (h: number, w: number, cell: number): kiln.Tensor => kiln.tidy(() => E.gridMask(h, w, { cell }).to(DEVICE));

/** The fixture's CNN (conv, ReLU, max pool, linear) in float64 with its weights. */
function fixtureModel(): kiln.nn.Sequential {
  const m = new nn.Sequential(new nn.Conv2d(2, 4, 3, { padding: 1 }), new nn.ReLU(), new nn.MaxPool2d(2), new nn.Flatten(), new nn.Linear(64, 5)).to('float64');
  const state: Record<string, kiln.Tensor> = {};
  for (const [k, v] of Object.entries(FIX.model as Record<string, Shaped>)) state[k] = fromFix(v, 'cpu');
  m.loadStateDict(state);
  for (const t of Object.values(state)) t.dispose();
  m.to(DEVICE);
  return m.eval();
}

/** Per image, the sum over features of the attributions, for equal features of `area` pixels (every element of a feature, on every channel, holds its value). */
function perFeatureSums(attr: kiln.Tensor, area: number): number[] {
  return kiln.tidy(() => Array.from(attr.flatten(1).sum([1]).div(area * attr.size(1)).cpu().dataSync() as Float64Array));
}

describe(`48c Shapley values (${DEVICE})`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);

  describe('against the transcription of Captum', () => {
    for (const [name, c] of Object.entries(FIX.cases as Record<string, any>).filter(([, c]) => c.kind !== 'permutation')) {
      it(`${name}: the same attributions${c.kind === 'sampling' ? ' from the same permutations under the same seed' : ' over all permutations'}`, () => {
        const model = fixtureModel();
        const x = fromFix(FIX.x);
        const base = c.baseline === 'tensor' ? fromFix(FIX.baseline) : c.baseline;
        const featureMask = gridOn(8, 8, c.cell);
        const count = (8 / c.cell) ** 2;
        if (c.kind === 'sampling') {
          // kiln.manualSeed + randperm draws torch.randperm's permutations
          kiln.manualSeed(c.seed);
          const drawn = Array.from({ length: Math.min(8, c.samples) }, () => kiln.tidy(() => Array.from(kiln.randperm(count).dataSync() as BigInt64Array, Number)));
          expect(drawn).to.deep.equal(c.permutations);
          kiln.manualSeed(c.seed);
        }
        const o = { target: FIX.target, featureMask, baselines: base, samples: c.samples ?? undefined };
        const attr = c.kind === 'sampling' ? E.shapleyValueSampling(model, x, o) : E.shapleyValues(model, x, o);
        expect(attr.shape).to.deep.equal(x.shape);
        expect(attr.dtype).to.equal('float64');
        expect(maxAbsDiff(attr.cpu(), c.attributions.values)).to.be.below(TOL);
        // efficiency: per image, the features' values add up to f(x) − f(baseline)
        const gap = kiln.tidy(() => {
          const t = kiln.tensor(FIX.target, { dtype: 'int64', device: DEVICE }).unsqueeze(1);
          const b = base instanceof kiln.Tensor ? base.expand(x.shape) : kiln.fullLike(x, base);
          return Array.from(model.call(x).gather(1, t).sub(model.call(b).gather(1, t)).flatten().cpu().dataSync() as Float64Array);
        });
        perFeatureSums(attr, c.cell * c.cell).forEach((v, i) => expect(v, `image ${i}`).to.be.closeTo(gap[i], 1e-9));
        for (const t of [model, x, featureMask, attr, ...(base instanceof kiln.Tensor ? [base] : [])]) t.dispose();
      });
    }
  });

  it("featurePermutation (Captum's FeaturePermutation): the same batch permutations under the same seed and the same attributions", () => {
    const c = FIX.cases.permutation;
    const model = fixtureModel();
    const x = fromFix(c.x);
    const featureMask = gridOn(8, 8, c.cell);
    kiln.manualSeed(c.seed);
    const attr = E.featurePermutation(model, x, { target: c.target, featureMask });
    expect(maxAbsDiff(attr.cpu(), c.attributions.values)).to.be.below(TOL);
    // the permutations drawn: randperm(4) per feature, redrawn while the identity
    kiln.manualSeed(c.seed);
    const drawn: number[][] = [];
    while (drawn.length < 4) {
      const p = kiln.tidy(() => Array.from(kiln.randperm(4).dataSync() as BigInt64Array, Number));
      if (p.some((v, i) => v !== i)) drawn.push(p);
    }
    expect(drawn).to.deep.equal(c.permutations);
    // one image cannot be permuted
    const one = x.narrow(0, 0, 1);
    expectKilnError(() => E.featurePermutation(model, one, { target: 0, featureMask }), 'INVALID_ARGUMENT', 'at least 2 examples');
    for (const t of [model, x, one, featureMask, attr]) t.dispose();
  });

  it('on a linear model every permutation gives w·(x − b) per feature: sampling equals the exact values and feature ablation', () => {
    kiln.manualSeed(3);
    const m = new nn.Sequential(new nn.Flatten(), new nn.Linear(2 * 4 * 4, 3)).to('float64').to(DEVICE).eval();
    const x = kiln.randn([3, 2, 4, 4], { dtype: 'float64' }).to(DEVICE), base = kiln.randn([1, 2, 4, 4], { dtype: 'float64' }).to(DEVICE);
    const featureMask = gridOn(4, 4, 2);
    const o = { target: [0, 2, 1], featureMask, baselines: base };
    const exact = E.shapleyValues(m, x, o);
    const sampled = E.shapleyValueSampling(m, x, { ...o, samples: 2 });
    const ablation = E.featureAblation(m, x, o);
    expect(maxAbsDiff(exact, sampled)).to.be.below(1e-12);
    expect(maxAbsDiff(exact, ablation)).to.be.below(1e-12);
    // without a mask every element is a feature: w_e (x_e − b_e) exactly, batched one feature per pass or many
    const tiny = new nn.Sequential(new nn.Flatten(), new nn.Linear(4, 2)).to('float64').to(DEVICE).eval();
    const xt = kiln.randn([2, 1, 2, 2], { dtype: 'float64' }).to(DEVICE);
    const one = E.shapleyValues(tiny, xt, { target: 1, perturbationsPerEval: 1 });
    const many = E.shapleyValues(tiny, xt, { target: 1 });
    const w = kiln.tidy(() => (tiny.get('1') as kiln.nn.Linear).weight.select(0, 1).reshape([1, 1, 2, 2]));
    const want = kiln.tidy(() => xt.mul(w));
    expect(maxAbsDiff(one, want)).to.be.below(1e-12);
    expect(maxAbsDiff(many, one)).to.equal(0);
    for (const t of [x, base, featureMask, exact, sampled, ablation, xt, one, many, w, want]) t.dispose();
    m.dispose();
    tiny.dispose();
  });

  it('rejects bad arguments with KilnErrors naming them, leaking nothing', () => {
    const model = fixtureModel();
    const x = fromFix(FIX.x);
    const featureMask = gridOn(8, 8, 4), floatMask = kiln.tidy(() => featureMask.float());
    const before = kiln.memory().numTensors;
    expectKilnError(() => E.shapleyValues(model, x, { target: 0 }), 'INVALID_ARGUMENT', '128 features', 'at most 8 segments', 'shapleyValueSampling');
    expectKilnError(() => E.shapleyValueSampling(model, x, { target: 0, featureMask, samples: 0 }), 'INVALID_ARGUMENT', 'samples');
    expectKilnError(() => E.shapleyValueSampling(model, x, { target: 9, featureMask }), 'INVALID_ARGUMENT', 'target');
    expectKilnError(() => E.shapleyValueSampling(model, x, { target: 0, featureMask, baselines: NaN }), 'INVALID_ARGUMENT', 'baselines');
    expectKilnError(() => E.shapleyValueSampling(model, x, { target: 0, featureMask, perturbationsPerEval: -1 }), 'INVALID_ARGUMENT', 'perturbationsPerEval');
    expectKilnError(() => E.shapleyValueSampling(model, x, { target: 0, featureMask: floatMask }), 'INVALID_ARGUMENT', 'featureMask');
    expectKilnError(() => E.shapleyValueSampling(model, x, undefined as never), 'INVALID_ARGUMENT', 'shapleyValueSampling');
    // many runs leak nothing
    for (let i = 0; i < 3; i++) E.shapleyValueSampling(model, x, { target: 1, featureMask, samples: 2 }).dispose();
    expect(kiln.memory().numTensors).to.equal(before);
    for (const t of [model, x, featureMask, floatMask]) t.dispose();
  });
});
