/**
 * Common corruptions (Hendrycks & Dietterich 2019, "CIFAR-10-C"): eighteen of its nineteen
 * corruptions (the fifteen of the benchmark plus its extras speckle noise, Gaussian blur, spatter and
 * saturation) at its five severities, as tensor ops on pixel batches [N, C, H, W] in [0, 1].
 * Severity parameters are CIFAR-10-C's (set for 32×32 images).
 * Deterministic ones follow the reference implementation's maths (skimage / OpenCV / scipy / PIL),
 * checked against it in test/45. Random ones draw from libtorch's generator (seedable), not
 * NumPy's, so they match the reference in distribution, not sample by sample; glass blur, motion
 * blur, elastic transform, fog (corruptions-random.ts), spatter (corruptions-spatter.ts, with
 * OpenCV's steps ported in opencv.ts) and snow (corruptions-snow.ts) have deterministic cores that
 * test/45 feeds the reference's own NumPy draws. Motion blur, and the blur of snow's flakes, is the
 * imagecorruptions package's NumPy version of the ImageMagick blur that make_cifar_c.py calls
 * through Wand. Not included: frost (needs the reference's frost photographs, which Kiln does not
 * ship).
 */
import sharp from 'sharp';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor, randn, rand } from '../tensor/creation';
import { withSeed } from './runs';
import { stack, where } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { rgbToHsv, hsvToRgb } from '../data/transforms/color';
import { checkImages } from './domain';
import { filter2d, gaussianBlur, clippedZoom } from './filters';
import { draw, glassBlur, motionBlur, elasticTransform, fog } from './corruptions-random';
import { spatter } from './corruptions-spatter';
import { snow } from './corruptions-snow';

/** The corruptions `corrupt` knows, by family: noise, blur, weather, digital. */
export const CORRUPTIONS = [
  'gaussianNoise', 'shotNoise', 'impulseNoise', 'speckleNoise',
  'gaussianBlur', 'defocusBlur', 'zoomBlur', 'glassBlur', 'motionBlur',
  'brightness', 'fog', 'snow',
  'contrast', 'saturate', 'pixelate', 'jpegCompression', 'elasticTransform', 'spatter',
] as const;

/** A corruption's family, as in CIFAR-10-C. */
export type CorruptionFamily = 'noise' | 'blur' | 'weather' | 'digital';

/** A corruption's name. */
export type CorruptionName = (typeof CORRUPTIONS)[number];

/** CIFAR-10-C's parameters per severity 1…5. */
const SEVERITY = {
  gaussianNoise: [0.04, 0.06, 0.08, 0.09, 0.1],
  shotNoise: [500, 250, 100, 75, 50],
  impulseNoise: [0.01, 0.02, 0.03, 0.05, 0.07],
  speckleNoise: [0.06, 0.1, 0.12, 0.16, 0.2],
  gaussianBlur: [0.4, 0.6, 0.7, 0.8, 1],
  /** σ, iterations (maximal shift 1 at every severity) */
  glassBlur: [[0.05, 1], [0.25, 1], [0.4, 1], [0.25, 2], [0.4, 2]],
  /** radius, σ of ImageMagick's motion blur */
  motionBlur: [[6, 1], [6, 1.5], [6, 2], [8, 2], [9, 2.5]],
  /** α, σ of the displacement field, range of the affine offsets: make_cifar_c.py's IMSIZE (32) × these */
  elasticTransform: [[32 * 0, 32 * 0, 32 * 0.08], [32 * 0.05, 32 * 0.2, 32 * 0.07], [32 * 0.08, 32 * 0.06, 32 * 0.06], [32 * 0.1, 32 * 0.04, 32 * 0.05], [32 * 0.1, 32 * 0.03, 32 * 0.03]],
  /** mean, std of the flakes' normal draws, zoom, threshold, motion-blur radius, σ, share of the image kept unwhitened */
  snow: [[0.1, 0.2, 1, 0.6, 8, 3, 0.95], [0.1, 0.2, 1, 0.5, 10, 4, 0.9], [0.15, 0.3, 1.75, 0.55, 10, 4, 0.9], [0.25, 0.3, 2.25, 0.6, 12, 6, 0.85], [0.3, 0.3, 1.25, 0.65, 14, 12, 0.8]],
  /** mean, std of the liquid's normal draws, its blur σ, threshold, strength, mud (1) or water (0) */
  spatter: [[0.62, 0.1, 0.7, 0.7, 0.5, 0], [0.65, 0.1, 0.8, 0.7, 0.5, 0], [0.65, 0.3, 1, 0.69, 0.5, 0], [0.65, 0.1, 0.7, 0.69, 0.6, 1], [0.65, 0.1, 0.5, 0.68, 0.6, 1]],
  /** strength, wibble decay of the plasma fractal */
  fog: [[0.2, 3], [0.5, 3], [0.75, 2.5], [1, 2], [1.5, 1.75]],
  defocusBlur: [[0.3, 0.4], [0.4, 0.5], [0.5, 0.6], [1, 0.2], [1.5, 0.1]],
  zoomBlur: [[1, 1.06, 0.01], [1, 1.11, 0.01], [1, 1.16, 0.01], [1, 1.21, 0.01], [1, 1.26, 0.01]],
  contrast: [0.75, 0.5, 0.4, 0.3, 0.15],
  brightness: [0.05, 0.1, 0.15, 0.2, 0.3],
  saturate: [[0.3, 0], [0.1, 0], [1.5, 0], [2, 0.1], [2.5, 0.2]],
  pixelate: [0.95, 0.9, 0.85, 0.75, 0.65],
  jpegCompression: [80, 65, 58, 50, 40],
} as const;

