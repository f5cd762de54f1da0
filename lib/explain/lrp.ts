/**
 * Layer-wise relevance propagation (Bach et al. 2015) as Captum's LRP computes it: the target logit's value is the
 * relevance at the output, and every layer hands the relevance R of its output back to its input a by its rule —
 *   epsilon (default, ε = 1e-9):  R_in = a ⊙ ∂z/∂a ᵀ (R / (z + ε·sign(z)))   with z = layer(a), sign(0) = 1
 *   gamma (γ = 0.25):              the same with the weights w + γ·max(w, 0) (favouring positive contributions)
 *   alpha1beta0:                   the same with the weights max(w, 0) (the z⁺ rule)
 *   identity:                      R_in = R (the layer is skipped; shapes must agree)
 * for Conv2d, Linear, BatchNorm2d, MaxPool2d, AvgPool2d and AdaptiveAvgPool2d (Captum's layers with rules), while
 * ReLU, Tanh, Dropout and Identity pass the relevance through unchanged and Flatten reshapes it. Like Captum's, it
 * works on models that are a chain of such layers (nested Sequentials flattened): a residual or any other module is
 * refused by name, since relevance cannot follow a skip connection. The input's relevance is the attribution.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { zerosLike, onesLike } from '../tensor/creation';
import { where } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { autograd, enableGrad, noGrad } from '../autograd';
import { Module, saveModes } from '../nn/module';
import { Sequential } from '../nn/containers';
import * as L from '../nn/layers';
import { Attribution } from './attributions';
import { Target, checkInput, checkOptions, targetIndex } from './common';

/** A propagation rule: epsilon (with its ε), gamma (with its γ), alpha1beta0 or identity. */
export type LrpRule = { rule: 'epsilon'; epsilon?: number } | { rule: 'gamma'; gamma?: number } | { rule: 'alpha1beta0' } | { rule: 'identity' };

/** Options of `lrp`. */
export interface LrpOptions {
  target: Target;
  /** rules by the layer's dotted name (as `namedModules()` gives it); the others use `defaultRule` */
  rules?: Record<string, LrpRule>;
  /** the rule of layers not in `rules` (default: epsilon with ε = 1e-9, Captum's) */
  defaultRule?: LrpRule;
  /** also return `delta`: Σ attributions − the target logit, per image (0 when no relevance is lost to biases or ε) */
  returnConvergenceDelta?: boolean;
}

const RULE_LAYERS = [L.Conv2d, L.Linear, L.BatchNorm2d, L.MaxPool2d, L.AvgPool2d, L.AdaptiveAvgPool2d];
const PASS_LAYERS = [L.ReLU, L.Tanh, L.Dropout, L.Dropout2d, L.Identity];

/** The model's layers in forward order, nested Sequentials flattened, with their dotted names; anything else is refused. */
export function lrpChain(model: Module): [string, Module][] {
  const out: [string, Module][] = [];
  const walk = (m: Module, prefix: string) => {
    if (m instanceof Sequential) {
      for (const [k, c] of m._modules) walk(c, prefix ? `${prefix}.${k}` : k);
      return;
    }
    if (!RULE_LAYERS.some((C) => m instanceof C) && !PASS_LAYERS.some((C) => m instanceof C) && !(m instanceof L.Flatten))
      throw new KilnError(`lrp: layer '${prefix || '(the model)'}' (${m.constructor.name}) has no propagation rule: LRP takes models that are a chain (Sequential) of Conv2d, Linear, BatchNorm2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, ReLU, Tanh, Dropout, Identity and Flatten`, 'INVALID_ARGUMENT');
    out.push([prefix, m]);
  };
  walk(model, '');
  return out;
}

function checkRule(r: unknown, what: string): Required<LrpRule> | { rule: 'alpha1beta0' } | { rule: 'identity' } {
  if (!r || typeof r !== 'object') throw invalidParameterError(what, "{ rule: 'epsilon' | 'gamma' | 'alpha1beta0' | 'identity' }", r);
  const o = r as Record<string, unknown>;
  if (o.rule === 'epsilon') {
    const e = o.epsilon ?? 1e-9;
    if (typeof e !== 'number' || !Number.isFinite(e) || e < 0) throw invalidParameterError(`${what}.epsilon`, 'a finite number ≥ 0', o.epsilon);
    return { rule: 'epsilon', epsilon: e };
  }
  if (o.rule === 'gamma') {
    const g = o.gamma ?? 0.25;
    if (typeof g !== 'number' || !Number.isFinite(g) || g < 0) throw invalidParameterError(`${what}.gamma`, 'a finite number ≥ 0', o.gamma);
    return { rule: 'gamma', gamma: g };
  }
  if (o.rule === 'alpha1beta0' || o.rule === 'identity') return { rule: o.rule };
  throw invalidParameterError(`${what}.rule`, "'epsilon', 'gamma', 'alpha1beta0' or 'identity'", o.rule);
}

