/**
 * CIFAR-10-C's glass blur, motion blur, elastic transform and fog. Each is a deterministic
 * core that takes the random draws as arguments — so test/45 feeds it the draws NumPy made
 * for the reference code and compares outputs — and a wrapper that makes those draws from
 * libtorch's generator (from the CPU one when `seeded`, so they are the same on every device).
 * Everything is tensor ops on x's device — per-pixel loops of the reference become gathers —
 * with no readback, so CUDA inputs stay on the GPU. Cost on a shared 2-core CPU, 64 images of
 * 32×32: glass blur ~25 ms (two float64 blurs), motion blur ~30 ms (up to 19 gathers), elastic
 * transform ~10–30 ms, fog ~5 ms; parts that must match the reference's float64 rounding
 * (8-bit truncation, fixed-point warp positions, the fractal) run in float64.
 */
import { KilnError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor, rand, randint, arange, zeros, CreateOptions } from '../tensor/creation';
import { stack } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { pad } from '../nn/functional';
import { gaussianBlur, gaussianKernel1d, reflectFilterMatrix, sampleBilinear } from './filters';

/** A random tensor made by `make`: on x's device from its generator, or from the CPU generator when seeded (then moved). */
export function draw(x: Tensor, seeded: boolean, make: (o: CreateOptions) => Tensor): Tensor {
  if (!seeded) return make({ device: x.device as 'cpu' });
  const t = make({});
  if (x.device === 'cpu') return t;
  const d = t.to({ device: x.device });
  t.dispose();
  return d;
}

/** Uniform draws in [−1, 1) (float64), as NumPy's uniform(−1, 1). */
export function unit(x: Tensor, seeded: boolean, shape: number[]): Tensor {
  return tidy(() => draw(x, seeded, (o) => rand(shape, { ...o, dtype: 'float64' })).mul(2).sub(1));
}

/** Throws a KilnError naming `what` unless t is a tensor of exactly `shape`. */
export function needShape(t: Tensor, shape: number[], what: string): void {
  if (!(t instanceof Tensor) || t.ndim !== shape.length || !t.shape.every((v, i) => v === shape[i]))
    throw new KilnError(`${what} must have shape [${shape.join(', ')}], got ${t instanceof Tensor ? `[${t.shape.join(', ')}]` : String(t)}`, 'INVALID_ARGUMENT');
}

// ---------------------------------------------------------------- glass blur

/**
 * Slack (in 1/255 units) when truncating to 8 bits: pixels k/255 stored in x's dtype may lie up to
 * half an ulp below k/255. In float32 that is ~8e-6, more than the margin by which some of the
 * reference's float64 blurred values lie below an integer, so only float64 input reproduces its
 * truncation exactly; float32 input can differ by 1/255 there before the second blur.
 */
const UINT8_SLACK: Record<string, number> = { float64: 1e-9, float32: 255 * 2 ** -23, float16: 255 * 2 ** -10, bfloat16: 255 * 2 ** -7 };

/**
 * Glass blur's core: a Gaussian blur (σ), truncation to 8 bits (the reference's np.uint8), then
 * per iteration every pixel (h, w) with 1 < h, w < size takes the pixel at (h + dy, w + dx), then
 * the blur again. `offsets` [N, iterations, H − 2, W − 2, 2] holds (dx, dy) in {−1, 0} in the
 * reference's draw order (h and w descending). The reference "swaps" through NumPy views, which
 * copies (h + dy, w + dx) into (h, w) and leaves the source as it was; with offsets in {−1, 0}
 * every read precedes the write to that pixel, so its sequential loop is one gather per iteration.
 * Computed in float64 (see UINT8_SLACK for float32 inputs).
 */
export function glassBlurCore(x: Tensor, sigma: number, offsets: Tensor): Tensor {
  const [n, c, h, w] = x.shape;
  const iterations = offsets instanceof Tensor && offsets.ndim === 5 ? offsets.size(1) : 1;
  needShape(offsets, [n, iterations, Math.max(h - 2, 0), Math.max(w - 2, 0), 2], 'glassBlur: offsets');
  return tidy(() => {
    const device = x.device as 'cpu';
    let y = gaussianBlur(x.to({ dtype: 'float64' }), sigma).mul(255).add(UINT8_SLACK[x.dtype]).floor().clamp(0, 255).div(255);
    if (h > 2 && w > 2) {
      const base = arange(h * w, undefined, 1, { device }).reshape([1, h, w]);
      const o = offsets.to({ device, dtype: 'int64' }).flip([2, 3]); // rows and columns 2…size−1, ascending
      for (let i = 0; i < iterations; i++) {
        const step = o.select(1, i);
        const delta = pad(step.select(3, 1).mul(w).add(step.select(3, 0)), [2, 0, 2, 0]);
        y = y.flatten(2).gather(2, base.add(delta).reshape([n, 1, h * w]).expand([n, c, h * w]).contiguous()).reshape([n, c, h, w]);
      }
    }
    return gaussianBlur(y, sigma).to({ dtype: x.dtype });
  });
}