/** Options of `corrupt`. */
export interface CorruptOptions {
  /** seeds the random corruptions (the CPU and CUDA generators are restored afterwards); random draws then come from the CPU generator, so they are the same on every device */
  seed?: number;
}

/** Uniform or normal noise shaped like x, from the CPU generator when seeded (device-independent). */
function noise(x: Tensor, kind: 'rand' | 'randn', seeded: boolean): Tensor {
  const make = kind === 'rand' ? rand : randn;
  return draw(x, seeded, (o) => make(x.shape, { ...o, dtype: x.dtype }));
}

/** cv2.getGaussianKernel(3, σ). */
function cvGaussian3(sigma: number): number[] {
  const w = [-1, 0, 1].map((i) => Math.exp((-i * i) / (2 * sigma * sigma)));
  const s = w[0] + w[1] + w[2];
  return w.map((v) => v / s);
}

/** CIFAR-10-C's anti-aliased disk kernel: a disk of `radius` on a 17×17 grid, blurred by cv2.GaussianBlur(3×3, aliasBlur). */
export function diskKernel(radius: number, aliasBlur: number): number[][] {
  const L = radius <= 8 ? 8 : Math.ceil(radius);
  const n = 2 * L + 1;
  const disk: number[][] = [];
  let sum = 0;
  for (let i = 0; i < n; i++) {
    disk.push([]);
    for (let j = 0; j < n; j++) {
      const v = (i - L) ** 2 + (j - L) ** 2 <= radius * radius ? 1 : 0;
      disk[i].push(v);
      sum += v;
    }
  }
  // cv2.GaussianBlur: separable, BORDER_REFLECT_101 (index −1 → 1, n → n − 2)
  const g = cvGaussian3(aliasBlur);
  const at = (a: number[][], i: number, j: number) => a[i < 0 ? -i : i >= n ? 2 * n - 2 - i : i][j < 0 ? -j : j >= n ? 2 * n - 2 - j : j] / sum;
  const rows = disk.map((_, i) => disk[i].map((__, j) => g[0] * at(disk, i, j - 1) + g[1] * at(disk, i, j) + g[2] * at(disk, i, j + 1)));
  const at2 = (i: number, j: number) => rows[i < 0 ? -i : i >= n ? 2 * n - 2 - i : i][j];
  return rows.map((_, i) => rows[i].map((__, j) => g[0] * at2(i - 1, j) + g[1] * at2(i, j) + g[2] * at2(i + 1, j)));
}

/** numpy.arange(start, stop, step) (same length rule). */
function arange(start: number, stop: number, step: number): number[] {
  const n = Math.ceil((stop - start) / step);
  return [...Array(n).keys()].map((i) => start + i * step);
}

/** PIL's BOX resampling weights as a matrix [out, in] (Image.resize(…, Image.BOX)). */
export function boxWeights(inSize: number, outSize: number): number[][] {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 0.5 * filterscale;
  const m: number[][] = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize);
    const row = new Array(inSize).fill(0);
    let total = 0;
    for (let i = xmin; i < xmax; i++) {
      const t = (i - center + 0.5) / filterscale;
      const v = t >= -0.5 && t < 0.5 ? 1 : 0;
      row[i] = v;
      total += v;
    }
    m.push(total > 0 ? row.map((v) => v / total) : row);
  }
  return m;
}

