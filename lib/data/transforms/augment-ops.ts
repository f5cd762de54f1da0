/**
 * The image operations of torchvision's automatic augmentation policies (0.14's autoaugment.py
 * `_apply_op`), per image: every image of a batch has its own op and magnitude. Each op runs once
 * on the whole batch with per-image parameters (factors [B, 1, 1, 1], one affine matrix per image)
 * and is kept only where an image drew it, so a layer is a fixed number of tensor ops whatever the
 * batch holds, with no readback.
 *
 * Float images in [0, 1]: Posterize and Equalize, uint8-only in torchvision, run on the image
 * converted to uint8 as torchvision's convert_image_dtype does (floor(x · 255.999), after clamping
 * to [0, 1]) and back (/ 255); Solarize's threshold, in uint8 units in the policies' tables, is
 * divided by 255. The other ops compute what torchvision's tensor functions compute on floats.
 */
import { KilnError, invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { tensor, zeros, ones } from '../../tensor/creation';
import { where } from '../../tensor/ops';
import * as F from '../../nn/functional';
import { batched } from './base';
import { rgbToGrayscale } from './color';
import { sampleAffine } from './geometry';

/** The ops, in a fixed order (an op's index is its id in per-image op tensors). */
export const AUGMENT_OPS = [
  'Identity', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate', 'Brightness', 'Color', 'Contrast',
  'Sharpness', 'Posterize', 'Solarize', 'AutoContrast', 'Equalize', 'Invert',
] as const;
/** One op of the automatic augmentation policies, named as in torchvision. */
export type AugmentOp = (typeof AUGMENT_OPS)[number];
/** An op's index in AUGMENT_OPS. */
export const OP = Object.fromEntries(AUGMENT_OPS.map((n, i) => [n, i])) as Record<AugmentOp, number>;

/** Fill value outside a moved image: one number, or one per channel (torchvision's `fill`). */
export type AugmentFill = number | number[];

/** Checks a `fill` option (undefined → 0). */
export function checkFill(fill: unknown): AugmentFill {
  if (fill === undefined) return 0;
  if (typeof fill === 'number' && Number.isFinite(fill)) return fill;
  if (Array.isArray(fill) && fill.length > 0 && fill.every((v) => typeof v === 'number' && Number.isFinite(v))) return fill.slice();
  throw invalidParameterError('fill', 'a number or an array of numbers (one per channel)', fill);
}

/** Checks that x is a float batch of 1 or 3 channels, as torchvision's colour ops require. */
export function checkImages(name: string, x: Tensor, c: number): void {
  if (!['float32', 'float64', 'float16', 'bfloat16'].includes(x.dtype)) throw invalidParameterError(`${name}(x)`, 'float images in [0, 1]', `a ${x.dtype} tensor`);
  if (c !== 1 && c !== 3) throw new KilnError(`${name}: expected images with 1 or 3 channels, got ${c}`, 'INVALID_ARGUMENT');
}

function fillFor(fill: AugmentFill, x: Tensor, c: number): number | Tensor {
  if (typeof fill === 'number') return fill;
  if (fill.length === 1) return fill[0];
  if (fill.length !== c) throw invalidParameterError('fill', `1 or ${c} values (one per channel)`, fill);
  return tensor(fill, { shape: [1, c, 1, 1], dtype: x.dtype, device: x.device });
}

/** Pixel levels 0..255 (float) as torchvision's convert_image_dtype(x, uint8), after clamping to [0, 1]. */
function levels(x: Tensor): Tensor {
  return x.clamp(0, 1).mul(255.999).floor();
}

/** torchvision's _blurred_degenerate_image: a 3×3 smoothing (centre weight 5/13) inside, the border kept. */
function blurredDegenerate(x: Tensor, c: number, H: number, W: number): Tensor {
  const k = tensor([1, 1, 1, 1, 5, 1, 1, 1, 1], { shape: [1, 1, 3, 3], dtype: x.dtype, device: x.device }).div(13).expand(c, 1, 3, 3).contiguous();
  const inner = F.pad(F.conv2d(x, k, null, { groups: c }), [1, 1, 1, 1]);
  const inside = F.pad(ones([1, 1, H - 2, W - 2], { device: x.device }), [1, 1, 1, 1]).gt(0);
  return where(inside, inner, x);
}

/** torchvision's equalize per channel, on the uint8 levels of x (one histogram per image and channel). */
function equalize(x: Tensor, b: number, c: number, H: number, W: number): Tensor {
  const n = H * W, dev = x.device;
  const u = levels(x).to({ dtype: 'float64' }).view(b * c, n);
  const idx = u.to({ dtype: 'int64' });
  const hist = zeros([b * c, 256], { dtype: 'float64', device: dev }).scatterAdd(1, idx, ones([b * c, n], { dtype: 'float64', device: dev }));
  // the histogram's non-zero bins but the last (the brightest level present), summed, // 255
  const step = hist.gather(1, idx.amax(1, true)).rsub(n).div(255).floor();
  const flatChannel = step.eq(0);
  const s = where(flatChannel, 1, step);
  const below = hist.cumsum(1).sub(hist); // pixels darker than each level: torchvision's lut shifted by one
  const lut = below.add(s.div(2).floor()).div(s).floor().clamp(0, 255);
  const out = where(flatChannel, u, lut.gather(1, idx));
  return out.to({ dtype: x.dtype }).div(255).view(b, c, H, W);
}

/**
 * Applies op[i] with magnitude[i] to image i (op: int64 [B] of AUGMENT_OPS indices, magnitude:
 * float [B], signs already applied), as torchvision's `_apply_op` with nearest interpolation.
 * Stages whose ops are not in `present` are skipped (a policy knows which ops it can draw).
 */
export function applyOpLayer(x: Tensor, op: Tensor, magnitude: Tensor, fill: AugmentFill, present?: ReadonlySet<number>): Tensor {
  const [b, c, H, W] = x.shape;
  const has = (...names: AugmentOp[]) => present === undefined || names.some((n) => present.has(OP[n]));
  const is = (n: AugmentOp) => op.eq(OP[n]);
  const sel = (t: Tensor) => t.view(b, 1, 1, 1);
  const m = magnitude.to({ dtype: 'float64' });
  let cur = x;
  if (has('ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate')) {
    // inverse maps (output → input pixels), computed in float64 as torchvision does in Python
    const rot = is('Rotate'), shx = is('ShearX'), shy = is('ShearY'), shear = shx.logicalOr(shy);
    const a = m.mul(-Math.PI / 180); // F.rotate(m) is F.affine(angle = −m)
    const cos = where(rot, a.cos(), 1), sin = where(rot, a.sin(), 0);
    const moved = sampleAffine(x, {
      i00: cos, i01: where(shx, m, sin), i10: where(shy, m, sin.neg()), i11: cos,
      tx: where(is('TranslateX'), m.trunc(), 0), ty: where(is('TranslateY'), m.trunc(), 0),
      // the shears are about the top-left corner (center=[0, 0]): (−W/2, −H/2) from the image centre
      cx: where(shear, -W / 2, 0), cy: where(shear, -H / 2, 0),
    }, fillFor(fill, x, c), 'nearest');
    cur = where(sel(rot.logicalOr(shear).logicalOr(is('TranslateX')).logicalOr(is('TranslateY'))), moved, cur);
  }
  if (has('Brightness', 'Color', 'Contrast', 'Sharpness')) {
    // _blend(img, degenerate, 1 + m) = clamp((1 + m)·img − m·degenerate, 0, 1)
    const sharp = H > 2 && W > 2 && has('Sharpness'); // smaller images pass unchanged, as torchvision
    const colour = c === 3; // adjust_saturation leaves 1-channel images alone
    let use = is('Brightness').logicalOr(is('Contrast'));
    if (colour) use = use.logicalOr(is('Color'));
    if (sharp) use = use.logicalOr(is('Sharpness'));
    const grey = rgbToGrayscale(cur);
    let other = sharp ? blurredDegenerate(cur, c, H, W) : zeros([b, c, H, W], { dtype: x.dtype, device: x.device });
    other = where(sel(is('Contrast')), grey.mean([1, 2, 3], true), other);
    if (colour) other = where(sel(is('Color')), grey, other);
    other = where(sel(is('Brightness')), 0, other);
    const f = sel(m.add(1).to({ dtype: x.dtype })), g = sel(m.neg().to({ dtype: x.dtype }));
    cur = where(sel(use), cur.mul(f).add(other.mul(g)).clamp(0, 1), cur);
  }
  if (has('Solarize', 'Invert')) {
    // Invert is 1 − x everywhere: a threshold of −∞; other images: +∞ (never)
    const t = where(is('Solarize'), m.div(255), where(is('Invert'), -Infinity, Infinity)).to({ dtype: x.dtype });
    cur = where(cur.ge(sel(t)), cur.rsub(1), cur);
  }
  if (has('Posterize')) {
    const keep = m.trunc().rsub(8).mul(Math.LN2).exp().round().to({ dtype: x.dtype }); // 2^(8 − bits): u & −2^(8−bits)
    const q = levels(cur).div(sel(keep)).floor().mul(sel(keep)).div(255);
    cur = where(sel(is('Posterize')), q, cur);
  }
  if (has('AutoContrast')) {
    const lo = cur.amin([2, 3], true), hi = cur.amax([2, 3], true);
    const scale = hi.sub(lo).rdiv(1);
    const flat = scale.isfinite().logicalNot(); // a constant channel: minimum 0, scale 1
    const stretched = cur.sub(where(flat, 0, lo)).mul(where(flat, 1, scale)).clamp(0, 1);
    cur = where(sel(is('AutoContrast')), stretched, cur);
  }
  if (has('Equalize')) cur = where(sel(is('Equalize')), equalize(cur, b, c, H, W), cur);
  return cur === x ? x.clone() : cur;
}

/** Checks one magnitude against torchvision's own limits for its op. */
function checkMagnitude(op: AugmentOp, m: unknown, i: number): number {
  const bad = (expected: string) => invalidParameterError(`magnitudes[${i}] (${op})`, expected, m);
  if (typeof m !== 'number' || !Number.isFinite(m)) throw bad('a finite number');
  if (['Brightness', 'Color', 'Contrast', 'Sharpness'].includes(op) && m < -1) throw bad('at least −1 (a factor 1 + m ≥ 0)');
  if (op === 'Posterize' && !(Math.trunc(m) >= 0 && Math.trunc(m) <= 8)) throw bad('bits in [0, 8]');
  if (op === 'Solarize' && !(m >= 0 && m <= 255)) throw bad('a threshold in [0, 255] (uint8 units)');
  return m;
}

/**
 * Applies one op per image, deterministically: `ops[i]` with `magnitudes[i]` (signs included) to
 * image i of x [B, C, H, W] (or the same op and magnitude to all when given once), as
 * torchvision's `_apply_op(img, op, magnitude, NEAREST, fill)` on each image. Returns a new tensor.
 */
export function applyAugmentOps(x: Tensor, ops: AugmentOp | AugmentOp[], magnitudes: number | number[] = 0, options: { fill?: AugmentFill } = {}): Tensor {
  const fill = checkFill(options?.fill);
  return batched('applyAugmentOps', (x4, b, c) => {
    checkImages('applyAugmentOps', x4, c);
    const names = Array.isArray(ops) ? ops : Array<AugmentOp>(b).fill(ops);
    const mags = Array.isArray(magnitudes) ? magnitudes : Array<number>(b).fill(magnitudes);
    if (names.length !== b) throw invalidParameterError('ops', `one op or ${b} (one per image)`, `${names.length} ops`);
    if (mags.length !== b) throw invalidParameterError('magnitudes', `one number or ${b} (one per image)`, `${mags.length} numbers`);
    names.forEach((n, i) => {
      if (!(AUGMENT_OPS as readonly string[]).includes(n)) throw invalidParameterError(`ops[${i}]`, `one of ${AUGMENT_OPS.join(', ')}`, n);
      checkMagnitude(n, mags[i], i);
    });
    const op = tensor(names.map((n) => OP[n]), { dtype: 'int64', device: x4.device });
    const m = tensor(mags, { dtype: 'float64', device: x4.device });
    return applyOpLayer(x4, op, m, fill, new Set(names.map((n) => OP[n])));
  })(x);
}
