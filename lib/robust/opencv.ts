/**
 * The OpenCV 4.6 operations that CIFAR-10-C's spatter runs on its small single-channel layers —
 * Canny, the 5×5 chamfer distance transform, 3×3 box blurs, histogram equalisation and an 8-bit
 * 3×3 filter — as loops over typed arrays (row-major h×w), with OpenCV's integer and float32
 * rounding and border rules, so their outputs are bit for bit cv2's (checked in test/45 against
 * cv2 on random inputs). These steps are not differentiable; spatter reads its layer back once.
 */
import { KilnError } from '../errors';

/** Index i of a length-n axis under OpenCV's BORDER_REFLECT_101 (… c b | a b c … y z | y x …). */
function reflect101(i: number, n: number): number {
  if (n === 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

function checkImage(src: ArrayLike<number>, h: number, w: number, what: string): void {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1 || src.length !== h * w)
    throw new KilnError(`${what}: expected an image of h·w = ${h}·${w} values with h, w ≥ 1, got ${src.length} values`, 'INVALID_ARGUMENT');
}

/**
 * cv2.Canny(src, low, high) with its defaults (3×3 Sobel with replicated borders, L1 gradient
 * norm): non-maximum suppression along the gradient's sector (OpenCV's fixed-point tan 22.5°
 * test), then hysteresis from pixels above `high` through 8-connected pixels above `low`.
 * Returns 255 on edges, 0 elsewhere.
 */
export function canny(src: Uint8Array, h: number, w: number, low: number, high: number): Uint8Array {
  checkImage(src, h, w, 'canny');
  if (low > high) [low, high] = [high, low];
  const lo = Math.floor(low), hi = Math.floor(high);
  const W = w + 2; // magnitudes and the edge map carry a one-pixel frame (magnitude 0, "not an edge")
  const at = (i: number, j: number) => src[Math.min(Math.max(i, 0), h - 1) * w + Math.min(Math.max(j, 0), w - 1)];
  const dx = new Int32Array(h * w), dy = new Int32Array(h * w), mag = new Int32Array((h + 2) * W);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const gx = at(i - 1, j + 1) - at(i - 1, j - 1) + 2 * (at(i, j + 1) - at(i, j - 1)) + at(i + 1, j + 1) - at(i + 1, j - 1);
      const gy = at(i + 1, j - 1) - at(i - 1, j - 1) + 2 * (at(i + 1, j) - at(i - 1, j)) + at(i + 1, j + 1) - at(i - 1, j + 1);
      dx[i * w + j] = gx;
      dy[i * w + j] = gy;
      mag[(i + 1) * W + j + 1] = Math.abs(gx) + Math.abs(gy);
    }
  }
  const TG22 = Math.trunc(0.4142135623730950488 * (1 << 15) + 0.5);
  const map = new Uint8Array((h + 2) * W).fill(1); // 0 may be an edge, 1 is not, 2 is
  const stack: number[] = [];
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const p = (i + 1) * W + j + 1, m = mag[p];
      if (m <= lo) continue;
      const xs = dx[i * w + j], ys = dy[i * w + j];
      const x = Math.abs(xs), y = Math.abs(ys) * (1 << 15);
      const tg22x = x * TG22;
      let peak: boolean;
      if (y < tg22x) peak = m > mag[p - 1] && m >= mag[p + 1];
      else if (y > tg22x + x * (1 << 16)) peak = m > mag[p - W] && m >= mag[p + W];
      else {
        const s = (xs ^ ys) < 0 ? -1 : 1;
        peak = m > mag[p - W - s] && m > mag[p + W + s];
      }
      if (!peak) continue;
      if (m > hi) {
        map[p] = 2;
        stack.push(p);
      } else map[p] = 0;
    }
  }
  const around = [-1, 1, -W - 1, -W, -W + 1, W - 1, W, W + 1];
  while (stack.length > 0) {
    const p = stack.pop() as number;
    for (const o of around) {
      if (map[p + o] === 0) {
        map[p + o] = 2;
        stack.push(p + o);
      }
    }
  }
  const out = new Uint8Array(h * w);
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) out[i * w + j] = map[(i + 1) * W + j + 1] === 2 ? 255 : 0;
  return out;
}

/**
 * cv2.distanceTransform(src, DIST_L2, 5): the distance of every pixel to the nearest zero pixel by
 * OpenCV's 5×5 chamfer (steps 1, 1.4 and 2.1969 in 16.16 fixed point; two passes), as float32;
 * 8192 where the image has no zero pixel.
 */
