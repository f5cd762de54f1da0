/**
 * Layer attributions (Captum's LayerActivation, LayerGradientXActivation, LayerIntegratedGradients):
 * how much each unit of one inner layer's output matters to a target logit. The layer is reached
 * with forward hooks; LayerIntegratedGradients replaces the layer's output with points on the
 * straight path between its values for the baseline and for the input (interpolation in the
 * layer's output, as Captum does by default), so it needs no access to the layers after it.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { autograd, enableGrad, noGrad } from '../autograd';
import { Module } from '../nn/module';
import { IntegratedGradientsOptions, pathBaseline, pathPlan } from './attributions';
import { Target, addInto, checkInput, checkLogits, checkOptions, targetIndex, TargetIndex } from './common';
import { layerName } from './gradcam';

/** The layer's output for `x` (no gradients). */
function layerOutput(model: Module, x: Tensor, name: string): Tensor {
  return noGrad(() => {
    const { output, activation } = model.forwardWithActivation(x, name);
    output.dispose();
    return activation;
  });
}

function checkModule(model: unknown, fn: string): Module {
  if (!(model instanceof Module)) throw invalidParameterError(`${fn}: model`, 'a kiln.nn Module (its layers take forward hooks)', model);
  return model;
}

/** The layer's output for images `x` (Captum's LayerActivation). */
export function layerActivation(model: Module, x: Tensor, o: { layer: Module | string }): Tensor {
  const m = checkModule(model, 'layerActivation');
  checkInput(x, 'layerActivation');
  if (!o || typeof o !== 'object') throw invalidParameterError('layerActivation: options', 'an object with layer', o);
  const name = layerName(m, o.layer, 'layerActivation');
  return tidy(() => layerOutput(m, x.detach(), name));
}

/** The target logits of `x` and the gradient of their sum with respect to the layer's output. */
function layerGradient(m: Module, x: Tensor, name: string, t: TargetIndex, fn: string, replace?: Tensor, index: Tensor = t.index): { activation: Tensor; grad: Tensor } {
  return enableGrad(() => {
    const layer = m.get(name);
    let seen: Tensor | null = null;
    const remove = layer.registerForwardHook((_mod, _in, out) => {
      if (seen) throw new KilnError(`${fn}: layer '${name}' runs more than once per forward; choose a layer called once`, 'INVALID_ARGUMENT');
      if (replace && (replace.ndim !== out.ndim || replace.shape.some((s, i) => s !== out.shape[i])))
        throw new KilnError(`${fn}: layer '${name}' output shape [${out.shape.join(', ')}] changed from [${replace.shape.join(', ')}]`, 'INVALID_ARGUMENT');
      seen = replace ?? out;
      return seen.view(seen.shape); // the model's own handle: containers dispose intermediates, `seen` stays ours
    });
    let output: Tensor;
    try {
      // without a replacement the input requires grad, so the layer's output does even when the layers before it are frozen
      output = m.call(replace ? x : x.detach().requiresGrad_(true));
    } finally {
      remove();
    }
    if (!seen) throw new KilnError(`${fn}: layer '${name}' was not called during forward (call children with .call(x))`, 'INVALID_ARGUMENT');
    const a = seen as Tensor;
    const sel = checkLogits(output, x.size(0), t.max).gather(1, index.unsqueeze(1)).sum();
    const [grad] = autograd.grad(sel, a, { allowUnused: true });
    if (!grad) throw new KilnError(`${fn}: the target logits do not depend on layer '${name}'`, 'INVALID_ARGUMENT');
    return { activation: a.detach(), grad };
  });
}

