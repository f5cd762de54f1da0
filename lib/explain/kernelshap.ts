/**
 * KernelShap (Lundberg & Lee; Captum's KernelShap): the Lime framework with coalitions drawn from
 * the Shapley kernel's distribution of coalition sizes, equal weights, and a weighted least-squares
 * surrogate, whose coefficients estimate the segments' Shapley values.
 */
import { KilnError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { ones, rand, randn, tensor, zeros } from '../tensor/creation';
import { cat } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { Module } from '../nn/module';
import { Classifier, checkOptions } from './common';
import { SurrogateOptions, surrogateAttributions } from './lime';

/** Options of `kernelShap`. */
export type KernelShapOptions = SurrogateOptions;

/** Weight of the all-ones and all-zeros coalitions (Captum's inf_weight); every other coalition weighs 1. */
export const KERNEL_SHAP_INF_WEIGHT = 1e6;

/**
 * Coalitions as Captum samples them: all ones, all zeros, then per row a size k ∈ 1 … M−1 with
 * p(k) ∝ (M − 1) / (k (M − k)) (inverse CDF of one `rand` draw) and the k segments with the largest
 * of M `randn` draws switched on (every subset of size k equally likely). Draws [samples − 2] `rand`
 * then [samples − 2, M] `randn` from the CPU generator. Returns float64 [samples, M] on the CPU.
 */
export function shapleyCoalitions(samples: number, count: number): Tensor {
  return tidy(() => {
    const rows = [ones([1, count], { dtype: 'float64' }), zeros([1, count], { dtype: 'float64' })];
    const rest = samples - 2;
    if (rest > 0) {
      const p = Array.from({ length: count - 1 }, (_, i) => (count - 1) / ((i + 1) * (count - 1 - i)));
      const total = p.reduce((a, v) => a + v, 0);
      let acc = 0;
      const cdf = p.slice(0, -1).map((v) => (acc += v / total)); // k − 1 = #{cdf ≤ u}
      const u = rand([rest]).to({ dtype: 'float64' });
      const k = cdf.length ? u.unsqueeze(1).ge(tensor(cdf, { dtype: 'float64' }).unsqueeze(0)).sum(1).add(1) : zeros([rest], { dtype: 'int64' }).add(1);
      const r = randn([rest, count]);
      const rank = r.sort(1).indices.sort(1).indices; // 0 for the smallest draw of a row
      rows.push(rank.ge(k.rsub(count).unsqueeze(1)).to({ dtype: 'float64' }));
    }
    return cat(rows).narrow(0, 0, samples).contiguous();
  });
}

/**
 * KernelShap attributions of the target logits for images `x` [N, C, H, W] over the M ≥ 2 segments
 * of `featureMask` (Captum's KernelShap): per image, `samples` coalitions from `shapleyCoalitions`
 * (or the `coalitions` given), each perturbed image x·z + baseline·(1 − z) evaluated, the
 * all-ones and all-zeros coalitions weighted 1e6 and the others 1, and a weighted least-squares
 * fit with an intercept (minimum-norm where the samples do not determine it, as scikit-learn's
 * LinearRegression). The heavy end points make Σ_j φ_j ≈ f(x) − f(baseline) (not exactly).
 */
export function kernelShap(model: Classifier | Module, x: Tensor, o: KernelShapOptions): Tensor {
  checkOptions(o, 'kernelShap');
  return surrogateAttributions(model, x, o, {
    fn: 'kernelShap',
    draw: (samples, count) => {
      if (count < 2) throw new KilnError('kernelShap: the feature mask has one segment; Shapley sampling needs at least 2 (its single attribution would be f(x) − f(baseline))', 'INVALID_ARGUMENT');
      return shapleyCoalitions(samples, count);
    },
    weights: (z) => tidy(() => {
      const on = z.sum(1);
      return on.eq(0).logicalOr(on.eq(z.size(1))).to({ dtype: 'float64' }).mul(KERNEL_SHAP_INF_WEIGHT - 1).add(1);
    }),
    surrogate: 'linear',
    alpha: 0,
  });
}
