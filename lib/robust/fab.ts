/**
 * FAB (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast adaptive boundary
 * attack"), targeted (FAB-T, AutoAttack's fourth attack) or untargeted (in AutoAttack's 'plus'
 * version): at each step, linearise the decision boundary between the true class and a target
 * class (untargeted: whichever other class's linearised boundary is closest) at the current
 * point, project both the current point and the original image onto that hyperplane (within the
 * pixel box), move to a convex combination of the two projections with a small overshoot, and
 * step back towards the original image whenever the point is adversarial — so it looks for the
 * smallest perturbation, and counts an image as fooled only when that perturbation is within eps.
 * FAB-T's targets are the model's 2nd, 3rd, … most likely classes in turn. Follows the reference
 * implementation (fra31/auto-attack, fab_base.py, fab_pt.py, fab_projections.py) step for step,
 * checked against a transcription in plain PyTorch in test/46; budgets are in pixel units.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { cat, stack, where } from '../tensor/ops';
import { full, zeros } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { autograd, enableGrad, noGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, logits as logitsOf } from '../nn/classifier';
import { Converter, Domain, Normalization } from './domain';
import { resolveApgd } from './apgd';
import { attackRemaining, attackTargets, classCount, cpuDraw, predict, publicAttack, rowNorm, withSeed, RunResult } from './runs';

/** Options of `fab` (FAB-T, or untargeted FAB). `eps` is in pixel units. */
export interface FabOptions extends Normalization {
  /** FAB-T (default true): towards each of `targetClasses` classes in turn; false: untargeted, the closest boundary of every class at each step (one backward per class) */
  targeted?: boolean;
  /** the budget: an image counts as fooled only when its adversarial version is this close (also the radius of random starts) */
  eps: number;
  /** the norm minimised (default 'linf') */
  norm?: 'linf' | 'l2';
  /** iterations per run (default 100) */
  steps?: number;
  /** runs (FAB-T: per target class) on the images still robust (default 1); runs after the first start at a random point */
  restarts?: number;
  /** FAB-T: how many of the model's most likely other classes to target in turn (default 9, at most classes − 1) */
  targetClasses?: number;
  /** the largest weight of the original image's projection in each step (default 0.1) */
  alphaMax?: number;
  /** overshoot past the linearised boundary (default 1.05, ≥ 1) */
  eta?: number;
  /** the step back towards the original image once adversarial (default 0.9, in (0, 1]) */
  beta?: number;
  /** seeds the random starts (default 0; the CPU and CUDA generators' states are restored after) */
  seed?: number;
  /** the model's mode during the attack (default 'eval'; restored after) */
  mode?: 'eval' | 'train' | 'asIs';
}

/** FAB options after validation. */
export interface FabResolved {
  targeted: boolean;
  eps: number;
  norm: 'linf' | 'l2';
  steps: number;
  restarts: number;
  targetClasses: number;
  alphaMax: number;
  eta: number;
  beta: number;
  seed: number;
  training: boolean | null;
  domain: Domain;
}

/** Validates FAB options and fills in AutoAttack's defaults. */
export function resolveFab(o: FabOptions, what = 'fab'): FabResolved {
  // the options FAB shares with APGD are checked by APGD's resolver (the same names, ranges and messages)
  const { eps, norm, steps, restarts, targetClasses, seed, training, domain } = resolveApgd(o, what);
  const num = (v: unknown, dflt: number, name: string, ok: (x: number) => boolean, expected: string) => {
    const x = v ?? dflt;
    if (typeof x !== 'number' || !ok(x)) throw invalidParameterError(`${what}: ${name}`, expected, v);
    return x;
  };
  const targeted = o.targeted ?? true;
  if (typeof targeted !== 'boolean') throw invalidParameterError(`${what}: targeted`, 'a boolean', o.targeted);
  return {
    targeted, eps, norm, steps, restarts, targetClasses, seed, training, domain,
    alphaMax: num(o.alphaMax, 0.1, 'alphaMax', (x) => x > 0 && x <= 1, 'a number in (0, 1]'),
    eta: num(o.eta, 1.05, 'eta', (x) => x >= 1 && Number.isFinite(x), 'a finite number ≥ 1'),
    beta: num(o.beta, 0.9, 'beta', (x) => x > 0 && x <= 1, 'a number in (0, 1]'),
  };
}

