/**
 * CIFAR-10-C's spatter (make_cifar_c.py): a liquid layer — normal draws blurred by a Gaussian and
 * thresholded — that either wets the image with pale turquoise water whose opacity follows OpenCV's
 * edge distance maps (severities 1–3) or covers it with opaque brown mud blobs (severities 4–5).
 * A deterministic core takes the draws (test/45 feeds it NumPy's); the wrapper draws them from
 * libtorch's generator. The water's OpenCV steps (lib/robust/opencv.ts) run on the layer read back
 * to the CPU, one readback per batch; the rest, and all of the mud, are tensor ops on x's device.
 */
import { Tensor } from '../tensor/tensor';
import { tensor, randn } from '../tensor/creation';
import { where } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { filter2d, gaussianBlur, gaussianKernel1d } from './filters';
import { draw, needShape } from './corruptions-random';
import { canny, distanceTransform, boxBlur3, boxBlur3U8, equalizeHist, filter2dU8 } from './opencv';

/** Spatter's parameters: mean and std of the layer's normal draws, its blur σ, the threshold, strength (water: opacity; mud: the mask's blur σ), 1 for mud, 0 for water. */
export type SpatterParams = readonly [number, number, number, number, number, number];

/** ITU-R 601 luma weights of imagecorruptions' rgb2gray: how a grey image takes a colour. */
const GREY = [0.2989, 0.587, 0.114];

/** The colour [1, C, 1, 1] (float32 values, as NumPy's float32 arrays) in x's dtype; its luma for grey images. */
function colour(x: Tensor, rgb255: number[]): Tensor {
  const rgb = rgb255.map((v) => Math.fround(v / 255));
  const values = x.size(1) === 3 ? rgb : [rgb.reduce((s, v, i) => s + GREY[i] * v, 0)];
  return tensor(values, { shape: [1, values.length, 1, 1], device: x.device as 'cpu', dtype: x.dtype });
}

/** The kernel OpenCV's filter2D applies to the equalised distance map (make_cifar_c.py's `ker`). */
const EMBOSS = [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]];

/**
 * The water's opacity for one 8-bit liquid layer (h×w): cv2.Canny(50, 150) edges, their distance
 * map (DIST_L2, 5×5) truncated at 20, box-blurred and cut to 8 bits, equalised, embossed by
 * `EMBOSS` with 8-bit saturation and box-blurred again, times the layer; scaled to `strength` at its
 * maximum (float32, as the reference). The reference divides 0 by 0 where the product is 0 everywhere
 * (no liquid above the threshold); here that image gets no water.
 */
export function waterOpacity(liquid: Uint8Array, h: number, w: number, strength: number): Float32Array {
  const edges = canny(liquid, h, w, 50, 150);
  const dist = distanceTransform(edges.map((v) => 255 - v), h, w).map((v) => Math.min(v, 20));
  const bytes = Uint8Array.from(boxBlur3(dist, h, w), Math.trunc);
  const shade = boxBlur3U8(filter2dU8(equalizeHist(bytes), h, w, EMBOSS), h, w);
  const m = Float32Array.from(liquid, (v, i) => v * shade[i]);
  const max = m.reduce((a, b) => Math.max(a, b), 0);
  const s = Math.fround(strength);
  return max > 0 ? m.map((v) => Math.fround(v / max) * s) : m;
}

/**
 * Spatter's core. `layer` [N, H, W] holds the normal draws (mean and std applied, float64); they
 * are blurred as skimage.filters.gaussian (σ = params[2], 'nearest' border) and zeroed below the
 * threshold. Water: the layer in 8 bits (NumPy's astype, wrapping above 255) gives the opacity of
 * `waterOpacity`, and x + opacity·(175, 238, 238)/255. Mud: the mask of the layer above the
 * threshold blurred (σ = strength, float32 as skimage keeps it) and zeroed below 0.8 mixes x
 * towards (63, 42, 20)/255. Grey images take the colours' luma (as the imagecorruptions package).
 */
export function spatterCore(x: Tensor, params: SpatterParams, layer: Tensor): Tensor {
  const [n, , h, w] = x.shape;
  needShape(layer, [n, h, w], 'spatter: layer');
  const [, , sigma, threshold, strength, mud] = params;
  return tidy(() => {
    const device = x.device as 'cpu';
    const blurred = gaussianBlur(layer.to({ device, dtype: 'float64' }).unsqueeze(1), sigma);
    const liquid = where(blurred.lt(threshold), 0, blurred);
    if (mud) {
      // skimage blurs the float32 mask in float32: scipy filters axis 0, stores float32, then axis 1
      const k = gaussianKernel1d(strength);
      const mask = liquid.gt(threshold).to({ dtype: 'float64' });
      const rows = filter2d(mask, k.map((v) => [v]), 'replicate').to({ dtype: 'float32' }).to({ dtype: 'float64' });
      const blob = filter2d(rows, [k], 'replicate').to({ dtype: 'float32' });
      const m = where(blob.lt(0.8), 0, blob).to({ dtype: x.dtype });
      return x.mul(m.rsub(1)).add(colour(x, [63, 42, 20]).mul(m));
    }
    const values = liquid.cpu().dataSync() as Float64Array;
    const opacity = new Float32Array(n * h * w);
    for (let i = 0; i < n; i++) {
      const bytes = Uint8Array.from(values.subarray(i * h * w, (i + 1) * h * w), (v) => Math.trunc(v * 255) & 255);
      opacity.set(waterOpacity(bytes, h, w, strength), i * h * w);
    }
    const m = tensor(opacity, { shape: [n, 1, h, w] }).to({ device, dtype: x.dtype });
    return x.add(m.mul(colour(x, [175, 238, 238])));
  });
}

/** Spatter over a layer of normal draws N(params[0], params[1]²). */
export function spatter(x: Tensor, params: SpatterParams, seeded: boolean): Tensor {
  const [n, , h, w] = x.shape;
  return tidy(() => spatterCore(x, params, draw(x, seeded, (o) => randn([n, h, w], { ...o, dtype: 'float64' })).mul(params[1]).add(params[0])));
}
