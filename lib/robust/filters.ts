/**
 * Linear filters and resampling shared by the corruptions, written to match the reference
 * libraries' border rules: scipy.ndimage / skimage (Gaussian kernels, 'nearest' and 'reflect'
 * borders) and OpenCV (BORDER_REFLECT_101).
 */
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { where } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { conv2d, pad, interpolate } from '../nn/functional';

/** 1-D Gaussian kernel of scipy.ndimage.gaussian_filter: radius int(truncate·σ + 0.5); σ = 0 is the identity [1]. */
export function gaussianKernel1d(sigma: number, truncate = 4): number[] {
  if (sigma <= 0) return [1];
  const radius = Math.floor(truncate * sigma + 0.5);
  const w = [];
  for (let i = -radius; i <= radius; i++) w.push(Math.exp((-0.5 * i * i) / (sigma * sigma)));
  const s = w.reduce((a, b) => a + b, 0);
  return w.map((v) => v / s);
}

/** Correlates every channel with a 2-D kernel (k×k, odd) after padding its borders. */
export function filter2d(x: Tensor, kernel: number[][], mode: 'replicate' | 'reflect'): Tensor {
  return tidy(() => {
    const kh = kernel.length, kw = kernel[0].length;
    const c = x.size(1);
    const [h, w] = [x.size(2), x.size(3)];
    const m = mode === 'reflect' && (h <= (kh - 1) / 2 || w <= (kw - 1) / 2) ? 'replicate' : mode;
    const k = tensor(kernel.flat(), { device: x.device as 'cpu', dtype: x.dtype }).reshape([1, 1, kh, kw]).expand([c, 1, kh, kw]).contiguous();
    const padded = pad(x, [(kw - 1) / 2, (kw - 1) / 2, (kh - 1) / 2, (kh - 1) / 2], m);
    return conv2d(padded, k, null, { groups: c });
  });
}

/** skimage.filters.gaussian(σ) per channel: separable, borders 'nearest'. */
export function gaussianBlur(x: Tensor, sigma: number): Tensor {
  const k = gaussianKernel1d(sigma);
  return tidy(() => filter2d(filter2d(x, [k], 'replicate'), k.map((v) => [v]), 'replicate'));
}

/** Where index i of a length-n axis lands under scipy's 'reflect' border (… b a | a b … y z | z y …), for any i. */
function scipyReflect(i: number, n: number): number {
  const m = ((i % (2 * n)) + 2 * n) % (2 * n);
  return m < n ? m : 2 * n - 1 - m;
}

/**
 * The [n, n] matrix of scipy.ndimage.correlate1d with `kernel` (odd length) under the
 * 'reflect' border, for kernels of any radius (also wider than the signal, where padding
 * would have to reflect more than once): filtering an axis is a product with this matrix.
 */
export function reflectFilterMatrix(n: number, kernel: number[]): number[][] {
  const r = (kernel.length - 1) / 2;
  const m = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) kernel.forEach((v, k) => (m[i][scipyReflect(i + k - r, n)] += v));
  return m;
}

/** Border rules of `sampleBilinear`: scipy's 'reflect' (edge repeated) or OpenCV's BORDER_REFLECT_101 (edge not repeated). */
export type SampleBorder = 'scipyReflect' | 'reflect101';

/** Integer-valued indices i (any range, float64 or int64) mapped into 0…n−1 by a border rule, as int64. */
function borderIndex(i: Tensor, n: number, border: SampleBorder): Tensor {
  return tidy(() => {
    if (n === 1) return i.mul(0).to({ dtype: 'int64' });
    const period = border === 'scipyReflect' ? 2 * n : 2 * n - 2;
    const m = i.remainder(period);
    return where(m.lt(n), m, m.rsub(border === 'scipyReflect' ? 2 * n - 1 : 2 * n - 2)).to({ dtype: 'int64' });
  });
}

/**
 * Bilinear sampling of images x [N, C, H, W] at rows iy + fy and columns ix + fx (each [N, Ho, Wo]:
 * integer parts iy, ix, fractions fy, fx in [0, 1)); neighbours outside the image are
 * reflected by `border` one index at a time, as scipy.ndimage.map_coordinates (order 1) and
 * OpenCV's remap do. Returns [N, C, Ho, Wo] in x's dtype.
 */
export function sampleBilinear(x: Tensor, iy: Tensor, ix: Tensor, fy: Tensor, fx: Tensor, border: SampleBorder): Tensor {
  return tidy(() => {
    const [n, c, h, w] = x.shape;
    const [ho, wo] = [iy.size(1), iy.size(2)];
    const flat = x.flatten(2);
    const rows = [borderIndex(iy, h, border), borderIndex(iy.add(1), h, border)];
    const cols = [borderIndex(ix, w, border), borderIndex(ix.add(1), w, border)];
    const at = (r: Tensor, col: Tensor) => flat.gather(2, r.mul(w).add(col).reshape([n, 1, ho * wo]).expand([n, c, ho * wo]).contiguous()).reshape([n, c, ho, wo]);
    const wy = fy.to({ dtype: x.dtype }).unsqueeze(1), wx = fx.to({ dtype: x.dtype }).unsqueeze(1);
    const [top, bottom] = rows.map((r) => at(r, cols[0]).mul(wx.rsub(1)).add(at(r, cols[1]).mul(wx)));
    return top.mul(wy.rsub(1)).add(bottom.mul(wy));
  });
}

/** Python's round(): halves to even. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** CIFAR-10-C's clipped_zoom: the centre crop of 1/z of the image, zoomed back (scipy.ndimage.zoom, order 1) and trimmed. */
export function clippedZoom(x: Tensor, z: number): Tensor {
  return tidy(() => {
    const [h, w] = [x.size(2), x.size(3)];
    const ch = Math.ceil(h / z), cw = Math.ceil(w / z);
    const top = Math.floor((h - ch) / 2), left = Math.floor((w - cw) / 2);
    const crop = x.narrow(2, top, ch).narrow(3, left, cw);
    const oh = roundHalfEven(ch * z), ow = roundHalfEven(cw * z);
    const zoomed = interpolate(crop, { size: [oh, ow], mode: 'bilinear', alignCorners: true });
    const th = Math.floor((oh - h) / 2), tw = Math.floor((ow - w) / 2);
    return zoomed.narrow(2, th, h).narrow(3, tw, w);
  });
}
