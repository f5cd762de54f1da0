/**
 * What every `kiln.explain` method shares: argument checks (model, input, target, options),
 * the target logits of a batch with the model's output checked to be [N, classes], and the
 * gradient of those logits with respect to the input.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { randperm, tensor } from '../tensor/creation';
import { autograd, enableGrad } from '../autograd';
import { isFloating } from '../tensor/dtype';
import { Classifier, checkClassifier, logits } from '../nn/classifier';

export { Classifier, checkLogits, logits } from '../nn/classifier';

/** Which output to explain: one class for all images, one per image, or an int64 tensor [N]. */
export type Target = number | number[] | Tensor;

/** A resolved target: class indices [N] (int64, on the input's device) and the largest of them. */
export interface TargetIndex {
  index: Tensor;
  max: number;
}

/** Checks that `model` can be called; returns it typed. */
export function checkModel(model: unknown): Classifier {
  return checkClassifier(model);
}

/** Checks the input batch: a floating-point Tensor [N, …] (`minDims` dims at least). */
export function checkInput(x: unknown, fn: string, minDims = 2): Tensor {
  idOf(x, 'input');
  const t = x as Tensor;
  if (t.ndim < minDims)
    throw new KilnError(`${fn}: input must be a batch [N, ${minDims >= 4 ? 'C, H, W' : '…'}], got shape [${t.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (!isFloating(t.dtype)) throw new KilnError(`${fn}: input must be floating-point, got ${t.dtype}`, 'INVALID_ARGUMENT');
  if (t.size(0) < 1) throw new KilnError(`${fn}: input batch is empty`, 'INVALID_ARGUMENT');
  return t;
}

/** Checks that the options argument is an object with a `target`. */
export function checkOptions<T extends { target: Target }>(o: T | undefined, fn: string): T {
  if (!o || typeof o !== 'object') throw invalidParameterError(`${fn}: options`, 'an object with target', o);
  if (o.target === undefined) throw invalidParameterError(`${fn}: target`, 'a class index, an array of class indices or an int64 Tensor', undefined);
  return o;
}

/** The largest step, sample or batch count an explanation takes (its plans are JS arrays of that length). */
export const MAX_COUNT = 1_000_000;

/** A positive integer option up to MAX_COUNT (or its default). */
export function positiveInt(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_COUNT) throw invalidParameterError(name, `a positive integer up to ${MAX_COUNT}`, v);
  return v;
}

/** A finite number ≥ 0 option (or its default); `what` says what it is in the error. */
export function nonNegativeNumber(v: unknown, name: string, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw invalidParameterError(name, `a finite number ≥ 0 (${what})`, v);
  return v;
}

/** A boolean option (or its default). */
export function boolOption(v: unknown, name: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw invalidParameterError(name, 'true or false', v);
  return v;
}

/** Resolves `target` for a batch of `n` on `device` (one readback for a tensor target). */
export function targetIndex(target: Target, n: number, device: string): TargetIndex {
  if (target instanceof Tensor) {
    idOf(target, 'target');
    if (target.ndim !== 1 || target.size(0) !== n) throw new KilnError(`target tensor must have shape [${n}], got [${target.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    if (isFloating(target.dtype) || target.dtype === 'bool') throw new KilnError(`target tensor must hold integer class indices, got ${target.dtype}`, 'INVALID_ARGUMENT');
    const index = target.to({ dtype: 'int64', device: device as 'cpu' });
    const lo = index.amin(0), hi = index.amax(0);
    const min = lo.item(), max = hi.item();
    lo.dispose();
    hi.dispose();
    if (min < 0) {
      index.dispose();
      throw new KilnError(`target tensor holds a negative class index (${min})`, 'INVALID_ARGUMENT');
    }
    return { index, max };
  }
  const list = typeof target === 'number' ? new Array(n).fill(target) : target;
  if (!Array.isArray(list) || list.length !== n || !list.every((t) => Number.isInteger(t) && t >= 0))
    throw invalidParameterError('target', `a class index, ${n} class indices or an int64 Tensor [${n}]`, target);
  return { index: tensor(list, { dtype: 'int64', device: device as 'cpu' }), max: Math.max(...list) };
}

/** Logit of each image's target class: [N] (`index` may be repeated to cover a larger batch). */
export function targetLogits(model: Classifier, x: Tensor, t: TargetIndex, index: Tensor = t.index): Tensor {
  return logits(model, x, t.max).gather(1, index.unsqueeze(1)).squeeze(1);
}

/** ∂(target logit)/∂x for each image of `x` (a detached copy is differentiated; `.grad`s untouched). */
export function inputGradient(model: Classifier, x: Tensor, t: TargetIndex, index: Tensor = t.index): Tensor {
  return enableGrad(() => {
    const xi = x.detach().requiresGrad_(true);
    const [g] = autograd.grad(targetLogits(model, xi, t, index).sum(), xi, { allowUnused: true });
    if (!g) throw new KilnError('the model output does not depend on its input (no gradient reached it)', 'INVALID_ARGUMENT');
    return g;
  });
}

/** Throws when `t` holds NaN (one readback). */
export function checkNotNaN(t: Tensor, what: string): void {
  const any = t.isnan().any();
  const bad = any.item();
  any.dispose();
  if (bad) throw new KilnError(`${what} contain NaN`, 'INVALID_ARGUMENT');
}

/** Adds `parts` to running sums, freeing the old sums and the parts; the first call starts the sums. */
export function addInto(sums: Tensor[] | null, parts: Tensor[]): Tensor[] {
  if (!sums) return parts;
  const next = sums.map((t, i) => t.add(parts[i]));
  for (const t of [...sums, ...parts]) t.dispose();
  return next;
}

/**
 * A scalar baseline (a finite number; `undefined` gives 0) or a Tensor broadcastable to the input
 * `x`, checked; `name` is the option's name in errors.
 */
export function baselineOf(b: unknown, x: Tensor, name: string): number | Tensor {
  if (b === undefined) return 0;
  if (typeof b === 'number') {
    if (!Number.isFinite(b)) throw invalidParameterError(name, 'a finite number or a Tensor', b);
    return b;
  }
  if (!(b instanceof Tensor)) throw invalidParameterError(name, 'a number or a Tensor broadcastable to the input', b);
  idOf(b, name);
  const bs = b.shape, xs = x.shape;
  const ok = bs.length <= xs.length && bs.every((v, i) => v === 1 || v === xs[xs.length - bs.length + i]);
  if (!ok) throw new KilnError(`${name} of shape [${bs.join(', ')}] does not broadcast to the input [${xs.join(', ')}]`, 'INVALID_ARGUMENT');
  return b;
}

/** A permutation of 0 … n−1 drawn with randperm from the CPU generator, read back as numbers. */
export function randpermList(n: number): number[] {
  const p = randperm(n);
  try {
    return Array.from(p.dataSync() as BigInt64Array, Number);
  } finally {
    p.dispose();
  }
}
