/**
 * Heat maps of attributions, as Captum's `visualize_image_attr` draws them: channels summed, one
 * sign kept, scaled per image by the value below which (100 − outlierPercent)% of the attribution
 * mass lies and clipped, then coloured through a 256-entry colormap (a lookup-table tensor and
 * `indexSelect`: no per-pixel JS), optionally alpha-blended over the image, and written as PNG by sharp.
 */
import sharp from 'sharp';
import * as fs from 'fs';
import * as path from 'path';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { interpolate } from '../nn/functional';
import { COLORMAP_HEX, COLORMAP_NAMES, ColormapName } from './colormaps';

export { COLORMAP_NAMES, ColormapName } from './colormaps';

/** Which attributions are drawn: |a| ('absolute'), a > 0, a < 0 (as magnitudes), or signed ('all'). */
export type Sign = 'absolute' | 'positive' | 'negative' | 'all';

/** Options of `heatmap` and friends. */
export interface HeatmapOptions {
  /** default 'absolute' (Captum's 'absolute_value') */
  sign?: Sign;
  /** default 'inferno'; 'RdBu_r' (blue negative, white zero, red positive) for sign 'all' */
  colormap?: ColormapName;
  /** attribution mass treated as outliers and clipped to full colour, in percent (Captum's outlier_perc; default 2) */
  outlierPercent?: number;
  /** how channels are combined: summed (default, as Captum) or their L2 norm */
  channelReduction?: 'sum' | 'l2';
  /** draw over this image: [C, H, W] or [N, C, H, W], C 1 or 3, uint8 (0–255) or floating (0–1) */
  image?: Tensor;
  /** opacity of the heat map over the image (default 0.5, Captum's alpha_overlay) */
  alpha?: number;
  /** output [height, width] or one side of a square (default: the image's size, else the attribution's) */
  size?: number | [number, number];
  /** how the map (and image) are resized to `size` (default 'bilinear') */
  interpolation?: 'bilinear' | 'nearest';
}

const SIGNS: Sign[] = ['absolute', 'positive', 'negative', 'all'];
const luts = new Map<ColormapName, Float32Array>();

/** A colormap's lookup table as a float32 tensor [256, 3] of 0–255 values. */
export function colormapTable(name: ColormapName): Tensor {
  if (typeof name !== 'string' || !(COLORMAP_NAMES as readonly string[]).includes(name)) throw invalidParameterError('colormap', COLORMAP_NAMES.map((c) => `'${c}'`).join(', '), name);
  let lut = luts.get(name);
  if (!lut) {
    lut = Float32Array.from(Buffer.from(COLORMAP_HEX[name], 'hex'));
    luts.set(name, lut);
  }
  return tensor(lut, { shape: [256, 3] });
}

/** Attributions as a batch [N, C, H, W] (accepts [H, W] and [C, H, W]). */
function asBatch(a: Tensor, name: string): Tensor {
  if (a.ndim === 2) return a.unsqueeze(0).unsqueeze(0);
  if (a.ndim === 3) return a.unsqueeze(0);
  if (a.ndim === 4) return a.view(a.shape);
  throw new KilnError(`${name} must be [H, W], [C, H, W] or [N, C, H, W], got shape [${a.shape.join(', ')}]`, 'INVALID_ARGUMENT');
}

/**
 * Captum's `_cumulative_sum_threshold` per row of non-negative `v` [N, P]: the smallest sorted
 * value at which the running sum reaches `percentile`% of the row's total. Returns [N, 1].
 */
export function cumulativeSumThreshold(v: Tensor, percentile: number): Tensor {
  return tidy(() => {
    const { values } = v.sort(1);
    const cs = values.cumsum(1);
    const below = cs.lt(cs.narrow(1, v.size(1) - 1, 1).mul(percentile / 100));
    const id = below.sum(1, true).clamp(null, v.size(1) - 1).to({ dtype: 'int64' });
    return values.gather(1, id);
  });
}

/**
 * Attributions reduced over channels and scaled as Captum's `_normalize_attr`: [N, H, W] in [0, 1]
 * (or [−1, 1] for sign 'all'). An all-zero map stays zero.
 */
