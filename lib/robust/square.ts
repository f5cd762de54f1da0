/**
 * Square Attack (Andriushchenko et al. 2020): a score-based black-box attack — no gradients,
 * only the model's logits. Random search that changes one square window of the perturbation
 * per query (the window shrinks on a fixed schedule) and keeps the change where the margin
 * (true logit − best other logit) drops. L∞ and L2. Follows the reference implementation
 * (fra31/auto-attack, square.py): one window position and colour per query for the whole batch,
 * random draws from the CPU generator in the reference's order; checked against a transcription
 * in plain PyTorch in test/46.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { where } from '../tensor/ops';
import { rand, tensor, zeros, zerosLike } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, logits as logitsOf } from '../nn/classifier';
import { Converter, Domain, Normalization } from './domain';
import { attackRemaining, cpuDraw, intOption, l2, predict, publicAttack, trainingOf, withSeed, RunResult } from './runs';

/** Options of `squareAttack`. `eps` is in pixel units. */
export interface SquareOptions extends Normalization {
  /** radius of the perturbation ball */
  eps: number;
  /** the ball's norm (default 'linf') */
  norm?: 'linf' | 'l2';
  /** model queries per run (default 5000, as AutoAttack) */
  queries?: number;
  /** runs on the images still robust after the previous ones (default 1) */
  restarts?: number;
  /** initial fraction of the image a window covers (default 0.8) */
  pInit?: number;
  /** stretch the window-size schedule (set for 10,000 queries) over `queries` (default true, as the reference's SquareAttack; autoAttack turns it off, as the reference's AutoAttack does) */
  rescaleSchedule?: boolean;
  /** seeds the random search (default 0; the CPU and CUDA generators' states are restored after) */
  seed?: number;
  /** the model's mode during the attack (default 'eval'; restored after) */
  mode?: 'eval' | 'train' | 'asIs';
}

/** Square options after validation. */
export interface SquareResolved {
  eps: number;
  norm: 'linf' | 'l2';
  queries: number;
  restarts: number;
  pInit: number;
  rescaleSchedule: boolean;
  seed: number;
  training: boolean | null;
  domain: Domain;
}

/** Validates Square attack options and fills in AutoAttack's defaults. */
export function resolveSquare(o: SquareOptions, what = 'squareAttack'): SquareResolved {
  if (!o || typeof o !== 'object') throw invalidParameterError(`${what}: options`, 'an object with eps', o);
  if (typeof o.eps !== 'number' || !Number.isFinite(o.eps) || o.eps < 0) throw invalidParameterError(`${what}: eps`, 'a finite number ≥ 0 (pixel units, e.g. 8/255)', o.eps);
  const norm = o.norm ?? 'linf';
  if (norm !== 'linf' && norm !== 'l2') throw invalidParameterError(`${what}: norm`, "'linf' or 'l2'", o.norm);
  const pInit = o.pInit ?? 0.8;
  if (typeof pInit !== 'number' || !(pInit > 0 && pInit <= 1)) throw invalidParameterError(`${what}: pInit`, 'a number in (0, 1]', o.pInit);
  const rescaleSchedule = o.rescaleSchedule ?? true;
  if (typeof rescaleSchedule !== 'boolean') throw invalidParameterError(`${what}: rescaleSchedule`, 'a boolean', o.rescaleSchedule);
  return {
    eps: o.eps, norm, pInit, rescaleSchedule,
    queries: intOption(o.queries, 5000, `${what}: queries`, 1),
    restarts: intOption(o.restarts, 1, `${what}: restarts`, 1),
    seed: intOption(o.seed, 0, `${what}: seed`, 0),
    training: trainingOf(o.mode, what),
    domain: new Domain(o, `${what}: options`),
  };
}

/** The window-size schedule: p_init halved at fixed fractions of the query budget. */
function pSelection(pInit: number, it: number, queries: number, rescale: boolean): number {
  const i = rescale ? Math.floor((it / queries) * 10000) : it;
  const steps: [number, number][] = [[10, 2], [50, 4], [200, 8], [500, 16], [1000, 32], [2000, 64], [4000, 128], [6000, 256], [8000, 512]];
  let div = 1;
  for (const [from, d] of steps) if (i > from) div = d;
  return pInit / div;
}

/** One CPU draw in [0, 1) as a number (the generator's float32). */
function draw(): number {
  const t = rand([1]);
  const v = t.item() as number;
  t.dispose();
  return v;
}

