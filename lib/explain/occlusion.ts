/**
 * Occlusion (Zeiler & Fergus; Captum's Occlusion): a window slides over the input with the given
 * strides; each position is replaced by the baseline and the drop of the target logit,
 * f(x) − f(occluded), is credited to every element the window covered. An element's attribution
 * is the average over the windows that cover it. Windows are built as tensors (outer products of
 * per-dimension indicators) and evaluated `perturbationsPerEval` at a time, without gradients.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { arange, full, tensor } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, Target, addInto, baselineOf, checkModel, checkInput, checkOptions, positiveInt, targetIndex, targetLogits } from './common';

/** Options of `occlusion`. */
export interface OcclusionOptions {
  target: Target;
  /** the occluding window over one image: [c, h, w], or [h, w] for all channels at once */
  window: number[];
  /** steps of the window per dimension: one number for all, or one per window dimension (default 1) */
  strides?: number | number[];
  /** what occluded elements are set to: a number, or a tensor broadcastable to the input (default 0) */
  baseline?: number | Tensor;
  /** windows evaluated per forward pass, each on the whole batch (default: as many as keep a pass ≤ 64 images) */
  perturbationsPerEval?: number;
}

/** Window, strides and window counts per non-batch dimension, validated as Captum does. */
function geometry(x: Tensor, o: OcclusionOptions): { win: number[]; strides: number[]; counts: number[] } {
  const dims = x.shape.slice(1);
  const names = dims.length === 3 ? ['c', 'h', 'w'] : dims.map((_, i) => `dim ${i + 1}`);
  let win = o.window;
  if (!Array.isArray(win) || !win.every((v) => Number.isInteger(v) && v >= 1))
    throw invalidParameterError('window', `positive integers [c, h, w]${dims.length === 3 ? ' or [h, w]' : ''}`, o.window);
  const shorthand = dims.length === 3 && win.length === 2;
  if (shorthand) win = [dims[0], ...win];
  if (win.length !== dims.length) throw new KilnError(`window has ${o.window.length} dimensions but each input is [${dims.join(', ')}]`, 'INVALID_ARGUMENT');
  win.forEach((w, i) => {
    if (w > dims[i]) throw new KilnError(`window [${win.join(', ')}] is larger than the input [${dims.join(', ')}] (${names[i]}: ${w} > ${dims[i]})`, 'INVALID_ARGUMENT');
  });
  let strides: number[];
  const s = o.strides ?? 1;
  if (typeof s === 'number') strides = win.map((_, i) => (shorthand && i === 0 ? 1 : s));
  else if (Array.isArray(s) && (s.length === win.length || (shorthand && s.length === 2))) strides = s.length === win.length ? s : [1, ...s];
  else strides = [];
  if (strides.length !== win.length || !strides.every((v) => Number.isInteger(v) && v >= 1))
    throw invalidParameterError('strides', `a positive integer or ${o.window.length} positive integers`, o.strides);
  strides.forEach((st, i) => {
    if (win[i] < dims[i] && st > win[i]) throw new KilnError(`stride ${st} is larger than the window (${win[i]}) along ${names[i]}: some elements would never be occluded`, 'INVALID_ARGUMENT');
  });
  const counts = dims.map((d, i) => Math.ceil((d - win[i]) / strides[i]) + 1);
  return { win, strides, counts };
}

/**
 * Occlusion attributions, shaped like `x` [N, C, H, W]: for each element, the mean of
 * f(x) − f(x with a window replaced by the baseline) over the windows covering it (Captum's
 * Occlusion; the last window of a dimension is cut at the border when the strides do not fit).
 */
export function occlusion(model: Classifier | Module, x: Tensor, o: OcclusionOptions): Tensor {
  const m = checkModel(model);
  checkInput(x, 'occlusion');
  checkOptions(o, 'occlusion');
  const { win, strides, counts } = geometry(x, o);
  const base = baselineOf(o.baseline, x, 'baseline');
  const n = x.size(0);
  const dims = x.shape.slice(1);
  const P = dims.reduce((a, b) => a * b, 1);
  const total = counts.reduce((a, b) => a * b, 1);
  const per = Math.min(total, positiveInt(o.perturbationsPerEval, 'perturbationsPerEval', Math.max(1, Math.floor(64 / n))));
  return tidy(() => noGrad(() => {
    const xd = x.detach();
    const opts = { dtype: xd.dtype, device: xd.device };
    const b = base instanceof Tensor ? base.to(opts).expand(xd.shape).unsqueeze(0) : full([], base, opts);
    const t = targetIndex(o.target, n, xd.device);
    const f0 = targetLogits(m, xd, t); // [N]
    const positions = dims.map((d) => arange(0, d, 1, opts)); // per dimension [D]
    let sums: Tensor[] | null = null;
    for (let s = 0; s < total; s += per) {
      const k = Math.min(per, total - s);
      const [a, c] = tidy(() => {
        // window j's start along each dimension (first dimension varies fastest, as Captum)
        const starts = dims.map(() => new Array<number>(k));
        for (let j = 0; j < k; j++) {
          let rem = s + j;
          counts.forEach((cnt, d) => {
            starts[d][j] = (rem % cnt) * strides[d];
            rem = Math.floor(rem / cnt);
          });
        }
        // mask [k, …dims]: outer product of indicators start ≤ pos < start + window
        let mask = full([k, ...dims.map(() => 1)], 1, opts);
        for (let d = 0; d < dims.length; d++) {
          const st = tensor(starts[d], opts).unsqueeze(1);
          const pos = positions[d].unsqueeze(0);
          const ind = pos.ge(st).logicalAnd(pos.lt(st.add(win[d]))).to({ dtype: xd.dtype });
          mask = mask.mul(ind.reshape([k, ...dims.map((len, e) => (e === d ? len : 1))]));
        }
        const mk = mask.unsqueeze(1); // [k, 1, …dims]
        const occluded = xd.unsqueeze(0).mul(mk.rsub(1)).add(mk.mul(b)).reshape([k * n, ...dims]);
        const drop = f0.unsqueeze(0).sub(targetLogits(m, occluded, t, t.index.repeat(k)).reshape([k, n])); // [k, N]
        const flat = mask.reshape([k, P]);
        return [drop.t().matmul(flat), flat.sum(0)]; // [N, P], [P]
      });
      sums = addInto(sums, [a, c]);
    }
    const [attr, cover] = sums!;
    return attr.div(cover).reshape(xd.shape);
  }));
}
