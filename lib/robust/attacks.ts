/**
 * Adversarial attacks on image classifiers: FGSM (Goodfellow et al. 2015) and PGD (Madry et
 * al. 2018) in the L∞ and L2 norms, untargeted or targeted, with random starts and restarts.
 * Budgets are in pixel units (images in [0, 1]); models that take normalised inputs get them
 * through `mean`/`std`. Input gradients come from `autograd.grad`, so parameter `.grad`s are
 * untouched; the model runs in eval mode during the attack (`mode`) and gets its modes back.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { randLike, randnLike } from '../tensor/creation';
import { where } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { autograd, noGrad, enableGrad } from '../autograd';
import { crossEntropy } from '../nn/functional';
import { Module } from '../nn/module';
import { Classifier, checkClassifier, logits as logitsOf } from '../nn/classifier';
import { Converter, Domain, Normalization, checkImages, checkLabels, inMode } from './domain';
import { trainingOf } from './runs';

/** Options of an attack. `eps`, `stepSize` and bounds are in pixel units. */
export interface AttackOptions extends Normalization {
  /** radius of the perturbation ball (pixel units: 8/255 is CIFAR's usual L∞ budget) */
  eps: number;
  /** the ball's norm (default 'linf') */
  norm?: 'linf' | 'l2';
  /** gradient steps (PGD default 10; FGSM 1) */
  steps?: number;
  /** step length (PGD default 2.5·eps/steps, as Madry et al.; FGSM default eps) */
  stepSize?: number;
  /** start from a uniformly random point of the ball (PGD default true, FGSM default false) */
  randomStart?: boolean;
  /** independent runs; per image the one with the highest loss is kept (default 1) */
  restarts?: number;
  /** `y` holds target classes: move towards them instead of away from the true class */
  targeted?: boolean;
  /** 'ce' cross-entropy (default) or 'margin' (Carlini–Wagner: max other logit − true logit) */
  loss?: 'ce' | 'margin';
  /** the model's mode during the attack (default 'eval': batch-norm statistics untouched, no dropout; restored after) */
  mode?: 'eval' | 'train' | 'asIs';
}

/** Per-image loss the attack ascends (untargeted) or descends (targeted): [N]. */
export function attackLoss(logits: Tensor, y: Tensor, kind: 'ce' | 'margin'): Tensor {
  if (kind === 'ce') return tidy(() => crossEntropy(logits.float(), y, { reduction: 'none' }));
  return tidy(() => {
    const z = logits.float();
    const own = z.gather(1, y.unsqueeze(1)).squeeze(1);
    const other = z.scatter(1, y.unsqueeze(1), -Infinity).amax(1);
    return other.sub(own);
  });
}

/** Attack options after validation, with defaults filled in. */
export interface Resolved {
  eps: number;
  norm: 'linf' | 'l2';
  steps: number;
  stepSize: number;
  randomStart: boolean;
  restarts: number;
  targeted: boolean;
  loss: 'ce' | 'margin';
  /** the model's mode while attacking: false eval, true train, null as it is */
  training: boolean | null;
  domain: Domain;
}