export function normalizeAttribution(attr: Tensor, o: Pick<HeatmapOptions, 'sign' | 'outlierPercent' | 'channelReduction'> = {}): Tensor {
  idOf(attr, 'attributions');
  const sign = o.sign ?? 'absolute';
  if (!SIGNS.includes(sign)) throw invalidParameterError('sign', "'absolute', 'positive', 'negative' or 'all'", o.sign);
  const outlier = o.outlierPercent ?? 2;
  if (typeof outlier !== 'number' || !(outlier >= 0 && outlier < 100)) throw invalidParameterError('outlierPercent', 'a number in [0, 100)', o.outlierPercent);
  const red = o.channelReduction ?? 'sum';
  if (red !== 'sum' && red !== 'l2') throw invalidParameterError('channelReduction', "'sum' or 'l2'", o.channelReduction);
  return tidy(() => noGrad(() => {
    const a = asBatch(attr, 'attributions');
    if (a.numel === 0) throw new KilnError(`attributions are empty (shape [${attr.shape.join(', ')}])`, 'INVALID_ARGUMENT');
    const bad = a.isfinite().all().logicalNot().item();
    if (bad) throw new KilnError('attributions contain NaN or infinite values: nothing sensible can be drawn', 'INVALID_ARGUMENT');
    const af = a.to({ dtype: a.dtype === 'float64' ? 'float64' : 'float32' });
    const combined = red === 'sum' ? af.sum(1) : af.square().sum(1).sqrt(); // [N, H, W]
    const [n, h, w] = combined.shape;
    const flat = combined.reshape([n, h * w]);
    const mag = sign === 'all' || sign === 'absolute' ? flat.abs() : sign === 'positive' ? flat.relu() : flat.clamp(null, 0).abs();
    const thr = cumulativeSumThreshold(mag, 100 - outlier).clamp(1e-30, null);
    const shown = sign === 'all' ? flat : mag;
    return shown.div(thr).clamp(sign === 'all' ? -1 : 0, 1).reshape([n, h, w]);
  }));
}

function outSize(size: unknown, fallback: [number, number]): [number, number] {
  if (size === undefined) return fallback;
  const s = typeof size === 'number' ? [size, size] : size;
  if (!Array.isArray(s) || s.length !== 2 || !s.every((v) => Number.isInteger(v) && v > 0)) throw invalidParameterError('size', 'a positive integer or [height, width]', size);
  return s as [number, number];
}

