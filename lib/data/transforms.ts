/**
 * Batch transforms: each maps a whole batch x [B, C, H, W] (float32 in 0..1, any device) to a
 * new tensor with tensor ops, drawing per-sample random numbers on x's device, so that
 * `kiln.manualSeed` makes them reproducible. A [C, H, W] image is treated as a batch of one.
 * Intermediates are freed; the input is left alone (the caller owns it).
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor, rand, randint, arange } from '../tensor/creation';
import { where } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import * as F from '../nn/functional';
import { checkSize } from './decode';

/** A batch transform: returns a new tensor, never disposes its input. */
export type BatchTransform = (x: Tensor) => Tensor;

/** Wraps a [B, C, H, W] body: checks the input, accepts [C, H, W], frees intermediates. */
function batched(name: string, body: (x: Tensor, b: number, c: number, h: number, w: number) => Tensor): BatchTransform {
  const fn = (x: Tensor): Tensor => {
    if (!(x instanceof Tensor) || x.isDisposed) throw invalidParameterError(`${name}(x)`, 'a Tensor [B, C, H, W]', x);
    if (x.ndim !== 4 && x.ndim !== 3) throw new KilnError(`${name}: expected a batch [B, C, H, W] or an image [C, H, W], got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    return tidy(() => {
      const x4 = x.ndim === 3 ? x.unsqueeze(0) : x;
      const [b, c, h, w] = x4.shape;
      const out = body(x4, b, c, h, w);
      return x.ndim === 3 ? out.squeeze(0) : out === x ? x.clone() : out;
    });
  };
  Object.defineProperty(fn, 'name', { value: name });
  return fn;
}

function probability(p: unknown, name = 'p'): number {
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw invalidParameterError(name, 'a probability in [0, 1]', p);
  return p;
}
function range2(v: unknown, name: string, min = 0): [number, number] {
  if (!Array.isArray(v) || v.length !== 2 || !v.every((a) => typeof a === 'number' && Number.isFinite(a) && a >= min) || v[0] > v[1])
    throw invalidParameterError(name, `[low, high] with ${min} ≤ low ≤ high`, v);
  return [v[0], v[1]];
}
function nonNegInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw invalidParameterError(name, 'a non-negative integer', v);
  return v;
}
/** Per-sample uniform values in [lo, hi), shape [B]. */
function uniform(b: number, lo: number, hi: number, x: Tensor): Tensor {
  return rand([b], { device: x.device }).mul(hi - lo).add(lo);
}

/** Runs the transforms in order; intermediates are freed. */
export function compose(...transforms: BatchTransform[]): BatchTransform {
  const list = transforms.length === 1 && Array.isArray(transforms[0]) ? (transforms[0] as unknown as BatchTransform[]) : transforms;
  list.forEach((t, i) => {
    if (typeof t !== 'function') throw invalidParameterError(`transforms[${i}]`, 'a function (x: Tensor) => Tensor', t);
  });
  return (x: Tensor): Tensor => {
    let cur = x;
    for (const t of list) {
      const next = t(cur);
      if (cur !== x && next !== cur) cur.dispose();
      cur = next;
    }
    return cur === x ? x.clone() : cur;
  };
}

/** (x - mean) / std per channel; `mean` and `std` have one value per channel (or one for all). */
export function normalize(mean: number[], std: number[]): BatchTransform {
  const ok = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((a) => typeof a === 'number' && Number.isFinite(a));
  if (!ok(mean)) throw invalidParameterError('mean', 'a non-empty array of numbers', mean);
  if (!ok(std) || std.some((s) => s <= 0)) throw invalidParameterError('std', 'a non-empty array of positive numbers', std);
  if (mean.length !== std.length) throw new KilnError(`normalize: mean has ${mean.length} values but std has ${std.length}`, 'INVALID_ARGUMENT');
  return batched('normalize', (x, _b, c) => {
    if (mean.length !== 1 && mean.length !== c) throw new KilnError(`normalize: ${mean.length} mean/std values for ${c} channels`, 'INVALID_ARGUMENT');
    const shape = [1, mean.length, 1, 1];
    const m = tensor(mean, { shape, device: x.device, dtype: x.dtype });
    const s = tensor(std, { shape, device: x.device, dtype: x.dtype });
    return x.sub(m).div(s);
  });
}

/** Flips each image left–right with probability p. */
export function randomHorizontalFlip(p = 0.5): BatchTransform {
  probability(p);
  return batched('randomHorizontalFlip', (x, b) => where(rand([b], { device: x.device }).lt(p).view(b, 1, 1, 1), x.flip(3), x));
}

/** Flips each image upside down with probability p. */
export function randomVerticalFlip(p = 0.5): BatchTransform {
  probability(p);
  return batched('randomVerticalFlip', (x, b) => where(rand([b], { device: x.device }).lt(p).view(b, 1, 1, 1), x.flip(2), x));
}

/** Crops each image i of x at its own offset (oy[i], ox[i]) (int64 [B]) to h × w, with two gathers. */
export function cropAt(x: Tensor, oy: Tensor, ox: Tensor, h: number, w: number): Tensor {
  const [b, c, , wp] = x.shape;
  const dev = x.device;
  const rows = oy.view(b, 1).add(arange(0, h, 1, { device: dev })).view(b, 1, h, 1).expand(b, c, h, wp);
  const r = x.gather(2, rows);
  const cols = ox.view(b, 1).add(arange(0, w, 1, { device: dev })).view(b, 1, 1, w).expand(b, c, h, w);
  const out = r.gather(3, cols);
  rows.dispose(); r.dispose(); cols.dispose();
  return out;
}

/** Options of `randomCrop`. */
export interface RandomCropOptions {
  /** padding added on each side first: a number, or [vertical, horizontal] (default 0) */
  padding?: number | [number, number];
  /** 'constant' (with `fill`), 'reflect' or 'replicate' (default 'constant') */
  padMode?: 'constant' | 'reflect' | 'replicate';
  fill?: number;
}

/** Pads, then crops each image at a random position to `size` ([h, w] or one number). */
export function randomCrop(size: number | [number, number], options: RandomCropOptions = {}): BatchTransform {
  const [h, w] = checkSize(size);
  const pad = options.padding ?? 0;
  const [pv, ph] = typeof pad === 'number' ? [pad, pad] : Array.isArray(pad) && pad.length === 2 ? pad : [NaN, NaN];
  nonNegInt(pv, 'padding');
  nonNegInt(ph, 'padding');
  const mode = options.padMode ?? 'constant';
  if (!['constant', 'reflect', 'replicate'].includes(mode)) throw invalidParameterError('padMode', "'constant', 'reflect' or 'replicate'", mode);
  const fill = options.fill ?? 0;
  if (typeof fill !== 'number') throw invalidParameterError('fill', 'a number', fill);
  return batched('randomCrop', (x, b, _c, H, W) => {
    if (mode === 'reflect' && (pv >= H || ph >= W)) throw new KilnError(`randomCrop: reflect padding (${pv}, ${ph}) must be smaller than the image (${H}×${W})`, 'INVALID_ARGUMENT');
    const xp = pv > 0 || ph > 0 ? F.pad(x, [ph, ph, pv, pv], mode, fill) : x;
    const Hp = H + 2 * pv, Wp = W + 2 * ph;
    if (h > Hp || w > Wp) throw new KilnError(`randomCrop: crop ${h}×${w} is larger than the padded image ${Hp}×${Wp}`, 'INVALID_ARGUMENT');
    const oy = randint(0, Hp - h + 1, [b], { device: x.device });
    const ox = randint(0, Wp - w + 1, [b], { device: x.device });
    return cropAt(xp, oy, ox, h, w);
  });
}

/** Shifts each image by a random whole number of pixels in [-px, px] (a number or [vertical, horizontal]), filling with `fill`. */
export function randomTranslate(px: number | [number, number], fill = 0): BatchTransform {
  const [pv, ph] = typeof px === 'number' ? [px, px] : Array.isArray(px) && px.length === 2 ? px : [NaN, NaN];
  nonNegInt(pv, 'px');
  nonNegInt(ph, 'px');
  const inner = (h: number, w: number) => randomCrop([h, w], { padding: [pv, ph], padMode: 'constant', fill });
  return batched('randomTranslate', (x, _b, _c, H, W) => inner(H, W)(x));
}

/** A boolean mask [B, 1, H, W] of the boxes rows [y0, y0+bh) × cols [x0, x0+bw) (float tensors [B]). */
function boxMask(y0: Tensor, x0: Tensor, bh: Tensor, bw: Tensor, b: number, H: number, W: number, dev: string): Tensor {
  const rows = arange(0, H, 1, { device: dev as 'cpu', dtype: 'float32' }).view(1, H, 1);
  const cols = arange(0, W, 1, { device: dev as 'cpu', dtype: 'float32' }).view(1, 1, W);
  const yy = y0.view(b, 1, 1), xx = x0.view(b, 1, 1);
  const inR = rows.ge(yy).logicalAnd(rows.lt(yy.add(bh.view(b, 1, 1))));
  const inC = cols.ge(xx).logicalAnd(cols.lt(xx.add(bw.view(b, 1, 1))));
  return inR.logicalAnd(inC).unsqueeze(1);
}

/** Options of `randomErasing`. */
export interface RandomErasingOptions {
  /** probability of erasing a box in each image (default 0.5) */
  p?: number;
  /** box area as a fraction of the image (default [0.02, 0.33]) */
  scale?: [number, number];
  /** box aspect ratio h/w range (default [0.3, 3.3]) */
  ratio?: [number, number];
  /** value written in the box (default 0) */
  value?: number;
}

/** Random erasing (Zhong et al.): a random box per image set to `value` (boxes larger than the image are clipped). */
export function randomErasing(options: RandomErasingOptions = {}): BatchTransform {
  const p = probability(options.p ?? 0.5);
  const scale = range2(options.scale ?? [0.02, 0.33], 'scale');
  const ratio = range2(options.ratio ?? [0.3, 3.3], 'ratio', Number.MIN_VALUE);
  const value = options.value ?? 0;
  if (typeof value !== 'number') throw invalidParameterError('value', 'a number', value);
  return batched('randomErasing', (x, b, _c, H, W) => {
    const area = uniform(b, scale[0], scale[1], x).mul(H * W);
    const r = uniform(b, Math.log(ratio[0]), Math.log(ratio[1]), x).exp();
    const bh = area.mul(r).sqrt().round().clamp(1, H);
    const bw = area.div(r).sqrt().round().clamp(1, W);
    const y0 = rand([b], { device: x.device }).mul(bh.rsub(H + 1)).floor();
    const x0 = rand([b], { device: x.device }).mul(bw.rsub(W + 1)).floor();
    const apply = rand([b], { device: x.device }).lt(p).view(b, 1, 1, 1);
    return where(boxMask(y0, x0, bh, bw, b, H, W, x.device).logicalAnd(apply), value, x);
  });
}

/** Cutout (DeVries & Taylor): a size×size square at a random centre per image, clipped at the borders, set to `value`. */
export function cutout(size: number, options: { p?: number; value?: number } = {}): BatchTransform {
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 1) throw invalidParameterError('size', 'a positive integer', size);
  const p = probability(options.p ?? 1);
  const value = options.value ?? 0;
  if (typeof value !== 'number') throw invalidParameterError('value', 'a number', value);
  return batched('cutout', (x, b, _c, H, W) => {
    const half = Math.floor(size / 2);
    const y0 = rand([b], { device: x.device }).mul(H).floor().sub(half);
    const x0 = rand([b], { device: x.device }).mul(W).floor().sub(half);
    const s = tensor([size], { device: x.device }).expand(b);
    const apply = rand([b], { device: x.device }).lt(p).view(b, 1, 1, 1);
    return where(boxMask(y0, x0, s, s, b, H, W, x.device).logicalAnd(apply), value, x);
  });
}

/** Options of `colorJitter`: each v draws a factor per image in [max(0, 1 − v), 1 + v]. */
export interface ColorJitterOptions {
  brightness?: number;
  contrast?: number;
  saturation?: number;
}

/** Grayscale (ITU-R 601 luma) of RGB images, [B, 1, H, W]; 1-channel images unchanged. */
function luma(x: Tensor): Tensor {
  if (x.size(1) !== 3) return x.mean(1, true);
  const wts = tensor([0.299, 0.587, 0.114], { shape: [1, 3, 1, 1], device: x.device, dtype: x.dtype });
  return x.mul(wts).sum(1, true);
}

/** Random brightness, contrast and saturation per image (applied in that order), clamped to [0, 1]. */
export function colorJitter(options: ColorJitterOptions = {}): BatchTransform {
  const amt = (v: unknown, name: string) => {
    if (v === undefined) return 0;
    if (typeof v !== 'number' || !(v >= 0)) throw invalidParameterError(name, 'a non-negative number', v);
    return v;
  };
  const bri = amt(options.brightness, 'brightness'), con = amt(options.contrast, 'contrast'), sat = amt(options.saturation, 'saturation');
  const factor = (b: number, v: number, x: Tensor) => uniform(b, Math.max(0, 1 - v), 1 + v, x).view(b, 1, 1, 1);
  return batched('colorJitter', (x, b, c) => {
    let out = x;
    if (bri > 0) out = out.mul(factor(b, bri, x)).clamp(0, 1);
    if (con > 0) {
      const m = luma(out).mean([1, 2, 3], true);
      out = out.sub(m).mul(factor(b, con, x)).add(m).clamp(0, 1);
    }
    if (sat > 0 && c === 3) {
      const g = luma(out);
      out = out.sub(g).mul(factor(b, sat, x)).add(g).clamp(0, 1);
    }
    return out;
  });
}

/** Resizes the batch to `size` ([h, w] or one number); bilinear by default (no antialiasing). */
export function resize(size: number | [number, number], mode: 'bilinear' | 'nearest' | 'bicubic' | 'area' = 'bilinear'): BatchTransform {
  const s = checkSize(size);
  if (!['bilinear', 'nearest', 'bicubic', 'area'].includes(mode)) throw invalidParameterError('mode', "'bilinear', 'nearest', 'bicubic' or 'area'", mode);
  return batched('resize', (x) =>
    F.interpolate(x, { size: s, mode, alignCorners: mode === 'bilinear' || mode === 'bicubic' ? false : undefined }));
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

/** Crops a random window (random area and aspect ratio) per image and resizes it to `size` (bilinear). */
export function randomResizedCrop(size: number | [number, number], options: RandomResizedCropOptions = {}): BatchTransform {
  const [oh, ow] = checkSize(size);
  const scale = range2(options.scale ?? [0.08, 1], 'scale');
  if (scale[1] > 1 || scale[1] <= 0) throw invalidParameterError('scale', '[low, high] within (0, 1]', options.scale);
  const ratio = range2(options.ratio ?? [3 / 4, 4 / 3], 'ratio', Number.MIN_VALUE);
  return batched('randomResizedCrop', (x, b, _c, H, W) => {
    const area = uniform(b, scale[0], scale[1], x).mul(H * W);
    const r = uniform(b, Math.log(ratio[0]), Math.log(ratio[1]), x).exp();
    const wc = area.mul(r).sqrt().clamp(1, W);
    const hc = area.div(r).sqrt().clamp(1, H);
    const y0 = rand([b], { device: x.device }).mul(hc.rsub(H));
    const x0 = rand([b], { device: x.device }).mul(wc.rsub(W));
    return cropResize(x, y0, x0, hc, wc, oh, ow);
  });
}