/** Glass blur with offsets drawn uniformly from {−1, 0} (NumPy's randint(−1, 1)). */
export function glassBlur(x: Tensor, sigma: number, iterations: number, seeded: boolean): Tensor {
  const [n, , h, w] = x.shape;
  return tidy(() => glassBlurCore(x, sigma, draw(x, seeded, (o) => randint(-1, 1, [n, iterations, Math.max(h - 2, 0), Math.max(w - 2, 0), 2], o))));
}

// ---------------------------------------------------------------- motion blur

/**
 * Motion blur's core, the imagecorruptions package's NumPy version of ImageMagick's: the sum over
 * i < 2·radius + 1 of kernel[i] (a half-Gaussian of σ, normalised) times the image shifted by
 * i pixels along `angles` [N] (degrees; edges replicated), stopping where a shift leaves the image.
 */
export function motionBlurCore(x: Tensor, radius: number, sigma: number, angles: Tensor): Tensor {
  const [n, c, h, w] = x.shape;
  needShape(angles, [n], 'motionBlur: angles');
  const width = 2 * radius + 1;
  const g = [...Array(width).keys()].map((i) => Math.exp(-(i * i) / (2 * sigma * sigma)));
  const kernel = g.map((v) => v / g.reduce((a, b) => a + b, 0));
  return tidy(() => {
    const opts = { device: x.device as 'cpu', dtype: 'float64' as const };
    const a = angles.to(opts).mul(Math.PI / 180);
    const p = [a.sin().mul(width), a.cos().mul(width)];
    const hyp = p[0].square().add(p[1].square()).sqrt();
    const rows = arange(h, undefined, 1, opts).unsqueeze(0), cols = arange(w, undefined, 1, opts).unsqueeze(0);
    const flat = x.flatten(2);
    let alive = zeros([n], { ...opts, dtype: 'bool' }).logicalNot();
    let acc = zeros(x.shape, { device: opts.device, dtype: x.dtype });
    for (let i = 0; i < width; i++) {
      const [dy, dx] = p.map((q) => q.mul(i).div(hyp).sub(0.5).ceil().neg());
      alive = alive.logicalAnd(dy.abs().lt(h)).logicalAnd(dx.abs().lt(w));
      const r = rows.sub(dy.unsqueeze(1)).clamp(0, h - 1), col = cols.sub(dx.unsqueeze(1)).clamp(0, w - 1);
      const idx = r.mul(w).unsqueeze(2).add(col.unsqueeze(1)).to({ dtype: 'int64' }).reshape([n, 1, h * w]).expand([n, c, h * w]).contiguous();
      const weight = alive.to({ dtype: x.dtype }).mul(kernel[i]).reshape([n, 1, 1, 1]);
      acc = acc.add(flat.gather(2, idx).reshape(x.shape).mul(weight));
    }
    return acc;
  });
}

/** Motion blur along an angle drawn uniformly from [−45°, 45°). */
export function motionBlur(x: Tensor, radius: number, sigma: number, seeded: boolean): Tensor {
  return tidy(() => motionBlurCore(x, radius, sigma, unit(x, seeded, [x.size(0)]).mul(45)));
}

// ---------------------------------------------------------------- elastic transform

/** The inverse of the 3×3 matrix m (cofactors). */
function inverse3(m: number[][]): number[][] {
  const [[a, b, c], [d, e, f], [g, h, i]] = m;
  const co = [[e * i - f * h, c * h - b * i, b * f - c * e], [f * g - d * i, a * i - c * g, c * d - a * f], [d * h - e * g, b * g - a * h, a * e - b * d]];
  const det = a * co[0][0] + b * co[1][0] + c * co[2][0];
  return co.map((row) => row.map((v) => v / det));
}

