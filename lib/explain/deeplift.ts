/**
 * DeepLift with the rescale rule (Shrikumar et al.; Captum's DeepLift, multiply_by_inputs) and
 * DeepLiftShap (Captum's DeepLiftShap: DeepLift against each baseline of a distribution, averaged).
 *
 * As in Captum, the inputs and the baselines run as one batch [x; baseline] and the gradient of the
 * target logits is taken with the gradient of every nonlinearity replaced by its DeepLift multiplier.
 * The rules are linear in the gradient, so the override needs no custom autograd function: a forward
 * hook returns a tensor with the layer's output as its value and the wanted vector-Jacobian product:
 * - elementwise (ReLU, LeakyReLU, Sigmoid, Tanh): out' = out.detach() + (in·m − (in·m).detach()) with
 *   m = Δout/Δin (detached), and the plain output (its ordinary gradient) where |Δin| < eps;
 * - MaxPool2d (Captum's maxpool rule): see `maxPoolHook`.
 * Attributions = (x − baseline) · that gradient; delta = Σ attributions − (f(x) − f(baseline)).
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { full } from '../tensor/creation';
import { cat, where } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { autograd, enableGrad } from '../autograd';
import { ForwardHook, Module, saveModes } from '../nn/module';
import { ReLU, ReLU6, LeakyReLU, Sigmoid, Tanh, MaxPool2d, GELU, SiLU, Hardswish, Hardsigmoid, Softmax, AdaptiveMaxPool2d } from '../nn/layers';
import { SqueezeExcitation } from '../models/blocks';
import { maxPool2d } from '../nn/functional';
import { Classifier, Target, TargetIndex, checkInput, checkOptions, targetIndex, targetLogits } from './common';
import { Attribution } from './attributions';

/** Options of `deepLift`. */
export interface DeepLiftOptions {
  target: Target;
  /** the reference input: a number for every element (default 0), or a Tensor shaped like the input or [1, …] */
  baselines?: number | Tensor;
  /** also return delta = Σ attributions − (f(x) − f(baseline)) per image (default false) */
  returnConvergenceDelta?: boolean;
  /** |Δin| below which a layer keeps its ordinary gradient (Captum's eps, default 1e-10) */
  eps?: number;
}

/** Options of `deepLiftShap`: `baselines` is a distribution [B, …] of B ≥ 2 reference inputs. */
export interface DeepLiftShapOptions extends Omit<DeepLiftOptions, 'baselines'> {
  baselines: Tensor;
}

/** Layers that have a DeepLift rule here (Captum's SUPPORTED_NON_LINEAR among Kiln's layers, and ReLU6: the rescale rule holds for any elementwise function). */
const RESCALED = [ReLU, ReLU6, LeakyReLU, Sigmoid, Tanh];

/** Nonlinear layers Captum's DeepLift would differentiate plainly (or batch-wide): refused. */
const REFUSED: [abstract new (...a: never[]) => Module, string][] = [
  [GELU, 'GELU has no DeepLift rule (Captum would use its plain gradient)'],
  [SiLU, 'SiLU has no DeepLift rule (Captum would use its plain gradient)'],
  [Hardswish, 'Hardswish has no DeepLift rule (Captum would use its plain gradient)'],
  [Hardsigmoid, 'Hardsigmoid has no DeepLift rule (Captum would use its plain gradient)'],
  [AdaptiveMaxPool2d, 'AdaptiveMaxPool2d has no DeepLift rule (Captum would use its plain gradient)'],
  [SqueezeExcitation, 'squeeze-excitation multiplies two paths (x · gate(x)); DeepLift has no rule for a product'],
  [Softmax, "Softmax: Captum's softmax rule normalises over the whole [inputs; baselines] batch; explain the logits (drop the Softmax)"],
];

/** Checks that `model` is a kiln Module whose layers all have a DeepLift rule or are linear. */
function checkDeepLiftModel(model: unknown, fn: string): Module {
  if (!(model instanceof Module))
    throw invalidParameterError(`${fn}: model`, 'a kiln.nn Module (DeepLift sets forward hooks on its layers; TorchScript models have none)', model);
  for (const [name, m] of model.namedModules())
    for (const [cls, why] of REFUSED)
      if (m instanceof cls)
        throw new KilnError(`${fn}: module '${name || '(the model)'}' is not supported: ${why}. DeepLift's rules cover ReLU, ReLU6, LeakyReLU, Sigmoid, Tanh and MaxPool2d; linear layers need none`, 'INVALID_ARGUMENT');
  return model;
}

function checkEps(v: unknown): number {
  if (v === undefined) return 1e-10;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw invalidParameterError('eps', 'a finite number ≥ 0', v);
  return v;
}

/** The two halves [inputs; baselines] of a tensor a hooked layer sees; `total` is the expected batch (2k). */
function halves(t: Tensor, total: number, name: string): [Tensor, Tensor] {
  if (t.ndim < 1 || t.size(0) !== total)
    throw new KilnError(`DeepLift: layer '${name}' got a batch of ${t.ndim ? t.size(0) : 'no dimension'}, not the [inputs; baselines] batch of ${total}: the model must keep the batch dimension`, 'INVALID_ARGUMENT');
  const k = total / 2;
  return [t.narrow(0, 0, k), t.narrow(0, k, k)];
}

