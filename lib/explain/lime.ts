/**
 * Lime (Ribeiro et al.; Captum's Lime over LimeBase) and the framework KernelShap shares with it:
 * binary coalitions over the segments of a feature mask (1: the segment keeps the input, 0: it
 * takes the baseline) are evaluated by the model in batches, weighted by a similarity kernel, and a
 * weighted linear surrogate fitted to (coalition → target logit) gives one coefficient per segment.
 * One surrogate per image, as Captum trains one per example.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { full, tensor } from '../tensor/creation';
import { cat, stack } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, Target, baselineOf, boolOption, checkModel, checkInput, checkOptions, positiveInt, targetIndex, targetLogits } from './common';
import { resolveFeatureMask } from './masks';
import { SurrogateKind, fitSurrogate } from './surrogate';

/** Options that Lime and KernelShap share. */
export interface SurrogateOptions {
  target: Target;
  /** integer segment ids 0 … M−1 broadcastable to the input ([H, W], [C, H, W], [N, 1, H, W] …; see gridMask): the interpretable features */
  featureMask: Tensor;
  /** what switched-off segments are set to: a number, or a tensor broadcastable to the input (default 0) */
  baselines?: number | Tensor;
  /** coalitions per image (Captum's n_samples; default 50) */
  samples?: number;
  /**
   * fixed coalitions instead of random ones: [S, M] of 0/1 (any dtype), used for every image
   * (`samples`, when given, must be S); KernelShap then adds no all-ones/all-zeros rows of its own
   */
  coalitions?: Tensor;
  /** perturbed images per forward pass (default 64) */
  perturbationsPerEval?: number;
  /** true (default): attributions shaped like the input, each element its segment's coefficient; false: the coefficients [N, M] */
  returnInputShape?: boolean;
}

/** How a method draws and weights coalitions, and which surrogate it fits. */
export interface SurrogatePlan {
  fn: string;
  /** random coalitions [samples, M] (0/1, float64, on the CPU) for the next image */
  draw(samples: number, count: number): Tensor;
  /** weight [k] (float64) of each coalition `z` [k, M] whose perturbed images (flattened, float64) are `pert` [k, P]; `xi`: the image [P] */
  weights(z: Tensor, pert: Tensor, xi: Tensor): Tensor;
  surrogate: SurrogateKind;
  alpha: number;
}