/** Resizes along H and W with PIL's BOX filter (as float maths, without PIL's 8-bit rounding). */
function boxResize(x: Tensor, oh: number, ow: number): Tensor {
  return tidy(() => {
    const opts = { device: x.device as 'cpu', dtype: x.dtype };
    const mh = tensor(boxWeights(x.size(2), oh), opts);
    const mw = tensor(boxWeights(x.size(3), ow), opts);
    return mh.matmul(x).matmul(mw.t());
  });
}

/** Re-encodes every image as JPEG at `quality` with sharp (libjpeg-turbo, 4:2:0) and decodes it. */
async function jpeg(x: Tensor, quality: number): Promise<Tensor> {
  const [n, c, h, w] = x.shape;
  const bytes = tidy(() => x.detach().mul(255).round().clamp(0, 255).to({ dtype: 'uint8' }).permute([0, 2, 3, 1]).contiguous().cpu());
  const data = bytes.dataSync() as Uint8Array;
  bytes.dispose();
  const size = h * w * c;
  const out = await Promise.all([...Array(n).keys()].map(async (i) => {
    const raw = { width: w, height: h, channels: c as 1 | 3 };
    const encoded = await sharp(Buffer.from(data.buffer, data.byteOffset + i * size, size), { raw }).jpeg({ quality }).toBuffer();
    const img = sharp(encoded);
    const decoded = await (c === 1 ? img.toColourspace('b-w') : img).raw().toBuffer();
    if (decoded.length !== size) throw new KilnError(`jpegCompression: sharp returned ${decoded.length} bytes for a ${c}×${h}×${w} image`, 'NATIVE');
    return decoded;
  }));
  return tidy(() => {
    const all = tensor(new Uint8Array(Buffer.concat(out)), { shape: [n, h, w, c] });
    return all.permute([0, 3, 1, 2]).to({ dtype: x.dtype, device: x.device as 'cpu' }).div(255);
  });
}

function hsvAdjust(x: Tensor, fn: (h: Tensor, s: Tensor, v: Tensor) => [Tensor, Tensor, Tensor]): Tensor {
  return tidy(() => {
    const [h, s, v] = rgbToHsv(x).unbind(1);
    return hsvToRgb(stack(fn(h, s, v), 1));
  });
}

/** Applies one synchronous corruption to pixels p. */
function apply(name: CorruptionName, p: Tensor, k: number, seeded: boolean): Tensor {
  const rgb = p.size(1) === 3;
  switch (name) {
    case 'gaussianNoise':
      return p.add(noise(p, 'randn', seeded).mul(SEVERITY.gaussianNoise[k]));
    case 'shotNoise': {
      const c = SEVERITY.shotNoise[k];
      const lam = p.mul(c).clamp(0);
      const cpu = seeded && p.device !== 'cpu' ? lam.cpu() : lam;
      const draws = cpu.poisson();
      return (draws.device === p.device ? draws : draws.to({ device: p.device })).div(c);
    }
    case 'impulseNoise': {
      const flipped = noise(p, 'rand', seeded).le(SEVERITY.impulseNoise[k]);
      const salt = noise(p, 'rand', seeded).le(0.5);
      return where(flipped, where(salt, 1, 0).to({ dtype: p.dtype }), p);
    }
    case 'speckleNoise':
      return p.add(p.mul(noise(p, 'randn', seeded)).mul(SEVERITY.speckleNoise[k]));
    case 'gaussianBlur':
      return gaussianBlur(p, SEVERITY.gaussianBlur[k]);
    case 'defocusBlur': {
      const [radius, alias] = SEVERITY.defocusBlur[k];
      return filter2d(p, diskKernel(radius, alias), 'reflect');
    }
    case 'glassBlur': {
      const [sigma, iterations] = SEVERITY.glassBlur[k];
      return glassBlur(p, sigma, iterations, seeded);
    }
    case 'motionBlur': {
      const [radius, sigma] = SEVERITY.motionBlur[k];
      return motionBlur(p, radius, sigma, seeded);
    }
    case 'elasticTransform': {
      const [alpha, sigma, affine] = SEVERITY.elasticTransform[k];
      return elasticTransform(p, alpha, sigma, affine, seeded);
    }
    case 'fog': {
      const [c, decay] = SEVERITY.fog[k];
      return fog(p, c, decay, seeded);
    }
    case 'snow':
      return snow(p, SEVERITY.snow[k], seeded);
    case 'spatter':
      return spatter(p, SEVERITY.spatter[k], seeded);
    case 'zoomBlur': {
      const [a, b, s] = SEVERITY.zoomBlur[k];
      const zooms = arange(a, b, s);
      let acc = p;
      for (const z of zooms) acc = acc.add(clippedZoom(p, z));
      return acc.div(zooms.length + 1);
    }
    case 'contrast': {
      const means = p.mean([2, 3], true);
      return p.sub(means).mul(SEVERITY.contrast[k]).add(means);
    }
    case 'brightness':
      return rgb ? hsvAdjust(p, (h, s, v) => [h, s, v.add(SEVERITY.brightness[k]).clamp(0, 1)]) : p.add(SEVERITY.brightness[k]);
    case 'saturate': {
      const [a, b] = SEVERITY.saturate[k];
      return rgb ? hsvAdjust(p, (h, s, v) => [h, s.mul(a).add(b).clamp(0, 1), v]) : p.clone();
    }
    case 'pixelate': {
      const c = SEVERITY.pixelate[k];
      const [h, w] = [p.size(2), p.size(3)];
      const small = boxResize(p, Math.max(1, Math.trunc(h * c)), Math.max(1, Math.trunc(w * c)));
      return boxResize(small, h, w);
    }
    default:
      throw new KilnError(`corrupt: '${name}' is asynchronous`, 'NATIVE');
  }
}