/** A tensor whose value is `value`'s (exactly) and whose gradient flows into `u` (u − u.detach() is 0). */
function straightThrough(value: Tensor, u: Tensor): Tensor {
  return value.add(u.sub(u.detach()));
}

/**
 * The rescale rule for an elementwise layer: the value of `out`, gradient m = Δout/Δin w.r.t. the
 * layer's input (detached m, the same for both halves), the ordinary gradient where |Δin| < eps.
 */
function rescaleHook(eps: number, total: number, name: string): ForwardHook {
  return (_m, input, out) => {
    const [ix, ib] = halves(input.detach(), total, name);
    const [ox, ob] = halves(out.detach(), total, name);
    const dIn = ix.sub(ib);
    const flat = dIn.abs().lt(eps);
    const m = where(flat, 0, ox.sub(ob).div(dIn));
    return where(cat([flat, flat]), out, straightThrough(out.detach(), input.mul(cat([m, m]))));
  };
}

/**
 * Captum's maxpool rule. With M = max(o_x, o_b), A = M − o_b, B = o_x − M, U_x / U_b the unpooling
 * at the argmax positions of the input / baseline half and g = [g_x; g_b] the output gradient,
 * Captum sets the input gradient of both halves to h = (U_x(A·g_x) + U_b(B·g_b)) / Δin where
 * |Δin| ≥ eps, and to the ordinary gradient (U_x g_x, U_b g_b) elsewhere. That is linear in g; it
 * is the vector-Jacobian product of
 *   T1 = [A; B] · pool(w1),  w1 = in ⁺ (Δin⁻¹ · (in + swap(in)))   (swap exchanges the halves)
 *   T2 = pool(w2),           w2 = in ⁺ (E · in)                     (E: the |Δin| < eps mask)
 * where a ⁺ u has the value of a and the gradient of u (`straightThrough`), so both pools pick the
 * layer's own argmax: the vjp of pool(w1) is [U_x c_x; U_b c_b], and swap makes each half's sum the
 * other's. The hook returns out.detach() + (T1 − T1.detach()) + (T2 − T2.detach()).
 */
function maxPoolHook(pool: MaxPool2d, eps: number, total: number, name: string): ForwardHook {
  return (_m, input, out) => {
    const i = input.detach();
    const [ix, ib] = halves(i, total, name);
    const [ox, ob] = halves(out.detach(), total, name);
    const dIn = ix.sub(ib);
    const flat = dIn.abs().lt(eps);
    const inv = where(flat, 0, dIn.reciprocal());
    const top = ox.maximum(ob);
    const coef = cat([top.sub(ob), ox.sub(top)]);
    const [inX, inB] = halves(input, total, name);
    const swapped = cat([inB, inX]);
    const p = (u: Tensor) => maxPool2d(straightThrough(i, u), pool.kernelSize, pool.options);
    const t1 = coef.mul(p(cat([inv, inv]).mul(input.add(swapped))));
    const t2 = p(cat([flat, flat]).to({ dtype: input.dtype }).mul(input));
    return straightThrough(straightThrough(out.detach(), t1), t2);
  };
}

/** Sets DeepLift's hooks on every supported layer of `model`; returns a function that removes them. */
function installHooks(model: Module, eps: number, total: number): () => void {
  const removers: (() => void)[] = [];
  for (const [name, m] of model.namedModules()) {
    if (m instanceof MaxPool2d) removers.push(m.registerForwardHook(maxPoolHook(m, eps, total, name)));
    else if (RESCALED.some((cls) => m instanceof cls)) removers.push(m.registerForwardHook(rescaleHook(eps, total, name)));
  }
  return () => removers.forEach((r) => r());
}

/**
 * DeepLift of `xs` [k, …] against `bs` [k, …] (row by row) for the classes `index` [k]: the
 * attributions and, per row, Σ attributions − (f(x) − f(b)), both from one hooked forward of [xs; bs].
 * The model runs in eval mode; every module's mode and hooks are restored, also after an error.
 */
function deepLiftRows(model: Module, xs: Tensor, bs: Tensor, t: TargetIndex, index: Tensor, eps: number): Attribution {
  const k = xs.size(0);
  const restoreModes = saveModes(model);
  model.eval();
  const removeHooks = installHooks(model, eps, 2 * k);
  try {
    return enableGrad(() => {
      const xi = xs.detach().requiresGrad_(true);
      const sel = targetLogits(model, cat([xi, bs.detach()]), t, index.repeat(2));
      const [g] = autograd.grad(sel.sum(), xi, { allowUnused: true });
      if (!g) throw new KilnError('DeepLift: the model output does not depend on its input (no gradient reached it)', 'INVALID_ARGUMENT');
      const attributions = xs.detach().sub(bs).mul(g);
      const gap = sel.detach().narrow(0, 0, k).sub(sel.detach().narrow(0, k, k));
      return { attributions, delta: attributions.flatten(1).sum(1).sub(gap) };
    });
  } finally {
    removeHooks();
    restoreModes();
  }
}

