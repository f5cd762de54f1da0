/** Colour transforms: brightness, contrast, saturation and hue jitter per image. */
import { invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { arange } from '../../tensor/creation';
import { stack, where } from '../../tensor/ops';
import { BatchTransform, augmentation, batched, uniform } from './base';

/**
 * Options of `colorJitter`: brightness, contrast and saturation v draw a factor per image in
 * [max(0, 1 − v), 1 + v]; hue h (at most 0.5) draws a shift of the hue in [−h, h] turns.
 */
export interface ColorJitterOptions {
  brightness?: number;
  contrast?: number;
  saturation?: number;
  hue?: number;
}

/** RGB [B, 3, H, W] in 0..1 → HSV (hue in 0..1 turns), as torchvision's tensor rgb_to_hsv. */
export function rgbToHsv(x: Tensor): Tensor {
  const [r, g, b] = x.unbind(1);
  const maxc = x.amax(1), minc = x.amin(1);
  const eqc = maxc.eq(minc);
  const cr = maxc.sub(minc);
  const s = cr.div(where(eqc, 1, maxc));
  const crd = where(eqc, 1, cr);
  const rc = maxc.sub(r).div(crd), gc = maxc.sub(g).div(crd), bc = maxc.sub(b).div(crd);
  const isR = maxc.eq(r), isG = maxc.eq(g).logicalAnd(isR.logicalNot());
  const isB = isR.logicalNot().logicalAnd(maxc.ne(g));
  const h = bc.sub(gc).mul(isR).add(rc.sub(bc).add(2).mul(isG)).add(gc.sub(rc).add(4).mul(isB));
  return stack([h.div(6).add(1).fmod(1), s, maxc], 1);
}

/** HSV [B, 3, H, W] → RGB, as torchvision's tensor hsv_to_rgb. */
export function hsvToRgb(x: Tensor): Tensor {
  const [h, s, v] = x.unbind(1);
  const i = h.mul(6).floor();
  const f = h.mul(6).sub(i);
  const sector = i.remainder(6).unsqueeze(1);
  const p = v.mul(s.rsub(1)).clamp(0, 1);
  const q = v.mul(s.mul(f).rsub(1)).clamp(0, 1);
  const t = v.mul(s.mul(f.rsub(1)).rsub(1)).clamp(0, 1);
  const mask = sector.eq(arange(0, 6, 1, { device: x.device, dtype: x.dtype }).view(1, 6, 1, 1)).to({ dtype: x.dtype });
  const pick = (...vals: Tensor[]) => stack(vals, 1).mul(mask).sum(1);
  return stack([pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q)], 1);
}

/**
 * Grey level of RGB images [B, 1, H, W] as torchvision's tensor rgb_to_grayscale
 * (0.2989 r + 0.587 g + 0.114 b); 1-channel images are returned as they are.
 */
export function rgbToGrayscale(x: Tensor): Tensor {
  if (x.size(1) !== 3) return x;
  const [r, g, b] = x.unbind(1);
  return r.mul(0.2989).add(g.mul(0.587)).add(b.mul(0.114)).unsqueeze(1);
}

/** Grayscale of RGB images with torchvision's weights (`rgbToGrayscale`), [B, 1, H, W]; other channel counts: their mean. */
function luma(x: Tensor): Tensor {
  return x.size(1) === 3 ? rgbToGrayscale(x) : x.mean(1, true);
}

/** Random brightness, contrast, saturation and hue per image (applied in that order), clamped to [0, 1]. */
export function colorJitter(options: ColorJitterOptions = {}): BatchTransform {
  const amt = (v: unknown, name: string) => {
    if (v === undefined) return 0;
    if (typeof v !== 'number' || !(v >= 0)) throw invalidParameterError(name, 'a non-negative number', v);
    return v;
  };
  const bri = amt(options.brightness, 'brightness'), con = amt(options.contrast, 'contrast'), sat = amt(options.saturation, 'saturation');
  const hue = amt(options.hue, 'hue');
  if (hue > 0.5) throw invalidParameterError('hue', 'a number in [0, 0.5]', hue);
  const factor = (b: number, v: number, x: Tensor) => uniform(b, Math.max(0, 1 - v), 1 + v, x).view(b, 1, 1, 1);
  return augmentation(batched('colorJitter', (x, b, c) => {
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
    if (hue > 0 && c === 3) {
      const hsv = rgbToHsv(out);
      const [h, s, v] = hsv.unbind(1);
      const shifted = h.add(uniform(b, -hue, hue, x).view(b, 1, 1)).remainder(1);
      out = hsvToRgb(stack([shifted, s, v], 1));
    }
    return out;
  }), null);
}