/** The reference's random_int(low, high): low + (high − low)·U in float32, truncated. */
function randomInt(high: number): number {
  return Math.trunc(Math.fround(high * draw()));
}

/** ±1 per entry, from the CPU generator (the reference's random_choice). */
function randomSigns(shape: number[], like: Tensor): Tensor {
  return tidy(() => cpuDraw('rand', shape, like).mul(2).sub(1).sign());
}

/** Nested-square pattern of one half of an L2 window, unit norm (the reference's eta_rectangles). */
function etaRectangles(x: number, y: number): number[][] {
  const d = Array.from({ length: x }, () => new Array<number>(y).fill(0));
  const xc = Math.floor(x / 2) + 1, yc = Math.floor(y / 2) + 1;
  let [r, c] = [xc - 1, yc - 1];
  for (let k = 0; k < Math.max(xc, yc); k++) {
    for (let i = Math.max(r, 0); i < Math.min(r + 2 * k + 1, x); i++) for (let j = Math.max(c, 0); j < Math.min(c + 2 * k + 1, y); j++) d[i][j] += 1 / ((k + 1) * (k + 1));
    r--;
    c--;
  }
  const n = Math.sqrt(d.flat().reduce((s, v) => s + v * v, 0));
  return d.map((row) => row.map((v) => v / n));
}

/** An s×s L2 window: +pattern on the top half, −pattern below, unit norm, transposed half the time (one draw). */
function eta(s: number, like: Tensor): Tensor {
  const h = Math.floor(s / 2);
  const rows = [...etaRectangles(h, s), ...etaRectangles(s - h, s).map((row) => row.map((v) => -v))];
  const n = Math.sqrt(rows.flat().reduce((a, v) => a + v * v, 0));
  const t = tensor(rows.flat().map((v) => v / n), { shape: [s, s], device: like.device as 'cpu' });
  if (draw() <= 0.5) return t;
  const tt = t.t().contiguous();
  t.dispose();
  return tt;
}

/** The window [N, C, s, s] of x at (vh, vw). */
function win(x: Tensor, vh: number, vw: number, s: number): Tensor {
  return x.narrow(2, vh, s).narrow(3, vw, s);
}

/** A 0/1 mask [1, 1, H, W] with the window at (vh, vw) set. */
function windowMask(h: number, w: number, vh: number, vw: number, s: number, like: Tensor): Tensor {
  return tidy(() => {
    const m = zeros([1, 1, h, w], { device: like.device as 'cpu' });
    win(m, vh, vw, s).fill_(1);
    return m;
  });
}

