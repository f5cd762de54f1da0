/** Gradient utilities (`kiln.nn.utils`). */
import { N } from '../native';
import { invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';

function ids(params: Tensor[]): number[] {
  if (!Array.isArray(params)) throw invalidParameterError('params', 'an array of Tensors', params);
  return params.map((p, i) => idOf(p, `params[${i}]`));
}

/**
 * Scales gradients so that their total `normType`-norm is at most `maxNorm`; returns the
 * total norm before clipping (a scalar tensor, not read back, so no device sync).
 */
export function clipGradNorm_(params: Tensor[], maxNorm: number, { normType = 2, errorIfNonfinite = false } = {}): Tensor {
  if (typeof maxNorm !== 'number' || !(maxNorm > 0)) throw invalidParameterError('maxNorm', 'a positive number', maxNorm);
  if (typeof normType !== 'number' || !(normType > 0)) throw invalidParameterError('normType', 'a positive number or Infinity', normType);
  return new Tensor(N.clipGradNorm(ids(params), maxNorm, normType, errorIfNonfinite));
}

/** Clamps every gradient element to [-clipValue, clipValue]. */
export function clipGradValue_(params: Tensor[], clipValue: number): void {
  if (typeof clipValue !== 'number' || !(clipValue > 0)) throw invalidParameterError('clipValue', 'a positive number', clipValue);
  N.clipGradValue(ids(params), clipValue);
}
