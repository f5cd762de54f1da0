/** Geometric transforms: resize, random resized crop, random affine maps and rotations. */
import { invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { rand, arange, full, linspace, ones, tensor } from '../../tensor/creation';
import { cat, stack, matmul } from '../../tensor/ops';
import * as F from '../../nn/functional';
import { checkSize } from '../decode';
import { BatchTransform, augmentation, batched, range2, uniform } from './base';

/** Options of `resize`. */
export interface ResizeOptions {
  /** default 'bilinear' */
  mode?: 'bilinear' | 'nearest' | 'bicubic' | 'area';
  /** low-pass filter when shrinking (bilinear/bicubic; default true, as PIL and torchvision) */
  antialias?: boolean;
}

/**
 * Resizes the batch to `size` ([h, w] or one number). Bilinear with antialiasing by default, so
 * shrinking averages like PIL's resize instead of skipping pixels; `resize(s, 'nearest')` works too.
 */
export function resize(size: number | [number, number], options: ResizeOptions | ResizeOptions['mode'] = {}): BatchTransform {
  const s = checkSize(size);
  const o = typeof options === 'string' ? { mode: options } : options;
  if (o === null || typeof o !== 'object') throw invalidParameterError('options', 'an object or a mode', options);
  const mode = o.mode ?? 'bilinear';
  if (!['bilinear', 'nearest', 'bicubic', 'area'].includes(mode)) throw invalidParameterError('mode', "'bilinear', 'nearest', 'bicubic' or 'area'", mode);
  const smooth = mode === 'bilinear' || mode === 'bicubic';
  if (o.antialias !== undefined && typeof o.antialias !== 'boolean') throw invalidParameterError('antialias', 'a boolean', o.antialias);
  const antialias = smooth && (o.antialias ?? true);
  return batched('resize', (x) => F.interpolate(x, { size: s, mode, alignCorners: smooth ? false : undefined, antialias }));
}

/**
 * Bilinear sampling of a per-image window (top y0, left x0, height hc, width wc: float [B])
 * to outH × outW, separably (rows, then columns), with four gathers.
 */
export function cropResize(x: Tensor, y0: Tensor, x0: Tensor, hc: Tensor, wc: Tensor, outH: number, outW: number): Tensor {
  const [b, c, H, W] = x.shape;
  const dev = x.device;
  const axis = (start: Tensor, len: Tensor, n: number, max: number) => {
    const i = arange(0, n, 1, { device: dev, dtype: 'float32' }).add(0.5).view(1, n);
    const pos = i.mul(len.view(b, 1).div(n)).add(start.view(b, 1)).sub(0.5).clamp(0, max - 1);
    const lo = pos.floor();
    const frac = pos.sub(lo);
    const loI = lo.to({ dtype: 'int64' });
    const hiI = loI.add(1).clamp(0, max - 1);
    return { loI, hiI, frac };
  };
  const r = axis(y0, hc, outH, H);
  const rIdx = (t: Tensor) => t.view(b, 1, outH, 1).expand(b, c, outH, W);
  const top = x.gather(2, rIdx(r.loI)), bot = x.gather(2, rIdx(r.hiI));
  const rows = top.add(bot.sub(top).mul(r.frac.view(b, 1, outH, 1)));
  const q = axis(x0, wc, outW, W);
  const cIdx = (t: Tensor) => t.view(b, 1, 1, outW).expand(b, c, outH, outW);
  const left = rows.gather(3, cIdx(q.loI)), right = rows.gather(3, cIdx(q.hiI));
  return left.add(right.sub(left).mul(q.frac.view(b, 1, 1, outW)));
}

/** Options of `randomResizedCrop`. */
export interface RandomResizedCropOptions {
  /** crop area as a fraction of the image (default [0.08, 1]) */
  scale?: [number, number];
  /** crop aspect ratio w/h range (default [3/4, 4/3]) */
  ratio?: [number, number];
}

/** Crops a random window (random area and aspect ratio) per image and resizes it to `size` (bilinear); for evaluation, the centred box of the output's aspect ratio, resized. */
export function randomResizedCrop(size: number | [number, number], options: RandomResizedCropOptions = {}): BatchTransform {
  const [oh, ow] = checkSize(size);
  const scale = range2(options.scale ?? [0.08, 1], 'scale');
  if (scale[1] > 1 || scale[1] <= 0) throw invalidParameterError('scale', '[low, high] within (0, 1]', options.scale);
  const ratio = range2(options.ratio ?? [3 / 4, 4 / 3], 'ratio', Number.MIN_VALUE);
  const random = batched('randomResizedCrop', (x, b, _c, H, W) => {
    const area = uniform(b, scale[0], scale[1], x).mul(H * W);
    const r = uniform(b, Math.log(ratio[0]), Math.log(ratio[1]), x).exp();
    const wc = area.mul(r).sqrt().clamp(1, W);
    const hc = area.div(r).sqrt().clamp(1, H);
    const y0 = rand([b], { device: x.device }).mul(hc.rsub(H));
    const x0 = rand([b], { device: x.device }).mul(wc.rsub(W));
    return cropResize(x, y0, x0, hc, wc, oh, ow);
  });
  // evaluation: the centred box with the output's aspect ratio, resized (antialiased)
  const toSize = resize([oh, ow]);
  const centre = batched('centreResize', (x, _b, _c, H, W) => {
    const bw = Math.min(W, Math.round((H * ow) / oh)), bh = Math.min(H, Math.round((W * oh) / ow));
    return toSize(x.narrow(2, Math.floor((H - bh) / 2), bh).narrow(3, Math.floor((W - bw) / 2), bw));
  });
  return augmentation(random, centre);
}

/** Options of `randomAffine` (torchvision's RandomAffine). */
export interface RandomAffineOptions {
  /** rotation in degrees, clockwise for positive values as torchvision's RandomAffine: d for [−d, d], or [low, high] (default 0) */
  degrees?: number | [number, number];
  /** largest shift as a fraction of [width, height]; shifts are whole pixels (default none) */
  translate?: [number, number];
  /** scale range [low, high] (default [1, 1]) */
  scale?: [number, number];
  /** shear in degrees along x: s for [−s, s], [low, high], or [xLow, xHigh, yLow, yHigh] (default 0) */
  shear?: number | [number, number] | [number, number, number, number];
  /** value outside the source image (default 0, as torchvision's RandomAffine: bilinear blends it in by the sampled mask) */
  fill?: number;
  /** sampling (default 'bilinear') */
  mode?: 'bilinear' | 'nearest';
}

function degreeRange(v: unknown, name: string): [number, number] {
  if (typeof v === 'number') {
    if (!(v >= 0) || !Number.isFinite(v)) throw invalidParameterError(name, 'a non-negative number or [low, high]', v);
    return [-v, v];
  }
  if (!Array.isArray(v) || v.length !== 2 || !v.every((a) => typeof a === 'number' && Number.isFinite(a)) || v[0] > v[1])
    throw invalidParameterError(name, 'a non-negative number or [low, high]', v);
  return [v[0], v[1]];
}

/** Per-image parameters of an affine map (tensors [B]): degrees, pixels, factor, degrees. */
interface AffineParams { angle: Tensor; tx: Tensor; ty: Tensor; scale: Tensor; shearX: Tensor; shearY: Tensor }

/**
 * Per-image inverse affine maps (tensors [B]): the 2×2 matrix taking output pixels to input pixels,
 * a shift (tx, ty) in pixels, and the centre (cx, cy) in pixels from the image centre (default 0),
 * composed as torchvision's _get_inverse_affine_matrix: C · M⁻¹ · C⁻¹ · T⁻¹.
 */
export interface InverseAffine { i00: Tensor; i01: Tensor; i10: Tensor; i11: Tensor; tx: Tensor; ty: Tensor; cx?: Tensor; cy?: Tensor }

/**
 * Samples x [B, C, H, W] through per-image inverse affine maps with gridSample, with torchvision's
 * conventions and grid (F_t.affine), so the pixels match torchvision's. `fill` is a number or a
 * tensor broadcasting to [1, C, 1, 1], filled as torchvision's _apply_grid_transform fills: nearest
 * puts it where the map leaves the image, bilinear blends it in by a sampled mask (sampled · mask +
 * (1 − mask) · fill, so border pixels are weighted by the mask twice, as there); null (torchvision's
 * fill=None) samples zeros outside.
 */
export function sampleAffine(x: Tensor, m: InverseAffine, fill: number | Tensor | null, mode: 'bilinear' | 'nearest'): Tensor {
  const [b, c, H, W] = x.shape;
  const { i00, i01, i10, i11 } = m;
  const ux = m.cx ? m.cx.add(m.tx).neg() : m.tx.neg(), uy = m.cy ? m.cy.add(m.ty).neg() : m.ty.neg();
  let t0 = i00.mul(ux).add(i01.mul(uy)), t1 = i10.mul(ux).add(i11.mul(uy));
  if (m.cx) t0 = t0.add(m.cx);
  if (m.cy) t1 = t1.add(m.cy);
  // torchvision's _gen_affine_grid: pixel-centre coordinates times the float32 matrix, rescaled to
  // [−1, 1] (the same arithmetic, so nearest sampling breaks ties as torchvision does)
  const theta = stack([i00, i01, t0, i10, i11, t1], 1).view(b, 2, 3).to({ dtype: x.dtype });
  const base = stack([
    linspace(-W * 0.5 + 0.5, W * 0.5 - 0.5, W, { dtype: x.dtype, device: x.device }).view(1, W).expand(H, W),
    linspace(-H * 0.5 + 0.5, H * 0.5 - 0.5, H, { dtype: x.dtype, device: x.device }).view(H, 1).expand(H, W),
    ones([H, W], { dtype: x.dtype, device: x.device }),
  ], 2).view(1, H * W, 3);
  const scale = tensor([0.5 * W, 0.5 * H], { dtype: x.dtype, device: x.device });
  const grid = matmul(base, theta.transpose(1, 2).div(scale)).view(b, H, W, 2);
  if (fill === null) return F.gridSample(x, grid, { mode });
  if (mode === 'nearest') return F.gridSample(x.sub(fill), grid, { mode }).add(fill); // the mask is 0 or 1
  const s = F.gridSample(cat([x, ones([b, 1, H, W], { dtype: x.dtype, device: x.device })], 1), grid, { mode });
  const mask = s.narrow(1, c, 1);
  return s.narrow(1, 0, c).mul(mask).add(mask.rsub(1).mul(fill));
}

/**
 * Applies per-image affine maps with torchvision's conventions (F.affine on tensors: rotation about
 * the centre, clockwise for positive angles, then translation in pixels; shear as torchvision's RSS
 * matrix), so the pixels match torchvision's.
 */
function applyAffine(x: Tensor, p: AffineParams, fill: number | null, mode: 'bilinear' | 'nearest'): Tensor {
  const rad = Math.PI / 180;
  const rot = p.angle.mul(rad), sx = p.shearX.mul(rad), sy = p.shearY.mul(rad);
  const cosSy = sy.cos(), rs = rot.sub(sy);
  // forward rotation–shear (det 1) and its inverse divided by the scale: output → input pixels
  const a = rs.cos().div(cosSy);
  const bb = rs.cos().mul(sx.tan()).div(cosSy).neg().sub(rot.sin());
  const cc = rs.sin().div(cosSy);
  const d = rs.sin().mul(sx.tan()).div(cosSy).neg().add(rot.cos());
  return sampleAffine(x, { i00: d.div(p.scale), i01: bb.neg().div(p.scale), i10: cc.neg().div(p.scale), i11: a.div(p.scale), tx: p.tx, ty: p.ty }, fill, mode);
}

/** Options of `affine`: one map for every image of the batch. */
export interface AffineOptions {
  /** degrees, clockwise as torchvision's F.affine (default 0) */
  angle?: number;
  /** [x, y] shift in pixels (default [0, 0]) */
  translate?: [number, number];
  /** default 1 */
  scale?: number;
  /** [x, y] shear in degrees (default [0, 0]) */
  shear?: [number, number];
  /** the value outside the moved image (default: none — zeros sampled in, torchvision F.affine's fill=None) */
  fill?: number;
  mode?: 'bilinear' | 'nearest';
}

function checkFillMode(fill: unknown, mode: unknown): void {
  if (fill !== null && (typeof fill !== 'number' || !Number.isFinite(fill))) throw invalidParameterError('fill', 'a number', fill);
  if (mode !== 'bilinear' && mode !== 'nearest') throw invalidParameterError('mode', "'bilinear' or 'nearest'", mode);
}

/** One affine map (torchvision's F.affine on tensors) applied to every image of `x`; returns a new tensor. */
export function affine(x: Tensor, options: AffineOptions = {}): Tensor {
  const angle = options.angle ?? 0, scale = options.scale ?? 1;
  const [tx, ty] = options.translate ?? [0, 0], [shx, shy] = options.shear ?? [0, 0];
  for (const [v, name] of [[angle, 'angle'], [tx, 'translate'], [ty, 'translate'], [shx, 'shear'], [shy, 'shear']] as const)
    if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidParameterError(name, 'finite numbers', v);
  if (typeof scale !== 'number' || !(scale > 0)) throw invalidParameterError('scale', 'a positive number', scale);
  const fill = options.fill ?? null, mode = options.mode ?? 'bilinear';
  checkFillMode(fill, mode);
  return batched('affine', (x4, b) => {
    const k = (v: number) => full([b], v, { device: x4.device });
    return applyAffine(x4, { angle: k(angle), tx: k(tx), ty: k(ty), scale: k(scale), shearX: k(shx), shearY: k(shy) }, fill, mode);
  })(x);
}

/**
 * A random affine map per image — rotation about the centre, whole-pixel translation, scale and
 * shear, drawn as torchvision's RandomAffine draws them — in one gridSample pass on the batch's device.
 */
export function randomAffine(options: RandomAffineOptions = {}): BatchTransform {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  const deg = degreeRange(options.degrees ?? 0, 'degrees');
  const tr = options.translate;
  if (tr !== undefined && (!Array.isArray(tr) || tr.length !== 2 || !tr.every((v) => typeof v === 'number' && v >= 0 && v <= 1)))
    throw invalidParameterError('translate', '[fx, fy] fractions in [0, 1]', tr);
  const sc = range2(options.scale ?? [1, 1], 'scale', Number.MIN_VALUE);
  const sh = options.shear ?? 0;
  let shx: [number, number], shy: [number, number] = [0, 0];
  if (Array.isArray(sh) && sh.length === 4) {
    shx = degreeRange([sh[0], sh[1]], 'shear');
    shy = degreeRange([sh[2], sh[3]], 'shear');
  } else shx = degreeRange(sh, 'shear');
  const fill = options.fill ?? 0, mode = options.mode ?? 'bilinear';
  checkFillMode(fill, mode);
  return augmentation(batched('randomAffine', (x, b, _c, H, W) => {
    const u = (lo: number, hi: number) => uniform(b, lo, hi, x);
    const zero = full([b], 0, { device: x.device });
    return applyAffine(x, {
      angle: u(deg[0], deg[1]),
      tx: tr ? u(-tr[0] * W, tr[0] * W).round() : zero,
      ty: tr ? u(-tr[1] * H, tr[1] * H).round() : zero,
      scale: u(sc[0], sc[1]),
      shearX: u(shx[0], shx[1]),
      shearY: u(shy[0], shy[1]),
    }, fill, mode);
  }), null);
}

/** A random rotation per image about its centre: d for [−d, d] degrees, or [low, high]; counter-clockwise for positive angles, as torchvision's RandomRotation. */
export function randomRotation(degrees: number | [number, number], options: { fill?: number; mode?: 'bilinear' | 'nearest' } = {}): BatchTransform {
  const [lo, hi] = degreeRange(degrees, 'degrees');
  return randomAffine({ degrees: [-hi, -lo], fill: options.fill, mode: options.mode });
}
