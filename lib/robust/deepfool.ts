/**
 * DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016): at each step, linearise the model around the current point, find
 * among the `candidates` classes most likely on the clean image the one whose linearised boundary with the true class
 * is closest (L2: |f_k| / ‖w_k‖₂; L∞: |f_k| / ‖w_k‖₁, with f_k the logit difference and w_k its gradient), step onto it
 * (plus 1e-4), and accumulate the steps; the point is the image plus (1 + overshoot) times the sum, clipped to the pixel
 * box — LTS4's deepfool.py, with Foolbox's clipping and 1e-8 guards. A fast minimum-norm attack with no budget; with
 * `eps`, points farther than eps (in `norm`) are dropped. Vectorised over the batch (one backward per candidate class
 * per step); checked image for image against a transcription of the reference in plain PyTorch (test/46c).
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { stack, where } from '../tensor/ops';
import { zerosLike } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { autograd, enableGrad, noGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, logits as logitsOf } from '../nn/classifier';
import { Converter, Domain, Normalization } from './domain';
import { attackRemaining, classCount, intOption, numberOption, predict, publicAttack, rowNorm, trainingOf, RunResult, Setting } from './runs';

/** Options of `deepFool`. */
export interface DeepFoolOptions extends Normalization {
  /** the norm of the linearised distances and steps (default 'l2') */
  norm?: 'l2' | 'linf';
  /** steps at most (default 50) */
  steps?: number;
  /** how far past the accumulated step the point goes, as a fraction (default 0.02) */
  overshoot?: number;
  /** the true class and the most likely others on the clean image that the boundaries are taken to (default 10, at least 2) */
  candidates?: number;
  /** a budget: adversarial points farther than this (in `norm`, pixel units) are dropped (default: none) */
  eps?: number;
  /** the model's mode during the attack (default 'eval'; restored after) */
  mode?: 'eval' | 'train' | 'asIs';
}

/** DeepFool options after validation. */
export interface DeepFoolResolved extends Setting {
  norm: 'l2' | 'linf';
  steps: number;
  overshoot: number;
  candidates: number;
  eps: number;
}

/** Validates `deepFool`'s options and fills in the defaults. */
export function resolveDeepFool(o: DeepFoolOptions, what = 'deepFool'): DeepFoolResolved {
  if (!o || typeof o !== 'object') throw invalidParameterError(`${what}: options`, 'an object', o);
  const norm = o.norm ?? 'l2';
  if (norm !== 'l2' && norm !== 'linf') throw invalidParameterError(`${what}: norm`, "'l2' or 'linf'", o.norm);
  return {
    norm,
    steps: intOption(o.steps, 50, `${what}: steps`),
    overshoot: numberOption(o.overshoot, 0.02, `${what}: overshoot`, (n) => n >= 0, 'a finite number ≥ 0'),
    candidates: intOption(o.candidates, 10, `${what}: candidates`, 2),
    eps: o.eps === undefined ? Infinity : numberOption(o.eps, 0, `${what}: eps`, (n) => n > 0, `a finite number > 0 (an ${norm === 'l2' ? 'L2' : 'L∞'} budget in pixel units)`),
    training: trainingOf(o.mode, what),
    domain: new Domain(o, `${what}: options`),
  };
}

/** DeepFool on pixels p [N, …] whose true classes y the model predicts: the points found and which fool it. */
function run(model: Classifier, conv: Converter, p: Tensor, y: Tensor, r: DeepFoolResolved, k: number): RunResult {
  const n = p.size(0);
  const as4 = (t: Tensor) => t.reshape([n, ...p.shape.slice(1).map(() => 1)]);
  const { lo, hi } = r.domain;
  // the true class first, then the others by their clean logits
  const classes = noGrad(() => tidy(() => logitsOf(model, conv.toModel(p)).float().scatter(1, y.unsqueeze(1), Infinity).sort(1, true).indices.narrow(1, 0, k)));
  let x = p.clone(), total = zerosLike(p);
  try {
    for (let s = 0; s < r.steps; s++) {
      const next = tidy(() => {
        const xg = x.detach().requiresGrad_(true);
        const z = enableGrad(() => logitsOf(model, conv.toModel(xg)).float());
        const active = z.detach().argmax(1).eq(y);
        if (!active.any().item()) return null;
        const at = (c: number) => z.gather(1, classes.narrow(1, c, 1)).squeeze(1);
        const grads = Array.from({ length: k }, (_, c) => autograd.grad(enableGrad(() => at(c).sum()), xg, { retainGraph: c < k - 1 })[0]!);
        const w = stack(grads.slice(1), 1).sub(grads[0].unsqueeze(1)); // [N, k−1, …]
        const f = stack(Array.from({ length: k - 1 }, (_, c) => at(c + 1).detach().sub(at(0).detach())), 1); // [N, k−1]
        const flat = w.flatten(2);
        const dual = r.norm === 'l2' ? flat.square().sum([2]).sqrt() : flat.abs().sum([2]);
        const dist = f.abs().div(dual.add(1e-8));
        const best = dist.argmin(1);
        const d = dist.gather(1, best.unsqueeze(1)).squeeze(1).add(1e-4);
        const wb = w.gather(1, best.reshape([n, 1, ...p.shape.slice(1).map(() => 1)]).expand([n, 1, ...p.shape.slice(1)])).squeeze(1);
        const step = r.norm === 'l2' ? wb.mul(as4(d.div(rowNorm(wb, 'l2').add(1e-8)))) : wb.sign().mul(as4(d));
        const sum = total.add(where(as4(active), step, zerosLike(step)));
        return { total: sum, x: p.add(sum.mul(1 + r.overshoot)).clamp(lo, hi) };
      });
      if (!next) break;
      x.dispose();
      total.dispose();
      ({ x, total } = next);
    }
    return tidy(() => {
      const fooled = predict(model, conv, x).ne(y).logicalAnd(rowNorm(x.sub(p), r.norm).le(r.eps));
      return { adv: where(as4(fooled), x, p), fooled };
    });
  } finally {
    for (const t of [classes, x, total]) t.dispose();
  }
}

/** Runs DeepFool with resolved options on pixels; the images still robust (`robust`, updated in place) are attacked. */
export function runDeepFool(model: Classifier, conv: Converter, p: Tensor, y: Tensor, r: DeepFoolResolved, robust: Tensor): Tensor {
  const classes = classCount(model, conv, p);
  if (classes < 2) throw new KilnError(`deepFool needs a model with at least 2 classes, this one has ${classes}`, 'INVALID_ARGUMENT');
  const adv = p.clone();
  attackRemaining(p, y, adv, robust, 1, (_k, ps, ys) => run(model, conv, ps, ys, r, Math.min(r.candidates, classes)));
  return adv;
}

/**
 * DeepFool: for each image the model classifies correctly, a few linearised steps to the closest class boundary
 * (L2 or L∞); returns x with the images it fools replaced by their adversarial versions (others unchanged, and points
 * farther than `eps` when given), in the model's space. Deterministic.
 */
export function deepFool(model: Classifier | Module, x: Tensor, y: Tensor | number[], options: DeepFoolOptions = {}): Tensor {
  return publicAttack('deepFool', model, x, y, () => resolveDeepFool(options), (m, conv, p, yd, r, toModel) => toModel(runDeepFool(m, conv, p, yd, r, predict(m, conv, p).eq(yd))));
}
