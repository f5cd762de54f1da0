/**
 * MixUp and CutMix as training objectives (torchvision.transforms.v2's MixUp / CutMix, chosen
 * between as timm's Mixup does). Each step draws λ ~ Beta(α, α), pairs every image with the
 * previous one in the batch (`roll(1, 0)`, as torchvision), mixes them — MixUp: λ·x + (1 − λ)·x';
 * CutMix: x with a box of x' pasted in, λ then being the part of x left — and minimises
 * λ·loss(logits, y) + (1 − λ)·loss(logits, y'), the mixup paper's criterion (for plain or
 * label-smoothed cross-entropy this equals cross-entropy against the mixed one-hot targets).
 * The step's metrics compare the logits with the label that dominates (y when λ ≥ ½, else y'). Random draws come from
 * libtorch's CPU generator, so seeded and resumed runs repeat them.
 */
import { invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { rand } from '../tensor/creation';
import { sampleBeta } from '../tensor/distributions';
import { noGrad } from '../autograd';
import type { Objective, ObjectiveContext } from './options';

/** One uniform draw in [0, 1) from libtorch's CPU generator. */
function uniform(): number {
  const t = rand([1], { dtype: 'float64' });
  try { return t.item(); } finally { t.dispose(); }
}

/** A draw from Beta(a, b) (a, b > 0), from libtorch's CPU generator (follows `kiln.manualSeed`); `n` draws with a third argument. */
export { sampleBeta };

/** CutMix's box [y1, y2) × [x1, x2) in an H × W image for λ and its centre (ry, rx), and the λ it leaves (torchvision's rule). */
export function cutmixBox(h: number, w: number, lam: number, ry: number, rx: number): { y1: number; y2: number; x1: number; x2: number; lam: number } {
  const r = 0.5 * Math.sqrt(1 - lam);
  const rw = Math.trunc(r * w), rh = Math.trunc(r * h);
  const x1 = Math.max(rx - rw, 0), y1 = Math.max(ry - rh, 0);
  const x2 = Math.min(rx + rw, w), y2 = Math.min(ry + rh, h);
  return { y1, y2, x1, x2, lam: 1 - ((x2 - x1) * (y2 - y1)) / (w * h) };
}

/** What the last step of a mixing objective did. */
export interface MixInfo {
  kind: 'none' | 'mixup' | 'cutmix';
  /** weight of the unmixed images' labels (1 when nothing was mixed) */
  lam: number;
  /** CutMix's box */
  box?: { y1: number; y2: number; x1: number; x2: number };
}

/** A training objective that mixes batches; `last` says what its last step did. */
export type MixObjective = Objective & { last: MixInfo | null };

/** Options of `mixupCutmix` (timm's Mixup). */
export interface MixOptions {
  /** α of MixUp's Beta(α, α) (0: no MixUp) */
  mixupAlpha?: number;
  /** α of CutMix's Beta(α, α) (0: no CutMix) */
  cutmixAlpha?: number;
  /** chance of CutMix rather than MixUp in a step when both are on (default 0.5) */
  switchProb?: number;
  /** chance that a step mixes at all (default 1) */
  prob?: number;
}

function alphaOption(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw invalidParameterError(name, 'a number ≥ 0', v);
  return v;
}
function probOption(v: unknown, name: string): number {
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw invalidParameterError(name, 'a probability in [0, 1]', v);
  return v;
}

/** The images of a step, mixed as `info` says (a new tensor). */
function mixImages(x: Tensor, info: MixInfo): Tensor {
  return noGrad(() => {
    const other = x.roll(1, 0);
    try {
      if (info.kind === 'mixup') return x.mul(info.lam).add_(other.mul_(1 - info.lam));
      const out = x.clone();
      const { y1, y2, x1, x2 } = info.box!;
      if (y2 > y1 && x2 > x1) {
        const dst = out.slice(-2, y1, y2).slice(-1, x1, x2);
        const src = other.slice(-2, y1, y2).slice(-1, x1, x2);
        dst.copy_(src);
        dst.dispose();
        src.dispose();
      }
      return out;
    } finally {
      other.dispose();
    }
  });
}

/**
 * timm's Mixup as a Trainer objective: each step mixes with chance `prob`, by CutMix with chance
 * `switchProb` when both α are set, else by whichever is set.
 */
export function mixupCutmix(options: MixOptions): MixObjective {
  if (options === null || typeof options !== 'object') throw invalidParameterError('mixupCutmix(options)', 'an object', options);
  const mixupAlpha = alphaOption(options.mixupAlpha ?? 0, 'mixupCutmix: mixupAlpha');
  const cutmixAlpha = alphaOption(options.cutmixAlpha ?? 0, 'mixupCutmix: cutmixAlpha');
  if (mixupAlpha === 0 && cutmixAlpha === 0) throw invalidParameterError('mixupCutmix: mixupAlpha / cutmixAlpha', 'at least one positive α', 0);
  const switchProb = probOption(options.switchProb ?? 0.5, 'mixupCutmix: switchProb');
  const prob = probOption(options.prob ?? 1, 'mixupCutmix: prob');

  const draw = (x: Tensor): MixInfo => {
    if (prob < 1 && uniform() >= prob) return { kind: 'none', lam: 1 };
    const cut = cutmixAlpha > 0 && (mixupAlpha === 0 || (switchProb > 0 && uniform() < switchProb));
    if (!cut) return { kind: 'mixup', lam: sampleBeta(mixupAlpha, mixupAlpha) };
    const lam = sampleBeta(cutmixAlpha, cutmixAlpha);
    if (x.ndim < 3) throw invalidParameterError('CutMix: input', 'images [N, C, H, W]', `shape [${x.shape.join(', ')}]`);
    const h = x.size(-2), w = x.size(-1);
    const { lam: adjusted, ...box } = cutmixBox(h, w, lam, Math.floor(uniform() * h), Math.floor(uniform() * w));
    return { kind: 'cutmix', lam: adjusted, box };
  };

  const objective = ((ctx: ObjectiveContext) => {
    const { model, x, y, loss } = ctx;
    const info = draw(x);
    objective.last = info;
    if (info.kind === 'none' || x.size(0) < 2) {
      const logits = model.call(x);
      return { logits, loss: loss(logits, y) };
    }
    const mixed = mixImages(x, info);
    const logits = model.call(mixed);
    mixed.dispose();
    const other = y.roll(1, 0);
    const l = loss(logits, y).mul(info.lam).add(loss(logits, other).mul(1 - info.lam));
    // the step's metrics count the label that dominates each mixed image
    return { logits, loss: l, targets: info.lam >= 0.5 ? y : other };
  }) as MixObjective;
  objective.last = null;
  return objective;
}

/** MixUp (Zhang et al.; torchvision's MixUp) as a Trainer objective: λ ~ Beta(α, α), default α = 1. */
export function mixup(options: { alpha?: number } = {}): MixObjective {
  if (options === null || typeof options !== 'object') throw invalidParameterError('mixup(options)', 'an object', options);
  const alpha = options.alpha ?? 1;
  if (typeof alpha !== 'number' || !(alpha > 0) || !Number.isFinite(alpha)) throw invalidParameterError('mixup: alpha', 'a positive number', options.alpha);
  return mixupCutmix({ mixupAlpha: alpha });
}

/** CutMix (Yun et al.; torchvision's CutMix) as a Trainer objective: λ ~ Beta(α, α), default α = 1. */
export function cutmix(options: { alpha?: number } = {}): MixObjective {
  if (options === null || typeof options !== 'object') throw invalidParameterError('cutmix(options)', 'an object', options);
  const alpha = options.alpha ?? 1;
  if (typeof alpha !== 'number' || !(alpha > 0) || !Number.isFinite(alpha)) throw invalidParameterError('cutmix: alpha', 'a positive number', options.alpha);
  return mixupCutmix({ cutmixAlpha: alpha });
}