/** u[row, i[row]] for each row of u [M, D] (i: int64 [M]). */
function atRow(u: Tensor, i: Tensor): Tensor {
  return u.gather(1, i.unsqueeze(1)).squeeze(1);
}

/**
 * The projections' bisection over positions 0 … dim − 1, on every row at once: ceil(log2 dim)
 * halvings of [lb, ub], raising lb to the midpoint where `above(mid)` holds; returns lb (int64 [M]).
 */
function bisect(m: number, dim: number, like: Tensor, above: (mid: Tensor) => Tensor): Tensor {
  let lb = zeros([m], { device: like.device as 'cpu' });
  let ub = full([m], dim - 1, { device: like.device as 'cpu' });
  for (let k = 0; k < Math.ceil(Math.log2(dim)); k++) {
    const mid = lb.add(ub).div(2).floor();
    const c = above(mid);
    [lb, ub] = [where(c, mid, lb), where(c, ub, mid)];
  }
  return lb.long();
}

/**
 * The smallest-L∞ step d [M, D] from each row of t [M, D] onto its hyperplane w·x = b with t + d
 * in the box [0, 1] (or the box's nearest point, when the hyperplane misses it): the reference's
 * projection_linf, vectorised over rows (its binary search runs on every row; rows outside its
 * case keep their value).
 */
function projectionLinf(t: Tensor, w0: Tensor, b0: Tensor): Tensor {
  const [m, dim] = t.shape;
  const sign = w0.mul(t).sum([1]).sub(b0).ge(0).float().mul(2).sub(1);
  const w = w0.mul(sign.unsqueeze(1));
  const a = w.lt(0).float();
  const nz = w.ne(0).float();
  const d = a.sub(t).mul(nz);
  const p = a.sub(t.mul(a.mul(2).sub(1)));
  const indp = p.sort(1).indices;
  const b = b0.mul(sign).sub(w.mul(t).sum([1]));
  const bd = w.mul(d).sum([1]);
  const indp2 = indp.flip(1);
  const ws = w.gather(1, indp2);
  const s = ws.abs().cumsum(1);
  const sb = ws.neg().mul(d.gather(1, indp2)).cumsum(1).add(bd.unsqueeze(1));
  const b2 = sb.select(1, dim - 1).sub(s.select(1, dim - 1).mul(atRow(p, indp.select(1, 0))));
  const cl = b.sub(b2).gt(0);
  const c2 = b.sub(bd).gt(0).logicalAnd(b.sub(b2).le(0));
  const i = bisect(m, dim, t, (mid) => {
    const j = mid.long();
    return b.sub(atRow(sb, j).sub(atRow(s, j).mul(atRow(p, atRow(indp, mid.rsub(dim - 1).long()))))).gt(0);
  });
  const lmbdL = b.sub(sb.select(1, dim - 1)).div(s.select(1, dim - 1).neg()).clamp(0).unsqueeze(1);
  const lmbd = b.sub(atRow(sb, i)).div(atRow(s, i).neg()).clamp(0).unsqueeze(1);
  const dl = where(cl.unsqueeze(1), a.mul(2).sub(1).mul(lmbdL), d);
  return where(c2.unsqueeze(1), lmbd.minimum(d).mul(a).add(lmbd.neg().maximum(d).mul(a.rsub(1))), dl).mul(nz);
}