export function distanceTransform(src: Uint8Array, h: number, w: number): Float32Array {
  checkImage(src, h, w, 'distanceTransform');
  const fix = (v: number) => Math.round(Math.fround(v) * 65536);
  const [HV, DIAG, LONG] = [fix(1), fix(1.4), fix(2.1969)];
  const W = w + 4, FAR = 2 ** 29 - 1; // OpenCV's INT_MAX >> 2: the frame's value, and the most a distance can be (8192 pixels)
  const t = new Float64Array((h + 4) * W).fill(FAR);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const p = (i + 2) * W + j + 2;
      t[p] = src[i * w + j] === 0 ? 0 : Math.min(FAR,
        t[p - 2 * W - 1] + LONG, t[p - 2 * W + 1] + LONG, t[p - W - 2] + LONG, t[p - W - 1] + DIAG,
        t[p - W] + HV, t[p - W + 1] + DIAG, t[p - W + 2] + LONG, t[p - 1] + HV);
    }
  }
  const out = new Float32Array(h * w);
  for (let i = h - 1; i >= 0; i--) {
    for (let j = w - 1; j >= 0; j--) {
      const p = (i + 2) * W + j + 2;
      if (t[p] > HV) {
        t[p] = Math.min(t[p],
          t[p + 2 * W + 1] + LONG, t[p + 2 * W - 1] + LONG, t[p + W + 2] + LONG, t[p + W + 1] + DIAG,
          t[p + W] + HV, t[p + W - 1] + DIAG, t[p + W - 2] + LONG, t[p + 1] + HV);
      }
      out[i * w + j] = Math.fround(t[p]) / 65536; // (float)(fixed · 2⁻¹⁶)
    }
  }
  return out;
}

/** The sums of every 3×3 neighbourhood under BORDER_REFLECT_101 (exact in float64 for 8-bit or float32 inputs of moderate range). */
function sums3x3(src: ArrayLike<number>, h: number, w: number): Float64Array {
  const out = new Float64Array(h * w);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      let s = 0;
      for (let a = -1; a <= 1; a++) for (let b = -1; b <= 1; b++) s += src[reflect101(i + a, h) * w + reflect101(j + b, w)];
      out[i * w + j] = s;
    }
  }
  return out;
}

/** cv2.blur(src, (3, 3)) of a float32 image: the neighbourhood sum (float64) times 1/9, rounded to float32. */
export function boxBlur3(src: Float32Array, h: number, w: number): Float32Array {
  checkImage(src, h, w, 'boxBlur3');
  return Float32Array.from(sums3x3(src, h, w), (s) => s * (1 / 9));
}

/** cv2.blur(src, (3, 3)) of an 8-bit image: OpenCV's fixed-point division of the sum by 9, ((s + 4)·7282) >> 16. */
export function boxBlur3U8(src: Uint8Array, h: number, w: number): Uint8Array {
  checkImage(src, h, w, 'boxBlur3U8');
  return Uint8Array.from(sums3x3(src, h, w), (s) => Math.floor(((s + 4) * 7282) / 65536));
}

/** cv2.equalizeHist: the cumulative histogram above the lowest level, scaled by 255/(count − its count) in float32 and rounded half to even. */
export function equalizeHist(src: Uint8Array): Uint8Array {
  if (src.length === 0) return new Uint8Array(0);
  const hist = new Int32Array(256);
  for (const v of src) hist[v]++;
  let i = 0;
  while (hist[i] === 0) i++;
  const total = src.length;
  if (hist[i] === total) return new Uint8Array(total).fill(i);
  const scale = Math.fround(255 / (total - hist[i]));
  const lut = new Uint8Array(256);
  let sum = 0;
  for (lut[i++] = 0; i < 256; i++) {
    sum += hist[i];
    lut[i] = Math.min(255, roundHalfEven(Math.fround(sum * scale)));
  }
  return src.map((v) => lut[v]);
}

/** cvRound: to the nearest integer, halves to even. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v), d = v - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/** cv2.filter2D(src, CV_8U, kernel) for an integer 3×3 kernel: correlation under BORDER_REFLECT_101, saturated to 0…255. */
export function filter2dU8(src: Uint8Array, h: number, w: number, kernel: number[][]): Uint8Array {
  checkImage(src, h, w, 'filter2dU8');
  if (kernel.length !== 3 || !kernel.every((r) => r.length === 3 && r.every(Number.isInteger)))
    throw new KilnError('filter2dU8: kernel must be 3×3 integers', 'INVALID_ARGUMENT');
  const out = new Uint8Array(h * w);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      let s = 0;
      for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) s += kernel[a][b] * src[reflect101(i + a - 1, h) * w + reflect101(j + b - 1, w)];
      out[i * w + j] = Math.min(255, Math.max(0, s));
    }
  }
  return out;
}
