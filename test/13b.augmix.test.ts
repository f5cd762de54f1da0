/** AugMix against torchvision 0.14, and the Gamma / Dirichlet / Beta samplers it draws from. */
import { expect } from 'chai';
import * as fs from 'fs';
import * as path from 'path';
import * as kiln from '../lib';
import * as data from '../lib/data';
import { expectNear, expectKilnError, fromFixture, FixtureTensor, values, DEVICE, skipWithoutDevice, expectAugmentedOnDevice } from './helpers';
import { augMixDraw } from '../lib/data/transforms/augmix';
import { sampleBeta } from '../lib/tensor/distributions';

type Op = data.transforms.AugmentOp;
type Fill = number | number[] | null;
interface MixCase {
  name: string; images: 'rgb' | 'grey'; interpolation: 'bilinear' | 'nearest'; fill: Fill;
  weights: number[][]; chains: [Op, number][][][]; out: FixtureTensor;
}
const fx = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'augmix.json'), 'utf8')) as {
  rgb: FixtureTensor; grey: FixtureTensor; mixes: MixCase[];
  ops: { op: Op; magnitude: number; fill: Fill; out: FixtureTensor }[];
  spaces: { numBins: number; size: [number, number]; allOps: boolean; ops: Op[]; magnitudes: number[][]; signed: boolean[] }[];
};
const T = data.transforms;
const fillOf = (f: Fill) => (f === null ? {} : { fill: f });
const DEFAULTS = { severity: 3, mixtureWidth: 3, chainDepth: -1, alpha: 1, allOps: true };

/** Sample mean and unbiased variance. */
function moments(xs: ArrayLike<number>): { mean: number; variance: number } {
  const n = xs.length;
  let s = 0;
  for (let i = 0; i < n; i++) s += xs[i];
  const mean = s / n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (xs[i] - mean) ** 2;
  return { mean, variance: v / (n - 1) };
}
/** Pearson's χ² of counts against equal expectations. */
function chi2Uniform(counts: number[]): number {
  const e = counts.reduce((a, b) => a + b, 0) / counts.length;
  return counts.reduce((s, o) => s + (o - e) ** 2 / e, 0);
}

