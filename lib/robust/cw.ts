/**
 * The Carlini–Wagner L2 attack (Carlini & Wagner 2017, "Towards evaluating the robustness of neural networks"), as
 * their reference code (nn_robust_attacks/l2_attack.py) runs it: the image is written as tanh(w) mapped onto the
 * pixel box, and Adam minimises ‖x' − x‖² + c·max(margin + κ, 0) over w — the margin being the true logit minus the
 * largest other one (targeted: the largest other minus the target's) — keeping the closest adversarial point seen;
 * a binary search per image over the constant c (halve towards the last success, ×10 until the first) runs it again
 * `binarySearchSteps` times. A minimum-norm attack: no budget is needed; with `eps`, points farther than eps (L2,
 * pixel units) are dropped. Vectorised over the batch; checked image for image against a transcription of the
 * reference in plain PyTorch (test/46c).
 */
import { invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { where } from '../tensor/ops';
import { full, zerosLike } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { autograd, enableGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, logits as logitsOf } from '../nn/classifier';
import { Converter, Domain, Normalization } from './domain';
import { attackRemaining, intOption, numberOption, predict, publicAttack, trainingOf, RunResult, Setting } from './runs';

/** Options of `cw`. Distances are L2 in pixel units. */
export interface CwOptions extends Normalization {
  /** `y` holds target classes: reach them instead of leaving the true class (default false) */
  targeted?: boolean;
  /** κ: how far past the boundary the margin must go (default 0; larger gives more confident, larger perturbations) */
  confidence?: number;
  /** the first constant c weighing the margin against the distance (default 1e-3, as the reference) */
  initialConst?: number;
  /** runs of the binary search over c (default 9); with 10 or more, the last run uses the upper bound found */
  binarySearchSteps?: number;
  /** Adam steps per run (default 100; the reference's 10000 is far slower for a little more) */
  steps?: number;
  /** Adam's learning rate on w (default 0.01) */
  lr?: number;
  /** stop a run when the loss has not fallen by 0.01% over a tenth of its steps (default true) */
  abortEarly?: boolean;
  /** a budget: adversarial points farther than this (L2) are dropped, the image counts as robust (default: none) */
  eps?: number;
  /** the model's mode during the attack (default 'eval'; restored after) */
  mode?: 'eval' | 'train' | 'asIs';
}

/** CW options after validation. */
export interface CwResolved extends Setting {
  targeted: boolean;
  confidence: number;
  initialConst: number;
  binarySearchSteps: number;
  steps: number;
  lr: number;
  abortEarly: boolean;
  eps: number;
}

/** Validates `cw`'s options and fills in the defaults. */
export function resolveCw(o: CwOptions, what = 'cw'): CwResolved {
  if (!o || typeof o !== 'object') throw invalidParameterError(`${what}: options`, 'an object', o);
  for (const k of ['targeted', 'abortEarly'] as const)
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw invalidParameterError(`${what}: ${k}`, 'a boolean', o[k]);
  return {
    targeted: !!o.targeted,
    confidence: numberOption(o.confidence, 0, `${what}: confidence`, (n) => n >= 0, 'a finite number ≥ 0'),
    initialConst: numberOption(o.initialConst, 1e-3, `${what}: initialConst`, (n) => n > 0, 'a finite number > 0'),
    binarySearchSteps: intOption(o.binarySearchSteps, 9, `${what}: binarySearchSteps`),
    steps: intOption(o.steps, 100, `${what}: steps`),
    lr: numberOption(o.lr, 0.01, `${what}: lr`, (n) => n > 0, 'a finite number > 0'),
    abortEarly: o.abortEarly ?? true,
    eps: o.eps === undefined ? Infinity : numberOption(o.eps, 0, `${what}: eps`, (n) => n > 0, 'a finite number > 0 (an L2 budget in pixel units)'),
    training: trainingOf(o.mode, what),
    domain: new Domain(o, `${what}: options`),
  };
}

/** The hinge on the logit margin [N]: max(z_y − max_{j≠y} z_j + κ, 0), targeted max(max_{j≠t} z_j − z_t + κ, 0). */
function hinge(z: Tensor, y: Tensor, r: CwResolved): Tensor {
  const onehot = zerosLike(z).scatter(1, y.unsqueeze(1), 1);
  const real = z.mul(onehot).sum([1]);
  const other = onehot.rsub(1).mul(z).sub(onehot.mul(10000)).amax(1); // the reference's way of leaving out y
  return (r.targeted ? other.sub(real) : real.sub(other)).add(r.confidence).clamp(0);
}

/** Whether logits z reach the goal with the κ margin: the reference's `compare` on its scores. */
function reached(z: Tensor, y: Tensor, r: CwResolved): Tensor {
  const shifted = z.add(zerosLike(z).scatter(1, y.unsqueeze(1), r.targeted ? -r.confidence : r.confidence)).argmax(1);
  return r.targeted ? shifted.eq(y) : shifted.ne(y);
}

/** One search (binarySearchSteps runs) on pixels p [N, …] with goals y: the closest adversarial points and which were found. */
function search(model: Classifier, conv: Converter, p: Tensor, y: Tensor, r: CwResolved): RunResult {
  const n = p.size(0);
  const as4 = (t: Tensor) => t.reshape([n, ...p.shape.slice(1).map(() => 1)]);
  const { lo, hi } = r.domain;
  const boxmul = (hi - lo) / 2, boxplus = (hi + lo) / 2;
  const dev = { device: p.device as 'cpu' };
  const state = tidy(() => {
    const s = p.sub(boxplus).div(boxmul).mul(0.999999);
    const timg = s.add(1).div(s.rsub(1)).log().mul(0.5); // atanh
    return { timg, start: timg.tanh().mul(boxmul).add(boxplus) };
  });
  let lower = full([n], 0, { ...dev, dtype: 'float64' }), upper = full([n], 1e10, { ...dev, dtype: 'float64' }), c = full([n], r.initialConst, { ...dev, dtype: 'float64' });
  let bestL2 = full([n], 1e10, dev), bestAdv = p.clone();
  try {
    for (let outer = 0; outer < r.binarySearchSteps; outer++) {
      if (r.binarySearchSteps >= 10 && outer === r.binarySearchSteps - 1) {
        c.dispose();
        c = upper.clone();
      }
      const cf = c.float();
      let w = zerosLike(p), m = zerosLike(p), v = zerosLike(p);
      let runL2 = full([n], 1e10, dev), runHit = full([n], 0, { ...dev, dtype: 'bool' });
      // early abort per image, as the reference runs one image at a time: an image whose loss has stalled stops there
      let prev = full([n], 1e6, { ...dev, dtype: 'float64' }), alive = full([n], 1, { ...dev, dtype: 'bool' });
      try {
        for (let it = 0; it < r.steps; it++) {
          const check = r.abortEarly && it % Math.max(1, Math.floor(r.steps / 10)) === 0;
          const step = tidy(() => {
            const wg = w.detach().requiresGrad_(true);
            const img = enableGrad(() => wg.add(state.timg).tanh().mul(boxmul).add(boxplus));
            const z = enableGrad(() => logitsOf(model, conv.toModel(img)).float());
            const l2 = enableGrad(() => img.sub(state.start).square().flatten(1).sum([1]));
            const losses = enableGrad(() => l2.add(cf.mul(hinge(z, y, r))));
            let live = alive, before = prev;
            if (check) {
              // (the reference stops before it looks at this point)
              const l = losses.detach().double(); // (compared in double precision, as the reference's Python floats)
              live = alive.logicalAnd(l.gt(prev.mul(0.9999)).logicalNot());
              before = where(live, l, prev);
            }
            const [g] = autograd.grad(losses.sum(), wg);
            // Adam (torch.optim.Adam's update: β 0.9, 0.999, ε 1e-8)
            const t = it + 1, b1 = 0.9, b2 = 0.999;
            const m2 = m.mul(b1).add(g!.mul(1 - b1)), v2 = v.mul(b2).add(g!.square().mul(1 - b2));
            const w2 = w.sub(m2.div(v2.sqrt().div(Math.sqrt(1 - b2 ** t)).add(1e-8)).mul(r.lr / (1 - b1 ** t)));
            // what this point (before the step) achieved, for the images still running
            const ok = reached(z.detach(), y, r).logicalAnd(live), d = l2.detach();
            const runBetter = ok.logicalAnd(d.lt(runL2)), better = ok.logicalAnd(d.lt(bestL2));
            return {
              w2, m2, v2, alive: live.clone(), prev: before.clone(), runL2: where(runBetter, d, runL2), runHit: runHit.logicalOr(runBetter),
              bestL2: where(better, d, bestL2), bestAdv: where(as4(better), img.detach(), bestAdv),
            };
          });
          for (const t of [w, m, v, alive, prev, runL2, runHit, bestL2, bestAdv]) t.dispose();
          ({ w2: w, m2: m, v2: v, alive, prev, runL2, runHit, bestL2, bestAdv } = step);
          if (check && !alive.any().item()) break;
        }
        // the binary search over c, per image
        const next = tidy(() => {
          const up = where(runHit, upper.minimum(c), upper);
          const low = where(runHit, lower, lower.maximum(c));
          const known = up.lt(1e9);
          return { upper: up, lower: low, c: where(known, low.add(up).div(2), where(runHit, c, c.mul(10))) };
        });
        for (const t of [upper, lower, c]) t.dispose();
        ({ upper, lower, c } = next);
      } finally {
        for (const t of [cf, w, m, v, alive, prev, runL2, runHit]) t.dispose();
      }
    }
    return tidy(() => {
      const fooled = bestL2.lt(1e10).logicalAnd(bestL2.sqrt().le(r.eps));
      return { adv: where(as4(fooled), bestAdv, p), fooled };
    });
  } finally {
    for (const t of [state.timg, state.start, lower, upper, c, bestL2, bestAdv]) t.dispose();
  }
}

/** Runs CW with resolved options on pixels: the images still reaching their goal (`robust`, updated in place) are attacked. */
export function runCw(model: Classifier, conv: Converter, p: Tensor, y: Tensor, r: CwResolved, robust: Tensor): Tensor {
  const adv = p.clone();
  attackRemaining(p, y, adv, robust, 1, (_k, ps, ys) => search(model, conv, ps, ys, r));
  return adv;
}

/**
 * Carlini–Wagner L2: for each image the model classifies correctly (targeted: each image not yet classified as its
 * target), the smallest L2 perturbation the search finds that changes its class (targeted: gives the target class,
 * `y` holding the targets), with `confidence` to spare; returns x with those images replaced by their adversarial
 * versions (others unchanged, and images whose point is farther than `eps` when given), in the model's space.
 * Deterministic.
 */
export function cw(model: Classifier | Module, x: Tensor, y: Tensor | number[], options: CwOptions = {}): Tensor {
  return publicAttack('cw', model, x, y, () => resolveCw(options), (m, conv, p, yd, r, toModel) => {
    const pred = predict(m, conv, p);
    return toModel(runCw(m, conv, p, yd, r, r.targeted ? pred.ne(yd) : pred.eq(yd)));
  });
}
