/**
 * kiln.explain beyond IG and saliency: input × gradient, the noise tunnel (SmoothGrad, SmoothGrad²,
 * VarGrad), Grad-CAM, occlusion, heat-map rendering and the `kiln explain` command. Exact checks
 * where the maths allows (linear models, a conv → GAP → linear net for CAM, hand-computed occlusion).
 * The methods run on KILN_TEST_DEVICE (default 'cpu'; 'cuda' on the GPU machine): there the conv nets
 * run in float64 (cuDNN's TF32 convolutions would break float32 identities at ~1e-3) and results that
 * are bit-identical on the CPU agree within 1e-9 (cuDNN may pick other algorithms per batch size);
 * heat maps and the CLI stay on the CPU.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { expect } from 'chai';
import * as kiln from '../lib';
import { explainCommand, EXPLAIN_FLAGS } from '../lib/cli/explain';
import { parseArgs, UsageError } from '../lib/cli/args';
import { expectKilnError, maxAbsDiff, values, expectNoFileLeaks, DEVICE, ON_CPU, skipWithoutDevice } from './helpers';

const E = kiln.explain;
/** The conv nets' dtype: float32 on the CPU, float64 on CUDA (no TF32). */
const CONV_DT = ON_CPU ? 'float32' : 'float64';
/** What "bit-identical on the CPU" allows on CUDA. */
const EXACT = ON_CPU ? 0 : 1e-9;
/** A tensor on the test device in the conv nets' dtype. */
const dev = (t: kiln.Tensor): kiln.Tensor => kiln.tidy(() => t.to({ device: DEVICE, dtype: t.dtype === 'float32' ? CONV_DT : t.dtype }));

/** logits [N, 1] = (x·w)²: its gradient 2(x·w)w is linear in x, so noise statistics have closed forms. */
class Quadratic extends kiln.nn.Module {
  w: kiln.Tensor;
  constructor(w: kiln.Tensor) {
    super();
    this.w = this.registerParameter('w', w)!;
  }
  forward(x: kiln.Tensor): kiln.Tensor {
    return kiln.tidy(() => x.flatten(1).matmul(this.w.unsqueeze(1)).square());
  }
}

/** A model whose output is not [N, classes]. */
class BadOutput extends kiln.nn.Module {
  forward(x: kiln.Tensor): kiln.Tensor {
    return x.view(x.shape);
  }
}

function linearModel(inF: number, classes: number, dtype: 'float32' | 'float64' = 'float32'): kiln.nn.Sequential {
  return new kiln.nn.Sequential(new kiln.nn.Flatten(), new kiln.nn.Linear(inF, classes)).to(dtype).to(DEVICE).eval();
}

/** simple-cnn on the test device in the conv nets' dtype. */
function cnn(o: { numClasses: number; width: number; inChannels?: number }, dtype: 'float32' | 'float64' = CONV_DT): kiln.nn.Module {
  return kiln.models.simpleCnn(o).to(dtype).to(DEVICE).eval();
}

/** Decodes a PNG to raw RGB bytes. */
async function decode(png: Buffer): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

function pixel(img: { data: Buffer; width: number; channels: number }, y: number, x: number): number[] {
  const o = (y * img.width + x) * img.channels;
  return [img.data[o], img.data[o + 1], img.data[o + 2]];
}

/** The colormap's 256-entry table as numbers. */
function lut(name: kiln.explain.ColormapName): number[][] {
  const t = E.colormapTable(name);
  const a = t.arraySync() as number[][];
  t.dispose();
  return a;
}