/** The overlay image as float RGB 0–255 [N, 3, H, W], checked against the attributions' batch size. */
function imageRgb(img: Tensor, n: number): Tensor {
  idOf(img, 'image');
  if (img.ndim !== 3 && img.ndim !== 4) throw new KilnError(`image must be [C, H, W] or [N, C, H, W], got shape [${img.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  const b = img.ndim === 3 ? img.unsqueeze(0) : img.view(img.shape);
  const c = b.size(1);
  if (c !== 1 && c !== 3) throw new KilnError(`image must have 1 or 3 channels (planar [C, H, W]), got ${c} (shape [${img.shape.join(', ')}])`, 'INVALID_ARGUMENT');
  if (b.size(0) !== n && b.size(0) !== 1) throw new KilnError(`image batch of ${b.size(0)} does not match ${n} attribution maps`, 'INVALID_ARGUMENT');
  let f: Tensor;
  if (img.dtype === 'uint8') f = b.float();
  else if (img.dtype === 'float32' || img.dtype === 'float64' || img.dtype === 'float16' || img.dtype === 'bfloat16') {
    f = b.float();
    const lo = f.amin([0, 1, 2, 3]).item(), hi = f.amax([0, 1, 2, 3]).item();
    if (!(lo >= 0 && hi <= 1)) throw new KilnError(`a floating-point image must hold values in [0, 1], got [${lo}, ${hi}] (pass the image before normalisation)`, 'INVALID_ARGUMENT');
    f = f.mul(255);
  } else throw new KilnError(`image must be uint8 or floating-point, got ${img.dtype}`, 'INVALID_ARGUMENT');
  return (c === 1 ? f.expand([f.size(0), 3, f.size(2), f.size(3)]) : f).expand([n, 3, f.size(2), f.size(3)]);
}

/**
 * The heat map as pixels: uint8 [N, H, W, 3] (RGB, on the CPU). Pure tensor maths: normalisation
 * (`normalizeAttribution`), resizing, a colormap lookup and alpha blending over `image`:
 * out = round((1 − alpha) · image + alpha · colour).
 */
export function heatmapPixels(attr: Tensor, o: HeatmapOptions = {}): Tensor {
  if (o === null || typeof o !== 'object') throw invalidParameterError('options', 'an object', o);
  const sign = o.sign ?? 'absolute';
  const cmap = o.colormap ?? (sign === 'all' ? 'RdBu_r' : 'inferno');
  const alpha = o.alpha ?? 0.5;
  if (typeof alpha !== 'number' || !(alpha >= 0 && alpha <= 1)) throw invalidParameterError('alpha', 'a number in [0, 1]', o.alpha);
  const mode = o.interpolation ?? 'bilinear';
  if (mode !== 'bilinear' && mode !== 'nearest') throw invalidParameterError('interpolation', "'bilinear' or 'nearest'", o.interpolation);
  return tidy(() => noGrad(() => {
    const lut = colormapTable(cmap);
    const norm = normalizeAttribution(attr, o).to({ dtype: 'float32', device: 'cpu' }); // [N, h, w]
    const [n, h, w] = norm.shape;
    const img = o.image === undefined ? null : imageRgb(o.image.to({ device: 'cpu' }), n);
    const [H, W] = outSize(o.size, img ? [img.size(2), img.size(3)] : [h, w]);
    const resize = (t: Tensor) => (t.size(2) === H && t.size(3) === W ? t : interpolate(t, { size: [H, W], mode, alignCorners: mode === 'bilinear' ? false : undefined }));
    const v = resize(norm.unsqueeze(1)).squeeze(1); // [N, H, W]
    const unit = sign === 'all' ? v.add(1).div(2) : v;
    // matplotlib's lookup: entry floor(t · 256), the top value in the last entry
    const idx = unit.mul(256).floor().clamp(0, 255).to({ dtype: 'int64' }).flatten();
    let rgb = lut.indexSelect(0, idx).reshape([n, H, W, 3]);
    if (img) rgb = resize(img).permute(0, 2, 3, 1).mul(1 - alpha).add(rgb.mul(alpha));
    return rgb.round().clamp(0, 255).to({ dtype: 'uint8' }).contiguous();
  }));
}

/** PNG bytes of one image's pixels, uint8 [H, W, 3] (or [1, H, W, 3]). */
export async function encodePng(pixels: Tensor): Promise<Buffer> {
  idOf(pixels, 'pixels');
  const p = pixels.ndim === 4 && pixels.size(0) === 1 ? pixels.select(0, 0) : pixels;
  try {
    if (p.ndim !== 3 || p.size(2) !== 3 || p.dtype !== 'uint8') throw new KilnError(`pixels must be uint8 [H, W, 3], got ${pixels.dtype} [${pixels.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    const data = tidy(() => p.cpu().contiguous().dataSync()) as Uint8Array;
    return await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width: p.size(1), height: p.size(0), channels: 3 } }).png().toBuffer();
  } finally {
    if (p !== pixels) p.dispose();
  }
}

/** Heat maps of a batch of attributions [N, C, H, W] as PNG bytes, one per image. */
export async function heatmaps(attr: Tensor, o: HeatmapOptions = {}): Promise<Buffer[]> {
  const px = heatmapPixels(attr, o);
  try {
    const out: Buffer[] = [];
    for (let i = 0; i < px.size(0); i++) {
      const one = px.select(0, i);
      try {
        out.push(await encodePng(one));
      } finally {
        one.dispose();
      }
    }
    return out;
  } finally {
    px.dispose();
  }
}

/** The heat map of one image's attributions ([H, W], [C, H, W] or [1, C, H, W]) as PNG bytes. */
export async function heatmap(attr: Tensor, o: HeatmapOptions = {}): Promise<Buffer> {
  idOf(attr, 'attributions');
  if (attr.ndim === 4 && attr.size(0) !== 1) throw new KilnError(`heatmap draws one image; got a batch of ${attr.size(0)} (use heatmaps)`, 'INVALID_ARGUMENT');
  return (await heatmaps(attr, o))[0];
}

/** Writes `heatmap(attr, o)` to a PNG file (through a temporary file, then renamed). */
export async function saveHeatmap(attr: Tensor, file: string, o: HeatmapOptions = {}): Promise<void> {
  if (typeof file !== 'string' || file === '') throw invalidParameterError('file', 'a .png path', file);
  const png = await heatmap(attr, o);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}.png`;
  fs.writeFileSync(tmp, png);
  fs.renameSync(tmp, file);
}