/** Layer gradient × activation (Captum's LayerGradientXActivation); the gradient alone with `multiplyByInputs: false`. */
export function layerGradientXActivation(model: Module, x: Tensor, o: { target: Target; layer: Module | string; multiplyByInputs?: boolean }): Tensor {
  const m = checkModule(model, 'layerGradientXActivation');
  checkInput(x, 'layerGradientXActivation');
  checkOptions(o, 'layerGradientXActivation');
  const name = layerName(m, o.layer, 'layerGradientXActivation');
  if (o.multiplyByInputs !== undefined && typeof o.multiplyByInputs !== 'boolean') throw invalidParameterError('multiplyByInputs', 'true or false', o.multiplyByInputs);
  return tidy(() => {
    const t = targetIndex(o.target, x.size(0), x.device);
    const { activation, grad } = layerGradient(m, x.detach(), name, t, 'layerGradientXActivation');
    return o.multiplyByInputs === false ? grad : grad.mul(activation);
  });
}

/** Options of `layerIntegratedGradients`: integratedGradients' options and the layer. */
export type LayerIntegratedGradientsOptions = IntegratedGradientsOptions & { layer: Module | string };

/**
 * Integrated gradients of the target logits with respect to one layer's output (Captum's
 * LayerIntegratedGradients): with a = layer(x) and b = layer(baseline), (a − b) ⊙ ∫₀¹ ∂f/∂a at
 * b + α(a − b) dα, the integral by a Riemann rule, the layer's output replaced by those points in
 * each forward. Returns attributions shaped like the layer's output and the convergence `delta`
 * = Σ attributions − (f(x) − f(baseline)) per image.
 */
export function layerIntegratedGradients(model: Module, x: Tensor, o: LayerIntegratedGradientsOptions): { attributions: Tensor; delta: Tensor } {
  const m = checkModule(model, 'layerIntegratedGradients');
  checkInput(x, 'layerIntegratedGradients');
  checkOptions(o, 'layerIntegratedGradients');
  const name = layerName(m, o.layer, 'layerIntegratedGradients');
  const n = x.size(0);
  const { alphas, weights, chunk } = pathPlan(o, n);
  return tidy(() => {
    const xd = x.detach();
    const base = pathBaseline(xd, o.baseline);
    const t = targetIndex(o.target, n, xd.device);
    const a = layerOutput(m, xd, name), b = layerOutput(m, base, name);
    if (a.ndim < 1 || a.size(0) !== n) throw new KilnError(`layerIntegratedGradients: layer '${name}' must output a batch [N, …], got shape [${a.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    const diff = a.sub(b);
    const rest = a.shape.slice(1), ones = rest.map(() => 1);
    let total: Tensor[] | null = null;
    for (let s = 0; s < alphas.length; s += chunk) {
      const part = tidy(() => {
        const as = alphas.slice(s, s + chunk), ws = weights.slice(s, s + chunk);
        const k = as.length;
        const alpha = tensor(as, { device: xd.device as 'cpu', dtype: a.dtype }).reshape([k, 1, ...ones]);
        const points = b.unsqueeze(0).add(alpha.mul(diff.unsqueeze(0))).reshape([k * n, ...rest]).requiresGrad_(true);
        const xs = xd.unsqueeze(0).expand([k, ...xd.shape]).reshape([k * n, ...xd.shape.slice(1)]);
        const { grad } = layerGradient(m, xs, name, t, 'layerIntegratedGradients', points, t.index.repeat(k));
        const w = tensor(ws, { device: xd.device as 'cpu', dtype: a.dtype }).reshape([k, 1, ...ones]);
        return [grad.reshape([k, n, ...rest]).mul(w).sum(0)];
      });
      total = addInto(total, part);
    }
    const attributions = diff.mul(total![0]);
    const gap = noGrad(() => {
      const fx = checkLogits(m.call(xd), n, t.max).gather(1, t.index.unsqueeze(1)).squeeze(1);
      const fb = checkLogits(m.call(base), n, t.max).gather(1, t.index.unsqueeze(1)).squeeze(1);
      return fx.sub(fb);
    });
    const delta = attributions.flatten(1).sum(1).sub(gap);
    return { attributions, delta };
  });
}
