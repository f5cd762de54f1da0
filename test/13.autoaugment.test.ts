/** Automatic augmentation policies (TrivialAugmentWide, RandAugment, AutoAugment) against torchvision 0.14. */
import { expect } from 'chai';
import * as fs from 'fs';
import * as path from 'path';
import * as kiln from '../lib';
import * as data from '../lib/data';
import { expectNear, expectKilnError, fromFixture, FixtureTensor, values, DEVICE, skipWithoutDevice, expectAugmentedOnDevice } from './helpers';
import { trivialAugmentWideDraw, randAugmentDraw, autoAugmentDraw, Draw } from '../lib/data/transforms/autoaugment';

type Op = data.transforms.AugmentOp;
interface OpCase { op: Op; magnitude: number; fill: number | number[] | null; out: FixtureTensor }
const fx = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'autoaugment.json'), 'utf8')) as {
  rgb: FixtureTensor; grey: FixtureTensor; ops: OpCase[]; greyOps: OpCase[];
  spaces: { kind: data.transforms.AugmentSpaceKind; numBins: number; size: [number, number]; ops: Op[]; magnitudes: number[][]; signed: boolean[] }[];
  policies: Record<'cifar10' | 'imagenet' | 'svhn', [Op, number, number | null][][]>;
};
const T = data.transforms;
const fillOf = (c: OpCase) => (c.fill === null ? {} : { fill: c.fill });
/** Images that differ from their input (per image, any pixel). */
const changed = (a: kiln.Tensor, x: kiln.Tensor) => values(a.sub(x).abs().amax([1, 2, 3]).gt(1e-6));