/** The same for the L2 norm: the reference's projection_l2, vectorised over rows. */
function projectionL2(t: Tensor, w0: Tensor, b0: Tensor): Tensor {
  const [m, dim] = t.shape;
  const c0 = w0.mul(t).sum([1]).sub(b0);
  const flip = c0.lt(0);
  const w = where(flip.unsqueeze(1), w0.neg(), w0);
  const c = where(flip, c0.neg(), c0);
  const tiny = w.abs().lt(1e-8);
  const kept = w.abs().gt(1e-8).float();
  let r = t.div(w).maximum(t.sub(1).div(w)).clamp(-1e12, 1e12);
  r = where(tiny, 1e12, r);
  r = where(r.eq(-1e12), 1e12, r);
  const { values: rsRaw, indices: indr } = r.sort(1);
  const rs2Raw = cat([rsRaw.narrow(1, 1, dim - 1), zeros([m, 1], { device: t.device as 'cpu' })], 1);
  const rs = where(rsRaw.eq(1e12), 0, rsRaw);
  const rs2 = where(rs2Raw.eq(1e12), 0, rs2Raw);
  const w3s = w.square().gather(1, indr);
  const w5 = w3s.sum([1], true);
  const ws = w5.sub(w3s.cumsum(1));
  const d = r.mul(w).neg().mul(kept);
  const rs0 = rs.narrow(1, 0, 1);
  const s = cat([w5.neg().mul(rs0), rs2.neg().add(rs).mul(ws).cumsum(1).sub(w5.mul(rs0))], 1);
  const c4 = s.select(1, 0).add(c).lt(0);
  const c3 = d.mul(w).sum([1]).add(c).gt(0);
  const c2 = c4.logicalNot().logicalAnd(c3.logicalNot());
  const i = bisect(m, dim, t, (mid) => atRow(s, mid.long()).add(c).gt(0));
  const d4 = where(c4.unsqueeze(1), c.div(w5.squeeze(1)).unsqueeze(1).neg().mul(w), d);
  const wsAt = atRow(ws, i);
  const alpha = where(wsAt.eq(0), 0, atRow(s, i).add(c).div(wsAt).add(atRow(rs, i))).unsqueeze(1);
  const c5 = alpha.gt(r).float();
  return where(c2.unsqueeze(1), d.mul(c5).sub(alpha.mul(w).mul(c5.rsub(1))), d4).mul(kept);
}

/**
 * Projects rows t onto the hyperplanes w·x = b within the pixel box [lo, hi]: the reference's
 * projections are for the box [0, 1], so other bounds are mapped onto it and the step scaled back.
 */
function project(t: Tensor, w: Tensor, b: Tensor, r: FabResolved): Tensor {
  const proj = r.norm === 'linf' ? projectionLinf : projectionL2;
  const { lo, hi } = r.domain;
  if (lo === 0 && hi === 1) return proj(t, w, b);
  const span = hi - lo;
  return proj(t.sub(lo).div(span), w.mul(span), b.sub(w.sum([1]).mul(lo))).mul(span);
}

/** The reference's random start: a point at half the radius eps in a random direction. */
function randomStart(p: Tensor, r: FabResolved): Tensor {
  return tidy(() => {
    const t = r.norm === 'linf' ? cpuDraw('rand', p.shape, p).mul(2).sub(1) : cpuDraw('randn', p.shape, p);
    return p.add(t.mul(r.eps).div(rowNorm(t, r.norm).reshape([p.size(0), 1, 1, 1])).mul(0.5)).clamp(r.domain.lo, r.domain.hi);
  });
}

/**
 * The boundary FAB linearises at pixels xa [N, …]: the logit difference df = z_c − z_y [N] and its
 * gradient dg [N, …], for c = `target` (one backward for the batch) or, untargeted (target null),
 * for the class whose linearised boundary is closest in the norm's dual (the reference's
 * get_diff_logits_grads_batch: the Jacobian of all logits, one backward per class).
 */
function boundary(model: Classifier, conv: Converter, xa: Tensor, y: Tensor, target: Tensor | null, norm: 'linf' | 'l2'): { df: Tensor; dg: Tensor } {
  return tidy(() => {
    const x = xa.detach().requiresGrad_(true);
    const z = enableGrad(() => logitsOf(model, conv.toModel(x)).float());
    const at = (t: Tensor, i: Tensor) => t.gather(1, i.unsqueeze(1)).squeeze(1);
    if (target) {
      const diff = enableGrad(() => at(z, target).sub(at(z, y)));
      const [g] = autograd.grad(diff.sum(), x);
      return { df: diff.detach(), dg: g! };
    }
    const [n, k] = z.shape;
    const jac = stack(Array.from({ length: k }, (_, c) => autograd.grad(enableGrad(() => z.select(1, c).sum()), x, { retainGraph: c < k - 1 })[0]!), 1).flatten(2);
    const rows = (i: Tensor) => i.reshape([n, 1, 1]).expand([n, 1, jac.size(2)]);
    const zd = z.detach();
    const df = zd.sub(zd.gather(1, y.unsqueeze(1))).scatter(1, y.unsqueeze(1), 1e10);
    const dg = jac.sub(jac.gather(1, rows(y)));
    const dual = norm === 'linf' ? dg.abs().sum([2]) : dg.square().sum([2]).sqrt();
    const c = df.abs().div(dual.add(1e-12)).argmin(1);
    return { df: at(df, c), dg: dg.gather(1, rows(c)).squeeze(1).reshape(xa.shape) };
  });
}

