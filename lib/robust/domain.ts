/**
 * Pixel space and model space. Kiln's loaders usually hand models normalised inputs
 * ((pixel − mean) / std), but perturbation budgets, image bounds and corruptions are defined on
 * pixels in [0, 1]. A `Domain` converts between the two so every attack and corruption works on
 * pixels while the model keeps receiving what it was trained on.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { noGrad } from '../autograd';
import { Module, saveModes } from '../nn/module';
import { Classifier } from '../nn/classifier';

/** How the model's inputs relate to pixels: x_model = (pixel − mean) / std, per channel. */
export interface Normalization {
  /** per-channel means of the model's input normalisation (default: none, inputs are pixels) */
  mean?: number[];
  /** per-channel standard deviations (default: none) */
  std?: number[];
  /** the valid pixel range (default [0, 1]) */
  bounds?: [number, number];
}

/** Pixel ↔ model-space conversions bound to one device and dtype (see `Domain.bind`). */
export interface Converter {
  toPixels(x: Tensor): Tensor;
  /** differentiable */
  toModel(p: Tensor): Tensor;
  dispose(): void;
}

/** Converts between the model's input space and pixels for images [N, C, H, W]. */
export class Domain {
  readonly lo: number;
  readonly hi: number;
  private readonly mean: number[] | null;
  private readonly std: number[] | null;

  constructor(o: Normalization = {}, what = 'options') {
    if (o === null || typeof o !== 'object') throw invalidParameterError(what, 'an object', o);
    const b = o.bounds ?? [0, 1];
    if (!Array.isArray(b) || b.length !== 2 || !b.every(Number.isFinite) || !(b[0] < b[1])) throw invalidParameterError(`${what}.bounds`, '[lo, hi] with lo < hi', b);
    [this.lo, this.hi] = b;
    if ((o.mean === undefined) !== (o.std === undefined)) throw new KilnError(`${what}: give both mean and std (the model's input normalisation) or neither`, 'INVALID_ARGUMENT');
    const list = (v: unknown, name: string, positive: boolean) => {
      if (!Array.isArray(v) || v.length === 0 || !v.every((e) => typeof e === 'number' && Number.isFinite(e) && (!positive || e > 0)))
        throw invalidParameterError(`${what}.${name}`, `a non-empty array of ${positive ? 'positive ' : ''}finite numbers (one per channel)`, v);
      return v as number[];
    };
    this.mean = o.mean === undefined ? null : list(o.mean, 'mean', false);
    this.std = o.std === undefined ? null : list(o.std, 'std', true);
    if (this.mean && this.std && this.mean.length !== this.std.length) throw new KilnError(`${what}: mean has ${this.mean.length} entries but std has ${this.std.length}`, 'INVALID_ARGUMENT');
  }

  /** Whether the model takes normalised inputs. */
  get normalized(): boolean {
    return this.mean !== null;
  }

  /**
   * Conversions for tensors like `like` (its device, dtype and channel count) with the mean/std
   * tensors built once: use inside a `tidy` (or call `dispose()`).
   */
  bind(like: Tensor): Converter {
    if (!this.mean) return { toPixels: (x) => x.clone(), toModel: (p) => p.view(p.shape), dispose: () => {} };
    const c = like.size(1);
    const k = this.mean.length;
    if (k !== 1 && k !== c) throw new KilnError(`mean/std have ${k} entries but the images have ${c} channels`, 'INVALID_ARGUMENT');
    const opts = { device: like.device as 'cpu', dtype: like.dtype };
    const m = tensor(this.mean, { ...opts, shape: [1, k, 1, 1] });
    const s = tensor(this.std!, { ...opts, shape: [1, k, 1, 1] });
    return {
      toPixels: (x) => x.mul(s).add_(m),
      toModel: (p) => p.sub(m).div(s),
      dispose: () => { m.dispose(); s.dispose(); },
    };
  }

  /** Throws when pixels lie outside the bounds (the usual sign of forgotten mean/std). */
  checkPixels(p: Tensor, what: string): void {
    const [lo, hi] = noGrad(() => {
      const a = p.min(), b = p.max();
      const r = [a.item(), b.item()];
      a.dispose();
      b.dispose();
      return r;
    });
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new KilnError(`${what} contains NaN or infinite values`, 'INVALID_ARGUMENT');
    const tol = 1e-3 * (this.hi - this.lo);
    if (lo < this.lo - tol || hi > this.hi + tol)
      throw new KilnError(
        `${what} has pixel values in [${lo.toPrecision(4)}, ${hi.toPrecision(4)}], outside the bounds [${this.lo}, ${this.hi}]` +
          (this.normalized ? ' (is mean/std the model\'s normalisation?)' : ' (if the model takes normalised inputs, pass its mean and std)'),
        'INVALID_ARGUMENT',
      );
  }
}

/** Checks an image batch [N, C, H, W] of floats. */
export function checkImages(x: unknown, what = 'x'): Tensor {
  idOf(x as Tensor, what);
  const t = x as Tensor;
  if (t.ndim !== 4) throw new KilnError(`${what} must be images [N, C, H, W], got shape [${t.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (!['float32', 'float64', 'float16', 'bfloat16'].includes(t.dtype)) throw new KilnError(`${what} must be a floating-point tensor, got ${t.dtype}`, 'INVALID_ARGUMENT');
  if (t.size(0) === 0) throw new KilnError(`${what} is an empty batch`, 'INVALID_ARGUMENT');
  return t;
}

/** Checks labels [N] of class indices (int64 on any device) and returns them on x's device. */
export function checkLabels(y: unknown, n: number, what = 'y'): Tensor {
  let t: Tensor;
  if (Array.isArray(y)) {
    if (!y.every((v) => Number.isInteger(v) && v >= 0)) throw invalidParameterError(what, 'class indices (non-negative integers)', y);
    t = tensor(y, { dtype: 'int64' });
  } else {
    idOf(y as Tensor, what);
    t = (y as Tensor).view((y as Tensor).shape);
  }
  if (t.ndim !== 1 || t.size(0) !== n) {
    const s = t.shape;
    t.dispose();
    throw new KilnError(`${what} must be class indices of shape [${n}], got shape [${s.join(', ')}]`, 'INVALID_ARGUMENT');
  }
  if (t.dtype !== 'int64') {
    const d = t.dtype;
    t.dispose();
    throw new KilnError(`${what} must be an int64 tensor of class indices, got ${d}`, 'INVALID_ARGUMENT');
  }
  return t;
}

/**
 * Runs fn with the model in eval (false) or train (true) mode — null leaves it — and restores
 * every submodule's own mode afterwards (a frozen batch norm stays in eval mode).
 */
export function inMode<T>(model: Classifier, training: boolean | null, fn: () => T): T {
  if (training === null || !(model instanceof Module)) return fn();
  const restore = saveModes(model);
  model.train(training);
  try {
    return fn();
  } finally {
    restore();
  }
}
