/**
 * Gradient attributions (`kiln.explain`): integrated gradients (Sundararajan et al., Captum's
 * Riemann rules) and saliency. Input gradients come from `kiln.autograd.grad`, so parameter
 * `.grad`s are untouched; the model's train/eval mode is left as the caller set it.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { tensor, zerosLike } from '../tensor/creation';
import { tidy, keep } from '../tensor/memory';
import { autograd, noGrad } from '../autograd';
import { Module } from '../nn/module';

/** Anything with `call(x)` returning logits [N, classes] (a Module or a TorchScript model). */
export interface Classifier {
  call(x: Tensor): Tensor;
}

/** Which output to explain: one class for all images, one per image, or an int64 tensor [N]. */
export type Target = number | number[] | Tensor;

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

function targetIndex(target: Target, n: number, device: string): Tensor {
  if (target instanceof Tensor) {
    idOf(target, 'target');
    if (target.ndim !== 1 || target.size(0) !== n) throw new KilnError(`target tensor must have shape [${n}], got [${target.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    return target.to({ dtype: 'int64', device: device as 'cpu' });
  }
  const list = typeof target === 'number' ? new Array(n).fill(target) : target;
  if (!Array.isArray(list) || list.length !== n || !list.every((t) => Number.isInteger(t) && t >= 0))
    throw invalidParameterError('target', `a class index, ${n} class indices or an int64 Tensor [${n}]`, target);
  return tensor(list, { dtype: 'int64', device: device as 'cpu' });
}

/** Path points and weights of a Riemann rule with `steps` points (Captum's conventions). */
export function riemann(method: NonNullable<IntegratedGradientsOptions['method']>, steps: number): { alphas: number[]; weights: number[] } {
  if (!Number.isInteger(steps) || steps < 2) throw invalidParameterError('steps', 'an integer ≥ 2', steps);
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

function checkModel(model: unknown): Classifier {
  if (!model || typeof (model as Classifier).call !== 'function') throw invalidParameterError('model', 'a Module (or anything with call(x))', model);
  return model as Classifier;
}

/** Logit of each image's target class: [N]. */
function targetLogits(model: Classifier, x: Tensor, idx: Tensor): Tensor {
  const out = model.call(x);
  if (out.ndim !== 2) throw new KilnError(`the model must return logits [N, classes], got shape [${out.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  return out.gather(1, idx.unsqueeze(1)).squeeze(1);
}

/**
 * Integrated gradients of the target logits with respect to the input images `x` [N, C, H, W]:
 * (x − baseline) · ∫₀¹ ∂f(baseline + α(x − baseline))/∂x dα, the integral by a Riemann rule.
 */
export function integratedGradients(model: Classifier | Module, x: Tensor, o: IntegratedGradientsOptions): Attribution {
  const m = checkModel(model);
  idOf(x, 'input');
  if (x.ndim < 2) throw new KilnError(`input must be a batch [N, …], got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (!o || typeof o !== 'object') throw invalidParameterError('options', 'an object with target', o);
  const n = x.size(0);
  const { alphas, weights } = riemann(o.method ?? 'riemannTrapezoid', o.steps ?? 50);
  const chunk = o.internalBatchSize === undefined ? Math.max(1, Math.floor(512 / n)) : Math.max(1, Math.floor(o.internalBatchSize / n));
  if (o.internalBatchSize !== undefined && (!Number.isInteger(o.internalBatchSize) || o.internalBatchSize < 1))
    throw invalidParameterError('internalBatchSize', 'a positive integer', o.internalBatchSize);
  const result = tidy(() => {
    const xd = x.detach();
    if (o.baseline !== undefined) idOf(o.baseline, 'baseline');
    const base = o.baseline === undefined ? zerosLike(xd) : o.baseline.detach().expand(xd.shape);
    const diff = xd.sub(base);
    const idx = targetIndex(o.target, n, xd.device);
    let total: Tensor | null = null;
    for (let s = 0; s < alphas.length; s += chunk) {
      const part = tidy(() => {
        const as = alphas.slice(s, s + chunk), ws = weights.slice(s, s + chunk);
        const k = as.length;
        const alpha = tensor(as, { device: xd.device as 'cpu' }).reshape([k, 1, ...xd.shape.slice(1).map(() => 1)]);
        // [k, N, …] scaled inputs, flattened to one batch
        const scaled = base.unsqueeze(0).add(alpha.unsqueeze(1).mul(diff.unsqueeze(0))).reshape([k * n, ...xd.shape.slice(1)]).requiresGrad_(true);
        const sel = targetLogits(m, scaled, idx.repeat(k)).sum();
        const [g] = autograd.grad(sel, scaled);
        const w = tensor(ws, { device: xd.device as 'cpu' }).reshape([k, 1, ...xd.shape.slice(1).map(() => 1)]);
        return g!.reshape([k, n, ...xd.shape.slice(1)]).mul(w).sum(0);
      });
      const next: Tensor = total ? total.add(part) : part;
      if (total) { total.dispose(); part.dispose(); }
      total = next;
    }
    const attributions = diff.mul(total!);
    const gap = noGrad(() => targetLogits(m, xd, idx).sub(targetLogits(m, base.contiguous(), idx)));
    const delta = attributions.flatten(1).sum(1).sub(gap);
    return { attributions, delta };
  });
  return { attributions: keep(result.attributions), delta: keep(result.delta) };
}

/** Saliency: |∂ target logit / ∂ x| (Simonyan et al.), or the signed gradient with `abs: false`. */
export function saliency(model: Classifier | Module, x: Tensor, o: { target: Target; abs?: boolean }): Tensor {
  const m = checkModel(model);
  idOf(x, 'input');
  if (!o || typeof o !== 'object') throw invalidParameterError('options', 'an object with target', o);
  return tidy(() => {
    const xi = x.detach().requiresGrad_(true);
    const [g] = autograd.grad(targetLogits(m, xi, targetIndex(o.target, x.size(0), x.device)).sum(), xi);
    return o.abs === false ? g! : g!.abs();
  });
}

