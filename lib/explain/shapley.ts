/**
 * Shapley values by permutation (Captum's ShapleyValueSampling and ShapleyValues): for a permutation of the
 * features (the segments of a feature mask, or every element), start from the baseline and switch the features to
 * the input one at a time in that order; each feature is credited with the change of the target logit its switch
 * made. Averaged over `samples` random permutations (drawn with the CPU generator as torch.randperm, so a seed set
 * with kiln.manualSeed gives Captum's permutations), or over all F! permutations in lexicographic order (exact).
 * Every feature's marginal contributions add up: for each image the attributions sum to f(x) − f(baseline).
 */
import { KilnError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { cat, where } from '../tensor/ops';
import { full, tensor } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, Target, baselineOf, checkModel, checkInput, checkOptions, positiveInt, randpermList, targetIndex, targetLogits } from './common';
import { elementMask, resolveFeatureMask } from './masks';

/** Options of `shapleyValueSampling` and `shapleyValues`. */
export interface ShapleyOptions {
  target: Target;
  /** integer segment ids 0 … M−1 broadcastable to the input (see gridMask); default: every element its own feature */
  featureMask?: Tensor;
  /** what switched-off features are set to: a number, or a tensor broadcastable to the input (default 0) */
  baselines?: number | Tensor;
  /** shapleyValueSampling: random permutations (default 25, Captum's) */
  samples?: number;
  /** features switched per forward pass, each on the whole batch (default: as many as keep a pass ≤ 64 images) */
  perturbationsPerEval?: number;
}

/** The most features `shapleyValues` takes: it evaluates F! permutations (8! = 40320). */
export const MAX_EXACT_SHAPLEY_FEATURES = 8;

/** Every permutation of 0 … n−1 in lexicographic order (itertools.permutations'). */
function* permutations(n: number): Generator<number[]> {
  const p = Array.from({ length: n }, (_, i) => i);
  for (;;) {
    yield [...p];
    let i = n - 2;
    while (i >= 0 && p[i] > p[i + 1]) i--;
    if (i < 0) return;
    let j = n - 1;
    while (p[j] < p[i]) j--;
    [p[i], p[j]] = [p[j], p[i]];
    p.splice(i + 1, n - i - 1, ...p.slice(i + 1).reverse());
  }
}

/** Shapley attributions over the permutations `perms` (a fresh iterator per call). */
function shapley(fn: string, model: Classifier | Module, x: Tensor, o: ShapleyOptions, perms: (count: number) => Iterable<number[]>): Tensor {
  const m = checkModel(model);
  checkInput(x, fn);
  checkOptions(o, fn);
  const base = baselineOf(o.baselines, x, 'baselines');
  const n = x.size(0);
  const perEval = positiveInt(o.perturbationsPerEval, 'perturbationsPerEval', Math.max(1, Math.floor(64 / n)));
  const { mask, count } = o.featureMask === undefined ? elementMask(x) : resolveFeatureMask(o.featureMask, x, fn);
  try {
    return tidy(() => noGrad(() => {
      const xd = x.detach();
      const dims = xd.shape.slice(1);
      const ones = dims.map(() => 1);
      const opts = { dtype: xd.dtype, device: xd.device };
      const b = base instanceof Tensor ? base.to(opts).expand(xd.shape) : full(xd.shape, base, opts);
      const t = targetIndex(o.target, n, xd.device);
      const f0 = targetLogits(m, b, t); // [N], everything at the baseline
      let total: Tensor | null = null;
      let runs = 0;
      for (const perm of perms(count)) {
        runs++;
        const step = tidy(() => {
          // rank of every element: the position of its feature in the permutation
          const ranks = new Array<number>(count);
          perm.forEach((feature, i) => (ranks[feature] = i));
          const rank = tensor(ranks, { dtype: 'int64', device: xd.device }).indexSelect(0, mask.flatten()).reshape(mask.shape); // [N, …]
          const evals: Tensor[] = [f0.unsqueeze(0)];
          for (let s = 0; s < count; s += perEval) {
            const k = Math.min(perEval, count - s);
            const ks = tensor(Array.from({ length: k }, (_, j) => s + j), { dtype: 'int64', device: xd.device }).reshape([k, 1, ...ones]);
            const on = rank.unsqueeze(0).le(ks); // [k, N, …]: the first s + j + 1 features are the input's
            const inputs = where(on, xd.unsqueeze(0), b.unsqueeze(0)).reshape([k * n, ...dims]);
            evals.push(targetLogits(m, inputs, t, t.index.repeat(k)).reshape([k, n]));
          }
          const f = cat(evals, 0); // [count + 1, N]
          const diff = f.narrow(0, 1, count).sub(f.narrow(0, 0, count)); // [count, N]: the switch of the feature ranked r
          // each element gets the contribution of its own feature: diff[rank, image]
          return diff.t().gather(1, rank.reshape([n, -1])).reshape(xd.shape);
        });
        if (total) {
          const next: Tensor = total.add(step);
          total.dispose();
          step.dispose();
          total = next;
        } else total = step;
      }
      return total!.div(runs).to({ dtype: xd.dtype });
    }));
  } finally {
    mask.dispose();
  }
}

/**
 * ShapleyValueSampling (Captum's): Shapley values estimated over `samples` random permutations of the features,
 * shaped like `x` [N, …]. Each permutation costs F + 1 forward images per input image (F features); seed the
 * CPU generator (kiln.manualSeed) for reproducible permutations.
 */
export function shapleyValueSampling(model: Classifier | Module, x: Tensor, o: ShapleyOptions): Tensor {
  const samples = positiveInt(o?.samples, 'samples', 25);
  return shapley('shapleyValueSampling', model, x, o, function* (count) {
    for (let i = 0; i < samples; i++) yield randpermList(count);
  });
}

/**
 * ShapleyValues (Captum's): the exact Shapley values, over all F! permutations of the features (F ≤ 8; use a
 * coarse featureMask), shaped like `x` [N, …].
 */
export function shapleyValues(model: Classifier | Module, x: Tensor, o: ShapleyOptions): Tensor {
  return shapley('shapleyValues', model, x, o, (count) => {
    if (count > MAX_EXACT_SHAPLEY_FEATURES)
      throw new KilnError(`shapleyValues: ${count} features make ${count}! permutations; give a featureMask with at most ${MAX_EXACT_SHAPLEY_FEATURES} segments, or use shapleyValueSampling`, 'INVALID_ARGUMENT');
    return permutations(count);
  });
}
