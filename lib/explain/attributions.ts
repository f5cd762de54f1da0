/**
 * Gradient attributions (`kiln.explain`): integrated gradients (Sundararajan et al., Captum's
 * Riemann rules), saliency and input × gradient. Input gradients come from `kiln.autograd.grad`, so parameter
 * `.grad`s are untouched; the model's train/eval mode is left as the caller set it.
 */
import { invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { tensor, zerosLike } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { autograd, noGrad, enableGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, MAX_COUNT, Target, checkModel, checkInput, checkOptions, positiveInt, targetIndex, targetLogits, inputGradient } from './common';

export type { Classifier, Target } from './common';

/** Options of `integratedGradients`. */
export interface IntegratedGradientsOptions {
  target: Target;
  /** the reference input (default: zeros), same shape as the input or broadcastable to it */
  baseline?: Tensor;
  /** points on the path (default 50) */
  steps?: number;
  /** how the path integral is approximated (default 'riemannTrapezoid', as Captum's riemann_trapezoid) */
  method?: 'riemannTrapezoid' | 'riemannLeft' | 'riemannRight' | 'riemannMiddle';
  /** scaled inputs per forward pass (default: all steps of all images at once, capped at 512) */
  internalBatchSize?: number;
}

/** What `integratedGradients` returns; `delta` = Σ attributions − (f(x) − f(baseline)) per image. */
export interface Attribution {
  attributions: Tensor;
  delta: Tensor;
}

/** Path points and weights of a Riemann rule with `steps` points (Captum's conventions). */
export function riemann(method: NonNullable<IntegratedGradientsOptions['method']>, steps: number): { alphas: number[]; weights: number[] } {
  // the path's points are JS arrays: a bound keeps an absurd count a clear error, not a V8 heap abort
  if (!Number.isInteger(steps) || steps < 2 || steps > MAX_COUNT) throw invalidParameterError('steps', `an integer in [2, ${MAX_COUNT}]`, steps);
  const idx = [...Array(steps).keys()];
  switch (method) {
    case 'riemannTrapezoid':
      return { alphas: idx.map((i) => i / (steps - 1)), weights: idx.map((i) => (i === 0 || i === steps - 1 ? 0.5 : 1) / (steps - 1)) };
    case 'riemannLeft':
      return { alphas: idx.map((i) => i / steps), weights: idx.map(() => 1 / steps) };
    case 'riemannRight':
      return { alphas: idx.map((i) => (i + 1) / steps), weights: idx.map(() => 1 / steps) };
    case 'riemannMiddle':
      return { alphas: idx.map((i) => (i + 0.5) / steps), weights: idx.map(() => 1 / steps) };
    default:
      throw invalidParameterError('method', "'riemannTrapezoid', 'riemannLeft', 'riemannRight' or 'riemannMiddle'", method);
  }
}

/** The Riemann points and weights of an integrated-gradients option set, and the points per pass for `n` images. */
export function pathPlan(o: Pick<IntegratedGradientsOptions, 'method' | 'steps' | 'internalBatchSize'>, n: number): { alphas: number[]; weights: number[]; chunk: number } {
  const { alphas, weights } = riemann(o.method ?? 'riemannTrapezoid', o.steps ?? 50);
  return { alphas, weights, chunk: Math.max(1, Math.floor(positiveInt(o.internalBatchSize, 'internalBatchSize', 512) / n)) };
}

/** The path's start for inputs `xd`: zeros, or `baseline` (checked) expanded to their shape, contiguous. */
export function pathBaseline(xd: Tensor, baseline: Tensor | undefined): Tensor {
  if (baseline === undefined) return zerosLike(xd);
  idOf(baseline, 'baseline');
  return baseline.detach().expand(xd.shape).contiguous();
}

/**
 * Integrated gradients of the target logits with respect to the input images `x` [N, C, H, W]:
 * (x − baseline) · ∫₀¹ ∂f(baseline + α(x − baseline))/∂x dα, the integral by a Riemann rule.
 */
export function integratedGradients(model: Classifier | Module, x: Tensor, o: IntegratedGradientsOptions): Attribution {
  const m = checkModel(model);
  checkInput(x, 'integratedGradients');
  checkOptions(o, 'integratedGradients');
  const n = x.size(0);
  const { alphas, weights, chunk } = pathPlan(o, n);
  return tidy(() => {
    const xd = x.detach();
    const base = pathBaseline(xd, o.baseline);
    const diff = xd.sub(base);
    const t = targetIndex(o.target, n, xd.device);
    const rest = xd.shape.slice(1);
    let total: Tensor | null = null;
    for (let s = 0; s < alphas.length; s += chunk) {
      const part = tidy(() => enableGrad(() => {
        const as = alphas.slice(s, s + chunk), ws = weights.slice(s, s + chunk);
        const k = as.length;
        const alpha = tensor(as, { device: xd.device as 'cpu', dtype: xd.dtype }).reshape([k, 1, ...rest.map(() => 1)]);
        // [k, N, …] scaled inputs, flattened to one batch
        const scaled = base.unsqueeze(0).add(alpha.unsqueeze(1).mul(diff.unsqueeze(0))).reshape([k * n, ...rest]).requiresGrad_(true);
        const sel = targetLogits(m, scaled, t, t.index.repeat(k)).sum();
        const [g] = autograd.grad(sel, scaled);
        const w = tensor(ws, { device: xd.device as 'cpu', dtype: xd.dtype }).reshape([k, 1, ...rest.map(() => 1)]);
        return g!.reshape([k, n, ...rest]).mul(w).sum(0);
      }));
      const next: Tensor = total ? total.add(part) : part;
      if (total) { total.dispose(); part.dispose(); }
      total = next;
    }
    const attributions = diff.mul(total!);
    const gap = noGrad(() => targetLogits(m, xd, t).sub(targetLogits(m, base, t)));
    const delta = attributions.flatten(1).sum(1).sub(gap);
    return { attributions, delta };
  });
}

/** Saliency: |∂ target logit / ∂ x| (Simonyan et al.), or the signed gradient with `abs: false`. */
export function saliency(model: Classifier | Module, x: Tensor, o: { target: Target; abs?: boolean }): Tensor {
  const m = checkModel(model);
  checkInput(x, 'saliency');
  checkOptions(o, 'saliency');
  return tidy(() => {
    const g = inputGradient(m, x, targetIndex(o.target, x.size(0), x.device));
    return o.abs === false ? g : g.abs();
  });
}

/** Input × gradient: x · ∂ target logit / ∂ x (Captum's InputXGradient); w·x for a linear model. */
export function inputXGradient(model: Classifier | Module, x: Tensor, o: { target: Target }): Tensor {
  const m = checkModel(model);
  checkInput(x, 'inputXGradient');
  checkOptions(o, 'inputXGradient');
  return tidy(() => inputGradient(m, x, targetIndex(o.target, x.size(0), x.device)).mul(x.detach()));
}