/** Validates attack options and fills in the defaults of `kind`. */
export function resolveAttack(o: AttackOptions, kind: 'fgsm' | 'pgd', what: string = kind): Resolved {
  if (!o || typeof o !== 'object') throw invalidParameterError(`${what}: options`, 'an object with eps', o);
  if (typeof o.eps !== 'number' || !Number.isFinite(o.eps) || o.eps < 0) throw invalidParameterError(`${what}: eps`, 'a finite number ≥ 0 (pixel units, e.g. 8/255)', o.eps);
  const norm = o.norm ?? 'linf';
  if (norm !== 'linf' && norm !== 'l2') throw invalidParameterError(`${what}: norm`, "'linf' or 'l2'", o.norm);
  const steps = o.steps ?? (kind === 'fgsm' ? 1 : 10);
  if (!Number.isInteger(steps) || steps < 1) throw invalidParameterError(`${what}: steps`, 'a positive integer', o.steps);
  if (kind === 'fgsm' && steps !== 1) throw invalidParameterError(`${what}: steps`, '1 (FGSM is one step; use pgd for more)', o.steps);
  const stepSize = o.stepSize ?? (kind === 'fgsm' ? o.eps : (2.5 * o.eps) / steps);
  if (typeof stepSize !== 'number' || !Number.isFinite(stepSize) || stepSize < 0) throw invalidParameterError(`${what}: stepSize`, 'a finite number ≥ 0', o.stepSize);
  const restarts = o.restarts ?? 1;
  if (!Number.isInteger(restarts) || restarts < 1) throw invalidParameterError(`${what}: restarts`, 'a positive integer', o.restarts);
  const loss = o.loss ?? 'ce';
  if (loss !== 'ce' && loss !== 'margin') throw invalidParameterError(`${what}: loss`, "'ce' or 'margin'", o.loss);
  for (const k of ['randomStart', 'targeted'] as const)
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw invalidParameterError(`${what}: ${k}`, 'a boolean', o[k]);
  const randomStart = o.randomStart ?? kind === 'pgd';
  if (restarts > 1 && !randomStart) throw new KilnError(`${what}: restarts > 1 needs randomStart (without it every run is the same)`, 'INVALID_ARGUMENT');
  const training = trainingOf(o.mode, what);
  return { eps: o.eps, norm, steps, stepSize, randomStart, restarts, targeted: !!o.targeted, loss, training, domain: new Domain(o, `${what}: options`) };
}

/** Per-image L2 norm over all but the first dimension, shaped for broadcasting: [N, 1, 1, 1]. */
function l2(t: Tensor): Tensor {
  return t.flatten(1).norm(2, 1).reshape([t.size(0), 1, 1, 1]);
}

/** Projects a perturbation onto the ball and keeps p + delta inside the pixel bounds. */
function project(delta: Tensor, p: Tensor, r: Resolved): Tensor {
  return tidy(() => {
    let d: Tensor;
    if (r.norm === 'linf') d = delta.clamp(-r.eps, r.eps);
    else {
      const n = l2(delta);
      d = delta.mul(n.clamp(1e-12).reciprocal().mul(r.eps).clamp(null, 1));
    }
    return p.add(d).clamp(r.domain.lo, r.domain.hi).sub(p);
  });
}

/** A random starting point inside the ball. */
function randomDelta(p: Tensor, r: Resolved): Tensor {
  return tidy(() => {
    if (r.norm === 'linf') return randLike(p).mul(2 * r.eps).sub(r.eps);
    // uniform in the ball: a uniform direction, radius eps·U^(1/d)
    const g = randnLike(p);
    const d = p.numel / p.size(0);
    const radius = randLike(l2(g)).pow(1 / d).mul(r.eps);
    return g.div(l2(g).clamp(1e-12)).mul(radius);
  });
}

/** Per-image loss an attack run ascends, from the model's logits: [N]. */
export type AscentLoss = (logits: Tensor) => Tensor;

/**
 * Projected gradient ascent on `lossOf` from pixels `p` + `start` (disposed): `r.steps` steps
 * of `r.stepSize`, each projected onto the eps-ball and the pixel bounds. Returns the
 * adversarial pixels and, with `withLoss` (restarts compare runs by it), their per-image losses —
 * one more forward pass.
 */
export function ascend(model: Classifier, p: Tensor, r: Resolved, conv: Converter, lossOf: AscentLoss, start: Tensor, withLoss = false): { adv: Tensor; loss: Tensor | null } {
  let delta = project(start, p, r);
  start.dispose();
  for (let s = 0; s < r.steps; s++) {
    const next = tidy(() => {
      const xa = p.add(delta).requiresGrad_(true);
      const loss = enableGrad(() => lossOf(logitsOf(model, conv.toModel(xa))).sum());
      const [g] = autograd.grad(loss, xa);
      const stepped = r.norm === 'linf' ? delta.add(g!.sign().mul(r.stepSize)) : delta.add(g!.div(l2(g!).clamp(1e-12)).mul(r.stepSize));
      return project(stepped, p, r);
    });
    delta.dispose();
    delta = next;
  }
  const out = tidy(() => {
    const adv = p.add(delta);
    return { adv, loss: withLoss ? noGrad(() => lossOf(logitsOf(model, conv.toModel(adv)))) : null };
  });
  delta.dispose();
  return out;
}

