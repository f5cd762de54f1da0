/**
 * CIFAR-10-C's snow (make_cifar_c.py): a layer of normal draws, zoomed (clipped_zoom) and
 * thresholded into flakes, written as an 8-bit greyscale PNG, motion-blurred by ImageMagick
 * (through Wand) along an angle in [−135°, −45°) and read back as 8 bits; the image is whitened
 * towards 1.5·grey + 0.5 and gets the flakes and the flakes turned by 180°. Wand is not available,
 * so the blur is the imagecorruptions package's NumPy version of ImageMagick's (`motionBlurCore`,
 * as the motionBlur corruption), applied to the 8-bit layer and rounded back to 8 bits as the PNG
 * round trip does. A deterministic core takes the draws (test/45 feeds it NumPy's); all tensor ops
 * on x's device.
 */
import { Tensor } from '../tensor/tensor';
import { randn } from '../tensor/creation';
import { where } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { clippedZoom } from './filters';
import { draw, unit, needShape, motionBlurCore } from './corruptions-random';

/** Snow's parameters: mean and std of the layer's normal draws, zoom, threshold, motion-blur radius and σ, the share of the image kept unwhitened. */
export type SnowParams = readonly [number, number, number, number, number, number, number];

/**
 * Snow's core: `layer` [N, H, W] holds the normal draws (mean and std applied, float64), `angles`
 * [N] the blur angles in degrees. The layer is zoomed by params[2] (centre crop, bilinear as
 * scipy's zoom of order 1), zeroed below the threshold, clipped to [0, 1] and truncated to 8 bits,
 * blurred (radius, σ), rounded to 8 bits; x becomes keep·x + (1 − keep)·max(x, 1.5·grey + 0.5)
 * (grey: OpenCV's 0.299 R + 0.587 G + 0.114 B; a grey image is its own grey) plus the flakes and
 * the flakes flipped in both axes.
 */
export function snowCore(x: Tensor, params: SnowParams, layer: Tensor, angles: Tensor): Tensor {
  const [n, c, h, w] = x.shape;
  needShape(layer, [n, h, w], 'snow: layer');
  needShape(angles, [n], 'snow: angles');
  const [, , zoom, threshold, radius, sigma, keep] = params;
  return tidy(() => {
    const opts = { device: x.device as 'cpu', dtype: 'float64' as const };
    const zoomed = clippedZoom(layer.to(opts).unsqueeze(1), zoom);
    const bytes = where(zoomed.lt(threshold), 0, zoomed).clamp(0, 1).mul(255).floor(); // the reference's 8-bit PNG
    const flakes = motionBlurCore(bytes, radius, sigma, angles).round().clamp(0, 255).div(255); // blurred, back in 8 bits
    const [r, g, b] = c === 3 ? x.unbind(1) : [x, x, x];
    const grey = c === 3 ? r.mul(0.299).add(g.mul(0.587)).add(b.mul(0.114)).unsqueeze(1) : x;
    const whitened = x.mul(keep).add(x.maximum(grey.mul(1.5).add(0.5)).mul(1 - keep));
    return whitened.add(flakes.add(flakes.flip([2, 3])).to({ dtype: x.dtype }));
  });
}

/** Snow over a layer of normal draws N(params[0], params[1]²), blurred along an angle uniform in [−135°, −45°). */
export function snow(x: Tensor, params: SnowParams, seeded: boolean): Tensor {
  const [n, , h, w] = x.shape;
  return tidy(() => {
    const layer = draw(x, seeded, (o) => randn([n, h, w], { ...o, dtype: 'float64' })).mul(params[1]).add(params[0]);
    return snowCore(x, params, layer, unit(x, seeded, [n]).mul(45).sub(90));
  });
}