describe('44 explanation methods', function () {
  this.timeout(60000);
  expectNoFileLeaks(true);

  describe(`inputXGradient (${DEVICE})`, () => {
    before(skipWithoutDevice);
    it('on a linear model equals w·x elementwise, and leaves parameter grads and mode alone', () => {
      kiln.manualSeed(1);
      const m = linearModel(12, 3);
      const x = kiln.randn([2, 3, 2, 2], { device: DEVICE });
      const before = kiln.memory().numTensors;
      const a = E.inputXGradient(m, x, { target: [2, 0] });
      expect(kiln.memory().numTensors).to.equal(before + 1);
      const w = (m.at(1) as kiln.nn.Linear).weight;
      const expected = kiln.tidy(() => kiln.stack([x.select(0, 0).flatten().mul(w.select(0, 2)), x.select(0, 1).flatten().mul(w.select(0, 0))]).reshape(2, 3, 2, 2));
      expect(maxAbsDiff(a, expected)).to.be.below(1e-6);
      expect(w.grad).to.equal(null);
      expect(m.training).to.equal(false);
      for (const t of [x, a, expected]) t.dispose();
      m.dispose();
    });
  });

  describe(`noise tunnel (${DEVICE})`, () => {
    before(skipWithoutDevice);
    it('with stdevs 0: smoothgrad equals the method exactly, vargrad is exactly zero, smoothgradSq is its square', () => {
      kiln.manualSeed(2);
      const m = cnn({ numClasses: 4, width: 4 });
      const x = dev(kiln.randn([2, 1, 8, 8]));
      const sal = E.saliency(m, x, { target: [1, 3] });
      const sg = E.smoothGrad(m, x, { target: [1, 3], stdevs: 0, samples: 4 });
      expect(maxAbsDiff(sg, sal)).to.be.at.most(EXACT);
      const vg = E.noiseTunnel(m, x, { target: [1, 3], stdevs: 0, samples: 4, type: 'vargrad' });
      expect(Math.max(...values(vg).map(Math.abs))).to.be.at.most(EXACT);
      const sq = E.noiseTunnel(m, x, { target: [1, 3], stdevs: 0, samples: 3, type: 'smoothgradSq' });
      const salSq = sal.square();
      expect(maxAbsDiff(sq, salSq)).to.be.below(1e-6 * Math.max(...values(salSq)) + 1e-12);
      const ixg = E.inputXGradient(m, x, { target: 2 });
      const ntIxg = E.noiseTunnel(m, x, { target: 2, stdevs: 0, samples: 2, method: 'inputXGradient' });
      expect(maxAbsDiff(ntIxg, ixg)).to.be.at.most(EXACT);
      const baseline = dev(kiln.rand([2, 1, 8, 8])); // one per image: repeated for each noisy sample
      const ig = E.integratedGradients(m, x, { target: 0, steps: 6, baseline });
      const ntIg = E.noiseTunnel(m, x, { target: 0, stdevs: 0, samples: 2, method: E.integratedGradients, methodOptions: { steps: 6, baseline } });
      expect(maxAbsDiff(ntIg, ig.attributions)).to.be.below(1e-6);
      for (const t of [x, sal, sg, vg, sq, salSq, ixg, ntIxg, baseline, ig.attributions, ig.delta, ntIg]) t.dispose();
      m.dispose();
    });

    it('is reproducible under kiln.manualSeed and does not depend on samplesPerBatch', () => {
      const m = cnn({ numClasses: 3, width: 4 });
      kiln.manualSeed(9);
      const x = dev(kiln.randn([2, 1, 8, 8]));
      const run = (seed: number, perBatch?: number) => {
        kiln.manualSeed(seed);
        return E.smoothGrad(m, x, { target: 1, samples: 6, stdevs: 0.3, samplesPerBatch: perBatch });
      };
      const a = run(5), b = run(5), c = run(5, 1), d = run(5, 4), e = run(6);
      expect(maxAbsDiff(a, b)).to.be.at.most(EXACT);
      expect(maxAbsDiff(a, c)).to.be.below(1e-6);
      expect(maxAbsDiff(a, d)).to.be.below(1e-6);
      expect(maxAbsDiff(a, e)).to.be.above(1e-4);
      for (const t of [x, a, b, c, d, e]) t.dispose();
      m.dispose();
    });

    it('uses absolute stdevs: on (x·w)² the signed SmoothGrad mean is 2(x·w)w and VarGrad 4σ²|w|²w²', () => {
      kiln.manualSeed(11);
      const w = kiln.tensor([0.5, -1, 2, 0.25], { dtype: 'float64', device: DEVICE });
      const m = new Quadratic(w).eval();
      const x = kiln.tensor([[[[1, 2], [-1, 0.5]]]], { dtype: 'float64', device: DEVICE });
      const sigma = 0.5, samples = 4000;
      const mean = E.noiseTunnel(m, x, { target: 0, samples, stdevs: sigma, methodOptions: { abs: false } });
      kiln.manualSeed(11);
      const vg = E.noiseTunnel(m, x, { target: 0, samples, stdevs: sigma, type: 'vargrad', methodOptions: { abs: false } });
      const wv = [0.5, -1, 2, 0.25], xv = [1, 2, -1, 0.5];
      const xw = xv.reduce((s, v, i) => s + v * wv[i], 0), w2 = wv.reduce((s, v) => s + v * v, 0);
      // sd of the sample mean of 2(x+ε)·w w_i is 2σ|w||w_i|/√samples ≈ 0.04|w_i|: allow 5 of them
      values(mean).forEach((v, i) => expect(v).to.be.closeTo(2 * xw * wv[i], 5 * 2 * sigma * Math.sqrt(w2) * Math.abs(wv[i]) / Math.sqrt(samples) + 1e-9));
      values(vg).forEach((v, i) => expect(v).to.be.closeTo(4 * sigma * sigma * w2 * wv[i] * wv[i], 0.1 * 4 * sigma * sigma * w2 * wv[i] * wv[i]));
      for (const t of [x, mean, vg]) t.dispose();
      m.dispose();
    });
  });

  describe(`Grad-CAM (${DEVICE})`, () => {
    before(skipWithoutDevice);
    const build = () => {
      kiln.manualSeed(21);
      return new kiln.nn.Sequential(
        new kiln.nn.Conv2d(3, 4, 3, { stride: 2, padding: 1 }), new kiln.nn.AdaptiveAvgPool2d(1), new kiln.nn.Flatten(), new kiln.nn.Linear(4, 5),
      ).to(CONV_DT).to(DEVICE).eval();
    };

    it('on conv → GAP → linear equals the CAM formula ReLU(Σ_k w_ck/(h·w) · A_k)', () => {
      const m = build();
      const x = dev(kiln.randn([2, 3, 8, 8]));
      const targets = [1, 3];
      const before = kiln.memory().numTensors;
      const cam = E.gradCam(m, x, { target: targets, layer: '0', upsample: false });
      const raw = E.layerGradCam(m, x, { target: targets, layer: m.at(0) });
      expect(kiln.memory().numTensors).to.equal(before + 2);
      const fc = m.at(3) as kiln.nn.Linear;
      const expectedRaw = kiln.tidy(() => kiln.noGrad(() => {
        const A = m.at(0).call(x); // [2, 4, 4, 4]
        const wc = fc.weight.indexSelect(0, kiln.tensor(targets, { dtype: 'int64', device: DEVICE })).div(16).reshape(2, 4, 1, 1);
        return wc.mul(A).sum(1, true);
      }));
      const expectedCam = expectedRaw.relu();
      expect(cam.shape).to.deep.equal([2, 1, 4, 4]);
      expect(maxAbsDiff(cam, expectedCam)).to.be.below(1e-6);
      expect(maxAbsDiff(raw, expectedRaw)).to.be.below(1e-6); // Captum's LayerGradCam default: no ReLU
      expect(values(raw).some((v) => v < 0), 'the raw map has negative parts').to.equal(true);
      expect(fc.weight.grad).to.equal(null);
      for (const t of [x, cam, raw, expectedRaw, expectedCam]) t.dispose();
      m.dispose();
    });

    it('upsamples bilinearly to the input size, keeps the model mode and channel maps with attrDimSummation false', () => {
      const m = build().train();
      const x = dev(kiln.randn([2, 3, 8, 8]));
      const up = E.gradCam(m, x, { target: 2, layer: '0' });
      expect(up.shape).to.deep.equal([2, 1, 8, 8]);
      const small = E.gradCam(m, x, { target: 2, layer: '0', upsample: false });
      const expected = kiln.nn.functional.interpolate(small, { size: [8, 8], mode: 'bilinear', alignCorners: false });
      expect(maxAbsDiff(up, expected)).to.be.below(1e-6);
      expect(m.training).to.equal(true);
      // frozen layers and an enclosing noGrad scope change nothing
      m.freeze();
      const frozen = kiln.noGrad(() => E.gradCam(m, x, { target: 2, layer: '0' }));
      expect(maxAbsDiff(frozen, up)).to.be.at.most(EXACT);
      frozen.dispose();
      m.unfreeze();
      const perChannel = E.layerGradCam(m, x, { target: 2, layer: '0', attrDimSummation: false });
      expect(perChannel.shape).to.deep.equal([2, 4, 4, 4]);
      for (const t of [x, up, small, expected, perChannel]) t.dispose();
      m.dispose();
    });

    it('works on a zoo CNN with a default layer found by defaultCamLayer', () => {
      const m = cnn({ numClasses: 3, width: 4 });
      const x = dev(kiln.randn([1, 1, 16, 16]));
      expect(E.defaultCamLayer(m, x)).to.equal('features');
      const cam = E.gradCam(m, x, { target: 0, layer: 'features.3' });
      expect(cam.shape).to.deep.equal([1, 1, 16, 16]);
      expect(Math.min(...values(cam))).to.be.at.least(0);
      for (const t of [x, cam]) t.dispose();
      m.dispose();
    });
  });

  describe(`occlusion (${DEVICE})`, () => {
    before(skipWithoutDevice);
    it('a 1×1×1 window, stride 1, zero baseline on a linear model gives w_i·x_i', () => {
      kiln.manualSeed(31);
      const m = linearModel(12, 3, 'float64');
      const x = kiln.randn([2, 3, 2, 2], { dtype: 'float64', device: DEVICE });
      const before = kiln.memory().numTensors;
      const a = E.occlusion(m, x, { target: [0, 2], window: [1, 1, 1], perturbationsPerEval: 5 });
      expect(kiln.memory().numTensors).to.equal(before + 1);
      const w = (m.at(1) as kiln.nn.Linear).weight;
      const expected = kiln.tidy(() => kiln.stack([x.select(0, 0).flatten().mul(w.select(0, 0)), x.select(0, 1).flatten().mul(w.select(0, 2))]).reshape(2, 3, 2, 2));
      expect(maxAbsDiff(a, expected)).to.be.below(1e-12);
      for (const t of [x, a, expected]) t.dispose();
      m.dispose();
    });

    it('a 3×3 window with stride 2 (last window cut at the border) matches a hand computation on a CNN', () => {
      kiln.manualSeed(32);
      const m = cnn({ numClasses: 3, inChannels: 2, width: 4 }, 'float64');
      const x = kiln.randn([2, 2, 6, 6], { dtype: 'float64', device: DEVICE });
      const baseline = kiln.rand([2, 6, 6], { dtype: 'float64', device: DEVICE });
      const a = E.occlusion(m, x, { target: 1, window: [3, 3], strides: [2, 2], baseline, perturbationsPerEval: 4 });
      // by hand: windows start at 0, 2, 4 per axis (the last one covers rows 4–5 only)
      const f = (t: kiln.Tensor) => kiln.tidy(() => values(kiln.noGrad(() => m.call(t).select(1, 1))));
      const f0 = f(x);
      const total = new Array(2 * 2 * 36).fill(0), count = new Array(36).fill(0);
      for (const r of [0, 2, 4]) for (const c of [0, 2, 4]) {
        const maskData = new Float64Array(36);
        for (let i = r; i < Math.min(r + 3, 6); i++) for (let j = c; j < Math.min(c + 3, 6); j++) maskData[i * 6 + j] = 1;
        const fo = kiln.tidy(() => {
          const mask = kiln.tensor(maskData, { shape: [1, 1, 6, 6], device: DEVICE });
          return f(x.mul(mask.rsub(1)).add(baseline.unsqueeze(0).mul(mask)));
        });
        for (let n = 0; n < 2; n++) for (let ch = 0; ch < 2; ch++) for (let p = 0; p < 36; p++) total[(n * 2 + ch) * 36 + p] += (f0[n] - fo[n]) * maskData[p];
        for (let p = 0; p < 36; p++) count[p] += maskData[p];
      }
      const expected = total.map((v, i) => v / count[i % 36]);
      const got = values(a);
      expect(a.shape).to.deep.equal([2, 2, 6, 6]);
      got.forEach((v, i) => expect(v).to.be.closeTo(expected[i], 1e-10));
      expect(count.filter((c) => c === 4).length, 'pixels in 2×2 windows').to.equal(4); // rows/cols 2 and 4 overlap twice
      for (const t of [x, baseline, a]) t.dispose();
      m.dispose();
    });
  });

  describe('heat maps', () => {
    it("thresholds like Captum's cumulative-sum outlier rule, per sign", () => {
      const thr = kiln.tidy(() => E.cumulativeSumThreshold(kiln.tensor([[4, 1, 3, 2], [1, 1, 1, 97]]), 50));
      expect(values(thr)).to.deep.equal([3, 97]);
      const a = kiln.tensor([[[-4, -2], [0, 2]]]); // [1, 2, 2]
      const norm = (sign: kiln.explain.Sign, outlierPercent = 0) => kiln.tidy(() => values(E.normalizeAttribution(a, { sign, outlierPercent })));
      expect(norm('negative')).to.deep.equal([1, 0.5, 0, 0]);
      expect(norm('positive')).to.deep.equal([0, 0, 0, 1]);
      expect(norm('all')).to.deep.equal([-1, -0.5, 0, 0.5]);
      expect(norm('absolute')).to.deep.equal([1, 0.5, 0, 0.5]);
      const b = kiln.tensor([[[1, 2], [3, 4]]]);
      const clipped = E.normalizeAttribution(b, { outlierPercent: 50 }); // threshold 3: 4 is clipped
      values(clipped).forEach((v, i) => expect(v).to.be.closeTo([1 / 3, 2 / 3, 1, 1][i], 1e-7));
      const twoCh = kiln.tensor([[[1, -1]], [[1, 3]]]); // [C=2, 1, 2]: channel sums 2, 2
      const summed = E.normalizeAttribution(twoCh, { outlierPercent: 0 });
      expect(values(summed)).to.deep.equal([1, 1]);
      const zero = kiln.tidy(() => E.normalizeAttribution(kiln.zeros([1, 3, 3])));
      expect(values(zero).every((v) => v === 0)).to.equal(true);
      for (const t of [thr, a, b, clipped, twoCh, summed, zero]) t.dispose();
    });

    it('decodes to the right size, with the colormap endpoints as colours', async () => {
      const a = kiln.zeros([1, 4, 4]);
      kiln.tidy(() => { a.narrow(1, 0, 1).narrow(2, 0, 1).fill_(5); }); // one hot pixel at (0, 0)
      const png = await E.heatmap(a, { outlierPercent: 0 });
      const img = await decode(png);
      expect([img.width, img.height]).to.deep.equal([4, 4]);
      const inferno = lut('inferno');
      expect(pixel(img, 0, 0)).to.deep.equal(inferno[255]);
      expect(pixel(img, 3, 3)).to.deep.equal(inferno[0]);
      expect(inferno[0]).to.deep.equal([0, 0, 4]); // matplotlib's inferno(0) = (0.0015, 0.0005, 0.0139)
      expect(inferno[255]).to.deep.equal([252, 255, 164]); // inferno(1) = (0.988, 0.998, 0.645)
      // signed: bwr's ends are pure blue and red, zero is (nearly) white
      const s = kiln.tensor([[[-2, 0], [0, 2]]]);
      const signed = await decode(await E.heatmap(s, { sign: 'all', colormap: 'bwr', outlierPercent: 0, size: [6, 10], interpolation: 'nearest' }));
      expect([signed.width, signed.height]).to.deep.equal([10, 6]);
      expect(pixel(signed, 0, 0)).to.deep.equal([0, 0, 255]);
      expect(pixel(signed, 5, 9)).to.deep.equal([255, 0, 0]);
      expect(Math.min(...pixel(signed, 0, 9))).to.be.at.least(250);
      // the default for 'all' is RdBu_r
      const rdbu = lut('RdBu_r');
      const def = await decode(await E.heatmap(s, { sign: 'all', outlierPercent: 0 }));
      expect(pixel(def, 0, 0)).to.deep.equal(rdbu[0]);
      expect(pixel(def, 1, 1)).to.deep.equal(rdbu[255]);
      for (const t of [a, s]) t.dispose();
    });

    it('blends over the image as round((1 − alpha) · image + alpha · colour), scaling up to a size', async () => {
      const attr = kiln.tensor([[[0, 1], [2, 3]]]);
      const image = kiln.tensor(new Uint8Array([100, 100, 100, 100, 50, 50, 50, 50, 200, 200, 200, 200]), { shape: [3, 2, 2] });
      const heat = E.heatmapPixels(attr, { outlierPercent: 0 }); // [1, 2, 2, 3]
      const colours = (heat.arraySync() as number[][][][])[0];
      for (const alpha of [0, 0.3, 1]) {
        const out = await decode(await E.heatmap(attr, { outlierPercent: 0, image, alpha }));
        for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) {
          const want = [100, 50, 200].map((v, k) => Math.round((1 - alpha) * v + alpha * colours[y][x][k]));
          pixel(out, y, x).forEach((v, k) => expect(v).to.be.closeTo(want[k], 1));
        }
      }
      // a float image in [0, 1] and a grey one give the same as their uint8 forms
      const f = kiln.tidy(() => image.float().div(255));
      const px1 = E.heatmapPixels(attr, { outlierPercent: 0, image });
      const px2 = E.heatmapPixels(attr, { outlierPercent: 0, image: f });
      expect(kiln.tidy(() => maxAbsDiff(px1.float(), px2.float()))).to.be.at.most(1);
      const grey = kiln.full([1, 2, 2], 80, { dtype: 'uint8' });
      const g = E.heatmapPixels(attr, { outlierPercent: 0, image: grey, alpha: 0 });
      expect(values(g).every((v) => v === 80)).to.equal(true);
      // scale up: the image sets the size; `size` overrides it
      const big = await decode(await E.heatmap(attr, { image, size: [20, 30] }));
      expect([big.width, big.height]).to.deep.equal([30, 20]);
      for (const t of [attr, image, heat, f, px1, px2, grey, g]) t.dispose();
    });

    it('renders a batch, saves files and leaks no tensors', async () => {
      const before = kiln.memory().numTensors;
      const a = kiln.randn([3, 3, 5, 5]);
      const pngs = await E.heatmaps(a, { sign: 'all' });
      expect(pngs).to.have.length(3);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-heat-'));
      const file = path.join(dir, 'sub', 'h.png');
      const one = a.narrow(0, 0, 1);
      await E.saveHeatmap(one, file, { size: 40 });
      const meta = await sharp(file).metadata();
      expect([meta.width, meta.height]).to.deep.equal([40, 40]);
      a.dispose();
      one.dispose();
      expect(kiln.memory().numTensors).to.equal(before);
      fs.rmSync(dir, { recursive: true, force: true });
    });
  });

  describe('bad arguments', () => {
    it('each throws a clear KilnError, leaking nothing', async () => {
      const m = kiln.models.simpleCnn({ numClasses: 3, width: 4 }).eval();
      const x = kiln.randn([2, 1, 8, 8]);
      const ints = kiln.randint(0, 3, [2, 1, 8, 8]);
      const wrongBaseline = kiln.zeros([3, 8, 8]);
      const nan = kiln.full([1, 4, 4], NaN);
      const flat = kiln.zeros([4]);
      const ones = kiln.ones([2, 2]);
      const twoChannels = kiln.ones([2, 2, 2]);
      const negative = kiln.full([3, 2, 2], -0.5);
      const batch = kiln.ones([2, 1, 2, 2]);
      const threeImages = kiln.ones([3, 3, 2, 2]);
      const relu = new kiln.nn.ReLU();
      const before = kiln.memory().numTensors;
      // shared checks
      expectKilnError(() => E.inputXGradient({} as never, x, { target: 0 }), 'INVALID_ARGUMENT', 'model');
      expectKilnError(() => E.inputXGradient(m, ints, { target: 0 }), 'INVALID_ARGUMENT', 'floating-point');
      expectKilnError(() => E.inputXGradient(m, x, { target: 3 }), 'INVALID_ARGUMENT', 'target class 3 is out of range', '3 classes');
      expectKilnError(() => E.inputXGradient(m, x, undefined as never), 'INVALID_ARGUMENT', 'options');
      expectKilnError(() => E.saliency(new BadOutput(), x, { target: 0 }), 'INVALID_ARGUMENT', 'logits [N, classes]');
      expectKilnError(() => E.occlusion(new BadOutput(), x, { target: 0, window: [2, 2] }), 'INVALID_ARGUMENT', 'logits [N, classes]');
      // noise tunnel
      expectKilnError(() => E.smoothGrad(m, x, { target: 0, stdevs: -1 }), 'INVALID_ARGUMENT', 'stdevs');
      expectKilnError(() => E.smoothGrad(m, x, { target: 0, stdevs: NaN }), 'INVALID_ARGUMENT', 'stdevs');
      expectKilnError(() => E.smoothGrad(m, x, { target: 0, samples: 0 }), 'INVALID_ARGUMENT', 'samples');
      expectKilnError(() => E.smoothGrad(m, x, { target: 0, samples: 2.5 }), 'INVALID_ARGUMENT', 'samples');
      expectKilnError(() => E.smoothGrad(m, x, { target: 0, samplesPerBatch: 0 }), 'INVALID_ARGUMENT', 'samplesPerBatch');
      expectKilnError(() => E.smoothGrad(m, x, { target: 0, type: 'meangrad' as never }), 'INVALID_ARGUMENT', 'type');
      expectKilnError(() => E.smoothGrad(m, x, { target: 0, method: 'deeplift' as never }), 'INVALID_ARGUMENT', 'method');
      expectKilnError(() => E.smoothGrad(m, x, { target: 0, methodOptions: { target: 1 } }), 'INVALID_ARGUMENT', 'methodOptions');
      expectKilnError(() => E.smoothGrad(m, x, { target: 5 }), 'INVALID_ARGUMENT', 'target class 5 is out of range');
      // Grad-CAM
      expectKilnError(() => E.gradCam(m, x, { target: 0, layer: 'features.99' }), 'INVALID_ARGUMENT', "no submodule 'features.99'");
      expectKilnError(() => E.gradCam(m, x, { target: 0, layer: relu }), 'INVALID_ARGUMENT', 'not a submodule');
      expectKilnError(() => E.gradCam(m, x, { target: 0, layer: 'classifier' }), 'INVALID_ARGUMENT', "layer 'classifier' must output [N, K, h, w]");
      expectKilnError(() => E.layerGradCam(m, x, { target: 0 } as never), 'INVALID_ARGUMENT', 'layer');
      // gradCam without a layer uses defaultCamLayer's
      const [auto, named] = [E.gradCam(m, x, { target: 0 }), E.gradCam(m, x, { target: 0, layer: E.defaultCamLayer(m, x) })];
      expect(maxAbsDiff(auto, named)).to.equal(0);
      auto.dispose();
      named.dispose();
      expectKilnError(() => E.gradCam({ call: (t: kiln.Tensor) => t } as never, x, { target: 0, layer: 'a' }), 'INVALID_ARGUMENT', 'kiln.nn Module');
      expectKilnError(() => E.gradCam(m, x, { target: 0, layer: 'features', upsampleMode: 'area' as never }), 'INVALID_ARGUMENT', 'upsampleMode');
      expectKilnError(() => E.gradCam(m, x, { target: 7, layer: 'features' }), 'INVALID_ARGUMENT', 'target class 7 is out of range');
      // occlusion
      expectKilnError(() => E.occlusion(m, x, { target: 0, window: [9, 9] }), 'INVALID_ARGUMENT', 'larger than the input', 'h: 9 > 8');
      expectKilnError(() => E.occlusion(m, x, { target: 0, window: [1, 1, 2, 2] }), 'INVALID_ARGUMENT', 'window has 4 dimensions');
      expectKilnError(() => E.occlusion(m, x, { target: 0, window: [0, 2] }), 'INVALID_ARGUMENT', 'window');
      expectKilnError(() => E.occlusion(m, x, { target: 0, window: [2, 2], strides: 3 }), 'INVALID_ARGUMENT', 'stride 3 is larger than the window');
      expectKilnError(() => E.occlusion(m, x, { target: 0, window: [2, 2], strides: [1, 1, 1, 1] }), 'INVALID_ARGUMENT', 'strides');
      expectKilnError(() => E.occlusion(m, x, { target: 0, window: [2, 2], baseline: wrongBaseline }), 'INVALID_ARGUMENT', 'does not broadcast');
      expectKilnError(() => E.occlusion(m, x, { target: 0, window: [2, 2], perturbationsPerEval: -1 }), 'INVALID_ARGUMENT', 'perturbationsPerEval');
      // rendering
      expectKilnError(() => E.heatmapPixels(nan), 'INVALID_ARGUMENT', 'NaN');
      expectKilnError(() => E.heatmapPixels(flat), 'INVALID_ARGUMENT', '[H, W], [C, H, W] or [N, C, H, W]');
      expectKilnError(() => E.heatmapPixels(ones, { sign: 'both' as never }), 'INVALID_ARGUMENT', 'sign');
      expectKilnError(() => E.heatmapPixels(ones, { colormap: 'rainbow' as never }), 'INVALID_ARGUMENT', 'colormap', 'inferno');
      expectKilnError(() => E.heatmapPixels(ones, { outlierPercent: 100 }), 'INVALID_ARGUMENT', 'outlierPercent');
      expectKilnError(() => E.heatmapPixels(ones, { alpha: 1.5 }), 'INVALID_ARGUMENT', 'alpha');
      expectKilnError(() => E.heatmapPixels(ones, { size: [0, 3] }), 'INVALID_ARGUMENT', 'size');
      expectKilnError(() => E.heatmapPixels(ones, { image: twoChannels }), 'INVALID_ARGUMENT', '1 or 3 channels');
      expectKilnError(() => E.heatmapPixels(ones, { image: negative }), 'INVALID_ARGUMENT', 'values in [0, 1]');
      expectKilnError(() => E.heatmapPixels(batch, { image: threeImages }), 'INVALID_ARGUMENT', 'image batch of 3');
      let err: unknown;
      try {
        await E.heatmap(batch);
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(kiln.KilnError);
      expect((err as Error).message).to.contain('use heatmaps');
      expect(kiln.memory().numTensors).to.equal(before);
      for (const t of [x, ints, wrongBaseline, nan, flat, ones, twoChannels, negative, batch, threeImages]) t.dispose();
      m.dispose();
    });
  });

  describe('kiln explain (explainCommand)', () => {
    let dir: string;
    let images: string[];
    before(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-explain-'));
      kiln.manualSeed(41);
      const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 4 });
      kiln.saveModel(path.join(dir, 'model', 'model.safetensors'), m, {
        classNames: JSON.stringify(['circle', 'square', 'triangle']), inputSize: JSON.stringify([16, 16]), channels: '3',
        mean: JSON.stringify([0.5, 0.5, 0.5]), std: JSON.stringify([0.25, 0.25, 0.25]), dataset: 'shapes',
      });
      m.dispose();
      images = [];
      for (const [name, colour] of [['red', { r: 220, g: 30, b: 30 }], ['blue', { r: 20, g: 40, b: 200 }]] as const) {
        const file = path.join(dir, `${name}.png`);
        await sharp({ create: { width: 24, height: 20, channels: 3, background: colour } })
          .composite([{ input: Buffer.from('<svg width="24" height="20"><circle cx="12" cy="10" r="6" fill="white"/></svg>') }]).png().toFile(file);
        images.push(file);
      }
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    const flags = (argv: string[]) => parseArgs(argv, EXPLAIN_FLAGS, 'explain');

    for (const method of ['ig', 'saliency', 'smoothgrad', 'gradientshap', 'gradientshap --baselines black', 'gradientshap --baselines blur', 'gradcam', 'occlusion', 'guidedbackprop', 'guidedgradcam']) {
      it(`--method ${method} writes one overlay PNG per image and prints the prediction`, async () => {
        fs.mkdirSync(path.join(dir, 'model'), { recursive: true });
        const out = path.join(dir, `out-${method.replace(/ /g, '')}`);
        const { flags: f, positional } = flags(['--model', path.join(dir, 'model'), '--method', ...method.split(' '), '--steps', '8', '--samples', '3', '--out', out, '--size', '64', ...images]);
        const lines: string[] = [];
        const before = kiln.memory().numTensors;
        expect(await explainCommand(f, positional, (s) => lines.push(s))).to.equal(0);
        expect(kiln.memory().numTensors).to.equal(before);
        expect(lines).to.have.length(2);
        expect(lines[0]).to.match(/red\.png: predicted (circle|square|triangle) \(\d+\.\d%\)/);
        // both Grad-CAM methods name the layer defaultCamLayer chose (simple-cnn: 'features')
        if (method.endsWith('gradcam')) expect(lines[0]).to.contain(`· ${method} at 'features' for`);
        for (const name of ['red', 'blue']) {
          const meta = await sharp(path.join(out, `${name}.${method.split(' ')[0]}.png`)).metadata();
          expect([meta.width, meta.height]).to.deep.equal([64, 64]);
        }
      });
    }

    it('--target by name explains that class; bad flags are usage errors', async () => {
      const out = path.join(dir, 'out-target');
      const { flags: f, positional } = flags(['--model', path.join(dir, 'model'), '--target', 'triangle', '--out', out, images[0]]);
      const lines: string[] = [];
      await explainCommand(f, positional, (s) => lines.push(s));
      expect(lines[0]).to.contain('for triangle');
      const run = (argv: string[], files = [images[0]]) => {
        const p = flags(argv);
        return explainCommand(p.flags, files, () => undefined);
      };
      const rejects = async (p: Promise<unknown>, re: RegExp) => {
        let err: unknown;
        try {
          await p;
        } catch (e) {
          err = e;
        }
        expect(err).to.be.instanceOf(UsageError);
        expect((err as Error).message).to.match(re);
      };
      await rejects(run(['--model', path.join(dir, 'model'), '--target', 'hexagon']), /--target 'hexagon'/);
      await rejects(run(['--model', path.join(dir, 'model')], []), /at least one image/);
      await rejects(run(['--model', path.join(dir, 'model')], [path.join(dir, 'nope.png')]), /no such file/);
      await rejects(run(['--model', path.join(dir, 'missing')]), /does not exist/);
      await rejects(run(['--model', path.join(dir, 'model'), '--method', 'occlusion', '--window', '40']), /--window 40 is larger/);
      expect(() => flags(['--method', 'lrp2'])).to.throw(UsageError, /--method must be one of/);
      expect(() => flags(['--method', 'gradientshap', '--baselines', 'grey'])).to.throw(UsageError, /--baselines must be one of black, blur, both/);
    });
  });
});
