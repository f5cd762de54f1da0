/**
 * Test-time augmentation: a classifier's logits averaged over a few views of each image — the image and its mirror,
 * and (airbench94's `infer_mirror_translate`) the mirrored pair of the image shifted one pixel up-left and down-right.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { pad } from '../nn/functional';
import { atLeastFloat32 } from '../tensor/ops';

/**
 * Which views: 'none'; 'flip' — ½·(f(x) + f(flip x)); 'flip-translate' — airbench94's six views: ½·flip-pair(x) +
 * ¼·flip-pair(x shifted up-left) + ¼·flip-pair(x shifted down-right), shifts of one pixel over the reflect-padded image.
 */
export type TTA = 'none' | 'flip' | 'flip-translate';

/** The TTA modes. */
export const TTA_MODES: readonly TTA[] = ['none', 'flip', 'flip-translate'];

/** Checks a TTA option (undefined → 'none'). */
export function checkTTA(v: unknown, name = 'tta'): TTA {
  if (v === undefined) return 'none';
  if (!TTA_MODES.includes(v as TTA)) throw invalidParameterError(name, `one of ${TTA_MODES.map((m) => `'${m}'`).join(', ')}`, v);
  return v as TTA;
}

/**
 * The logits of images x [N, C, H, W] averaged over the views of `tta`, `net` giving one view's logits (in float32 when
 * the view's are half precision). Intermediates are the caller's to free (run it inside `tidy`).
 */
export function ttaLogits(net: (x: Tensor) => Tensor, x: Tensor, tta: TTA): Tensor {
  if (tta === 'none') return net(x);
  if (x.ndim !== 4) throw new KilnError(`test-time augmentation flips and shifts images [N, C, H, W], got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  const mirror = (v: Tensor) => atLeastFloat32(net(v)).add(atLeastFloat32(net(v.flip(3)))).mul(0.5);
  const [h, w] = [x.size(2), x.size(3)];
  if (tta === 'flip-translate' && (h < 2 || w < 2)) throw new KilnError(`tta 'flip-translate' shifts by one pixel with reflection: images need at least 2×2 pixels, got ${h}×${w}`, 'INVALID_ARGUMENT');
  const pair = mirror(x);
  if (tta === 'flip') return pair;
  const padded = pad(x, [1, 1, 1, 1], 'reflect');
  const upLeft = mirror(padded.narrow(2, 0, h).narrow(3, 0, w));
  const downRight = mirror(padded.narrow(2, 2, h).narrow(3, 2, w));
  return pair.mul(0.5).add(upLeft.add(downRight).mul(0.25));
}