/** Runs an attack with resolved options; returns adversarial inputs in the model's space. */
export function runAttack(model: Classifier, x: Tensor, y: Tensor, r: Resolved, checkInput = true): Tensor {
  return tidy(() => {
    const conv = r.domain.bind(x);
    const p = conv.toPixels(x.detach());
    if (checkInput) r.domain.checkPixels(p, 'x');
    const lossOf: AscentLoss = (z) => (r.targeted ? attackLoss(z, y, r.loss).neg() : attackLoss(z, y, r.loss));
    let best: { adv: Tensor; loss: Tensor | null } | null = null;
    for (let k = 0; k < r.restarts; k++) {
      const run = ascend(model, p, r, conv, lossOf, r.randomStart ? randomDelta(p, r) : p.mul(0), r.restarts > 1);
      if (!best) best = run;
      else {
        const better = run.loss!.gt(best.loss!);
        best = { adv: where(better.reshape([better.size(0), 1, 1, 1]), run.adv, best.adv), loss: where(better, run.loss!, best.loss!) };
      }
    }
    return conv.toModel(best!.adv).detach();
  });
}

function attack(kind: 'fgsm' | 'pgd', model: Classifier | Module, x: Tensor, y: Tensor | number[], o: AttackOptions): Tensor {
  const m = checkClassifier(model, `${kind}: model`);
  checkImages(x, `${kind}: x`);
  const r = resolveAttack(o, kind);
  const labels = checkLabels(y, x.size(0), `${kind}: y`);
  try {
    const yd = labels.device === x.device ? labels : labels.to({ device: x.device });
    try {
      return inMode(m, r.training, () => runAttack(m, x, yd, r));
    } finally {
      if (yd !== labels) yd.dispose();
    }
  } finally {
    labels.dispose();
  }
}

/**
 * Fast gradient sign method: x + eps·sign(∇ₓ loss) (one step; L2: along the normalised
 * gradient), clipped to the pixel bounds. With `randomStart` and `stepSize` ≈ 1.25·eps it is
 * the "fast adversarial training" attack of Wong et al. (2020). Returns a new tensor shaped like x.
 */
export function fgsm(model: Classifier | Module, x: Tensor, y: Tensor | number[], options: AttackOptions): Tensor {
  return attack('fgsm', model, x, y, options);
}

/**
 * Projected gradient descent (Madry et al.): `steps` signed (L∞) or normalised (L2) gradient
 * steps of `stepSize`, each projected back onto the eps-ball and the pixel bounds, from a random
 * start; with `restarts`, the strongest run per image is kept. Returns a new tensor shaped like x.
 */
export function pgd(model: Classifier | Module, x: Tensor, y: Tensor | number[], options: AttackOptions): Tensor {
  return attack('pgd', model, x, y, options);
}

/** An attack chosen by name, as reports, objectives and the CLI take it. */
export interface AttackSpec extends AttackOptions {
  /** 'pgd' (default) or 'fgsm' */
  attack?: 'pgd' | 'fgsm';
}

/** Resolves an AttackSpec (validating everything once, up front). */
export function resolveSpec(spec: AttackSpec, what: string): Resolved & { kind: 'pgd' | 'fgsm' } {
  if (!spec || typeof spec !== 'object') throw invalidParameterError(what, 'attack options {attack, eps, …}', spec);
  const kind = spec.attack ?? 'pgd';
  if (kind !== 'pgd' && kind !== 'fgsm') throw invalidParameterError(`${what}.attack`, "'pgd' or 'fgsm'", spec.attack);
  return { ...resolveAttack(spec, kind, what), kind };
}