/**
 * Corrupts pixel images x [N, C, H, W] (values in [0, 1], C = 1 or 3) with a CIFAR-10-C
 * corruption at `severity` 1…5; returns a new tensor on x's device, clipped to [0, 1].
 * Async because `jpegCompression` encodes with sharp; the others run synchronously inside.
 */
export async function corrupt(x: Tensor, name: CorruptionName, severity: number, options: CorruptOptions = {}): Promise<Tensor> {
  checkImages(x, 'corrupt: x');
  if (!CORRUPTIONS.includes(name)) throw invalidParameterError('corrupt: name', `one of ${CORRUPTIONS.join(', ')}`, name);
  if (!Number.isInteger(severity) || severity < 1 || severity > 5) throw invalidParameterError('corrupt: severity', 'an integer 1…5', severity);
  if (x.size(1) !== 1 && x.size(1) !== 3) throw new KilnError(`corrupt: x must have 1 or 3 channels, got ${x.size(1)}`, 'INVALID_ARGUMENT');
  if (options === null || typeof options !== 'object') throw invalidParameterError('corrupt: options', 'an object', options);
  if (options.seed !== undefined && (!Number.isInteger(options.seed) || options.seed < 0)) throw invalidParameterError('corrupt: seed', 'a non-negative integer', options.seed);
  const range = noGrad(() => tidy(() => [x.min().item(), x.max().item()]));
  if (!(range[0] >= -1e-6 && range[1] <= 1 + 1e-6)) throw new KilnError(`corrupt: x must hold pixels in [0, 1], got values in [${range[0]}, ${range[1]}] (undo the normalisation first)`, 'INVALID_ARGUMENT');
  return corruptPixels(x, name, severity, options.seed);
}

/** `corrupt` for arguments already checked (pixels known to lie in [0, 1]): no validation, no readback. */
export async function corruptPixels(x: Tensor, name: CorruptionName, severity: number, seed?: number): Promise<Tensor> {
  if (name === 'jpegCompression') return jpeg(x, SEVERITY.jpegCompression[severity - 1]);
  const seeded = seed !== undefined;
  return withSeed(seed, () => noGrad(() => tidy(() => apply(name, x.detach(), severity - 1, seeded).clamp(0, 1))));
}

const FAMILIES: Record<CorruptionName, CorruptionFamily> = {
  gaussianNoise: 'noise', shotNoise: 'noise', impulseNoise: 'noise', speckleNoise: 'noise',
  gaussianBlur: 'blur', defocusBlur: 'blur', zoomBlur: 'blur', glassBlur: 'blur', motionBlur: 'blur',
  brightness: 'weather', fog: 'weather', snow: 'weather',
  // spatter is one of the reference's four extras (released apart as 'extra'); filed with the digital ones
  contrast: 'digital', saturate: 'digital', pixelate: 'digital', jpegCompression: 'digital', elasticTransform: 'digital', spatter: 'digital',
};

/** All corruptions in the order of CORRUPTIONS, with their CIFAR-10-C family. */
export function corruptionFamilies(): Record<CorruptionName, CorruptionFamily> {
  return { ...FAMILIES };
}
