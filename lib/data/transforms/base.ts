/**
 * Batch transforms: each maps a whole batch x [B, C, H, W] (float32 in 0..1, any device) to a
 * new tensor with tensor ops, drawing per-sample random numbers on x's device, so that
 * `kiln.manualSeed` makes them reproducible. A [C, H, W] image is treated as a batch of one.
 * Intermediates are freed; the input is left alone (the caller owns it).
 */
import { KilnError, invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { tensor, rand } from '../../tensor/creation';
import { tidy } from '../../tensor/memory';

/** A batch transform: returns a new tensor, never disposes its input. */
export type BatchTransform = (x: Tensor) => Tensor;

const EVAL = Symbol('kiln.evalTransform');

/**
 * Marks `fn` as a random augmentation whose evaluation counterpart is `evalFn` (null: none, the
 * images pass unchanged). `forEvaluation` uses it to build validation/test transforms.
 */
export function augmentation(fn: BatchTransform, evalFn: BatchTransform | null): BatchTransform {
  (fn as unknown as Record<symbol, unknown>)[EVAL] = evalFn;
  return fn;
}

/**
 * The transform to use on evaluation data: Kiln's random augmentations are dropped or replaced by
 * their deterministic counterparts (a random crop → a centre crop, a random resized crop → a
 * resize), deterministic steps (normalize, resize, your own functions) are kept. Undefined when
 * nothing is left. Mark your own random transforms with `augmentation(fn, evalFn)`.
 */
export function forEvaluation(t: BatchTransform | undefined): BatchTransform | undefined {
  if (t === undefined) return undefined;
  const rec = t as unknown as Record<symbol, unknown>;
  if (!(EVAL in rec)) return t;
  return (rec[EVAL] as BatchTransform | null) ?? undefined;
}

/** Wraps a [B, C, H, W] body: checks the input, accepts [C, H, W], frees intermediates. */
export function batched(name: string, body: (x: Tensor, b: number, c: number, h: number, w: number) => Tensor): BatchTransform {
  const fn = (x: Tensor): Tensor => {
    if (!(x instanceof Tensor) || x.isDisposed) throw invalidParameterError(`${name}(x)`, 'a Tensor [B, C, H, W]', x);
    if (x.ndim !== 4 && x.ndim !== 3) throw new KilnError(`${name}: expected a batch [B, C, H, W] or an image [C, H, W], got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    return tidy(() => {
      const x4 = x.ndim === 3 ? x.unsqueeze(0) : x;
      const [b, c, h, w] = x4.shape;
      const out = body(x4, b, c, h, w);
      return x.ndim === 3 ? out.squeeze(0) : out === x ? x.clone() : out;
    });
  };
  Object.defineProperty(fn, 'name', { value: name });
  return fn;
}

export function probability(p: unknown, name = 'p'): number {
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw invalidParameterError(name, 'a probability in [0, 1]', p);
  return p;
}
export function range2(v: unknown, name: string, min = 0): [number, number] {
  if (!Array.isArray(v) || v.length !== 2 || !v.every((a) => typeof a === 'number' && Number.isFinite(a) && a >= min) || v[0] > v[1])
    throw invalidParameterError(name, `[low, high] with ${min} ≤ low ≤ high`, v);
  return [v[0], v[1]];
}
export function nonNegInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw invalidParameterError(name, 'a non-negative integer', v);
  return v;
}
/** Per-sample uniform values in [lo, hi), shape [B]. */
export function uniform(b: number, lo: number, hi: number, x: Tensor): Tensor {
  return rand([b], { device: x.device }).mul(hi - lo).add(lo);
}

/** Runs the transforms in order; intermediates are freed. */
export function compose(...transforms: BatchTransform[]): BatchTransform {
  const list = transforms.length === 1 && Array.isArray(transforms[0]) ? (transforms[0] as unknown as BatchTransform[]) : transforms;
  list.forEach((t, i) => {
    if (typeof t !== 'function') throw invalidParameterError(`transforms[${i}]`, 'a function (x: Tensor) => Tensor', t);
  });
  const run = (x: Tensor): Tensor => {
    let cur = x;
    for (const t of list) {
      const next = t(cur);
      if (cur !== x && next !== cur) cur.dispose();
      cur = next;
    }
    return cur === x ? x.clone() : cur;
  };
  // evaluation: each step's counterpart, so a composed augmentation pipeline has one too
  if (!list.some((t) => forEvaluation(t) !== t)) return run;
  const evalParts = list.map((t) => forEvaluation(t)).filter((t): t is BatchTransform => t !== undefined);
  return augmentation(run, evalParts.length === 0 ? null : evalParts.length === 1 ? evalParts[0] : compose(...evalParts));
}

/** (x - mean) / std per channel; `mean` and `std` have one value per channel (or one for all). */
export function normalize(mean: number[], std: number[]): BatchTransform {
  const ok = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((a) => typeof a === 'number' && Number.isFinite(a));
  if (!ok(mean)) throw invalidParameterError('mean', 'a non-empty array of numbers', mean);
  if (!ok(std) || std.some((s) => s <= 0)) throw invalidParameterError('std', 'a non-empty array of positive numbers', std);
  if (mean.length !== std.length) throw new KilnError(`normalize: mean has ${mean.length} values but std has ${std.length}`, 'INVALID_ARGUMENT');
  return batched('normalize', (x, _b, c) => {
    if (mean.length !== 1 && mean.length !== c) throw new KilnError(`normalize: ${mean.length} mean/std values for ${c} channels`, 'INVALID_ARGUMENT');
    const shape = [1, mean.length, 1, 1];
    const m = tensor(mean, { shape, device: x.device, dtype: x.dtype });
    const s = tensor(std, { shape, device: x.device, dtype: x.dtype });
    return x.sub(m).div(s);
  });
}