describe('13 automatic augmentation (TrivialAugmentWide, RandAugment, AutoAugment)', () => {
  it('every op equals torchvision _apply_op on RGB images (all images, one op)', () => {
    kiln.tidy(() => {
      const x = fromFixture(fx.rgb);
      expect(fx.ops.length).to.equal(36);
      for (const c of fx.ops) expectNear(T.applyAugmentOps(x, c.op, c.magnitude, fillOf(c)), fromFixture(c.out), 2e-6, `${c.op} ${c.magnitude} fill ${c.fill}`);
    });
  });

  it('every op equals torchvision on grey (1-channel) images; Color is the identity there', () => {
    kiln.tidy(() => {
      const g = fromFixture(fx.grey);
      for (const c of fx.greyOps) expectNear(T.applyAugmentOps(g, c.op, c.magnitude, fillOf(c)), fromFixture(c.out), 2e-6, `grey ${c.op} ${c.magnitude}`);
      expect(values(T.applyAugmentOps(g, 'Color', 0.9))).to.deep.equal(values(g));
    });
  });

  it('per image: a batch where each image has its own op and magnitude equals the one-op references', () => {
    kiln.tidy(() => {
      const x = fromFixture(fx.rgb);
      const n = x.size(0);
      const cases = fx.ops.filter((c) => c.fill === null);
      // image i of each mixed batch takes case (start + i); its reference is row i of that case
      for (let start = 0; start + n <= cases.length; start += n) {
        const pick = cases.slice(start, start + n);
        const out = T.applyAugmentOps(x, pick.map((c) => c.op), pick.map((c) => c.magnitude));
        pick.forEach((c, i) => expectNear(out.select(0, i), fromFixture(c.out).select(0, i), 2e-6, `image ${i}: ${c.op} ${c.magnitude}`));
      }
    });
  });

  it("op tables, magnitude bins and signs equal torchvision's _augmentation_space", () => {
    expect(fx.spaces.length).to.equal(7);
    for (const s of fx.spaces) {
      const mine = T.augmentationSpace(s.kind, { numBins: s.numBins, imageSize: s.size });
      expect(mine.ops, `${s.kind} ops`).to.deep.equal(s.ops);
      expect(mine.signed, `${s.kind} signed`).to.deep.equal(s.signed);
      // float32 values to within two ulps: torch.linspace rounds differently across libtorch versions (1.13's and
      // 2.11's differ by an ulp in some bins; the fixture is 1.13's); posterize bits exactly, as integers
      mine.magnitudes.forEach((m, i) => {
        const want = s.magnitudes[i].map((v) => Math.fround(v));
        expect(m, `${s.kind} ${s.numBins} ${s.size} ${s.ops[i]}`).to.have.length(want.length);
        m.forEach((v, j) => expect(Math.abs(v - want[j]), `${s.kind} ${s.numBins} ${s.size} ${s.ops[i]} bin ${j}: ${v} vs ${want[j]}`).to.be.at.most(2.5e-7 * Math.max(1, Math.abs(want[j]))));
      });
    }
    expect(T.AUGMENT_OPS).to.have.length(15);
  });

  it("AutoAugment's policies equal torchvision's (cifar10, imagenet, svhn: 25 sub-policies of 2 steps)", () => {
    for (const name of ['cifar10', 'imagenet', 'svhn'] as const) {
      expect(fx.policies[name]).to.have.length(25);
      expect(T.AUTOAUGMENT_POLICIES[name], name).to.deep.equal(fx.policies[name]);
    }
  });

  /** Counts of each global op id in the layers drawn for `n` images (one draw). */
  function opCounts(draw: Draw, n: number, layer = 0): number[] {
    return kiln.tidy(() => {
      const ops = values(draw(n, 32, 32)[layer].op);
      const counts = new Array(T.AUGMENT_OPS.length).fill(0);
      for (const o of ops) counts[o]++;
      return counts;
    });
  }
  /** Pearson's χ² of observed counts against expected counts (cells with expectation 0 must be empty). */
  function chi2(observed: number[], expected: number[]): number {
    let s = 0;
    observed.forEach((o, i) => {
      if (expected[i] === 0) expect(o, `op ${T.AUGMENT_OPS[i]} never expected`).to.equal(0);
      else s += (o - expected[i]) ** 2 / expected[i];
    });
    return s;
  }

  it('TrivialAugmentWide and RandAugment draw each of their 14 ops uniformly per image (χ² over 28 000 draws)', () => {
    kiln.manualSeed(3);
    const n = 28000;
    for (const [name, draw, absent] of [['trivialAugmentWide', trivialAugmentWideDraw(31), 'Invert'], ['randAugment', randAugmentDraw(2, 9, 31), 'Invert']] as const) {
      const counts = opCounts(draw, n);
      const expected = T.AUGMENT_OPS.map((o) => (o === absent ? 0 : n / 14));
      // 13 degrees of freedom: P(χ² > 34.53) = 0.001
      expect(chi2(counts, expected), `${name} ${counts}`).to.be.below(34.53);
    }
  });

  it("AutoAugment applies each policy's steps with their probabilities (χ² per step over 25 000 draws)", () => {
    kiln.manualSeed(5);
    const n = 25000;
    for (const name of ['cifar10', 'imagenet', 'svhn'] as const) {
      const policy = T.AUTOAUGMENT_POLICIES[name];
      for (const j of [0, 1]) {
        const expected = new Array(T.AUGMENT_OPS.length).fill(0);
        for (const sub of policy) {
          const [op, p] = sub[j];
          expected[T.AUGMENT_OPS.indexOf(op)] += (n / 25) * p;
          expected[0] += (n / 25) * (1 - p); // Identity when the step is skipped
        }
        const counts = opCounts(autoAugmentDraw(policy), n, j);
        const dof = expected.filter((e) => e > 0).length - 1;
        // P(χ² > x) = 0.001 for dof ≤ 12 at most 32.91
        expect(dof, name).to.be.at.most(12);
        expect(chi2(counts, expected), `${name} step ${j}: ${counts}`).to.be.below(32.91);
      }
    }
  });

  it('the transforms apply exactly the drawn op and magnitude to each image; different images draw differently; seeded', () => {
    kiln.tidy(() => {
      kiln.manualSeed(1);
      const x = kiln.rand([16, 3, 12, 12]);
      const cases: [kiln.data.BatchTransform, Draw][] = [
        [data.trivialAugmentWide(), trivialAugmentWideDraw(31)],
        [data.randAugment({ numOps: 3, magnitude: 20 }), randAugmentDraw(3, 20, 31)],
        [data.autoAugment({ policy: 'cifar10' }), autoAugmentDraw(T.AUTOAUGMENT_POLICIES.cifar10)],
        [data.autoAugment({ policy: 'svhn' }), autoAugmentDraw(T.AUTOAUGMENT_POLICIES.svhn)],
      ];
      for (const [t, draw] of cases) {
        kiln.manualSeed(42);
        const layers = draw(16, 12, 12);
        kiln.manualSeed(42);
        const out = t(x);
        let want = x;
        for (const l of layers) want = T.applyAugmentOps(want, values(l.op).map((o) => T.AUGMENT_OPS[o]), values(l.magnitude));
        expectNear(out, want, 1e-6, t.name);
        kiln.manualSeed(42);
        expect(values(t(x)), `${t.name} seeded`).to.deep.equal(values(out));
        expect(values(t(x)), `${t.name} unseeded`).to.not.deep.equal(values(out));
      }
      // one layer of 16 images draws several different ops; images that drew Identity are left exactly
      kiln.manualSeed(8);
      const ops = values(trivialAugmentWideDraw(31)(16, 12, 12)[0].op);
      expect(new Set(ops).size).to.be.above(5);
      kiln.manualSeed(8);
      const diff = changed(data.trivialAugmentWide()(x), x);
      ops.forEach((o, i) => { if (o === 0) expect(diff[i], `image ${i}`).to.equal(0); });
      expect(diff.filter((d) => d === 1).length).to.be.above(8);
    });
  });

  it('forEvaluation drops them; grey images and single images [C, H, W] work; fill per channel', () => {
    kiln.tidy(() => {
      const norm = data.normalize([0.5], [0.25]);
      for (const t of [data.trivialAugmentWide(), data.randAugment(), data.autoAugment(), data.autoAugment({ policy: 'svhn' })]) {
        expect(data.forEvaluation(t)).to.equal(undefined);
        expect(data.forEvaluation(data.compose(t, norm))).to.equal(norm);
        const grey = fromFixture(fx.grey);
        expect(t(grey).shape).to.deep.equal([2, 1, 7, 10]);
        expect(t(fromFixture(fx.rgb).select(0, 1)).shape).to.deep.equal([3, 7, 10]);
      }
      // a whole-image shift by 32 px (TrivialAugmentWide's largest) leaves only the fill colour
      const out = T.applyAugmentOps(kiln.rand([2, 3, 4, 5]), 'TranslateX', 32, { fill: [0.1, 0.2, 0.3] });
      expectNear(out, kiln.tensor([0.1, 0.2, 0.3], { shape: [1, 3, 1, 1] }).expand(2, 3, 4, 5), 1e-7);
      expect(values(data.randAugment({ numOps: 0 })(out))).to.deep.equal(values(out));
    });
  });

  it('bad options and inputs give KilnErrors naming the problem', () => {
    expectKilnError(() => data.trivialAugmentWide({ numMagnitudeBins: 1 }), 'INVALID_ARGUMENT', 'numMagnitudeBins');
    expectKilnError(() => data.trivialAugmentWide({ numMagnitudeBins: 2.5 }), 'INVALID_ARGUMENT', 'numMagnitudeBins');
    expectKilnError(() => data.trivialAugmentWide(null as never), 'INVALID_ARGUMENT', 'options');
    expectKilnError(() => data.randAugment({ magnitude: 31 }), 'INVALID_ARGUMENT', 'magnitude', '[0, 30]');
    expectKilnError(() => data.randAugment({ magnitude: 3, numMagnitudeBins: 3 }), 'INVALID_ARGUMENT', 'magnitude');
    expectKilnError(() => data.randAugment({ numOps: -1 }), 'INVALID_ARGUMENT', 'numOps');
    expectKilnError(() => data.autoAugment({ policy: 'mnist' as never }), 'INVALID_ARGUMENT', 'policy', 'mnist');
    expectKilnError(() => data.autoAugment({ fill: 'red' as never }), 'INVALID_ARGUMENT', 'fill');
    expectKilnError(() => data.trivialAugmentWide({ fill: [0.1, NaN] }), 'INVALID_ARGUMENT', 'fill');
    expectKilnError(() => T.augmentationSpace('cutout' as never), 'INVALID_ARGUMENT', 'kind');
    const ta = data.trivialAugmentWide({ fill: [0.1, 0.2] });
    kiln.tidy(() => {
      expectKilnError(() => ta(kiln.rand([2, 3, 8, 8])), 'INVALID_ARGUMENT', 'fill', '1 or 3 values');
      expectKilnError(() => data.autoAugment()(kiln.rand([2, 3, 8, 8]).mul(255).to({ dtype: 'uint8' })), 'INVALID_ARGUMENT', 'float images', 'uint8');
      expectKilnError(() => data.randAugment()(kiln.rand([2, 4, 8, 8])), 'INVALID_ARGUMENT', '1 or 3 channels', 'got 4');
      expectKilnError(() => data.randAugment()(kiln.rand([8, 8])), 'INVALID_ARGUMENT', 'shape [8, 8]');
      const x = kiln.rand([2, 3, 8, 8]);
      expectKilnError(() => T.applyAugmentOps(x, 'Blur' as never), 'INVALID_ARGUMENT', 'ops[0]', 'Blur');
      expectKilnError(() => T.applyAugmentOps(x, ['Invert'], 0), 'INVALID_ARGUMENT', 'ops', '2 (one per image)');
      expectKilnError(() => T.applyAugmentOps(x, 'Rotate', [1, 2, 3]), 'INVALID_ARGUMENT', 'magnitudes', '3 numbers');
      expectKilnError(() => T.applyAugmentOps(x, 'Brightness', -1.5), 'INVALID_ARGUMENT', 'magnitudes[0] (Brightness)');
      expectKilnError(() => T.applyAugmentOps(x, 'Posterize', 9), 'INVALID_ARGUMENT', 'Posterize', '[0, 8]');
      expectKilnError(() => T.applyAugmentOps(x, 'Solarize', 300), 'INVALID_ARGUMENT', 'Solarize', '[0, 255]');
      expectKilnError(() => T.applyAugmentOps(x, 'Rotate', NaN), 'INVALID_ARGUMENT', 'magnitudes[0]');
      x.dispose();
      expectKilnError(() => data.trivialAugmentWide()(x), 'INVALID_ARGUMENT', 'trivialAugmentWide(x)');
    });
  });

  it('repeated calls leak no tensors; throughput on 128 32×32 RGB images', () => {
    const x = kiln.rand([128, 3, 32, 32]);
    const ts = [data.trivialAugmentWide({ fill: [0.1, 0.2, 0.3] }), data.randAugment(), data.autoAugment({ policy: 'cifar10' })];
    for (const t of ts) t(x).dispose(); // warm-up
    const before = kiln.memory().numTensors;
    const line: string[] = [];
    for (const t of ts) {
      const reps = 10;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < reps; i++) t(x).dispose();
      const ms = Number(process.hrtime.bigint() - t0) / 1e6 / reps;
      line.push(`${t.name} ${ms.toFixed(1)} ms (${Math.round(128000 / ms)} images/s)`);
    }
    const y = T.applyAugmentOps(x, 'Equalize');
    y.dispose();
    expect(kiln.memory().numTensors, 'tensors left').to.equal(before);
    x.dispose();
    console.log(`      batch 128×3×32×32, 1 thread: ${line.join('; ')}`);
  });
});