/**
 * One FAB run on pixels p [N, …] towards the classes `target`, or untargeted when null (the
 * reference's attack_single_run): returns each image's smallest adversarial point found (or the
 * image) and which images it fools within eps.
 */
function singleRun(model: Classifier, conv: Converter, p: Tensor, y: Tensor, target: Tensor | null, randStart: boolean, r: FabResolved): RunResult {
  const n = p.size(0);
  const as4 = (t: Tensor) => t.reshape([n, 1, 1, 1]);
  const x0 = p.flatten(1);
  let x1 = randStart ? randomStart(p, r) : p.clone();
  let best = p.clone();
  let res = full([n], 1e10, { device: p.device as 'cpu' });
  try {
    for (let i = 0; i < r.steps; i++) {
      const next = tidy(() => {
        const { df, dg } = boundary(model, conv, x1, y, target, r.norm);
        const w = dg.flatten(1);
        const b = dg.mul(x1).flatten(1).sum([1]).sub(df);
        const d3 = project(cat([x1.flatten(1), x0]), cat([w, w]), cat([b, b]), r);
        const a0 = rowNorm(d3, r.norm).clamp(1e-8).reshape([2 * n, 1, 1, 1]);
        const [a1, a2] = [a0.narrow(0, 0, n), a0.narrow(0, n, n)];
        const alpha = a1.div(a1.add(a2)).clamp(0, r.alphaMax);
        const [d1, d2] = [d3.narrow(0, 0, n).reshape(p.shape), d3.narrow(0, n, n).reshape(p.shape)];
        const xn = x1.add(d1.mul(r.eta)).mul(alpha.rsub(1)).add(p.add(d2.mul(r.eta)).mul(alpha)).clamp(r.domain.lo, r.domain.hi);
        // adversarial points: keep the smallest so far, and step back towards the image
        const isAdv = predict(model, conv, xn).ne(y);
        const t = rowNorm(xn.sub(p), r.norm);
        const better = isAdv.logicalAnd(t.lt(res));
        return {
          x1: where(as4(isAdv), p.add(xn.sub(p).mul(r.beta)), xn),
          best: where(as4(better), xn, best),
          res: where(better, t, res),
        };
      });
      for (const t of [x1, best, res]) t.dispose();
      ({ x1, best, res } = next);
    }
    return tidy(() => {
      const adv = where(as4(res.lt(1e10)), best, p);
      // an image counts only when its adversarial point is within the budget
      return { adv, fooled: predict(model, conv, adv).ne(y).logicalAnd(rowNorm(adv.sub(p), r.norm).le(r.eps)) };
    });
  } finally {
    for (const t of [x0, x1, best, res]) t.dispose();
  }
}


/** Runs FAB (FAB-T or untargeted) with resolved options on pixels; returns adversarial pixels and updates the robust mask in place. */
export function runFab(model: Classifier, conv: Converter, p: Tensor, y: Tensor, r: FabResolved, robust: Tensor): Tensor {
  const classes = classCount(model, conv, p);
  if (classes < 2) throw new KilnError(`fab needs a model with at least 2 classes, this one has ${classes}`, 'INVALID_ARGUMENT');
  const adv = p.clone();
  const targets = Math.min(r.targetClasses, classes - 1);
  withSeed(r.seed, () =>
    r.targeted
      ? attackTargets(model, conv, p, y, adv, robust, targets, r.restarts, (k, ps, ys, target) => singleRun(model, conv, ps, ys, target, k % r.restarts > 0, r))
      : attackRemaining(p, y, adv, robust, r.restarts, (k, ps, ys) => singleRun(model, conv, ps, ys, null, k > 0, r)),
  );
  return adv;
}

/**
 * FAB-T (or, with `targeted: false`, untargeted FAB): for each image the model classifies
 * correctly, a minimum-norm search (`restarts` runs of `steps` boundary projections; FAB-T: per
 * target class); returns x with every image fooled within eps replaced by its adversarial version
 * (others unchanged), in the model's space. Deterministic for a given `seed` (only runs after the
 * first draw random starts).
 */
export function fab(model: Classifier | Module, x: Tensor, y: Tensor | number[], options: FabOptions): Tensor {
  return publicAttack('fab', model, x, y, () => resolveFab(options), (m, conv, p, yd, r, toModel) => toModel(runFab(m, conv, p, yd, r, predict(m, conv, p).eq(yd))));
}
