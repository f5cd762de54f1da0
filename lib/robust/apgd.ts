/**
 * Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
 * of diverse parameter-free attacks"): PGD with momentum and a step size that halves wherever
 * the loss stops rising, restarting from the best point — no step size to tune. Untargeted on
 * cross-entropy ('ce') or the difference-of-logits ratio ('dlr'), or targeted DLR against the
 * model's next most likely classes ('dlr-targeted', APGD-T). It follows the reference
 * implementation (fra31/auto-attack, autopgd_base.py) step for step, checked against a
 * transcription in plain PyTorch in test/46; budgets are in pixel units like `pgd`'s.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { where } from '../tensor/ops';
import { full, zerosLike, onesLike } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { autograd, enableGrad, noGrad } from '../autograd';
import { crossEntropy } from '../nn/functional';
import { Module } from '../nn/module';
import { Classifier, logits as logitsOf } from '../nn/classifier';
import { Converter, Domain, Normalization } from './domain';
import { attackRemaining, attackTargets, classCount, cpuDraw, intOption, l2, predict, publicAttack, trainingOf, withSeed, RunResult } from './runs';

/** APGD's losses: cross-entropy, the DLR loss, or the targeted DLR loss of APGD-T. */
export type ApgdLoss = 'ce' | 'dlr' | 'dlr-targeted';

/** Options of `apgd`. `eps` is in pixel units. */
export interface ApgdOptions extends Normalization {
  /** radius of the perturbation ball (pixel units: 8/255 is CIFAR's usual L∞ budget) */
  eps: number;
  /** the ball's norm (default 'linf') */
  norm?: 'linf' | 'l2';
  /** iterations per run (default 100) */
  steps?: number;
  /** 'ce' (default, APGD-CE), 'dlr' (APGD-DLR) or 'dlr-targeted' (APGD-T) */
  loss?: ApgdLoss;
  /** runs on the images still robust after the previous ones (default 1); APGD-T makes this many per target class */
  restarts?: number;
  /** APGD-T: how many of the model's most likely other classes to target in turn (default 9, at most classes − 1) */
  targetClasses?: number;
  /** the fraction of rising steps below which the step size halves at a checkpoint (default 0.75) */
  rho?: number;
  /** expectation over transformation: average each gradient over this many calls of a randomised model (default 1; AutoAttack's 'rand' version uses 20) */
  eotIter?: number;
  /** seeds the random starts (default 0, as the reference; the CPU and CUDA generators' states are restored after) */
  seed?: number;
  /** the model's mode during the attack (default 'eval'; restored after) */
  mode?: 'eval' | 'train' | 'asIs';
}

/** APGD options after validation. */
export interface ApgdResolved {
  eps: number;
  norm: 'linf' | 'l2';
  steps: number;
  loss: ApgdLoss;
  restarts: number;
  targetClasses: number;
  rho: number;
  eotIter: number;
  seed: number;
  training: boolean | null;
  domain: Domain;
}

/** Validates APGD options and fills in the reference's defaults. */
export function resolveApgd(o: ApgdOptions, what = 'apgd'): ApgdResolved {
  if (!o || typeof o !== 'object') throw invalidParameterError(`${what}: options`, 'an object with eps', o);
  if (typeof o.eps !== 'number' || !Number.isFinite(o.eps) || o.eps < 0) throw invalidParameterError(`${what}: eps`, 'a finite number ≥ 0 (pixel units, e.g. 8/255)', o.eps);
  const norm = o.norm ?? 'linf';
  if (norm !== 'linf' && norm !== 'l2') throw invalidParameterError(`${what}: norm`, "'linf' or 'l2'", o.norm);
  const loss = o.loss ?? 'ce';
  if (loss !== 'ce' && loss !== 'dlr' && loss !== 'dlr-targeted') throw invalidParameterError(`${what}: loss`, "'ce', 'dlr' or 'dlr-targeted'", o.loss);
  const rho = o.rho ?? 0.75;
  if (typeof rho !== 'number' || !(rho > 0 && rho <= 1)) throw invalidParameterError(`${what}: rho`, 'a number in (0, 1]', o.rho);
  return {
    eps: o.eps, norm, loss, rho,
    steps: intOption(o.steps, 100, `${what}: steps`),
    restarts: intOption(o.restarts, 1, `${what}: restarts`),
    targetClasses: intOption(o.targetClasses, 9, `${what}: targetClasses`),
    eotIter: intOption(o.eotIter, 1, `${what}: eotIter`),
    seed: intOption(o.seed, 0, `${what}: seed`, 0),
    training: trainingOf(o.mode, what),
    domain: new Domain(o, `${what}: options`),
  };
}

/** Logits sorted ascending along classes (values and indices), with at least `need` classes. */
function sortedLogits(z: Tensor, need: number, what: string): { values: Tensor; indices: Tensor } {
  if (z.size(1) < need) throw new KilnError(`${what} needs a model with at least ${need} classes, this one has ${z.size(1)}`, 'INVALID_ARGUMENT');
  return z.sort(1);
}