/**
 * The same ops on KILN_TEST_DEVICE (default 'cpu'; 'cuda' on the GPU machine). The draws come from
 * the CPU generator, so one seed gives the same ops on every device. On the CPU the torchvision
 * fixtures hold to 2e-6 as above and a device batch equals the CPU batch exactly; on CUDA the
 * tolerances of expectAugmentedOnDevice (helpers.ts: TF32 Sharpness, nearest-neighbour ties).
 */
describe(`13 automatic augmentation on a ${DEVICE} batch`, function () {
  before(skipWithoutDevice);

  it('every op on RGB and grey images equals torchvision', () => {
    kiln.tidy(() => {
      for (const [img, cases] of [[fx.rgb, fx.ops], [fx.grey, fx.greyOps]] as const) {
        const x = fromFixture(img).to(DEVICE);
        for (const c of cases)
          expectAugmentedOnDevice(T.applyAugmentOps(x, c.op, c.magnitude, fillOf(c)), fromFixture(c.out), new Array(x.size(0)).fill([c.op]),
            { cpuTol: 2e-6, nearest: true, what: `${c.op} ${c.magnitude} fill ${c.fill}` });
      }
    });
  });

  it('per image: each image its own op and magnitude equals the one-op references', () => {
    kiln.tidy(() => {
      const x = fromFixture(fx.rgb).to(DEVICE);
      const n = x.size(0);
      const cases = fx.ops.filter((c) => c.fill === null);
      for (let start = 0; start + n <= cases.length; start += n) {
        const pick = cases.slice(start, start + n);
        const out = T.applyAugmentOps(x, pick.map((c) => c.op), pick.map((c) => c.magnitude));
        const want = kiln.stack(pick.map((c, i) => fromFixture(c.out).select(0, i)));
        expectAugmentedOnDevice(out, want, pick.map((c) => [c.op]), { cpuTol: 2e-6, nearest: true, what: pick.map((c) => c.op).join(', ') });
      }
    });
  });

  it('a seeded transform on a device batch equals the same transform on the CPU batch; no tensors leak', () => {
    kiln.manualSeed(1);
    const x = kiln.rand([16, 3, 12, 12]);
    const xd = x.to(DEVICE);
    const cases: [kiln.data.BatchTransform, Draw][] = [
      [data.trivialAugmentWide(), trivialAugmentWideDraw(31)],
      [data.randAugment({ numOps: 3, magnitude: 20 }), randAugmentDraw(3, 20, 31)],
      [data.autoAugment({ policy: 'cifar10' }), autoAugmentDraw(T.AUTOAUGMENT_POLICIES.cifar10)],
      [data.autoAugment({ policy: 'svhn' }), autoAugmentDraw(T.AUTOAUGMENT_POLICIES.svhn)],
    ];
    const run = (t: kiln.data.BatchTransform, input: kiln.Tensor) => { kiln.manualSeed(42); return t(input); };
    for (const [t, draw] of cases) {
      kiln.tidy(() => {
        const cpu = run(t, x), dev = run(t, xd);
        // the ops each image drew (the same seed), for its tolerance
        kiln.manualSeed(42);
        const layers = draw(16, 12, 12).map((l) => values(l.op).map((o) => T.AUGMENT_OPS[o]));
        const ops = Array.from({ length: 16 }, (_, i) => layers.map((l) => l[i]));
        expectAugmentedOnDevice(dev, cpu, ops, { cpuTol: 0, nearest: true, what: t.name });
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