/** Runs `fn` with the layer's weight replaced by `w'(w)` (Captum changes the weights in place and puts them back after). */
function withWeights<T>(layer: Module, change: ((w: Tensor) => Tensor) | null, fn: () => T): T {
  const w = (layer as { weight?: Tensor | null }).weight;
  if (!change || !w) return fn();
  const saved = noGrad(() => w.clone());
  try {
    noGrad(() => tidy(() => void w.copy_(change(w))));
    return fn();
  } finally {
    noGrad(() => void w.copy_(saved));
    saved.dispose();
  }
}

/**
 * LRP attributions of the target logit, shaped like `x` (Captum's LRP); with `returnConvergenceDelta`, `{attributions,
 * delta}`. The model runs in eval mode (its modes are restored after); its parameters' gradients are untouched.
 */
export function lrp(model: Module, x: Tensor, o: LrpOptions & { returnConvergenceDelta: true }): Attribution;
export function lrp(model: Module, x: Tensor, o: LrpOptions): Tensor;
export function lrp(model: Module, x: Tensor, o: LrpOptions): Tensor | Attribution {
  if (!(model instanceof Module)) throw invalidParameterError('lrp: model', 'a kiln.nn Module (a chain of layers)', model);
  checkInput(x, 'lrp');
  checkOptions(o, 'lrp');
  const chain = lrpChain(model);
  const fallback = checkRule(o.defaultRule ?? { rule: 'epsilon' }, 'lrp: defaultRule');
  const rules = new Map<string, ReturnType<typeof checkRule>>();
  if (o.rules !== undefined) {
    if (o.rules === null || typeof o.rules !== 'object') throw invalidParameterError('lrp: rules', 'an object of layer name → rule', o.rules);
    for (const [name, r] of Object.entries(o.rules)) {
      const layer = chain.find(([k]) => k === name);
      if (!layer) throw new KilnError(`lrp: rules names '${name}', which is not a layer of the model (have: ${chain.map(([k]) => k).join(', ')})`, 'INVALID_ARGUMENT');
      if (!RULE_LAYERS.some((C) => layer[1] instanceof C)) throw new KilnError(`lrp: rules['${name}']: a ${layer[1].constructor.name} passes relevance through and takes no rule`, 'INVALID_ARGUMENT');
      rules.set(name, checkRule(r, `lrp: rules['${name}']`));
    }
  }
  const restore = saveModes(model);
  model.eval();
  try {
    return tidy(() => {
      const xd = x.detach();
      const t = targetIndex(o.target, xd.size(0), xd.device);
      // the forward pass, keeping every layer's input
      const inputs: Tensor[] = [];
      const out = noGrad(() => chain.reduce((a, [, layer]) => {
        inputs.push(a);
        return layer.call(a);
      }, xd));
      if (out.ndim !== 2) throw new KilnError(`lrp: the model's output must be logits [N, classes], got shape [${out.shape.join(', ')}]`, 'INVALID_ARGUMENT');
      if (t.max >= out.size(1)) throw invalidParameterError('target', `class indices below ${out.size(1)}`, o.target);
      const onehot = zerosLike(out).scatter(1, t.index.unsqueeze(1), 1);
      let r = out.mul(onehot); // the target logit's value, at the target
      for (let i = chain.length - 1; i >= 0; i--) {
        const [name, layer] = chain[i];
        const a = inputs[i];
        if (layer instanceof L.Flatten) {
          r = r.reshape(a.shape);
          continue;
        }
        if (!RULE_LAYERS.some((C) => layer instanceof C)) continue; // ReLU, Tanh, Dropout, Identity: relevance passes through
        const rule = rules.get(name) ?? fallback;
        if (rule.rule === 'identity') {
          if (r.shape.join() !== a.shape.join()) throw new KilnError(`lrp: the identity rule of '${name}' needs its input and output of one shape, got [${a.shape.join(', ')}] → [${r.shape.join(', ')}]`, 'INVALID_ARGUMENT');
          continue;
        }
        const change = rule.rule === 'gamma' ? (w: Tensor) => w.add(w.clamp(0).mul(rule.gamma)) : rule.rule === 'alpha1beta0' ? (w: Tensor) => w.clamp(0) : null;
        const eps = rule.rule === 'epsilon' ? rule.epsilon : 1e-9;
        const rel = r;
        r = withWeights(layer, change, () => enableGrad(() => {
          const ag = a.detach().requiresGrad_(true);
          const z = layer.call(ag);
          const sign = where(z.detach().ge(0), onesLike(z), onesLike(z).neg());
          const den = z.detach().add(sign.mul(eps));
          const s = where(den.eq(0), zerosLike(den), rel.div(den)); // (ε = 0: no relevance where z = 0, rather than NaN)
          const [c] = autograd.grad(z.mul(s).sum(), ag);
          return ag.detach().mul(c!);
        }));
      }
      const attributions = r.detach();
      if (!o.returnConvergenceDelta) return attributions;
      const delta = attributions.flatten(1).sum([1]).sub(out.mul(onehot).sum([1]));
      return { attributions, delta };
    });
  } finally {
    restore();
  }
}