/** One Square attack run (the reference's attack_single_run) on pixels p [N, C, H, W]. */
function singleRun(model: Classifier, conv: Converter, p: Tensor, y: Tensor, r: SquareResolved): RunResult {
  const [n, c, h, w] = p.shape;
  const feats = c * h * w;
  const { eps } = r;
  const margin = (x: Tensor, yy: Tensor) =>
    noGrad(() => tidy(() => {
      const z = logitsOf(model, conv.toModel(x)).float();
      const own = z.gather(1, yy.unsqueeze(1)).squeeze(1);
      return own.sub(z.scatter(1, yy.unsqueeze(1), -Infinity).amax(1));
    }));
  let xBest = tidy(() => {
    if (r.norm === 'linf') return p.add(randomSigns([n, c, 1, w], p).mul(eps)).clamp(r.domain.lo, r.domain.hi);
    // L2: a grid of s×s windows with random-signed patterns
    const s = Math.floor(h / 5);
    if (s < 1 || w < 5) throw new KilnError(`squareAttack: L2 needs images of at least 5×5 pixels, got ${h}×${w}`, 'INVALID_ARGUMENT');
    const delta = zerosLike(p);
    const sp = Math.floor((h - 5 * s) / 2);
    for (let a = 0, vh = sp; a < Math.floor(h / s); a++, vh += s)
      for (let b = 0, vw = sp; b < Math.floor(w / s); b++, vw += s) {
        const e = eta(s, p);
        const signs = randomSigns([n, c, 1, 1], p);
        const [hh, ww] = [Math.min(s, h - vh), Math.min(s, w - vw)];
        if (hh > 0 && ww > 0) delta.narrow(2, vh, hh).narrow(3, vw, ww).add_(e.narrow(0, 0, hh).narrow(1, 0, ww).reshape([1, 1, hh, ww]).mul(signs));
      }
    return p.add(delta.div(l2(delta).add(1e-12)).mul(eps)).clamp(r.domain.lo, r.domain.hi);
  });
  let best = margin(xBest, y); // the margin is also the loss minimised (AutoAttack's default 'margin' loss)
  let lossMin = best.clone();
  try {
    for (let it = 0; it < r.queries; it++) {
      const done = tidy(() => {
        const idx = best.gt(0).nonzero().flatten();
        const m = idx.size(0);
        if (m === 0) return true;
        const [xc, xb, yc, marginCur, lossCur] = [p, xBest, y, best, lossMin].map((t) => t.indexSelect(0, idx));
        const pSel = pSelection(r.pInit, it, r.queries, r.rescaleSchedule);
        let xNew: Tensor;
        if (r.norm === 'linf') {
          const s = Math.min(Math.max(Math.round(Math.sqrt((pSel * feats) / c)), 1), h, w); // at most the image (non-square images)
          const vh = randomInt(h - s), vw = randomInt(w - s);
          const colour = randomSigns([c, 1, 1], p).mul(2 * eps).unsqueeze(0);
          const step = windowMask(h, w, vh, vw, s, p).mul(colour);
          xNew = xb.add(step).minimum(xc.add(eps)).maximum(xc.sub(eps)).clamp(r.domain.lo, r.domain.hi);
        } else {
          let s = Math.max(Math.round(Math.sqrt((pSel * feats) / c)), 3);
          if (s % 2 === 0) s++;
          s = Math.min(s, h, w); // at most the image (non-square images)
          const delta = xb.sub(xc);
          const vh = randomInt(h - s), vw = randomInt(w - s);
          const normWin1 = win(delta, vh, vw, s).square().sum([2, 3], true).sqrt();
          const vh2 = randomInt(h - s), vw2 = randomInt(w - s);
          const normImage = l2(delta);
          const maskImage = windowMask(h, w, vh, vw, s, p).maximum(windowMask(h, w, vh2, vw2, s, p));
          const normWindows = l2(delta.mul(maskImage));
          const e = eta(s, p).reshape([1, 1, s, s]);
          let nd = e.mul(randomSigns([m, c, 1, 1], p)).add(win(delta, vh, vw, s).div(normWin1.add(1e-12)));
          const room = normImage.square().rsub(eps * eps).clamp(0).div(c).add(normWindows.square()).sqrt();
          nd = nd.div(nd.square().sum([2, 3], true).sqrt().add(1e-12)).mul(room);
          const d = delta.clone();
          win(d, vh2, vw2, s).fill_(0);
          win(d, vh, vw, s).copy_(nd);
          xNew = xc.add(d.div(l2(d).add(1e-12)).mul(eps)).clamp(r.domain.lo, r.domain.hi);
        }
        const mNew = margin(xNew, yc);
        const lower = mNew.lt(lossCur);
        const take = lower.logicalOr(mNew.le(0));
        lossMin.indexPut_(idx, where(lower, mNew, lossCur));
        best.indexPut_(idx, where(take, mNew, marginCur));
        xBest.indexPut_(idx, where(take.reshape([m, 1, 1, 1]), xNew, xb));
        return false;
      });
      if (done) break;
    }
    return tidy(() => ({ adv: xBest.clone(), fooled: predict(model, conv, xBest).ne(y) }));
  } finally {
    xBest.dispose();
    best.dispose();
    lossMin.dispose();
  }
}

/** Runs the Square attack with resolved options on pixels; updates the robust mask in place. */
export function runSquare(model: Classifier, conv: Converter, p: Tensor, y: Tensor, r: SquareResolved, robust: Tensor): Tensor {
  const adv = p.clone();
  withSeed(r.seed, () => attackRemaining(p, y, adv, robust, r.restarts, (_, ps, ys) => singleRun(model, conv, ps, ys, r)));
  return adv;
}

/**
 * Square Attack: black-box random search for a misclassified point in the eps-ball, at most
 * `queries` model calls per image and run. Returns x with every image it fooled replaced by its
 * adversarial version (others unchanged), in the model's space.
 */
export function squareAttack(model: Classifier | Module, x: Tensor, y: Tensor | number[], options: SquareOptions): Tensor {
  return publicAttack('squareAttack', model, x, y, () => resolveSquare(options), (m, conv, p, yd, r, toModel) => toModel(runSquare(m, conv, p, yd, r, predict(m, conv, p).eq(yd))));
}
