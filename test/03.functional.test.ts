/**
 * kiln.nn.functional against reference numbers from Python PyTorch 1.13
 * (test/fixtures/functional.json, made by scripts/make-fixtures.py).
 */
import { expect } from 'chai';
import * as kiln from '../lib';
import { FixtureCase, expectClose, expectKilnError, fixtures, fromFixture, values } from './helpers';

const F = kiln.nn.functional;
type T = kiln.Tensor;

/**
 * Runs `fn` on a fixture case's inputs (those with reference gradients require grad),
 * compares every output and the gradients of sum(out * gradOutput).
 */
function check(name: string, fn: (x: Record<string, T>) => T | Record<string, T>, rtol = 1e-5, atol = 1e-6): void {
  const c: FixtureCase = fixtures()[name];
  expect(c, `fixture case ${name}`).to.not.equal(undefined);
  kiln.tidy(() => {
    const ins: Record<string, T> = {};
    for (const [k, v] of Object.entries(c.inputs)) ins[k] = fromFixture(v, !!c.grads && k in c.grads);
    const result = fn(ins);
    const outs: Record<string, T> = result instanceof kiln.Tensor ? { out: result } : result;
    for (const [k, want] of Object.entries(c.outputs)) {
      expect(outs[k], `output ${k}`).to.be.instanceOf(kiln.Tensor);
      expectClose(outs[k], want.data, rtol, atol, want.shape);
    }
    if (c.grads) {
      const names = Object.keys(c.grads);
      const gs = kiln.autograd.grad(outs.out, names.map((k) => ins[k]), { gradOutputs: fromFixture(c.gradOutput!) });
      names.forEach((k, i) => expectClose(gs[i]!, c.grads![k].data, rtol, atol, c.grads![k].shape));
    }
  });
}

