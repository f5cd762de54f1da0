/**
 * Explanation metrics (Captum's captum.metrics; Yeh et al. 2019, "On the (In)fidelity and
 * Sensitivity of Explanations"): `infidelity`, the expected squared error between the attribution
 * times a perturbation and the change of the output, and `sensitivityMax`, the largest relative
 * change of an explanation under small input perturbations. Both repeat each image `samples` times
 * image-major (Captum's repeat_interleave) and evaluate `maxExamplesPerBatch` rows at a time.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { cat, where } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { cpuDraw } from '../robust/runs';
import {
  Classifier, Target, TargetIndex, boolOption, checkModel, checkInput, checkOptions, nonNegativeNumber,
  positiveInt, targetIndex, targetLogits,
} from './common';

/** Perturbs the repeated batch for `infidelity`: returns [perturbation I, perturbed input] (Captum's perturb_func), both shaped like it. */
export type InfidelityPerturb = (x: Tensor) => [Tensor, Tensor];

/** Perturbs the repeated batch for `sensitivityMax` (Captum's perturb_func): returns the perturbed input, shaped like it. */
export type SensitivityPerturb = (x: Tensor, radius: number) => Tensor;

/** An explanation for `sensitivityMax`: called with a batch (and its targets, repeated like it, when a target was given). */
export type ExplanationFunction = (x: Tensor, o: { target?: Tensor }) => Tensor | { attributions: Tensor };

/** Options of `infidelity`. */
export interface InfidelityOptions {
  target: Target;
  /** the perturbation (default: I ~ N(0, noiseScale²) per element, perturbed input x − I, as Captum's documented example) */
  perturb?: InfidelityPerturb;
  /** perturbations per image (Captum's n_perturb_samples; default 10) */
  samples?: number;
  /** scale the attributions by the optimal β first, so the score ignores their scale (default false) */
  normalize?: boolean;
  /** standard deviation of the default perturbation (default 0.003) */
  noiseScale?: number;
  /** rows (images × perturbations) per forward pass, at least N (default: all N·samples at once, as Captum) */
  maxExamplesPerBatch?: number;
}

/** Options of `sensitivityMax`. */
export interface SensitivityOptions {
  /** passed to `explain`, repeated like the batch (optional: an explanation may choose its own) */
  target?: Target;
  /** radius of the L∞ ball the default perturbation samples uniformly (default 0.02) */
  perturbRadius?: number;
  /** perturbations per image (default 10) */
  samples?: number;
  /** norm of the flattened explanations: 'fro' (L2, default), 'inf' (max |·|) or a number p ≥ 1 */
  norm?: 'fro' | 'inf' | number;
  /** the perturbation (default: x + U(−perturbRadius, perturbRadius) per element) */
  perturb?: SensitivityPerturb;
  /** rows (images × perturbations) per call of `explain`, at least N (default: all N·samples at once, as Captum) */
  maxExamplesPerBatch?: number;
}

/** Each image of `t` repeated k times in a row: [N·k, …] (torch.repeat_interleave on dim 0). */
function repeatInterleave(t: Tensor, k: number): Tensor {
  const [n, ...rest] = t.shape;
  return t.unsqueeze(1).expand([n, k, ...rest]).reshape([n * k, ...rest]);
}

/** Perturbations per chunk: how many of `samples` fit `maxExamplesPerBatch` rows of an N-image batch (Captum's batching). */
function chunkOf(max: unknown, n: number, samples: number): number {
  if (max === undefined) return samples;
  const v = positiveInt(max, 'maxExamplesPerBatch', samples * n);
  if (v < n) throw invalidParameterError('maxExamplesPerBatch', `at least the batch size (${n})`, max);
  return Math.min(samples, Math.floor(v / n));
}