/**
 * The difference-of-logits-ratio loss [N] (untargeted): −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3),
 * with π the classes sorted by logit. Invariant to shifting and scaling the logits.
 */
export function dlrLoss(logits: Tensor, y: Tensor): Tensor {
  return tidy(() => {
    const z = logits.float();
    const { values: s, indices } = sortedLogits(z, 3, 'the DLR loss');
    const c = z.size(1);
    const top = s.select(1, c - 1), second = s.select(1, c - 2), third = s.select(1, c - 3);
    const yIsTop = indices.select(1, c - 1).eq(y).float();
    const own = z.gather(1, y.unsqueeze(1)).squeeze(1);
    return own.sub(second.mul(yIsTop)).sub(top.mul(yIsTop.rsub(1))).neg().div(top.sub(third).add(1e-12));
  });
}

/** APGD-T's targeted DLR loss [N]: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2). */
export function dlrTargetedLoss(logits: Tensor, y: Tensor, target: Tensor): Tensor {
  return tidy(() => {
    const z = logits.float();
    const { values: s } = sortedLogits(z, 4, 'the targeted DLR loss');
    const c = z.size(1);
    const own = z.gather(1, y.unsqueeze(1)).squeeze(1);
    const tgt = z.gather(1, target.unsqueeze(1)).squeeze(1);
    return own.sub(tgt).neg().div(s.select(1, c - 1).sub(s.select(1, c - 3).add(s.select(1, c - 4)).mul(0.5)).add(1e-12));
  });
}

/** x / (its per-image L∞ or L2 norm + 1e-12), as the reference normalises. */
function normalise(t: Tensor, norm: 'linf' | 'l2'): Tensor {
  const n = norm === 'linf' ? t.abs().flatten(1).amax([1]).reshape([t.size(0), 1, 1, 1]) : l2(t);
  return t.div(n.add(1e-12));
}

/** Projects `q` onto the ball around `p` and the pixel bounds. */
function project(q: Tensor, p: Tensor, r: ApgdResolved): Tensor {
  if (r.norm === 'linf') return q.minimum(p.add(r.eps)).maximum(p.sub(r.eps)).clamp(r.domain.lo, r.domain.hi);
  const d = q.sub(p);
  return p.add(normalise(d, 'l2').mul(l2(d).clamp(null, r.eps))).clamp(r.domain.lo, r.domain.hi);
}

type State = Record<string, Tensor>;

/** Replaces a state by the next, freeing the tensors the next one does not keep. */
function advance(state: State, next: State): State {
  const kept = new Set(Object.values(next));
  for (const t of Object.values(state)) if (!kept.has(t)) t.dispose();
  return next;
}

/**
 * One APGD run on pixels p [N, …] (the reference's attack_single_run): returns the last
 * misclassified point of each image (or its start) and which images were fooled at some step.
 */