/** Checks injected coalitions: [S, M] with values 0 or 1; returns them as float64 on the CPU. */
function checkCoalitions(c: unknown, count: number, samples: number | undefined, fn: string): Tensor {
  idOf(c, 'coalitions');
  const t = c as Tensor;
  if (t.ndim !== 2 || t.size(1) !== count || t.size(0) < 1)
    throw new KilnError(`${fn}: coalitions must be [S, ${count}] (one column per segment of the feature mask), got [${t.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (samples !== undefined && samples !== t.size(0))
    throw new KilnError(`${fn}: samples (${samples}) differs from the number of coalitions given (${t.size(0)})`, 'INVALID_ARGUMENT');
  return tidy(() => {
    const z = t.to({ dtype: 'float64', device: 'cpu' });
    const bad = z.ne(0).logicalAnd(z.ne(1)).any().item();
    if (bad) throw new KilnError(`${fn}: coalitions must hold only 0 and 1`, 'INVALID_ARGUMENT');
    return z;
  });
}

/**
 * Runs the Lime framework with `plan` on images `x` [N, …]: per image, `samples` coalitions (drawn or
 * given), their perturbed images evaluated `perturbationsPerEval` at a time, one readback of the
 * logits and weights, and the surrogate fitted in float64. Returns the coefficients spread over the
 * segments (shaped like x) or [N, M], in x's dtype.
 */
export function surrogateAttributions(model: Classifier | Module, x: Tensor, o: SurrogateOptions, plan: SurrogatePlan): Tensor {
  const fn = plan.fn;
  const m = checkModel(model);
  checkInput(x, fn);
  checkOptions(o, fn);
  if (o.featureMask === undefined)
    throw invalidParameterError(`${fn}: featureMask`, 'an integer Tensor of segment ids broadcastable to the input (e.g. gridMask(h, w, { cell }))', undefined);
  const base = baselineOf(o.baselines, x, 'baselines');
  const samplesOption = o.samples === undefined ? undefined : positiveInt(o.samples, 'samples', 50);
  const per = positiveInt(o.perturbationsPerEval, 'perturbationsPerEval', 64);
  const inputShape = boolOption(o.returnInputShape, 'returnInputShape', true);
  const { mask, count } = resolveFeatureMask(o.featureMask, x, fn);
  const n = x.size(0);
  try {
    const given = o.coalitions === undefined ? null : checkCoalitions(o.coalitions, count, samplesOption, fn);
    const samples = given ? given.size(0) : samplesOption ?? 50;
    try {
      return tidy(() => noGrad(() => {
        const xd = x.detach();
        const dims = xd.shape.slice(1);
        const opts = { dtype: xd.dtype, device: xd.device };
        const b = base instanceof Tensor ? base.to(opts).expand(xd.shape) : full(xd.shape, base, opts);
        const t = targetIndex(o.target, n, xd.device);
        const rows: Tensor[] = [];
        for (let i = 0; i < n; i++)
          rows.push(tidy(() => {
            const z = given ?? plan.draw(samples, count);
            const seg = mask.select(0, i).flatten(); // [P] segment of each element
            const xi = xd.select(0, i), bi = b.select(0, i);
            const xFlat = xi.flatten().to({ dtype: 'float64' });
            const ys: Tensor[] = [], ws: Tensor[] = [];
            for (let s = 0; s < samples; s += per) {
              const k = Math.min(per, samples - s);
              const zk = z.narrow(0, s, k).to(opts);
              const on = zk.indexSelect(1, seg).reshape([k, ...dims]);
              const pert = xi.unsqueeze(0).mul(on).add(bi.unsqueeze(0).mul(on.rsub(1)));
              ys.push(targetLogits(m, pert, t, t.index.narrow(0, i, 1).repeat(k)).to({ dtype: 'float64' }));
              ws.push(plan.weights(zk.to({ dtype: 'float64' }), pert.flatten(1).to({ dtype: 'float64' }), xFlat));
            }
            const design = {
              z: z.contiguous().dataSync() as Float64Array,
              y: cat(ys).cpu().dataSync() as Float64Array,
              w: cat(ws).cpu().dataSync() as Float64Array,
              rows: samples,
              cols: count,
            };
            const fit = fitSurrogate(design, plan.surrogate, plan.alpha);
            const coef = tensor(fit.coef, { dtype: 'float64' }).to(opts);
            return inputShape ? coef.indexSelect(0, seg).reshape(dims) : coef;
          }));
        return stack(rows);
      }));
    } finally {
      given?.dispose();
    }
  } finally {
    mask.dispose();
  }
}

/** Options of `lime`. */
export interface LimeOptions extends SurrogateOptions {
  /** distance between the image and a perturbed image for the similarity kernel (Captum's distance_mode; default cosine) */
  distanceMode?: 'cosine' | 'euclidean';
  /** width σ of the exponential kernel exp(−d² / (2σ²)) (default 1; Infinity weighs every coalition 1) */
  kernelWidth?: number;
  /** the linear surrogate: lasso (default, Captum's SkLearnLasso), ridge, or linear (weighted least squares) */
  surrogate?: SurrogateKind;
  /** penalty of the lasso (default 0.01, Captum's) or ridge (default 1, scikit-learn's); not for linear */
  alpha?: number;
}

/** The exponential kernel of Captum's Lime: exp(−d² / (2σ²)) with d the cosine or Euclidean distance. */
function limeWeights(mode: 'cosine' | 'euclidean', width: number): SurrogatePlan['weights'] {
  return (_z, pert, xi) => {
    let d: Tensor;
    if (mode === 'cosine') {
      // torch's cosine_similarity: x·y / sqrt(max(‖x‖²‖y‖², ε²)), ε = 1e-8
      const dot = pert.matmul(xi);
      const norms = pert.square().sum(1).mul(xi.square().sum()).clamp(1e-16).sqrt();
      d = dot.div(norms).rsub(1);
    } else d = pert.sub(xi.unsqueeze(0)).square().sum(1).sqrt();
    return d.square().div(-2 * width * width).exp();
  };
}

/**
 * Lime attributions of the target logits for images `x` [N, C, H, W] over the segments of
 * `featureMask`. Per image: `samples` coalitions, each segment on with probability ½ (Captum's
 * default perturb_func: `bernoulli(½)` draws [samples, M] from the CPU generator, the same
 * coalitions as Captum's one-row-at-a-time draws under the same `manualSeed`); each perturbed
 * image x·z + baseline·(1 − z) weighted by exp(−d² / (2·kernelWidth²)), d its cosine (or
 * Euclidean) distance to x; the surrogate fitted with an intercept. The lasso is solved exactly by
 * coordinate descent (scikit-learn stops earlier, so Captum's coefficients differ slightly); the
 * ridge and linear surrogates are not Captum's default.
 */
export function lime(model: Classifier | Module, x: Tensor, o: LimeOptions): Tensor {
  checkOptions(o, 'lime');
  const mode = o.distanceMode ?? 'cosine';
  if (mode !== 'cosine' && mode !== 'euclidean') throw invalidParameterError('distanceMode', "'cosine' or 'euclidean'", o.distanceMode);
  const width = o.kernelWidth ?? 1;
  if (typeof width !== 'number' || Number.isNaN(width) || width <= 0) throw invalidParameterError('kernelWidth', 'a number > 0 (Infinity for equal weights)', o.kernelWidth);
  const surrogate = o.surrogate ?? 'lasso';
  if (!['lasso', 'ridge', 'linear'].includes(surrogate)) throw invalidParameterError('surrogate', "'lasso', 'ridge' or 'linear'", o.surrogate);
  if (surrogate === 'linear' && o.alpha !== undefined) throw new KilnError("lime: alpha is the penalty of the lasso and ridge surrogates; the linear surrogate has none", 'INVALID_ARGUMENT');
  let alpha = o.alpha ?? (surrogate === 'ridge' ? 1 : 0.01);
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || alpha < 0 || (surrogate === 'ridge' && alpha === 0))
    throw invalidParameterError('alpha', surrogate === 'ridge' ? 'a finite number > 0 (use surrogate linear for none)' : 'a finite number ≥ 0', o.alpha);
  if (surrogate === 'linear') alpha = 0;
  return surrogateAttributions(model, x, o, {
    fn: 'lime',
    draw: (samples, count) => tidy(() => full([samples, count], 0.5, { dtype: 'float32' }).bernoulli().to({ dtype: 'float64' })),
    weights: limeWeights(mode, width),
    surrogate,
    alpha,
  });
}
