/**
 * GradientShap (Lundberg & Lee; Captum's GradientShap): the expected gradient × (input − baseline)
 * over a distribution of baselines, random points on the straight path to the input and Gaussian
 * noise on the input. Captum runs InputBaselineXGradient inside a NoiseTunnel (smoothgrad with
 * `draw_baseline_from_distrib`); this computes the same expectation in chunks of samples.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { randint } from '../tensor/creation';
import { cat } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { isFloating } from '../tensor/dtype';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { cpuDraw } from '../robust/runs';
import {
  Classifier, Target, addInto, boolOption, checkModel, checkInput, checkOptions, inputGradient, nonNegativeNumber, positiveInt,
  targetIndex, targetLogits,
} from './common';

/** Options of `gradientShap`. */
export interface GradientShapOptions {
  target: Target;
  /** the reference distribution: [B, C, H, W] (B ≥ 1 baselines, each image's draws pick among them) or one image [C, H, W] */
  baselines: Tensor;
  /** random draws per image (Captum's n_samples; default 5) */
  samples?: number;
  /** standard deviation of the Gaussian noise added to the input, absolute, in the input's units (default 0) */
  stdevs?: number;
  /** multiply the gradients by (noisy input − baseline) (default true; false gives the expected gradient alone) */
  multiplyByInputs?: boolean;
  /** also return `delta` per draw (Captum's return_convergence_delta; default false; needs multiplyByInputs) */
  returnConvergenceDelta?: boolean;
  /** images (draws × batch) per forward/backward pass (default 512; at least one draw of the whole batch) */
  internalBatchSize?: number;
}

/** What `gradientShap` returns: attributions shaped like the input and, when asked, `delta` [N·samples]. */
export interface GradientShapResult {
  attributions: Tensor;
  /** Σ attributions − (f(noisy input) − f(baseline)) per draw, image-major (image i's draw j at i·samples + j), as Captum orders it */
  delta?: Tensor;
}

/** The baselines as [B, …] on the input's device and dtype (one image [C, H, W] becomes B = 1). */
function baselineSet(b: unknown, x: Tensor): Tensor {
  if (b === undefined) throw invalidParameterError('gradientShap: baselines', `a Tensor [B, ${x.shape.slice(1).join(', ')}] or one image [${x.shape.slice(1).join(', ')}]`, b);
  idOf(b, 'baselines');
  const t = b as Tensor;
  const rest = x.shape.slice(1);
  const own = t.ndim === x.ndim ? t.shape.slice(1) : t.ndim === x.ndim - 1 ? t.shape : null;
  if (!own || own.length !== rest.length || own.some((v, i) => v !== rest[i]) || (t.ndim === x.ndim && t.size(0) < 1))
    throw new KilnError(`baselines must be [B, ${rest.join(', ')}] or one image [${rest.join(', ')}] for an input [${x.shape.join(', ')}], got [${t.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (!isFloating(t.dtype)) throw new KilnError(`baselines must be floating-point, got ${t.dtype}`, 'INVALID_ARGUMENT');
  const set = t.ndim === x.ndim ? t.detach() : t.detach().unsqueeze(0);
  return set.to({ dtype: x.dtype, device: x.device });
}

/**
 * GradientShap attributions of the target logits for images `x` [N, C, H, W]. For each image and
 * each of `samples` draws: a baseline b chosen uniformly from `baselines`, α ~ U(0, 1), the noisy
 * input x̃ = x + N(0, stdevs²); the draw's attribution is (x̃ − b) ⊙ ∂f/∂x at α·x̃ + (1 − α)·b
 * (Captum's InputBaselineXGradient on the noisy input), and the result is their mean.
 *
 * Random draws come from the CPU generator (the same numbers on every device; `kiln.manualSeed`
 * makes a call reproducible), in this order: baseline indices [N, samples] (`randint`), α
 * [N, samples] (`rand`), then the noise one [N, C, H, W] `randn` per draw (none when stdevs is 0).
 * The result does not depend on `internalBatchSize`. Differs from Captum in: the order of draws
 * (Captum draws from NumPy and torch), no noise drawn for stdevs 0, the mean accumulated in
 * float64, and no delta without multiplyByInputs (Captum's would not measure completeness there).
 */
export function gradientShap(model: Classifier | Module, x: Tensor, o: GradientShapOptions): GradientShapResult {
  const m = checkModel(model);
  checkInput(x, 'gradientShap');
  checkOptions(o, 'gradientShap');
  const samples = positiveInt(o.samples, 'samples', 5);
  const stdevs = nonNegativeNumber(o.stdevs, 'stdevs', 0, 'the absolute standard deviation of the noise');
  const multiply = boolOption(o.multiplyByInputs, 'multiplyByInputs', true);
  const wantDelta = boolOption(o.returnConvergenceDelta, 'returnConvergenceDelta', false);
  if (wantDelta && !multiply)
    throw new KilnError('gradientShap: returnConvergenceDelta needs multiplyByInputs: the gradients alone do not sum to f(x) − f(baseline)', 'INVALID_ARGUMENT');
  const n = x.size(0);
  const perPass = Math.min(samples, Math.max(1, Math.floor(positiveInt(o.internalBatchSize, 'internalBatchSize', 512) / n)));
  return tidy(() => {
    const xd = x.detach();
    const base = baselineSet(o.baselines, xd);
    const t = targetIndex(o.target, n, xd.device);
    const rest = xd.shape.slice(1);
    const ones = rest.map(() => 1);
    const cast = { dtype: xd.dtype, device: xd.device };
    const pick = randint(0, base.size(0), [n, samples]).to({ device: xd.device });
    const alpha = cpuDraw('rand', [n, samples], xd).to(cast);
    let sums: Tensor[] | null = null;
    const deltas: Tensor[] = [];
    for (let s = 0; s < samples; s += perPass) {
      const k = Math.min(perPass, samples - s);
      const parts = tidy(() => {
        // draws s … s+k−1 of every image, draw-major: row j·N + i is image i's draw s + j
        const noisy = cat(Array.from({ length: k }, () => (stdevs > 0 ? xd.add(cpuDraw('randn', xd.shape, xd).to(cast).mul(stdevs)) : xd)));
        const b = base.indexSelect(0, pick.narrow(1, s, k).t().reshape([k * n]));
        const a = alpha.narrow(1, s, k).t().reshape([k * n, ...ones]);
        const index = t.index.repeat(k);
        const grad = inputGradient(m, a.mul(noisy).add(a.rsub(1).mul(b)), t, index);
        const attr = multiply ? noisy.sub(b).mul(grad) : grad;
        const sum = attr.to({ dtype: 'float64' }).reshape([k, n, ...rest]).sum(0);
        if (!wantDelta) return [sum];
        const gap = noGrad(() => targetLogits(m, noisy, t, index).sub(targetLogits(m, b, t, index)));
        return [sum, attr.flatten(1).sum(1).sub(gap).reshape([k, n])];
      });
      sums = addInto(sums, [parts[0]]);
      if (wantDelta) deltas.push(parts[1]);
    }
    const attributions = sums![0].div(samples).to({ dtype: xd.dtype });
    if (!wantDelta) return { attributions };
    return { attributions, delta: cat(deltas).t().reshape([n * samples]) };
  });
}