describe('nn.functional (reference numbers from PyTorch)', () => {
  it('fixture file is present and was made by PyTorch 1.13+', () => {
    expect(Object.keys(fixtures()).length).to.be.greaterThan(40);
  });

  describe('conv2d', () => {
    it('padding 1 with bias (output and gradients of x, w, b)', () => check('conv2d_pad1', ({ x, w, b }) => F.conv2d(x, w, b, { padding: 1 })));
    it("padding 'same'", () => check('conv2d_same', ({ x, w, b }) => F.conv2d(x, w, b, { padding: 'same' })));
    it("padding 'same' with an even kernel (asymmetric padding)", () => check('conv2d_same_even', ({ x, w }) => F.conv2d(x, w, null, { padding: 'same' })));
    it('stride 2 with groups 2', () => check('conv2d_stride_groups', ({ x, w, b }) => F.conv2d(x, w, b, { stride: 2, padding: 1, groups: 2 })));
    it('dilation with per-axis stride and padding', () => check('conv2d_dilation', ({ x, w }) => F.conv2d(x, w, null, { stride: [1, 2], padding: [2, 1], dilation: 2 })));
    it("padding 'valid' is no padding", () => {
      const x = kiln.ones([1, 1, 5, 5]);
      expect(F.conv2d(x, kiln.ones([2, 1, 3, 3]), null, { padding: 'valid' }).shape).to.deep.equal([1, 2, 3, 3]);
      expectClose(F.conv2d(x, kiln.ones([1, 1, 3, 3]), kiln.tensor([0.5]), { padding: 'valid' }).flatten(), new Array(9).fill(9.5));
    });
  });

  describe('pooling', () => {
    it('maxPool2d kernel 2', () => check('maxPool2d_k2', ({ x }) => F.maxPool2d(x, 2)));
    it('maxPool2d kernel 3, stride 2, padding 1', () => check('maxPool2d_k3s2p1', ({ x }) => F.maxPool2d(x, 3, { stride: 2, padding: 1 })));
    it('maxPool2d ceilMode', () => check('maxPool2d_ceil', ({ x }) => F.maxPool2d(x, 3, { stride: 2, ceilMode: true })));
    it('avgPool2d kernel 2', () => check('avgPool2d_k2', ({ x }) => F.avgPool2d(x, 2)));
    it('avgPool2d kernel 3, stride 2, padding 1', () => check('avgPool2d_k3s2p1', ({ x }) => F.avgPool2d(x, 3, { stride: 2, padding: 1 })));
    it('avgPool2d countIncludePad false', () => check('avgPool2d_k3s2p1_nopad', ({ x }) => F.avgPool2d(x, 3, { stride: 2, padding: 1, countIncludePad: false })));
    it('adaptiveAvgPool2d to 3×2', () => check('adaptiveAvgPool2d_3x2', ({ x }) => F.adaptiveAvgPool2d(x, [3, 2])));
    it('adaptiveAvgPool2d to 1 (global average)', () => check('adaptiveAvgPool2d_1', ({ x }) => F.adaptiveAvgPool2d(x, 1)));
  });

  describe('batchNorm', () => {
    it('training: batch statistics, running stats updated in place, gradients', () =>
      check('batchNorm_train', ({ x, weight, bias }) => {
        const runningMean = kiln.zeros([3]);
        const runningVar = kiln.ones([3]);
        const out = F.batchNorm(x, runningMean, runningVar, { weight, bias, training: true, momentum: 0.1, eps: 1e-5 });
        return { out, runningMean, runningVar };
      }));
    it('eval: uses the running statistics', () =>
      check('batchNorm_eval', ({ x, runningMean, runningVar, weight, bias }) => F.batchNorm(x, runningMean, runningVar, { weight, bias, eps: 1e-5 })));
    it('training without running stats normalises each channel to mean 0, variance 1', () => {
      kiln.manualSeed(3);
      const x = kiln.randn([8, 2, 3, 3]).mul(5).add(2);
      const y = F.batchNorm(x, null, null, { training: true });
      expectClose(y.mean([0, 2, 3]), [0, 0], 0, 1e-5);
      expectClose(y.var([0, 2, 3], { unbiased: false }), [1, 1], 1e-3, 1e-3);
    });
  });

  describe('linear', () => {
    it('with bias', () => check('linear', ({ x, w, b }) => F.linear(x, w, b)));
    it('without bias on a 3-d input', () => check('linear_nobias_3d', ({ x, w }) => F.linear(x, w)));
  });

  describe('dropout', () => {
    it('zeroes about p of the elements and scales the rest by 1/(1-p)', () => {
      kiln.manualSeed(7);
      const y = F.dropout(kiln.ones([20000]), 0.3);
      const v = values(y);
      const zeros = v.filter((e) => e === 0).length;
      expect(zeros / v.length).to.be.closeTo(0.3, 0.02);
      expect(v.filter((e) => e !== 0).every((e) => Math.abs(e - 1 / 0.7) < 1e-6)).to.equal(true);
      expect(y.mean().item()).to.be.closeTo(1, 0.03);
    });
    it('is the identity when not training, and p=0 / p=1 are exact', () => {
      const x = kiln.tensor([1, 2, 3]);
      expect(F.dropout(x, 0.5, false).arraySync()).to.deep.equal([1, 2, 3]);
      expect(F.dropout(x, 0).arraySync()).to.deep.equal([1, 2, 3]);
      expect(F.dropout(x, 1).arraySync()).to.deep.equal([0, 0, 0]);
    });
    it('gradient flows only through kept elements', () => {
      kiln.manualSeed(11);
      const x = kiln.ones([1000], { requiresGrad: true });
      const y = F.dropout(x, 0.5);
      y.sum().backward();
      expect(values(x.grad!)).to.deep.equal(values(y));
    });
  });

  describe('losses', () => {
    const ce = (o: kiln.nn.functional.CrossEntropyOptions) => ({ x, t, w }: Record<string, T>) => F.crossEntropy(x, t, { ...o, ...(w ? { weight: w } : {}) });
    it('crossEntropy mean', () => check('crossEntropy_mean', ce({})));
    it('crossEntropy sum', () => check('crossEntropy_sum', ce({ reduction: 'sum' })));
    it('crossEntropy none', () => check('crossEntropy_none', ce({ reduction: 'none' })));
    it('crossEntropy with class weights', () => check('crossEntropy_weight', ce({})));
    it('crossEntropy with labelSmoothing', () => check('crossEntropy_smoothing', ce({ labelSmoothing: 0.1 })));
    it('crossEntropy with weights, labelSmoothing and sum', () => check('crossEntropy_weight_smoothing_sum', ce({ labelSmoothing: 0.2, reduction: 'sum' })));
    it('crossEntropy ignoreIndex', () => check('crossEntropy_ignoreIndex', ce({ ignoreIndex: 4 })));
    it('crossEntropy with probability targets', () => check('crossEntropy_probs', ce({})));
    it('crossEntropy over a spatial map [N, C, H, W]', () => check('crossEntropy_spatial', ce({})));
    it('nllLoss mean', () => check('nllLoss_mean', ({ x, t }) => F.nllLoss(x, t)));
    it('nllLoss with weights, sum', () => check('nllLoss_weight_sum', ({ x, t, w }) => F.nllLoss(x, t, { weight: w, reduction: 'sum' })));
    it('nllLoss with weights, mean (weighted average)', () => check('nllLoss_weight_mean', ({ x, t, w }) => F.nllLoss(x, t, { weight: w })));
    it('nllLoss none', () => check('nllLoss_none', ({ x, t }) => F.nllLoss(x, t, { reduction: 'none' })));
    it('crossEntropy equals nllLoss of logSoftmax', () => {
      const c = fixtures().crossEntropy_mean;
      const x = fromFixture(c.inputs.x), t = fromFixture(c.inputs.t);
      expectClose(F.crossEntropy(x, t), [F.nllLoss(x.logSoftmax(1), t).item()]);
    });
    it('mseLoss mean', () => check('mseLoss_mean', ({ a, b }) => F.mseLoss(a, b)));
    it('mseLoss sum', () => check('mseLoss_sum', ({ a, b }) => F.mseLoss(a, b, { reduction: 'sum' })));
    it('mseLoss none', () => check('mseLoss_none', ({ a, b }) => F.mseLoss(a, b, { reduction: 'none' })));
    it('klDiv mean', () => check('klDiv_mean', ({ x, t }) => F.klDiv(x, t, { reduction: 'mean' })));
    it('klDiv sum', () => check('klDiv_sum', ({ x, t }) => F.klDiv(x, t, { reduction: 'sum' })));
    it('klDiv batchmean', () => check('klDiv_batchmean', ({ x, t }) => F.klDiv(x, t, { reduction: 'batchmean' })));
    it('klDiv none', () => check('klDiv_none', ({ x, t }) => F.klDiv(x, t, { reduction: 'none' })));
    it('klDiv logTarget with batchmean (gradients of input and target)', () =>
      check('klDiv_logTarget_batchmean', ({ x, t }) => F.klDiv(x, t, { reduction: 'batchmean', logTarget: true })));
  });

  describe('interpolate', () => {
    it('nearest to a size', () => check('interpolate_nearest_size', ({ x }) => F.interpolate(x, { size: [6, 8], mode: 'nearest' })));
    it('nearest by a scale factor', () => check('interpolate_nearest_scale', ({ x }) => F.interpolate(x, { scaleFactor: 2 })));
    it('bilinear by a scale factor', () => check('interpolate_bilinear_scale', ({ x }) => F.interpolate(x, { scaleFactor: 2, mode: 'bilinear', alignCorners: false })));
    it('bilinear alignCorners to a size', () => check('interpolate_bilinear_align', ({ x }) => F.interpolate(x, { size: [5, 7], mode: 'bilinear', alignCorners: true })));
    it('bicubic to a size', () => check('interpolate_bicubic_size', ({ x }) => F.interpolate(x, { size: [4, 6], mode: 'bicubic', alignCorners: false }), 1e-5, 2e-6));
    it('area (downsampling)', () => check('interpolate_area_down', ({ x }) => F.interpolate(x, { size: [2, 3], mode: 'area' })));
  });

  describe('pad', () => {
    it('reflect', () => check('pad_reflect', ({ x }) => F.pad(x, [1, 2, 2, 1], 'reflect')));
    it('constant with a value', () => check('pad_constant', ({ x }) => F.pad(x, [1, 1, 2, 0], 'constant', 0.5)));
    it('replicate', () => check('pad_replicate', ({ x }) => F.pad(x, [2, 0, 1, 1], 'replicate')));
    it('constant by default with zeros, negative pads crop', () => {
      const x = kiln.tensor([[1, 2, 3]]);
      expect(F.pad(x, [1, 0]).arraySync()).to.deep.equal([[0, 1, 2, 3]]);
      expect(F.pad(x, [-1, 1]).arraySync()).to.deep.equal([[2, 3, 0]]);
    });
    it('says which pads a mode takes and when pads remove more than a dim holds (libtorch: "Dimension out of range … got 100")', () => {
      const x = kiln.zeros([1, 3, 8, 8]);
      expectKilnError(() => F.pad(x, [1, 1], 'reflect'), 'INVALID_ARGUMENT', "'reflect' padding takes 2, 4 or 6 pads", '4-D input got 2');
      expectKilnError(() => F.pad(x, [-100, 0]), 'INVALID_ARGUMENT', 'pads [-100, 0] would remove more than the 8 elements of dim 3');
      expectKilnError(() => F.pad(x, Array(10).fill(1)), 'INVALID_ARGUMENT', '10 pads cover 5 dims, the input has 4');
      expect(F.pad(x, [1, 1, 1, 1, 1, 1], 'reflect').shape, "6 pads: the 4-D input as one [C, D, H, W] volume, as PyTorch").to.deep.equal([1, 5, 10, 10]);
      expect(F.pad(x, [-4, -4]).shape).to.deep.equal([1, 3, 8, 0]);
      expectKilnError(() => x.logsumexp(undefined as never), 'INVALID_ARGUMENT', 'logsumexp', 'dim');
      x.dispose();
    });
  });

  describe('argument validation', () => {
    it('rejects bad options with clear errors', () => {
      const x = kiln.zeros([1, 1, 4, 4]);
      const w = kiln.zeros([1, 1, 3, 3]);
      expectKilnError(() => F.conv2d(kiln.zeros([4, 4]), w), 'INVALID_ARGUMENT', 'conv2d', '[4, 4]');
      expectKilnError(() => F.conv2d(x, w, null, { stride: -1 }), 'INVALID_ARGUMENT', 'stride');
      expectKilnError(() => F.conv2d(x, w, null, { groups: 0 }), 'INVALID_ARGUMENT', 'groups');
      expectKilnError(() => F.conv2d(x, kiln.zeros([1, 2, 3, 3])), 'TORCH', 'channels');
      expectKilnError(() => F.maxPool2d(x, [2, 2, 2] as unknown as [number, number]), 'INVALID_ARGUMENT', 'kernelSize');
      expectKilnError(() => F.dropout(x, 1.5), 'INVALID_ARGUMENT', 'p', 'probability');
      expectKilnError(() => F.crossEntropy(kiln.zeros([2, 3]), kiln.zeros([3], { dtype: 'int64' })), 'INVALID_ARGUMENT', 'does not match', '[2, 3]');
      expectKilnError(() => F.crossEntropy(kiln.zeros([2, 3]), kiln.zeros([2], { dtype: 'int64' }), { labelSmoothing: 2 }), 'INVALID_ARGUMENT', 'labelSmoothing');
      expectKilnError(() => F.mseLoss(x, x, { reduction: 'avg' as 'mean' }), 'INVALID_ARGUMENT', 'reduction');
      expectKilnError(() => F.interpolate(x, {}), 'INVALID_ARGUMENT', 'exactly one of size and scaleFactor');
      expectKilnError(() => F.interpolate(x, { size: 8, mode: 'nearest', alignCorners: true }), 'INVALID_ARGUMENT', 'alignCorners');
      expectKilnError(() => F.interpolate(x, { size: 8, mode: 'linear' as 'nearest' }), 'INVALID_ARGUMENT', 'mode');
      expectKilnError(() => F.pad(x, [1, 2, 3]), 'INVALID_ARGUMENT', 'pads');
      expectKilnError(() => F.pad(x, [1, 1], 'mirror' as 'reflect'), 'INVALID_ARGUMENT', 'mode');
      expectKilnError(() => F.pad(x, [4, 4, 0, 0], 'reflect'), 'TORCH', 'Padding size should be less than');
      expectKilnError(() => F.batchNorm(x, null, null), 'INVALID_ARGUMENT', 'runningMean');
    });
  });
});
