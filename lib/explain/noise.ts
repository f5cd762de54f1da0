/**
 * Noise tunnel (Captum's NoiseTunnel): SmoothGrad, SmoothGrad² and VarGrad over any attribution
 * method. Gaussian noise of absolute standard deviation `stdevs` is added to the input `samples`
 * times (drawn from Kiln's RNG, so `kiln.manualSeed` makes it reproducible) and the per-sample
 * attributions are combined by their mean, mean square or variance.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { randn } from '../tensor/creation';
import { cat } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { Module } from '../nn/module';
import { Classifier, Target, addInto, checkModel, checkInput, checkOptions, nonNegativeNumber, positiveInt, targetIndex } from './common';
import { integratedGradients, saliency, inputXGradient, Attribution } from './attributions';

/** How the noisy attributions are combined: mean, mean of squares, or variance (Captum's nt_type). */
export type NoiseTunnelType = 'smoothgrad' | 'smoothgradSq' | 'vargrad';

/** An attribution method the noise tunnel can wrap: called with a noisy batch and a Tensor target. */
export type AttributionMethod = (model: Classifier, x: Tensor, o: { target: Target } & Record<string, unknown>) => Tensor | Attribution;

/** Built-in methods by name. */
export type AttributionMethodName = 'saliency' | 'integratedGradients' | 'inputXGradient';

/** Options of `noiseTunnel` / `smoothGrad`. */
export interface NoiseTunnelOptions {
  target: Target;
  /** noisy copies of each image (Captum's nt_samples; default 5) */
  samples?: number;
  /** standard deviation of the Gaussian noise, absolute, in the input's units (default 1.0, as Captum) */
  stdevs?: number;
  /** how the samples' attributions are combined (default 'smoothgrad') */
  type?: NoiseTunnelType;
  /** the wrapped method: a name or the function itself, e.g. `kiln.explain.integratedGradients` (default 'saliency') */
  method?: AttributionMethodName | AttributionMethod;
  /** further options of the wrapped method (e.g. `{ abs: false }`, `{ steps: 20, baseline }`) */
  methodOptions?: Record<string, unknown>;
  /** noisy samples per call of the method (default: as many as keep a call ≤ 512 images) */
  samplesPerBatch?: number;
}

const TYPES: NoiseTunnelType[] = ['smoothgrad', 'smoothgradSq', 'vargrad'];
const BUILTIN: Record<AttributionMethodName, AttributionMethod> = {
  saliency: saliency as AttributionMethod,
  integratedGradients: integratedGradients as AttributionMethod,
  inputXGradient: inputXGradient as AttributionMethod,
};

function resolveMethod(m: unknown): AttributionMethod {
  if (m === undefined) return BUILTIN.saliency;
  if (typeof m === 'function') return m as AttributionMethod;
  if (typeof m === 'string' && m in BUILTIN) return BUILTIN[m as AttributionMethodName];
  throw invalidParameterError('method', "'saliency', 'integratedGradients', 'inputXGradient' or an attribution function", m);
}

/**
 * Noise tunnel: runs `method` on `samples` noisy copies x + N(0, stdevs²) of each image and returns
 * the mean of their attributions ('smoothgrad'), the mean of their squares ('smoothgradSq') or their
 * variance E[a²] − E[a]² ('vargrad'), shaped like `x`. Noise for sample j is drawn as one [N, …]
 * tensor in order, so the result does not depend on `samplesPerBatch`.
 */
export function noiseTunnel(model: Classifier | Module, x: Tensor, o: NoiseTunnelOptions): Tensor {
  const m = checkModel(model);
  checkInput(x, 'noiseTunnel');
  checkOptions(o, 'noiseTunnel');
  const samples = positiveInt(o.samples, 'samples', 5);
  const stdevs = nonNegativeNumber(o.stdevs, 'stdevs', 1.0, 'the absolute standard deviation of the noise');
  const type = o.type ?? 'smoothgrad';
  if (!TYPES.includes(type)) throw invalidParameterError('type', "'smoothgrad', 'smoothgradSq' or 'vargrad'", o.type);
  const method = resolveMethod(o.method);
  const extra = o.methodOptions ?? {};
  if (typeof extra !== 'object' || extra === null || Array.isArray(extra)) throw invalidParameterError('methodOptions', 'an object of options for the method', o.methodOptions);
  if ('target' in extra) throw new KilnError('methodOptions must not hold target: pass it as the noise tunnel\'s own target', 'INVALID_ARGUMENT');
  const n = x.size(0);
  const perBatch = Math.min(samples, positiveInt(o.samplesPerBatch, 'samplesPerBatch', Math.max(1, Math.floor(512 / n))));
  return tidy(() => {
    const xd = x.detach();
    const t = targetIndex(o.target, n, xd.device);
    // accumulate in float64: with stdevs 0 the mean is then exactly the method's attribution
    let sums: Tensor[] | null = null;
    for (let s = 0; s < samples; s += perBatch) {
      const k = Math.min(perBatch, samples - s);
      const [bs, bsq] = tidy(() => {
        // noise from the CPU generator (moved to the input's device), so one seed gives the same samples on every device
        const noise = () => (xd.device === 'cpu' ? randn(xd.shape, { dtype: xd.dtype }) : randn(xd.shape, { dtype: xd.dtype }).to({ device: xd.device }));
        const noisy = cat(Array.from({ length: k }, () => xd.add(noise().mul(stdevs))));
        const opts: Record<string, unknown> = { ...extra, target: t.index.repeat(k) };
        const base = extra.baseline;
        if (base instanceof Tensor && base.ndim === xd.ndim && base.size(0) === n && n > 1) opts.baseline = base.repeat([k, ...base.shape.slice(1).map(() => 1)]);
        const res = method(m, noisy, opts as { target: Target });
        const a = res instanceof Tensor ? res : res?.attributions;
        if (!(a instanceof Tensor)) throw new KilnError('the attribution method must return a Tensor (or { attributions })', 'INVALID_ARGUMENT');
        if (a.ndim < 1 || a.size(0) !== k * n)
          throw new KilnError(`the attribution method returned shape [${a.shape.join(', ')}] for a batch of ${k * n}`, 'INVALID_ARGUMENT');
        const a64 = a.to({ dtype: 'float64' }).reshape([k, n, ...a.shape.slice(1)]);
        return [a64.sum(0), a64.square().sum(0)];
      });
      sums = addInto(sums, [bs, bsq]);
    }
    const [sum, sumSq] = sums!;
    const mean = sum.div(samples), meanSq = sumSq.div(samples);
    const out = type === 'smoothgrad' ? mean : type === 'smoothgradSq' ? meanSq : meanSq.sub(mean.square()).clamp(0, null);
    return out.to({ dtype: xd.dtype });
  });
}

/** SmoothGrad (Smilkov et al.): `noiseTunnel` with its defaults (saliency, mean of 5 noisy samples). */
export const smoothGrad = noiseTunnel;