/**
 * cv2.warpAffine(x, M, borderMode=BORDER_REFLECT_101) for the affine maps M [N, 2, 3] (float64,
 * source → destination) that cv2.getAffineTransform gives: inverted as cv2.invertAffineTransform,
 * source positions in OpenCV's fixed point (1/1024 of a pixel, rounded to 1/32), bilinear weights
 * in steps of 1/32.
 */
function warpAffineCv(x: Tensor, M: Tensor): Tensor {
  return tidy(() => {
    const [, , h, w] = x.shape;
    const [m00, m01, m02, m10, m11, m12] = M.flatten(1).unbind(1);
    const d = m00.mul(m11).sub(m01.mul(m10)).reciprocal();
    const [a11, a22, a12, a21] = [m11.mul(d), m00.mul(d), m01.neg().mul(d), m10.neg().mul(d)];
    const b1 = a11.neg().mul(m02).sub(a12.mul(m12)), b2 = a21.neg().mul(m02).sub(a22.mul(m12));
    const opts = { device: x.device as 'cpu', dtype: 'float64' as const };
    const ys = arange(h, undefined, 1, opts).unsqueeze(0), xs = arange(w, undefined, 1, opts).unsqueeze(0);
    const col = (v: Tensor) => v.unsqueeze(1);
    // X = (round((a12·y + b1)·1024) + 16 + round(a11·x·1024)) >> 5, then pixel = X >> 5, fraction = (X & 31) / 32
    const fixed = (slopeY: Tensor, offset: Tensor, slopeX: Tensor) => {
      const perRow = col(slopeY).mul(ys).add(col(offset)).mul(1024).round().add(16);
      const perCol = col(slopeX).mul(xs).mul(1024).round();
      return perRow.unsqueeze(2).add(perCol.unsqueeze(1)).div(32).floor();
    };
    const X = fixed(a12, b1, a11), Y = fixed(a22, b2, a21);
    const ix = X.div(32).floor(), iy = Y.div(32).floor();
    return sampleBilinear(x, iy, ix, Y.sub(iy.mul(32)).div(32), X.sub(ix.mul(32)).div(32), 'reflect101');
  });
}

/**
 * Elastic transform's core (CIFAR-10-C's, after Simard et al.): a random affine warp — the three
 * points around the centre (reference order) moved by `affine` [N, 3, 2] pixels (float32) —
 * by cv2.warpAffine, then a displacement field: `dx`, `dy` [N, H, W] (uniform in [−1, 1))
 * smoothed by a Gaussian of σ (truncate 3, scipy 'reflect' border) and scaled by α, resampled
 * as scipy's map_coordinates (order 1, 'reflect').
 */
export function elasticTransformCore(x: Tensor, alpha: number, sigma: number, affine: Tensor, dx: Tensor, dy: Tensor): Tensor {
  const [n, , h, w] = x.shape;
  needShape(affine, [n, 3, 2], 'elasticTransform: affine');
  needShape(dx, [n, h, w], 'elasticTransform: dx');
  needShape(dy, [n, h, w], 'elasticTransform: dy');
  const [cy, cx, s] = [Math.floor(h / 2), Math.floor(w / 2), Math.floor(Math.min(h, w) / 3)];
  if (s === 0) throw new KilnError(`elasticTransform needs images of at least 3×3 pixels (its affine warp moves points a third of the side from the centre), got ${h}×${w}`, 'INVALID_ARGUMENT');
  // the reference's points, (row-centre, column-centre) used as (x, y) by OpenCV
  const pts = [[cy + s, cx + s], [cy + s, cx - s], [cy - s, cx - s]];
  const inv = inverse3([pts.map((p) => p[0]), pts.map((p) => p[1]), [1, 1, 1]]);
  return tidy(() => {
    const opts = { device: x.device as 'cpu', dtype: 'float64' as const };
    const moved = tensor(pts.flat(), { device: opts.device, shape: [1, 3, 2] }).add(affine.to({ device: opts.device, dtype: 'float32' })); // float32, as NumPy
    const M = moved.to(opts).transpose(1, 2).matmul(tensor(inv, opts)); // [N, 2, 3]: M · [pts; 1] = moved
    const warped = warpAffineCv(x, M);
    const smooth = (field: Tensor) => {
      const k = gaussianKernel1d(sigma, 3);
      const f = tensor(reflectFilterMatrix(h, k), opts).matmul(field.to(opts)).matmul(tensor(reflectFilterMatrix(w, k), opts).t());
      return f.mul(alpha).to({ dtype: 'float32' }).to(opts); // the reference's astype(float32)
    };
    const ry = arange(h, undefined, 1, opts).reshape([1, h, 1]).add(smooth(dy));
    const rx = arange(w, undefined, 1, opts).reshape([1, 1, w]).add(smooth(dx));
    const iy = ry.floor(), ix = rx.floor();
    return sampleBilinear(warped, iy, ix, ry.sub(iy), rx.sub(ix), 'scipyReflect');
  });
}