describe('13b AugMix', function () {
  this.timeout(60000);

  it("the core equals torchvision's AugMix.forward fed the same draws (bilinear and nearest, fills, grey images)", () => {
    expect(fx.mixes.map((m) => m.name)).to.deep.equal(['default', 'severe', 'wide-nearest', 'grey']);
    const seen = new Set<Op>();
    let unequalDepths = 0;
    kiln.tidy(() => {
      for (const m of fx.mixes) {
        const x = fromFixture(fx[m.images]);
        m.chains.forEach((cs) => cs.forEach((steps) => steps.forEach(([op]) => seen.add(op))));
        // per image, chains of different lengths: the shorter ones take Identity for the extra steps
        unequalDepths += m.chains.filter((cs) => new Set(cs.map((s) => s.length)).size > 1).length;
        const out = T.applyAugMix(x, { weights: m.weights, chains: m.chains }, { interpolation: m.interpolation, ...fillOf(m.fill) });
        expectNear(out, fromFixture(m.out), 1e-5, m.name);
      }
    });
    expect(seen.size, 'ops covered').to.equal(13);
    expect(unequalDepths, 'images with chains of unequal depth').to.be.above(3);
  });

  it("bilinear geometric ops equal torchvision's _apply_op (no fill: zeros; fill blended by the sampled mask)", () => {
    expect(fx.ops).to.have.length(21);
    kiln.tidy(() => {
      const x = fromFixture(fx.rgb).narrow(0, 0, 2);
      for (const c of fx.ops) {
        const out = T.applyAugmentOps(x, c.op, c.magnitude, { interpolation: 'bilinear', ...fillOf(c.fill) });
        expectNear(out, fromFixture(c.out), 2e-6, `${c.op} ${c.magnitude} fill ${c.fill}`);
      }
      // the policies' nearest sampling is unchanged by the default
      expect(values(T.applyAugmentOps(x, 'Rotate', 17))).to.deep.equal(values(T.applyAugmentOps(x, 'Rotate', 17, { interpolation: 'nearest' })));
    });
  });

  it("AugMix's op space equals torchvision's _augmentation_space (13 ops, 9 without allOps)", () => {
    expect(fx.spaces).to.have.length(8);
    for (const s of fx.spaces) {
      const mine = T.augmentationSpace('augMix', { numBins: s.numBins, imageSize: s.size, allOps: s.allOps });
      const what = `${s.numBins} ${s.size} allOps ${s.allOps}`;
      expect(mine.ops, what).to.deep.equal(s.ops);
      expect(mine.signed, what).to.deep.equal(s.signed);
      mine.magnitudes.forEach((m, i) => expect(m, `${what} ${s.ops[i]}`).to.deep.equal(s.magnitudes[i].map((v) => Math.fround(v))));
      expect(mine.ops).to.have.length(s.allOps ? 13 : 9);
    }
    expect(T.augmentationSpace('augMix').magnitudes[0]).to.have.length(10); // _PARAMETER_MAX bins by default
  });

  it('sampleGamma, sampleDirichlet and sampleBeta have their distributions’ moments; seeded draws repeat', () => {
    kiln.manualSeed(11);
    const n = 20000;
    for (const a of [0.05, 0.3, 1, 4.5]) {
      const g = kiln.sampleGamma(a, n);
      const { mean, variance } = moments(g);
      expect(g.length).to.equal(n);
      expect(Math.min(...g), `Gamma(${a}) ≥ 0`).to.be.at.least(0);
      expect(mean, `mean of Gamma(${a})`).to.be.closeTo(a, 4 * Math.sqrt(a / n));
      // Var(sample variance) = (μ₄ − σ⁴)/n, μ₄ = 3a² + 6a for Gamma(a, 1)
      expect(variance, `variance of Gamma(${a})`).to.be.closeTo(a, 4 * Math.sqrt((3 * a * a + 6 * a - a * a) / n));
    }
    for (const alphas of [[0.5, 1, 2.5], [1, 1, 1, 1], [0.2, 0.2]]) {
      const rows = kiln.sampleDirichlet(alphas, n);
      const a0 = alphas.reduce((s, v) => s + v, 0);
      expect(rows).to.have.length(n);
      for (const r of rows.slice(0, 500)) expect(r.reduce((s, v) => s + v, 0)).to.be.closeTo(1, 1e-12);
      alphas.forEach((a, j) => {
        const { mean, variance } = moments(rows.map((r) => r[j]));
        const m = a / a0, v = (a * (a0 - a)) / (a0 * a0 * (a0 + 1));
        expect(mean, `mean of Dirichlet(${alphas})[${j}]`).to.be.closeTo(m, 4 * Math.sqrt(v / n));
        expect(variance, `variance of Dirichlet(${alphas})[${j}]`).to.be.closeTo(v, 0.06 * v);
      });
      // covariance of the first two: −αᵢαⱼ / (α₀²(α₀ + 1))
      const c = moments(rows.map((r) => r[0])).mean, d = moments(rows.map((r) => r[1])).mean;
      const cov = rows.reduce((s, r) => s + (r[0] - c) * (r[1] - d), 0) / (n - 1);
      const want = (-alphas[0] * alphas[1]) / (a0 * a0 * (a0 + 1));
      expect(cov, `covariance of Dirichlet(${alphas})`).to.be.closeTo(want, 0.08 * Math.abs(want));
    }
    const beta = sampleBeta(2, 5, n);
    const bm = moments(beta), bv = (2 * 5) / (49 * 8);
    expect(bm.mean).to.be.closeTo(2 / 7, 4 * Math.sqrt(bv / n));
    expect(bm.variance).to.be.closeTo(bv, 0.06 * bv);
    expect(typeof sampleBeta(2, 5)).to.equal('number');
    // a tiny α stays finite (log-space draws): rows sum to 1, no NaN
    for (const r of kiln.sampleDirichlet([0.01, 0.01, 0.01], 200)) expect(r.reduce((s, v) => s + v, 0)).to.be.closeTo(1, 1e-12);
    kiln.manualSeed(3);
    const a = [kiln.sampleDirichlet([1, 2], 5), kiln.sampleGamma(0.5, 5)];
    kiln.manualSeed(3);
    expect([kiln.sampleDirichlet([1, 2], 5), kiln.sampleGamma(0.5, 5)]).to.deep.equal(a);
  });

  it('draws per image: ops uniform over 13 or 9 (χ²), depths uniform in {1, 2, 3}, bins uniform in [0, severity), signs fair, weights Dirichlet', () => {
    const b = 4000, h = 32, w = 32;
    for (const allOps of [true, false]) {
      kiln.manualSeed(allOps ? 31 : 32);
      const severity = allOps ? 3 : 7;
      const d = augMixDraw({ ...DEFAULTS, severity, allOps })(b, h, w);
      const space = T.augmentationSpace('augMix', { imageSize: [h, w], allOps });
      const opCounts = new Array(space.ops.length).fill(0), depthCounts = [0, 0, 0], binCounts = new Array(severity).fill(0);
      let signed = 0, negative = 0;
      for (const cs of d.chains) {
        expect(cs).to.have.length(3);
        for (const steps of cs) {
          depthCounts[steps.length - 1]++;
          for (const [op, m] of steps) {
            const k = space.ops.indexOf(op);
            expect(k, op).to.be.at.least(0);
            opCounts[k]++;
            const table = space.magnitudes[k];
            if (table.length === 0) { expect(m).to.equal(0); continue; }
            const bin = table.indexOf(Math.abs(m));
            expect(bin, `${op} ${m}`).to.be.within(0, severity - 1);
            if (op !== 'Posterize') binCounts[bin]++; // posterize's bins repeat values (4, 4, 3, 3, …)
            if (space.signed[space.ops.indexOf(op)] && m !== 0) { signed++; if (m < 0) negative++; } else expect(m).to.be.at.least(0);
          }
        }
      }
      // P(χ² > x) = 0.001: 12 dof 32.91, 8 dof 26.12, 6 dof 22.46, 2 dof 13.82
      expect(chi2Uniform(opCounts), `ops ${opCounts}`).to.be.below(allOps ? 32.91 : 26.12);
      expect(chi2Uniform(depthCounts), `depths ${depthCounts}`).to.be.below(13.82);
      expect(chi2Uniform(binCounts), `bins ${binCounts}`).to.be.below(severity === 3 ? 13.82 : 22.46);
      expect(negative / signed, 'negated share of signed steps').to.be.closeTo(0.5, 4 * Math.sqrt(0.25 / signed));
      // weights: rows sum to 1, m₀ ~ Beta(1, 1), each chain's weight has mean ½ · ⅓
      for (const r of d.weights) expect(r.reduce((s, v) => s + v, 0)).to.be.closeTo(1, 1e-12);
      const m0 = moments(d.weights.map((r) => r[0]));
      expect(m0.mean).to.be.closeTo(0.5, 4 * Math.sqrt(1 / 12 / b));
      expect(m0.variance).to.be.closeTo(1 / 12, 0.1 / 12);
      for (let j = 1; j <= 3; j++) expect(moments(d.weights.map((r) => r[j])).mean).to.be.closeTo(1 / 6, 0.01);
    }
    kiln.manualSeed(4);
    const fixed = augMixDraw({ ...DEFAULTS, chainDepth: 2, mixtureWidth: 5 })(50, 8, 8);
    expect(fixed.chains.every((cs) => cs.length === 5 && cs.every((s) => s.length === 2))).to.equal(true);
    expect(fixed.weights.every((r) => r.length === 6)).to.equal(true);
  });

  it('the transform applies exactly its draw, each image its own; seeded runs repeat', () => {
    kiln.tidy(() => {
      kiln.manualSeed(1);
      const x = kiln.rand([16, 3, 12, 12]);
      const cases: [data.BatchTransform, Parameters<typeof augMixDraw>[0], { fill?: number[]; interpolation?: 'nearest' }][] = [
        [data.augMix(), DEFAULTS, {}],
        [data.augMix({ severity: 9, mixtureWidth: 2, chainDepth: 4, alpha: 0.3, allOps: false, interpolation: 'nearest', fill: [0.1, 0.2, 0.3] }),
          { severity: 9, mixtureWidth: 2, chainDepth: 4, alpha: 0.3, allOps: false }, { fill: [0.1, 0.2, 0.3], interpolation: 'nearest' }],
      ];
      for (const [t, params, opts] of cases) {
        kiln.manualSeed(42);
        const d = augMixDraw(params)(16, 12, 12);
        kiln.manualSeed(42);
        const out = t(x);
        expectNear(out, T.applyAugMix(x, d, opts), 1e-6, JSON.stringify(params));
        kiln.manualSeed(42);
        expect(values(t(x)), 'seeded').to.deep.equal(values(out));
        expect(values(t(x)), 'unseeded').to.not.deep.equal(values(out));
        // every image drew its own chains and weights
        expect(new Set(d.chains.map((c) => JSON.stringify(c))).size).to.equal(16);
        expect(new Set(d.weights.map((r) => r[0])).size).to.equal(16);
      }
      // one image of the batch equals the core on that image alone
      kiln.manualSeed(7);
      const d = augMixDraw(DEFAULTS)(16, 12, 12);
      const one = T.applyAugMix(x.narrow(0, 5, 1), { weights: [d.weights[5]], chains: [d.chains[5]] });
      expectNear(T.applyAugMix(x, d).narrow(0, 5, 1), one, 1e-6, 'image 5 alone');
      // all weight on the original: the images come back
      const keep = { weights: d.weights.map((r) => r.map((_, j) => (j === 0 ? 1 : 0))), chains: d.chains };
      expectNear(T.applyAugMix(x, keep), x, 1e-7, 'm₀ = 1');
    });
  });

  it('forEvaluation drops it; grey images, single images [C, H, W] and empty batches work; stays in [0, 1]', () => {
    kiln.tidy(() => {
      const norm = data.normalize([0.5], [0.25]);
      const t = data.augMix();
      expect(data.forEvaluation(t)).to.equal(undefined);
      expect(data.forEvaluation(data.compose(t, norm))).to.equal(norm);
      const grey = fromFixture(fx.grey);
      expect(t(grey).shape).to.deep.equal([3, 1, 10, 12]);
      expect(t(fromFixture(fx.rgb).select(0, 1)).shape).to.deep.equal([3, 10, 12]);
      expect(t(kiln.zeros([0, 3, 8, 8])).shape).to.deep.equal([0, 3, 8, 8]);
      expect(T.applyAugMix(kiln.zeros([0, 3, 8, 8]), { weights: [], chains: [] }).shape).to.deep.equal([0, 3, 8, 8]);
      const out = t(kiln.rand([32, 3, 16, 16]));
      expect(Math.min(...values(out))).to.be.at.least(0);
      expect(Math.max(...values(out))).to.be.at.most(1 + 1e-6);
    });
  });

  it('bad options, draws and inputs give KilnErrors naming the problem', () => {
    expectKilnError(() => data.augMix({ severity: 0 }), 'INVALID_ARGUMENT', 'severity', '[1, 10]');
    expectKilnError(() => data.augMix({ severity: 11 }), 'INVALID_ARGUMENT', 'severity');
    expectKilnError(() => data.augMix({ severity: 2.5 }), 'INVALID_ARGUMENT', 'severity');
    expectKilnError(() => data.augMix({ mixtureWidth: 0 }), 'INVALID_ARGUMENT', 'mixtureWidth', 'positive integer');
    expectKilnError(() => data.augMix({ chainDepth: 1.5 }), 'INVALID_ARGUMENT', 'chainDepth');
    expectKilnError(() => data.augMix({ alpha: 0 }), 'INVALID_ARGUMENT', 'alpha');
    expectKilnError(() => data.augMix({ alpha: NaN }), 'INVALID_ARGUMENT', 'alpha');
    expectKilnError(() => data.augMix({ allOps: 'yes' as never }), 'INVALID_ARGUMENT', 'allOps');
    expectKilnError(() => data.augMix({ interpolation: 'bicubic' as never }), 'INVALID_ARGUMENT', 'interpolation', 'bicubic');
    expectKilnError(() => data.augMix({ fill: 'red' as never }), 'INVALID_ARGUMENT', 'fill');
    expectKilnError(() => data.augMix(null as never), 'INVALID_ARGUMENT', 'options');
    expectKilnError(() => T.augmentationSpace('augMix', { allOps: 1 as never }), 'INVALID_ARGUMENT', 'allOps');
    expectKilnError(() => kiln.sampleGamma(0, 3), 'INVALID_ARGUMENT', 'sampleGamma: alpha');
    expectKilnError(() => kiln.sampleGamma(1, -1), 'INVALID_ARGUMENT', 'sampleGamma: n');
    expectKilnError(() => kiln.sampleDirichlet([], 3), 'INVALID_ARGUMENT', 'sampleDirichlet: alphas');
    expectKilnError(() => kiln.sampleDirichlet([1, -2], 3), 'INVALID_ARGUMENT', 'alphas[1]');
    expectKilnError(() => sampleBeta(1, 1, 2.5), 'INVALID_ARGUMENT', 'sampleBeta: n');
    kiln.tidy(() => {
      const x = kiln.rand([2, 3, 8, 8]);
      const ok = { weights: [[0.5, 0.5], [0.2, 0.8]], chains: [[[['Rotate', 10]]], [[]]] } as data.transforms.AugMixDraw;
      expect(T.applyAugMix(x, ok).shape).to.deep.equal([2, 3, 8, 8]);
      expectKilnError(() => T.applyAugMix(x, { ...ok, weights: [[1, 0]] }), 'INVALID_ARGUMENT', 'draw.weights', '2 rows');
      expectKilnError(() => T.applyAugMix(x, { ...ok, weights: [[0.5, 0.5], [1]] }), 'INVALID_ARGUMENT', 'draw.weights[1]');
      expectKilnError(() => T.applyAugMix(x, { ...ok, chains: [[], []] }), 'INVALID_ARGUMENT', 'draw.chains[0]', '1 chains');
      expectKilnError(() => T.applyAugMix(x, { ...ok, chains: [[[['Blur' as Op, 1]]], [[]]] }), 'INVALID_ARGUMENT', 'draw.chains[0][0][0][0]', 'Blur');
      expectKilnError(() => T.applyAugMix(x, { ...ok, chains: [[[['Posterize', 9]]], [[]]] }), 'INVALID_ARGUMENT', 'draw.chains[0][0][0][1] (Posterize)', '[0, 8]');
      expectKilnError(() => T.applyAugMix(x, null as never), 'INVALID_ARGUMENT', 'draw');
      expectKilnError(() => T.applyAugMix(x, ok, { interpolation: 'area' as never }), 'INVALID_ARGUMENT', 'interpolation');
      expectKilnError(() => T.applyAugmentOps(x, 'Rotate', 5, { interpolation: 'cubic' as never }), 'INVALID_ARGUMENT', 'interpolation');
      expectKilnError(() => data.augMix({ fill: [0.1, 0.2] })(x), 'INVALID_ARGUMENT', 'fill', '1 or 3 values');
      expectKilnError(() => data.augMix()(x.mul(255).to({ dtype: 'uint8' })), 'INVALID_ARGUMENT', 'float images', 'uint8');
      expectKilnError(() => data.augMix()(kiln.rand([2, 4, 8, 8])), 'INVALID_ARGUMENT', '1 or 3 channels', 'got 4');
      x.dispose();
      expectKilnError(() => data.augMix()(x), 'INVALID_ARGUMENT', 'augMix(x)');
    });
  });

  it('repeated calls leak no tensors; throughput on 128 32×32 RGB images (grouped vs one image at a time)', () => {
    const x = kiln.rand([128, 3, 32, 32]);
    const t = data.augMix();
    t(x).dispose(); // warm-up
    kiln.sampleDirichlet([1, 1, 1], 10);
    const before = kiln.memory().numTensors;
    const reps = 5;
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) t(x).dispose();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6 / reps;
    kiln.sampleDirichlet([0.5, 2], 100);
    kiln.sampleGamma(0.3, 100);
    expect(kiln.memory().numTensors, 'tensors left').to.equal(before);
    // the same draws applied image by image (the core on each image alone)
    kiln.manualSeed(9);
    const d = augMixDraw(DEFAULTS)(128, 32, 32);
    t0 = process.hrtime.bigint();
    kiln.tidy(() => {
      for (let i = 0; i < 128; i++) T.applyAugMix(x.narrow(0, i, 1), { weights: [d.weights[i]], chains: [d.chains[i]] }).dispose();
    });
    const single = Number(process.hrtime.bigint() - t0) / 1e6;
    expect(kiln.memory().numTensors, 'tensors left').to.equal(before);
    x.dispose();
    console.log(`      batch 128×3×32×32, 1 thread: augMix ${ms.toFixed(1)} ms (${Math.round(128000 / ms)} images/s); one image at a time ${single.toFixed(1)} ms (${(single / ms).toFixed(1)}× slower)`);
  });
});

