/**
 * Feature ablation (Captum's FeatureAblation): each segment of a feature mask (or, without a mask,
 * each input element) is replaced by the baseline in turn, and the drop of the target logit,
 * f(x) − f(x with the segment ablated), is credited to every element of the segment. Segments are
 * evaluated `perturbationsPerEval` at a time, each on the whole batch, without gradients.
 */
import { Tensor } from '../tensor/tensor';
import { arange, full } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, Target, addInto, baselineOf, checkModel, checkInput, checkOptions, positiveInt, targetIndex, targetLogits } from './common';
import { elementMask, resolveFeatureMask } from './masks';

/** Options of `featureAblation`. */
export interface FeatureAblationOptions {
  target: Target;
  /** integer segment ids 0 … M−1 broadcastable to the input ([H, W], [C, H, W], [N, 1, H, W] …; see gridMask); default: every element its own segment */
  featureMask?: Tensor;
  /** what ablated elements are set to: a number, or a tensor broadcastable to the input (default 0) */
  baselines?: number | Tensor;
  /** segments ablated per forward pass, each on the whole batch (default: as many as keep a pass ≤ 64 images) */
  perturbationsPerEval?: number;
}

/**
 * FeatureAblation attributions, shaped like `x` [N, …]: every element of segment j gets
 * f(x) − f(x with segment j set to the baseline), for the target logit of its image (Captum's
 * FeatureAblation; segments are shared across the batch unless the mask has one per image).
 * Without a mask every element is ablated alone (numel/N forward images per input image).
 */
export function featureAblation(model: Classifier | Module, x: Tensor, o: FeatureAblationOptions): Tensor {
  const m = checkModel(model);
  checkInput(x, 'featureAblation');
  checkOptions(o, 'featureAblation');
  const base = baselineOf(o.baselines, x, 'baselines');
  const n = x.size(0);
  const perOption = positiveInt(o.perturbationsPerEval, 'perturbationsPerEval', Math.max(1, Math.floor(64 / n)));
  const { mask, count } = o.featureMask === undefined ? elementMask(x) : resolveFeatureMask(o.featureMask, x, 'featureAblation');
  const per = Math.min(count, perOption);
  try {
    return tidy(() => noGrad(() => {
      const xd = x.detach();
      const dims = xd.shape.slice(1);
      const opts = { dtype: xd.dtype, device: xd.device };
      const b = base instanceof Tensor ? base.to(opts).expand(xd.shape).unsqueeze(0) : full([], base, opts);
      const t = targetIndex(o.target, n, xd.device);
      const f0 = targetLogits(m, xd, t); // [N]
      const ones = dims.map(() => 1);
      let sums: Tensor[] | null = null;
      for (let s = 0; s < count; s += per) {
        const k = Math.min(per, count - s);
        const part = tidy(() => {
          // ind [k, N, …]: 1 where the element belongs to segment s + j
          const ids = arange(s, s + k, 1, { dtype: 'int64', device: xd.device }).reshape([k, 1, ...ones]);
          const ind = mask.unsqueeze(0).eq(ids).to({ dtype: xd.dtype });
          const ablated = xd.unsqueeze(0).mul(ind.rsub(1)).add(ind.mul(b)).reshape([k * n, ...dims]);
          const drop = f0.unsqueeze(0).sub(targetLogits(m, ablated, t, t.index.repeat(k)).reshape([k, n])); // [k, N]
          return ind.mul(drop.reshape([k, n, ...ones])).sum(0);
        });
        sums = addInto(sums, [part]);
      }
      return sums![0];
    }));
  } finally {
    mask.dispose();
  }
}