/** Elastic transform with the affine offsets uniform in [−a, a) and uniform displacement fields. */
export function elasticTransform(x: Tensor, alpha: number, sigma: number, affineRange: number, seeded: boolean): Tensor {
  const [n, , h, w] = x.shape;
  return tidy(() => elasticTransformCore(x, alpha, sigma, unit(x, seeded, [n, 3, 2]).mul(affineRange).to({ dtype: 'float32' }), unit(x, seeded, [n, h, w]), unit(x, seeded, [n, h, w])));
}

// ---------------------------------------------------------------- fog

/** The side of fog's fractal for H×W images: the reference's 32, or the next power of two that covers the image. */
export function fogMapSize(h: number, w: number): number {
  let m = 32;
  while (m < Math.max(h, w)) m *= 2;
  return m;
}

/**
 * CIFAR-10-C's plasma_fractal (diamond-square, wibble 100 divided by `wibbleDecay` per level),
 * batched: `u` [N, mapSize² − 1] are the draws in [−1, 1) in the reference's order (per level:
 * squares, then the two diamond sets, each row-major), scaled by the level's wibble.
 * Returns [N, mapSize, mapSize] in [0, 1] (float64).
 */
export function plasmaFractal(u: Tensor, mapSize: number, wibbleDecay: number): Tensor {
  if (!Number.isInteger(mapSize) || mapSize < 2 || (mapSize & (mapSize - 1)) !== 0) throw new KilnError(`plasmaFractal: mapSize must be a power of two ≥ 2, got ${mapSize}`, 'INVALID_ARGUMENT');
  const n = u instanceof Tensor ? u.size(0) : 0;
  needShape(u, [n, mapSize * mapSize - 1], 'fog: draws');
  return tidy(() => {
    const opts = { device: u.device as 'cpu', dtype: 'float64' as const };
    const draws = u.to(opts);
    let grid = zeros([n, 1, 1], opts); // the corners of squares of the current step
    let wibble = 100, offset = 0;
    for (let k = 1; k < mapSize; k *= 2) {
      const wibbledMean = (sum: Tensor) => {
        const d = draws.narrow(1, offset, k * k).reshape([n, k, k]);
        offset += k * k;
        return sum.div(4).add(d.mul(wibble).mul(wibble));
      };
      const sq = grid.add(grid.roll(-1, 1));
      const centres = wibbledMean(sq.add(sq.roll(-1, 2)));
      const rowMids = wibbledMean(centres.add(centres.roll(1, 1)).add(grid.add(grid.roll(-1, 2))));
      const colMids = wibbledMean(centres.add(centres.roll(1, 2)).add(grid.add(grid.roll(-1, 1))));
      const even = stack([grid, rowMids], 3).reshape([n, k, 2 * k]);
      const odd = stack([colMids, centres], 3).reshape([n, k, 2 * k]);
      grid = stack([even, odd], 2).reshape([n, 2 * k, 2 * k]);
      wibble /= wibbleDecay;
    }
    const shifted = grid.sub(grid.amin([1, 2], true));
    return shifted.div(shifted.amax([1, 2], true));
  });
}

/** Fog's core: x + c·fractal (cropped to H×W, every channel), rescaled by max/(max + c) with max per image. */
export function fogCore(x: Tensor, c: number, wibbleDecay: number, u: Tensor): Tensor {
  const [, , h, w] = x.shape;
  return tidy(() => {
    const f = plasmaFractal(u, fogMapSize(h, w), wibbleDecay).narrow(1, 0, h).narrow(2, 0, w).unsqueeze(1).to({ device: x.device as 'cpu', dtype: x.dtype });
    const max = x.amax([1, 2, 3], true);
    return x.add(f.mul(c)).mul(max).div(max.add(c));
  });
}

/** Fog over a plasma fractal of uniform draws. */
export function fog(x: Tensor, c: number, wibbleDecay: number, seeded: boolean): Tensor {
  const m = fogMapSize(x.size(2), x.size(3));
  return tidy(() => fogCore(x, c, wibbleDecay, unit(x, seeded, [x.size(0), m * m - 1])));
}