function singleRun(model: Classifier, conv: Converter, p: Tensor, y: Tensor, target: Tensor | null, r: ApgdResolved): RunResult {
  const n = p.size(0);
  const lossOf = (z: Tensor) => (r.loss === 'ce' ? crossEntropy(z.float(), y, { reduction: 'none' }) : r.loss === 'dlr' ? dlrLoss(z, y) : dlrTargetedLoss(z, y, target!));
  // the gradient (averaged over r.eotIter calls of a randomised model), and the last call's predictions and loss
  const lossAndGrad = (xa: Tensor) =>
    tidy(() => {
      const x = xa.detach().requiresGrad_(true);
      let grad: Tensor | null = null, z: Tensor | null = null, loss: Tensor | null = null;
      for (let e = 0; e < r.eotIter; e++) {
        ({ z, loss } = enableGrad(() => {
          const zz = logitsOf(model, conv.toModel(x));
          return { z: zz, loss: lossOf(zz) };
        }));
        const [g] = autograd.grad(loss!.sum(), x);
        grad = grad ? grad.add(g!) : g!;
      }
      return { grad: r.eotIter > 1 ? grad!.div(r.eotIter) : grad!, pred: z!.detach().argmax(1), loss: loss!.detach() };
    });
  // the reference's checkpoint schedule
  const iter2 = Math.max(Math.floor(0.22 * r.steps), 1);
  const iterMin = Math.max(Math.floor(0.06 * r.steps), 1);
  const sizeDecr = Math.max(Math.floor(0.03 * r.steps), 1);

  let s: State = tidy(() => {
    const t = r.norm === 'linf' ? cpuDraw('rand', p.shape, p).mul(2).sub(1) : cpuDraw('randn', p.shape, p);
    const xadv = p.add(normalise(t, r.norm).mul(r.eps)).clamp(r.domain.lo, r.domain.hi);
    const first = lossAndGrad(xadv);
    return {
      xadv, xBest: xadv, xBestAdv: xadv, xOld: xadv,
      grad: first.grad, gradBest: first.grad,
      acc: first.pred.eq(y),
      lossBest: first.loss,
      stepSize: full([n, 1, 1, 1], 2 * r.eps, { device: p.device as 'cpu' }),
      lossBestLastCheck: first.loss,
      reducedLastCheck: onesLike(first.loss).bool(),
    };
  });
  const lossSteps: Tensor[] = [];
  let k = iter2, counter = 0;
  try {
    for (let i = 0; i < r.steps; i++) {
      const a = i > 0 ? 0.75 : 1;
      const moved = tidy(() => {
        const grad2 = s.xadv.sub(s.xOld);
        const dir = r.norm === 'linf' ? s.grad.sign() : normalise(s.grad, 'l2');
        const x1 = project(s.xadv.add(dir.mul(s.stepSize)), p, r);
        const x2 = project(s.xadv.add(x1.sub(s.xadv).mul(a)).add(grad2.mul(1 - a)), p, r);
        const { grad, pred, loss } = lossAndGrad(x2);
        const acc = s.acc.logicalAnd(pred.eq(y));
        const wrong = pred.ne(y).reshape([n, 1, 1, 1]);
        const improved = loss.gt(s.lossBest);
        const imp4 = improved.reshape([n, 1, 1, 1]);
        return {
          ...s,
          xOld: s.xadv, xadv: x2, grad, acc,
          xBestAdv: where(wrong, x2, s.xBestAdv),
          xBest: where(imp4, x2, s.xBest),
          gradBest: where(imp4, grad, s.gradBest),
          lossBest: where(improved, loss, s.lossBest),
          loss,
        };
      });
      lossSteps.push(moved.loss);
      const { loss: _, ...rest } = moved;
      s = advance(s, rest);
      if (++counter === k) {
        s = advance(s, tidy(() => checkpoint(s, lossSteps, i, k, r)));
        k = Math.max(k - sizeDecr, iterMin);
        counter = 0;
      }
    }
    return tidy(() => ({ adv: s.xBestAdv.clone(), fooled: s.acc.logicalNot() }));
  } finally {
    for (const t of lossSteps) t.dispose();
    for (const t of new Set(Object.values(s))) t.dispose();
  }
}

/**
 * A checkpoint: where the loss rose in fewer than rho·k of the last k steps, or the best loss
 * did not improve since a checkpoint that did not halve the step, halve the step size and go
 * back to the best point (and its gradient).
 */
function checkpoint(s: State, lossSteps: Tensor[], i: number, k: number, r: ApgdResolved): State {
  // the reference reads row i − k, which is row −1 (its last row, still zeros) at the first checkpoint
  const row = (j: number) => (j >= 0 ? lossSteps[j] : j + r.steps === i ? lossSteps[i] : zerosLike(lossSteps[i]));
  let rises = zerosLike(lossSteps[i]);
  for (let c = 0; c < k; c++) rises = rises.add(row(i - c).gt(row(i - c - 1)).float());
  const oscillating = rises.le(k * r.rho);
  const stalled = s.reducedLastCheck.logicalNot().logicalAnd(s.lossBestLastCheck.ge(s.lossBest));
  const reduce = oscillating.logicalOr(stalled);
  const r4 = reduce.reshape([reduce.size(0), 1, 1, 1]);
  return {
    ...s,
    reducedLastCheck: reduce,
    lossBestLastCheck: s.lossBest,
    stepSize: where(r4, s.stepSize.div(2), s.stepSize),
    xadv: where(r4, s.xBest, s.xadv),
    grad: where(r4, s.gradBest, s.grad),
  };
}

/** Runs APGD with resolved options on pixels; returns adversarial pixels and a robust mask. */
export function runApgd(model: Classifier, conv: Converter, p: Tensor, y: Tensor, r: ApgdResolved, robust: Tensor): Tensor {
  const adv = p.clone();
  withSeed(r.seed, () => {
    if (r.loss !== 'dlr-targeted') {
      attackRemaining(p, y, adv, robust, r.restarts, (_, ps, ys) => singleRun(model, conv, ps, ys, null, r));
      return;
    }
    attackTargets(model, conv, p, y, adv, robust, Math.min(r.targetClasses, classCount(model, conv, p) - 1), r.restarts, (_, ps, ys, target) => singleRun(model, conv, ps, ys, target, r));
  });
  return adv;
}

/**
 * Auto-PGD: for each image the model classifies correctly, `restarts` runs of `steps`
 * momentum-PGD iterations with an adaptive step size (APGD-T: per target class); returns x with
 * every image the attack fooled replaced by its adversarial version (others unchanged), in the
 * model's space. Deterministic for a given `seed`.
 */
export function apgd(model: Classifier | Module, x: Tensor, y: Tensor | number[], options: ApgdOptions): Tensor {
  return publicAttack('apgd', model, x, y, () => resolveApgd(options), (m, conv, p, yd, r, toModel) => toModel(runApgd(m, conv, p, yd, r, predict(m, conv, p).eq(yd))));
}