/** Checks a user function's tensor result: a Tensor of `shape`. */
function checkResult(t: unknown, shape: number[], what: string): Tensor {
  if (!(t instanceof Tensor)) throw new KilnError(`${what} must be a Tensor, got ${t === null ? 'null' : typeof t}`, 'INVALID_ARGUMENT');
  idOf(t, what);
  if (t.ndim !== shape.length || t.shape.some((v, i) => v !== shape[i]))
    throw new KilnError(`${what} must have shape [${shape.join(', ')}], got [${t.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  return t;
}

function defaultInfidelityPerturb(scale: number): InfidelityPerturb {
  return (x) => {
    const noise = cpuDraw('randn', x.shape, x).to({ dtype: x.dtype }).mul(scale);
    return [noise, x.sub(noise)];
  };
}

/**
 * Infidelity of `attributions` (shaped like `x` [N, …]) for the target logits, per image [N]:
 * E_I[(Σ I ⊙ attr − (f(x) − f(x̃)))²] over `samples` perturbations (I, x̃) from `perturb`,
 * as captum.metrics.infidelity (the mean over samples of the squared error). With `normalize`,
 * Captum's β = E[(Σ I ⊙ attr)(f(x) − f(x̃))] / E[(Σ I ⊙ attr)²] (β = 0 when the denominator is 0)
 * scales the attributions first: E[(βa − b)²]. Differs from Captum in: no baselines argument for
 * `perturb`, a default perturbation (Captum has none; this is its documented example), and the
 * per-draw terms a, b kept ([N, samples], float64; the result has x's dtype) so the score is
 * computed directly instead of from Captum's expanded sums β²Σa² − 2βΣab + Σb², which cancel
 * catastrophically for nearly exact attributions (they gave 3e-19 for test/47's exact case, whose
 * direct score is 1e-32). The default draws come from the CPU
 * generator (`kiln.manualSeed`), one [N·k, …] `randn` per chunk, so they depend on the chunking.
 */
export function infidelity(model: Classifier | Module, x: Tensor, attributions: Tensor, o: InfidelityOptions): Tensor {
  const m = checkModel(model);
  checkInput(x, 'infidelity');
  checkOptions(o, 'infidelity');
  checkResult(attributions, x.shape, 'infidelity: attributions');
  const samples = positiveInt(o.samples, 'samples', 10);
  const normalize = boolOption(o.normalize, 'normalize', false);
  const scale = nonNegativeNumber(o.noiseScale, 'noiseScale', 0.003, 'the standard deviation of the default perturbation');
  if (o.perturb !== undefined && typeof o.perturb !== 'function') throw invalidParameterError('perturb', 'a function (x) => [perturbation, perturbed input]', o.perturb);
  const perturb = o.perturb ?? defaultInfidelityPerturb(scale);
  const n = x.size(0);
  const per = chunkOf(o.maxExamplesPerBatch, n, samples);
  return tidy(() => noGrad(() => {
    const xd = x.detach();
    const attr = attributions.detach().to({ dtype: xd.dtype, device: xd.device });
    const t = targetIndex(o.target, n, xd.device);
    const fx = targetLogits(m, xd, t); // [N]
    const as: Tensor[] = [], bs: Tensor[] = [];
    for (let s = 0; s < samples; s += per) {
      const k = Math.min(per, samples - s);
      const [a, b] = tidy(() => {
        const xe = repeatInterleave(xd, k);
        const res = perturb(xe);
        if (!Array.isArray(res) || res.length !== 2) throw new KilnError('infidelity: perturb must return [perturbation, perturbed input]', 'INVALID_ARGUMENT');
        const I = checkResult(res[0], xe.shape, 'infidelity: the perturbation');
        const xp = checkResult(res[1], xe.shape, 'infidelity: the perturbed input').to({ dtype: xd.dtype, device: xd.device });
        const a = repeatInterleave(attr, k).mul(I.to({ dtype: xd.dtype, device: xd.device })).flatten(1).sum(1).to({ dtype: 'float64' }).reshape([n, k]);
        const fp = targetLogits(m, xp, t, repeatInterleave(t.index, k));
        return [a, repeatInterleave(fx, k).sub(fp).to({ dtype: 'float64' }).reshape([n, k])];
      });
      as.push(a);
      bs.push(b);
    }
    // per-draw terms kept ([N, samples] each): (βa − b)² directly, not Captum's expanded β²Σa² − 2βΣab + Σb²
    const a = cat(as, 1), b = cat(bs, 1);
    let beta: Tensor | number = 1;
    if (normalize) {
      const aa = a.square().sum(1, true);
      beta = a.mul(b).sum(1, true).div(where(aa.eq(0), 1, aa));
    }
    const total = a.mul(beta).sub(b).square().sum(1);
    return total.div(samples).to({ dtype: xd.dtype });
  }));
}

/** Per-row norm of a [M, P] tensor. */
function rowNorm(t: Tensor, norm: 'fro' | 'inf' | number): Tensor {
  if (norm === 'inf') return t.abs().amax(1);
  return t.norm(norm === 'fro' ? 2 : norm, 1);
}

function explanationOf(r: unknown, rows: number): Tensor {
  const a = r instanceof Tensor ? r : (r as { attributions?: unknown } | null)?.attributions;
  if (!(a instanceof Tensor)) throw new KilnError('sensitivityMax: explain must return a Tensor (or { attributions })', 'INVALID_ARGUMENT');
  idOf(a, 'the explanation');
  if (a.ndim < 1 || a.size(0) !== rows) throw new KilnError(`sensitivityMax: explain returned shape [${a.shape.join(', ')}] for a batch of ${rows}`, 'INVALID_ARGUMENT');
  return a;
}

/**
 * Max-sensitivity of an explanation, per image [N]: max over `samples` perturbed inputs x̃ of
 * ‖explain(x̃) − explain(x)‖ / ‖explain(x)‖ (a zero norm counts as 1), norms over each image's
 * flattened explanation, as captum.metrics.sensitivity_max. `explain(batch, { target })` gets the
 * perturbed batch image-major (each image's perturbations in a row) with the targets repeated
 * alike. The default perturbation adds U(−r, r) noise from the CPU generator (`kiln.manualSeed`),
 * one [N·k, …] `rand` per chunk. Differs from Captum in: explanations are not run under no_grad
 * by this function (kiln's methods enable gradients themselves either way), a `target` option
 * instead of free keyword arguments, and p-norms for numeric `norm` on the flattened rows.
 */
export function sensitivityMax(explain: ExplanationFunction, x: Tensor, o: SensitivityOptions = {}): Tensor {
  if (typeof explain !== 'function') throw invalidParameterError('sensitivityMax: explain', 'a function (x, { target }) => attributions', explain);
  checkInput(x, 'sensitivityMax');
  if (!o || typeof o !== 'object') throw invalidParameterError('sensitivityMax: options', 'an object', o);
  const samples = positiveInt(o.samples, 'samples', 10);
  const radius = nonNegativeNumber(o.perturbRadius, 'perturbRadius', 0.02, 'the radius of the L∞ ball');
  const norm = o.norm ?? 'fro';
  if (!(norm === 'fro' || norm === 'inf' || (typeof norm === 'number' && Number.isFinite(norm) && norm >= 1)))
    throw invalidParameterError('norm', "'fro', 'inf' or a number p ≥ 1", o.norm);
  if (o.perturb !== undefined && typeof o.perturb !== 'function') throw invalidParameterError('perturb', 'a function (x, radius) => perturbed input', o.perturb);
  const perturb: SensitivityPerturb = o.perturb ?? ((xe, r) => xe.add(cpuDraw('rand', xe.shape, xe).to({ dtype: xe.dtype }).mul(2 * r).sub(r)));
  const n = x.size(0);
  const per = chunkOf(o.maxExamplesPerBatch, n, samples);
  return tidy(() => {
    const xd = x.detach();
    const t: TargetIndex | null = o.target === undefined ? null : targetIndex(o.target, n, xd.device);
    const e0 = explanationOf(explain(xd, t ? { target: t.index } : {}), n).detach();
    const flat0 = e0.flatten(1);
    const n0 = rowNorm(flat0, norm);
    const denom = where(n0.eq(0), 1, n0);
    let best: Tensor | null = null;
    for (let s = 0; s < samples; s += per) {
      const k = Math.min(per, samples - s);
      const worst = tidy(() => {
        const xe = repeatInterleave(xd, k);
        const xp = checkResult(perturb(xe, radius), xe.shape, 'sensitivityMax: the perturbed input');
        const ep = explanationOf(explain(xp, t ? { target: repeatInterleave(t.index, k) } : {}), n * k).detach();
        if (ep.numel !== n * k * flat0.size(1)) throw new KilnError(`sensitivityMax: explain returned shape [${ep.shape.join(', ')}] for perturbed inputs but [${e0.shape.join(', ')}] for the input`, 'INVALID_ARGUMENT');
        const diff = repeatInterleave(flat0, k).sub(ep.reshape([n * k, flat0.size(1)]));
        return rowNorm(diff, norm).div(repeatInterleave(denom, k)).reshape([n, k]).amax(1);
      });
      const next: Tensor = best ? best.maximum(worst) : worst;
      if (best) { best.dispose(); worst.dispose(); }
      best = next;
    }
    return best!;
  });
}
