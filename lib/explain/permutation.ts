/**
 * Permutation feature importance (Captum's FeaturePermutation): each segment of a feature mask (or each input
 * element) in turn takes the values of another example of the batch — the batch permuted by `randperm(N)` drawn from
 * the CPU generator, redrawn while it is the identity, as Captum draws it — and the drop of the target logit,
 * f(x) − f(x with the segment permuted), is credited to every element of the segment. Needs a batch of two or more.
 */
import { KilnError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { where } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, Target, checkModel, checkInput, checkOptions, randpermList, targetIndex, targetLogits } from './common';
import { elementMask, resolveFeatureMask } from './masks';

/** Options of `featurePermutation`. */
export interface FeaturePermutationOptions {
  target: Target;
  /** integer segment ids 0 … M−1 broadcastable to the input (see gridMask); default: every element its own feature */
  featureMask?: Tensor;
}

/** A permutation of 0 … n−1 from the CPU generator that is not the identity (Captum's _permute_feature). */
function shuffled(n: number): number[] {
  for (;;) {
    const list = randpermList(n);
    if (list.some((v, i) => v !== i)) return list;
  }
}

/**
 * FeaturePermutation attributions shaped like `x` [N, …]: for each feature j in order, f(x) − f(x with feature j's
 * values taken from the permuted batch), for each image's target logit. Seed the CPU generator (kiln.manualSeed) for
 * reproducible permutations (Captum's under the same seed).
 */
export function featurePermutation(model: Classifier | Module, x: Tensor, o: FeaturePermutationOptions): Tensor {
  const m = checkModel(model);
  checkInput(x, 'featurePermutation');
  checkOptions(o, 'featurePermutation');
  const n = x.size(0);
  if (n < 2) throw new KilnError(`featurePermutation: permuting features needs a batch of at least 2 examples, got ${n}`, 'INVALID_ARGUMENT');
  const { mask, count } = o.featureMask === undefined ? elementMask(x) : resolveFeatureMask(o.featureMask, x, 'featurePermutation');
  try {
    return tidy(() => noGrad(() => {
      const xd = x.detach();
      const t = targetIndex(o.target, n, xd.device);
      const f0 = targetLogits(m, xd, t);
      const ones = xd.shape.slice(1).map(() => 1);
      let total = xd.mul(0);
      for (let j = 0; j < count; j++) {
        const perm = tensor(shuffled(n), { dtype: 'int64', device: xd.device as 'cpu' });
        const next = tidy(() => {
          const on = mask.eq(j);
          const permuted = where(on, xd.indexSelect(0, perm), xd);
          const drop = f0.sub(targetLogits(m, permuted, t)).reshape([n, ...ones]);
          return total.add(where(on, drop.expand(xd.shape), 0));
        });
        perm.dispose();
        total.dispose();
        total = next;
      }
      return total;
    }));
  } finally {
    mask.dispose();
  }
}