/** The baselines of `deepLift` as a tensor shaped like `x` (a number, [N, …] or [1, …]). */
function baselineLike(x: Tensor, b: unknown): Tensor {
  if (b === undefined || typeof b === 'number') {
    if (b !== undefined && !Number.isFinite(b)) throw invalidParameterError('baselines', 'a finite number or a Tensor', b);
    return full(x.shape, b ?? 0, { dtype: x.dtype, device: x.device });
  }
  idOf(b, 'baselines');
  const t = b as Tensor, rest = x.shape.slice(1);
  const same = t.ndim === x.ndim && (t.size(0) === x.size(0) || t.size(0) === 1) && rest.every((s, i) => t.size(i + 1) === s);
  if (!same)
    throw new KilnError(`deepLift: baselines must be a number or a Tensor of shape [${x.shape.join(', ')}] or [1, ${rest.join(', ')}], got [${t.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  return t.detach().to({ dtype: x.dtype, device: x.device }).expand(x.shape).contiguous();
}

/**
 * DeepLift (rescale rule) attributions of the target logits for `x` [N, …] against `baselines`
 * (default 0), as Captum's DeepLift: (x − baseline) · the gradient with every ReLU, LeakyReLU,
 * Sigmoid, Tanh and MaxPool2d differentiated by its DeepLift multiplier. They sum to
 * f(x) − f(baseline) per image; `returnConvergenceDelta` also returns the gap (`delta`).
 * Models with GELU, SiLU, Hardswish, Hardsigmoid, Softmax or AdaptiveMaxPool2d layers are refused; nonlinearities a custom
 * module applies functionally in its `forward` are not seen (as in Captum) — `delta` shows it.
 */
export function deepLift(model: Classifier | Module, x: Tensor, o: DeepLiftOptions & { returnConvergenceDelta: true }): Attribution;
export function deepLift(model: Classifier | Module, x: Tensor, o: DeepLiftOptions): Tensor;
export function deepLift(model: Classifier | Module, x: Tensor, o: DeepLiftOptions): Tensor | Attribution {
  const m = checkDeepLiftModel(model, 'deepLift');
  checkInput(x, 'deepLift');
  checkOptions(o, 'deepLift');
  const eps = checkEps(o.eps);
  return tidy(() => {
    const base = baselineLike(x, o.baselines);
    const t = targetIndex(o.target, x.size(0), x.device);
    const r = deepLiftRows(m, x, base, t, t.index, eps);
    return o.returnConvergenceDelta ? r : r.attributions;
  });
}

/**
 * DeepLiftShap (Captum's): DeepLift of every image of `x` [N, …] against every baseline of the
 * distribution `baselines` [B, …] (B ≥ 2), averaged over the baselines: [N, …]. With
 * `returnConvergenceDelta`, `delta` [N·B] holds each (image, baseline) pair's gap, image-major.
 * All N·B pairs run as one batch of 2·N·B.
 */
export function deepLiftShap(model: Classifier | Module, x: Tensor, o: DeepLiftShapOptions & { returnConvergenceDelta: true }): Attribution;
export function deepLiftShap(model: Classifier | Module, x: Tensor, o: DeepLiftShapOptions): Tensor;
export function deepLiftShap(model: Classifier | Module, x: Tensor, o: DeepLiftShapOptions): Tensor | Attribution {
  const m = checkDeepLiftModel(model, 'deepLiftShap');
  checkInput(x, 'deepLiftShap');
  checkOptions(o, 'deepLiftShap');
  const eps = checkEps(o.eps);
  if (!(o.baselines instanceof Tensor)) throw invalidParameterError('deepLiftShap: baselines', 'a Tensor [B, …] of B ≥ 2 reference inputs', o.baselines);
  idOf(o.baselines, 'baselines');
  const n = x.size(0), rest = x.shape.slice(1), b = o.baselines;
  if (b.ndim !== x.ndim || b.size(0) < 2 || rest.some((s, i) => b.size(i + 1) !== s))
    throw new KilnError(`deepLiftShap: baselines must be a distribution [B, ${rest.join(', ')}] with B ≥ 2 (for one baseline use deepLift), got [${b.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  const nb = b.size(0);
  return tidy(() => {
    const t = targetIndex(o.target, n, x.device);
    // Captum's expansion: each image repeated B times in a row, the baselines tiled N times
    const xs = x.detach().unsqueeze(1).expand([n, nb, ...rest]).reshape([n * nb, ...rest]);
    const bs = b.detach().to({ dtype: x.dtype, device: x.device }).repeat([n, ...rest.map(() => 1)]);
    const index = t.index.unsqueeze(1).expand([n, nb]).reshape([n * nb]);
    const r = deepLiftRows(m, xs, bs, t, index, eps);
    const attributions = r.attributions.reshape([n, nb, ...rest]).mean(1);
    return o.returnConvergenceDelta ? { attributions, delta: r.delta } : attributions;
  });
}
