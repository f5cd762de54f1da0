/**
 * Feature masks for the perturbation methods (featureAblation, lime, kernelShap): an integer
 * tensor of segment ids 0 … M−1 broadcastable to the input, so that elements sharing an id are
 * switched between the input and the baseline together. `gridMask` makes square-cell masks.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { arange, zeros, onesLike } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { isFloating } from '../tensor/dtype';
import { positiveInt } from './common';

/** Options of `gridMask`. */
export interface GridMaskOptions {
  /** side of the square cells in pixels (default: 1/8 of the shorter side, at least 1); the last row and column of cells are cut at the border */
  cell?: number;
}

/**
 * A feature mask of square cells: int64 [h, w] whose element (r, c) holds the id of its cell,
 * ⌊r / cell⌋ · ⌈w / cell⌉ + ⌊c / cell⌋ (row-major, 0 … M−1 with M = ⌈h / cell⌉ · ⌈w / cell⌉).
 * It broadcasts over the batch and the channels of an input [N, C, h, w].
 */
export function gridMask(h: number, w: number, o: GridMaskOptions = {}): Tensor {
  if (!Number.isInteger(h) || h < 1) throw invalidParameterError('gridMask: h', 'a positive integer', h);
  if (!Number.isInteger(w) || w < 1) throw invalidParameterError('gridMask: w', 'a positive integer', w);
  if (o === null || typeof o !== 'object') throw invalidParameterError('gridMask: options', 'an object { cell }', o);
  const cell = positiveInt(o.cell, 'gridMask: cell', Math.max(1, Math.floor(Math.min(h, w) / 8)));
  const cols = Math.ceil(w / cell);
  return tidy(() => {
    const r = arange(0, h, 1, { dtype: 'int64' }).floorDivide(cell).mul(cols).unsqueeze(1);
    const c = arange(0, w, 1, { dtype: 'int64' }).floorDivide(cell).unsqueeze(0);
    return r.add(c);
  });
}

/** A checked feature mask: int64, expanded to the input's shape [N, …], with `count` segments. */
export interface ResolvedMask {
  /** segment id of every input element, int64, shaped like the input (an expanded view) */
  mask: Tensor;
  /** M: the segments are 0 … M−1, each used by at least one element */
  count: number;
}

/**
 * Checks `featureMask` against the input `x` [N, …]: an integer Tensor (not bool) broadcastable to
 * x (e.g. [H, W], [C, H, W], [1, 1, H, W] or one mask per image [N, 1, H, W]) whose ids run over
 * 0 … M−1 with none missing. Two readbacks (min/max, then the per-id counts).
 */
export function resolveFeatureMask(m: unknown, x: Tensor, fn: string): ResolvedMask {
  if (!(m instanceof Tensor)) throw invalidParameterError(`${fn}: featureMask`, 'an integer Tensor of segment ids broadcastable to the input (e.g. gridMask(h, w))', m);
  idOf(m, 'featureMask');
  if (isFloating(m.dtype) || m.dtype === 'bool') throw new KilnError(`${fn}: featureMask must hold integer segment ids, got ${m.dtype}`, 'INVALID_ARGUMENT');
  const ms = m.shape, xs = x.shape;
  if (ms.length > xs.length || !ms.every((v, i) => v === 1 || v === xs[xs.length - ms.length + i]))
    throw new KilnError(`${fn}: featureMask of shape [${ms.join(', ')}] does not broadcast to the input [${xs.join(', ')}]`, 'INVALID_ARGUMENT');
  if (m.numel === 0) throw new KilnError(`${fn}: featureMask is empty`, 'INVALID_ARGUMENT');
  return tidy(() => {
    const ids = m.to({ dtype: 'int64', device: x.device });
    const lo = ids.amin(ids.shape.map((_, i) => i)).item(), hi = ids.amax(ids.shape.map((_, i) => i)).item();
    if (lo < 0) throw new KilnError(`${fn}: featureMask holds a negative segment id (${lo}); ids must be 0 … M−1`, 'INVALID_ARGUMENT');
    const count = hi + 1;
    const flat = ids.flatten();
    const used = zeros([count], { dtype: 'int64', device: x.device }).scatterAdd(0, flat, onesLike(flat)).dataSync() as ArrayLike<number | bigint>;
    const missing: number[] = [];
    for (let j = 0; j < count && missing.length < 5; j++) if (Number(used[j]) === 0) missing.push(j);
    if (missing.length)
      throw new KilnError(`${fn}: featureMask has empty segments (no element has id ${missing.join(', ')}${missing.length === 5 ? ', …' : ''}); ids must be 0 … ${hi} with none missing`, 'INVALID_ARGUMENT');
    return { mask: ids.reshape([...xs.slice(0, xs.length - ms.length).map(() => 1), ...ms]).expand(xs), count };
  });
}

/** The mask of one-element segments: every element of an image [N, …] is its own feature (M = elements per image). */
export function elementMask(x: Tensor): ResolvedMask {
  const rest = x.shape.slice(1);
  const count = rest.reduce((a, b) => a * b, 1);
  return tidy(() => ({ mask: arange(0, count, 1, { dtype: 'int64', device: x.device }).reshape([1, ...rest]).expand(x.shape), count }));
}
