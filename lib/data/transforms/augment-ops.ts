/**
 * The image operations of torchvision's automatic augmentation policies (0.14's autoaugment.py
 * `_apply_op`), per image: every image of a batch has its own op and magnitude. Each op runs once,
 * on the sub-batch of images that drew it, with per-image parameters (factors [k, 1, 1, 1], one
 * affine matrix per image), so a batch costs about one op's work per image plus a gather.
 *
 * Float images in [0, 1]: Posterize and Equalize, uint8-only in torchvision, run on the image
 * converted to uint8 as torchvision's convert_image_dtype does (floor(x · 255.999), after clamping
 * to [0, 1]) and back (/ 255); Solarize's threshold, in uint8 units in the policies' tables, is
 * divided by 255. The other ops compute what torchvision's tensor functions compute on floats.
 * The geometric ops sample nearest (the policies' default) or bilinear (AugMix's); with bilinear
 * sampling and a fill colour, the border is torchvision's: sampled · mask + (1 − mask) · fill, mask
 * being a sampled channel of ones (no fill: zero padding, as torchvision's fill=None).
 */
import { KilnError, invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { tensor, zeros, ones } from '../../tensor/creation';
import { where, cat } from '../../tensor/ops';
import * as F from '../../nn/functional';
import { batched } from './base';
import { rgbToGrayscale } from './color';
import { InverseAffine, sampleAffine } from './geometry';

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
/** How the geometric ops sample the moved image (torchvision's InterpolationMode, tensor-supported ones). */
export type AugmentInterpolation = 'nearest' | 'bilinear';

/** Checks a `fill` option (undefined → null: torchvision's fill=None, zeros). */
export function checkFill(fill: unknown): AugmentFill | null {
  if (fill === undefined) return null;
  if (typeof fill === 'number' && Number.isFinite(fill)) return fill;
  if (Array.isArray(fill) && fill.length > 0 && fill.every((v) => typeof v === 'number' && Number.isFinite(v))) return fill.slice();
  throw invalidParameterError('fill', 'a number or an array of numbers (one per channel)', fill);
}

/** Checks an `interpolation` option (undefined → `dflt`). */
export function checkInterpolation(v: unknown, dflt: AugmentInterpolation): AugmentInterpolation {
  if (v === undefined) return dflt;
  if (v !== 'nearest' && v !== 'bilinear') throw invalidParameterError('interpolation', "'nearest' or 'bilinear'", v);
  return v;
}

/** Checks that x is a float batch of 1 or 3 channels, as torchvision's colour ops require, and `fill` fits them. */
export function checkImages(name: string, x: Tensor, c: number, fill: AugmentFill | null): void {
  if (!['float32', 'float64', 'float16', 'bfloat16'].includes(x.dtype)) throw invalidParameterError(`${name}(x)`, 'float images in [0, 1]', `a ${x.dtype} tensor`);
  if (c !== 1 && c !== 3) throw new KilnError(`${name}: expected images with 1 or 3 channels, got ${c}`, 'INVALID_ARGUMENT');
  if (Array.isArray(fill) && fill.length !== 1 && fill.length !== c) throw invalidParameterError('fill', `1 or ${c} values (one per channel)`, fill);
}

function fillFor(fill: AugmentFill | null, x: Tensor, c: number): number | Tensor {
  if (fill === null) return 0;
  if (typeof fill === 'number') return fill;
  if (fill.length === 1) return fill[0];
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

/** Tensors [k] of ones and zeros (float64) beside m, for affine entries an op leaves alone. */
const one = (m: Tensor) => m.mul(0).add(1), zero = (m: Tensor) => m.mul(0);

/**
 * x [k, C, H, W] through per-image inverse maps as torchvision's _apply_grid_transform: nearest
 * or fill=None sample with the fill (zeros); bilinear with a fill blends it in by a sampled mask.
 */
function moveImages(x: Tensor, inv: InverseAffine, fill: AugmentFill | null, interpolation: AugmentInterpolation): Tensor {
  return sampleAffine(x, inv, fill === null ? null : fillFor(fill, x, x.size(1)), interpolation);
}

/**
 * Applies `op` to every image of x [k, C, H, W] with its own magnitude m (float64 [k], signs
 * included), as torchvision's `_apply_op` with the given interpolation. May return x itself (Identity).
 */
function applyOp(x: Tensor, op: AugmentOp, m: Tensor, fill: AugmentFill | null, interpolation: AugmentInterpolation): Tensor {
  const [k, c, H, W] = x.shape;
  const per = (t: Tensor) => t.to({ dtype: x.dtype }).view(k, 1, 1, 1);
  // the geometric ops: inverse maps (output → input pixels) computed in float64, as torchvision does in Python
  const move = (inv: InverseAffine) => moveImages(x, inv, fill, interpolation);
  // the shears are about the top-left corner (center=[0, 0]): (−W/2, −H/2) from the image centre
  const corner = { cx: zero(m).sub(W / 2), cy: zero(m).sub(H / 2) };
  // _blend(img, degenerate, 1 + m) = clamp((1 + m)·img − m·degenerate, 0, 1)
  const blend = (other: Tensor | number) => {
    const f = per(m.add(1)), g = per(m.neg());
    return (typeof other === 'number' ? x.mul(f) : x.mul(f).add(other.mul(g))).clamp(0, 1);
  };
  switch (op) {
    case 'Identity': return x;
    case 'ShearX': return move({ i00: one(m), i01: m, i10: zero(m), i11: one(m), tx: zero(m), ty: zero(m), ...corner });
    case 'ShearY': return move({ i00: one(m), i01: zero(m), i10: m, i11: one(m), tx: zero(m), ty: zero(m), ...corner });
    case 'TranslateX': return move({ i00: one(m), i01: zero(m), i10: zero(m), i11: one(m), tx: m.trunc(), ty: zero(m) });
    case 'TranslateY': return move({ i00: one(m), i01: zero(m), i10: zero(m), i11: one(m), tx: zero(m), ty: m.trunc() });
    case 'Rotate': { // F.rotate(m) is F.affine(angle = −m)
      const a = m.mul(-Math.PI / 180), cos = a.cos(), sin = a.sin();
      return move({ i00: cos, i01: sin, i10: sin.neg(), i11: cos, tx: zero(m), ty: zero(m) });
    }
    case 'Brightness': return blend(0);
    case 'Color': return c === 1 ? x : blend(rgbToGrayscale(x)); // adjust_saturation leaves 1-channel images alone
    case 'Contrast': return blend(rgbToGrayscale(x).mean([1, 2, 3], true));
    case 'Sharpness': return H > 2 && W > 2 ? blend(blurredDegenerate(x, c, H, W)) : x; // smaller images pass, as torchvision
    case 'Posterize': { // u & −2^(8 − bits) on the uint8 levels
      const keep = per(m.trunc().rsub(8).mul(Math.LN2).exp().round());
      return levels(x).div(keep).floor().mul(keep).div(255);
    }
    case 'Solarize': return where(x.ge(per(m.div(255))), x.rsub(1), x);
    case 'Invert': return x.rsub(1);
    case 'AutoContrast': {
      const lo = x.amin([2, 3], true), hi = x.amax([2, 3], true);
      const scale = hi.sub(lo).rdiv(1);
      const flat = scale.isfinite().logicalNot(); // a constant channel: minimum 0, scale 1
      return x.sub(where(flat, 0, lo)).mul(where(flat, 1, scale)).clamp(0, 1);
    }
    case 'Equalize': return equalize(x, k, c, H, W);
  }
}

/**
 * Applies ops[i] (an AUGMENT_OPS index) with magnitude mags[i] (signs included) to image i of x
 * [B, C, H, W]: each op runs once, on the sub-batch of images that drew it, with their magnitudes
 * as per-image parameters; the results are put back in the batch's order. Returns a new tensor.
 */
export function applyOpLayer(x: Tensor, ops: ArrayLike<number>, mags: ArrayLike<number>, fill: AugmentFill | null, interpolation: AugmentInterpolation = 'nearest'): Tensor {
  const groups = new Map<number, number[]>();
  for (let i = 0; i < ops.length; i++) {
    const g = groups.get(ops[i]);
    if (g) g.push(i);
    else groups.set(ops[i], [i]);
  }
  const dev = x.device;
  const parts: Tensor[] = [], order: number[] = [];
  for (const [op, idx] of groups) {
    const sub = groups.size === 1 ? x : x.indexSelect(0, tensor(idx, { dtype: 'int64', device: dev }));
    parts.push(applyOp(sub, AUGMENT_OPS[op], tensor(idx.map((i) => mags[i]), { dtype: 'float64', device: dev }), fill, interpolation));
    order.push(...idx);
  }
  if (parts.length === 1) return parts[0] === x ? x.clone() : parts[0];
  const back = new Array<number>(order.length);
  order.forEach((img, pos) => { back[img] = pos; });
  return cat(parts, 0).indexSelect(0, tensor(back, { dtype: 'int64', device: dev }));
}

/** Checks one magnitude against torchvision's own limits for its op. */
export function checkMagnitude(op: AugmentOp, m: unknown, where: string): number {
  const bad = (expected: string) => invalidParameterError(`${where} (${op})`, expected, m);
  if (typeof m !== 'number' || !Number.isFinite(m)) throw bad('a finite number');
  if (['Brightness', 'Color', 'Contrast', 'Sharpness'].includes(op) && m < -1) throw bad('at least −1 (a factor 1 + m ≥ 0)');
  if (op === 'Posterize' && !(Math.trunc(m) >= 0 && Math.trunc(m) <= 8)) throw bad('bits in [0, 8]');
  if (op === 'Solarize' && !(m >= 0 && m <= 255)) throw bad('a threshold in [0, 255] (uint8 units)');
  return m;
}

/**
 * Applies one op per image, deterministically: `ops[i]` with `magnitudes[i]` (signs included) to
 * image i of x [B, C, H, W] (or the same op and magnitude to all when given once), as
 * torchvision's `_apply_op(img, op, magnitude, interpolation, fill)` on each image (default
 * nearest, as the policies). Returns a new tensor.
 */
export function applyAugmentOps(x: Tensor, ops: AugmentOp | AugmentOp[], magnitudes: number | number[] = 0, options: { fill?: AugmentFill; interpolation?: AugmentInterpolation } = {}): Tensor {
  const fill = checkFill(options?.fill);
  const interpolation = checkInterpolation(options?.interpolation, 'nearest');
  return batched('applyAugmentOps', (x4, b, c) => {
    checkImages('applyAugmentOps', x4, c, fill);
    const names = Array.isArray(ops) ? ops : Array<AugmentOp>(b).fill(ops);
    const mags = Array.isArray(magnitudes) ? magnitudes : Array<number>(b).fill(magnitudes);
    if (names.length !== b) throw invalidParameterError('ops', `one op or ${b} (one per image)`, `${names.length} ops`);
    if (mags.length !== b) throw invalidParameterError('magnitudes', `one number or ${b} (one per image)`, `${mags.length} numbers`);
    names.forEach((n, i) => {
      if (!(AUGMENT_OPS as readonly string[]).includes(n)) throw invalidParameterError(`ops[${i}]`, `one of ${AUGMENT_OPS.join(', ')}`, n);
      checkMagnitude(n, mags[i], `magnitudes[${i}]`);
    });
    return applyOpLayer(x4, names.map((n) => OP[n]), mags, fill, interpolation);
  })(x);
}
