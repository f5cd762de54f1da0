/** Flips, crops, translations and erasing (cutout, random erasing), per image in a batch. */
import { KilnError, invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { tensor, rand, randint, arange } from '../../tensor/creation';
import { where } from '../../tensor/ops';
import * as F from '../../nn/functional';
import { checkSize } from '../decode';
import { BatchTransform, augmentation, batched, probability, range2, nonNegInt, uniform } from './base';

/** Flips each image left–right with probability p. */
export function randomHorizontalFlip(p = 0.5): BatchTransform {
  probability(p);
  return augmentation(batched('randomHorizontalFlip', (x, b) => where(rand([b], { device: x.device }).lt(p).view(b, 1, 1, 1), x.flip(3), x)), null);
}

/** Flips each image upside down with probability p. */
export function randomVerticalFlip(p = 0.5): BatchTransform {
  probability(p);
  return augmentation(batched('randomVerticalFlip', (x, b) => where(rand([b], { device: x.device }).lt(p).view(b, 1, 1, 1), x.flip(2), x)), null);
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

/** Checked padding and crop settings shared by randomCrop and centerCrop. */
function cropSettings(size: number | [number, number], options: RandomCropOptions) {
  const [h, w] = checkSize(size);
  const pad = options.padding ?? 0;
  const [pv, ph] = typeof pad === 'number' ? [pad, pad] : Array.isArray(pad) && pad.length === 2 ? pad : [NaN, NaN];
  nonNegInt(pv, 'padding');
  nonNegInt(ph, 'padding');
  const mode = options.padMode ?? 'constant';
  if (!['constant', 'reflect', 'replicate'].includes(mode)) throw invalidParameterError('padMode', "'constant', 'reflect' or 'replicate'", mode);
  const fill = options.fill ?? 0;
  if (typeof fill !== 'number') throw invalidParameterError('fill', 'a number', fill);
  return { h, w, pv, ph, mode, fill };
}

/** A crop transform: pads, then crops at offsets from `offsets(b, Hp, Wp)` (int64 [B] each). */
function padCrop(name: string, o: ReturnType<typeof cropSettings>, offsets: (b: number, maxY: number, maxX: number, dev: string) => [Tensor, Tensor]): BatchTransform {
  const { h, w, pv, ph, mode, fill } = o;
  return batched(name, (x, b, _c, H, W) => {
    if (mode === 'reflect' && (pv >= H || ph >= W)) throw new KilnError(`${name}: reflect padding (${pv}, ${ph}) must be smaller than the image (${H}×${W})`, 'INVALID_ARGUMENT');
    const xp = pv > 0 || ph > 0 ? F.pad(x, [ph, ph, pv, pv], mode, fill) : x;
    const Hp = H + 2 * pv, Wp = W + 2 * ph;
    if (h > Hp || w > Wp) throw new KilnError(`${name}: crop ${h}×${w} is larger than the padded image ${Hp}×${Wp}`, 'INVALID_ARGUMENT');
    const [oy, ox] = offsets(b, Hp - h, Wp - w, x.device);
    return cropAt(xp, oy, ox, h, w);
  });
}

/** Pads (optionally), then crops the centre of each image to `size` ([h, w] or one number), as torchvision's CenterCrop. */
export function centerCrop(size: number | [number, number], options: RandomCropOptions = {}): BatchTransform {
  return padCrop('centerCrop', cropSettings(size, options), (b, my, mx, dev) => [
    tensor([Math.floor(my / 2)], { dtype: 'int64', device: dev as 'cpu' }).expand(b),
    tensor([Math.floor(mx / 2)], { dtype: 'int64', device: dev as 'cpu' }).expand(b),
  ]);
}

/** Pads, then crops each image at a random position to `size` ([h, w] or one number); for evaluation, the centre. */
export function randomCrop(size: number | [number, number], options: RandomCropOptions = {}): BatchTransform {
  const o = cropSettings(size, options);
  const random = padCrop('randomCrop', o, (b, my, mx, dev) => [
    randint(0, my + 1, [b], { device: dev as 'cpu' }),
    randint(0, mx + 1, [b], { device: dev as 'cpu' }),
  ]);
  return augmentation(random, centerCrop(size, options));
}

/** Shifts each image by a random whole number of pixels in [-px, px] (a number or [vertical, horizontal]), filling with `fill`. */
export function randomTranslate(px: number | [number, number], fill = 0): BatchTransform {
  const [pv, ph] = typeof px === 'number' ? [px, px] : Array.isArray(px) && px.length === 2 ? px : [NaN, NaN];
  nonNegInt(pv, 'px');
  nonNegInt(ph, 'px');
  const inner = (h: number, w: number) => randomCrop([h, w], { padding: [pv, ph], padMode: 'constant', fill });
  return augmentation(batched('randomTranslate', (x, _b, _c, H, W) => inner(H, W)(x)), null);
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
  return augmentation(batched('randomErasing', (x, b, _c, H, W) => {
    const area = uniform(b, scale[0], scale[1], x).mul(H * W);
    const r = uniform(b, Math.log(ratio[0]), Math.log(ratio[1]), x).exp();
    const bh = area.mul(r).sqrt().round().clamp(1, H);
    const bw = area.div(r).sqrt().round().clamp(1, W);
    const y0 = rand([b], { device: x.device }).mul(bh.rsub(H + 1)).floor();
    const x0 = rand([b], { device: x.device }).mul(bw.rsub(W + 1)).floor();
    const apply = rand([b], { device: x.device }).lt(p).view(b, 1, 1, 1);
    return where(boxMask(y0, x0, bh, bw, b, H, W, x.device).logicalAnd(apply), value, x);
  }), null);
}

/** Cutout (DeVries & Taylor): a size×size square at a random centre per image, clipped at the borders, set to `value`. */
export function cutout(size: number, options: { p?: number; value?: number } = {}): BatchTransform {
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 1) throw invalidParameterError('size', 'a positive integer', size);
  const p = probability(options.p ?? 1);
  const value = options.value ?? 0;
  if (typeof value !== 'number') throw invalidParameterError('value', 'a number', value);
  return augmentation(batched('cutout', (x, b, _c, H, W) => {
    const half = Math.floor(size / 2);
    const y0 = rand([b], { device: x.device }).mul(H).floor().sub(half);
    const x0 = rand([b], { device: x.device }).mul(W).floor().sub(half);
    const s = tensor([size], { device: x.device }).expand(b);
    const apply = rand([b], { device: x.device }).lt(p).view(b, 1, 1, 1);
    return where(boxMask(y0, x0, s, s, b, H, W, x.device).logicalAnd(apply), value, x);
  }), null);
}