/**
 * AugMix on KILN_TEST_DEVICE (default 'cpu'; 'cuda' on the GPU machine): the draws come from the
 * CPU generator, so one seed mixes the same chains on every device. On the CPU the fixtures hold as
 * above and a device batch equals the CPU batch exactly; on CUDA the tolerances of
 * expectAugmentedOnDevice (helpers.ts: TF32 Sharpness, nearest-neighbour ties).
 */
describe(`13b AugMix on a ${DEVICE} batch`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);
  /** Each image's ops, all chains together. */
  const opsOf = (chains: [Op, number][][][]) => chains.map((cs) => cs.flatMap((steps) => steps.map(([op]) => op as string)));

  it("the core equals torchvision's AugMix.forward fed the same draws", () => {
    kiln.tidy(() => {
      for (const m of fx.mixes) {
        const x = fromFixture(fx[m.images]).to(DEVICE);
        const out = T.applyAugMix(x, { weights: m.weights, chains: m.chains }, { interpolation: m.interpolation, ...fillOf(m.fill) });
        expectAugmentedOnDevice(out, fromFixture(m.out), opsOf(m.chains), { cpuTol: 1e-5, nearest: m.interpolation === 'nearest', what: m.name });
      }
    });
  });

  it("bilinear geometric ops equal torchvision's _apply_op", () => {
    kiln.tidy(() => {
      const x = fromFixture(fx.rgb).narrow(0, 0, 2).to(DEVICE);
      for (const c of fx.ops) {
        const out = T.applyAugmentOps(x, c.op, c.magnitude, { interpolation: 'bilinear', ...fillOf(c.fill) });
        expectAugmentedOnDevice(out, fromFixture(c.out), [[c.op], [c.op]], { cpuTol: 2e-6, nearest: false, what: `${c.op} ${c.magnitude} fill ${c.fill}` });
      }
    });
  });

  it('a seeded transform on a device batch equals it on the CPU batch; no tensors leak', () => {
    kiln.manualSeed(1);
    const x = kiln.rand([16, 3, 12, 12]);
    const xd = x.to(DEVICE);
    const cases: [data.BatchTransform, Parameters<typeof augMixDraw>[0], boolean][] = [
      [data.augMix(), DEFAULTS, false],
      [data.augMix({ severity: 9, mixtureWidth: 2, chainDepth: 4, alpha: 0.3, allOps: false, interpolation: 'nearest', fill: [0.1, 0.2, 0.3] }),
        { severity: 9, mixtureWidth: 2, chainDepth: 4, alpha: 0.3, allOps: false }, true],
    ];
    const run = (t: data.BatchTransform, input: kiln.Tensor) => { kiln.manualSeed(42); return t(input); };
    for (const [t, params, nearest] of cases) {
      kiln.tidy(() => {
        const cpu = run(t, x), dev = run(t, xd);
        kiln.manualSeed(42);
        const d = augMixDraw(params)(16, 12, 12);
        expectAugmentedOnDevice(dev, cpu, opsOf(d.chains), { cpuTol: 0, nearest, what: JSON.stringify(params) });
      });
    }
    for (const [t] of cases) run(t, xd).dispose(); // warm
    const before = kiln.memory().numTensors;
    for (const [t] of cases) run(t, xd).dispose();
    expect(kiln.memory().numTensors, 'tensors left').to.equal(before);
    x.dispose();
    xd.dispose();
  });
});
