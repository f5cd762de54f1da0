/**
 * Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): one scalar T > 0 that divides a
 * trained model's logits so that its softmax probabilities match how often it is right. It leaves every prediction
 * (the argmax) as it is and is fitted on held-out data by minimising the negative log-likelihood.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { zeros } from '../tensor/creation';
import { stack } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { accumulateCalibration, calibrationFromSums } from './metrics';

/** The temperatures `fitTemperature` searches: T in [0.01, 100]. */
export const TEMPERATURE_RANGE: readonly [number, number] = [0.01, 100];

/** What `fitTemperature` (and `Trainer.calibrate`) found. */
export interface TemperatureFit {
  /** divide the logits by this before the softmax */
  temperature: number;
  /** the images it was fitted on */
  samples: number;
  /** mean negative log-likelihood of the targets before (T = 1) and after scaling */
  nllBefore: number;
  nllAfter: number;
  /** expected calibration error (equal-width confidence bins) before and after scaling */
  eceBefore: number;
  eceAfter: number;
  /** whether the best T lies at an end of `TEMPERATURE_RANGE` (the likelihood still improves beyond it, e.g. every held-out image is right) */
  atBound: boolean;
}

/** Options of `fitTemperature`. */
export interface FitTemperatureOptions {
  /** ECE bins (default 15) */
  bins?: number;
}

/** Checks logits [N, C] (finite) and targets [N] of class indices in range; names what is wrong. */
function checkInputs(logits: unknown, targets: unknown): { z: Tensor; y: Tensor } {
  if (!(logits instanceof Tensor) || logits.isDisposed) throw invalidParameterError('fitTemperature: logits', 'a live Tensor [N, C]', logits);
  if (!(targets instanceof Tensor) || targets.isDisposed) throw invalidParameterError('fitTemperature: targets', 'a live Tensor [N] of class indices', targets);
  if (logits.ndim !== 2 || logits.size(0) === 0 || logits.size(1) < 2)
    throw new KilnError(`fitTemperature: logits must be [N, C] with N ≥ 1 and C ≥ 2, got shape [${logits.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (!logits.dtype.startsWith('float') && logits.dtype !== 'bfloat16') throw new KilnError(`fitTemperature: logits must be floating point, got ${logits.dtype}`, 'INVALID_ARGUMENT');
  if (targets.ndim !== 1 || targets.size(0) !== logits.size(0))
    throw new KilnError(`fitTemperature: targets must be [N] = [${logits.size(0)}], got shape [${targets.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (!['int64', 'int32', 'int16', 'int8', 'uint8'].includes(targets.dtype)) throw new KilnError(`fitTemperature: targets must be integer class indices, got ${targets.dtype}`, 'INVALID_ARGUMENT');
  return tidy(() => {
    const z = logits.detach().to({ dtype: 'float64' });
    const y = targets.to({ dtype: 'int64', device: z.device });
    const [finite, lo, hi] = noGrad(() => [z.isfinite().all().item(), y.min().item(), y.max().item()]) as [number | boolean, number, number];
    if (!finite) throw new KilnError('fitTemperature: the logits hold NaN or infinite values', 'INVALID_ARGUMENT');
    if (lo < 0 || hi >= z.size(1)) throw new KilnError(`fitTemperature: targets must be class indices in [0, ${z.size(1) - 1}], got ${lo < 0 ? lo : hi}`, 'INVALID_ARGUMENT');
    return { z, y };
  });
}

/**
 * The mean NLL of logits·β and its first two derivatives in β:
 * f = mean(logsumexp(βz) − βz_y), f′ = mean(E_p[z] − z_y), f″ = mean(Var_p[z]) ≥ 0 (p = softmax(βz)), so f is convex in β.
 */
function nllAt(z: Tensor, zy: Tensor, beta: number): [number, number, number] {
  return tidy(() => {
    const s = z.mul(beta);
    const p = s.softmax(1);
    const ez = p.mul(z).sum(1);
    const ez2 = p.mul(z.square()).sum(1);
    const f = s.logsumexp(1).sub(zy.mul(beta)).mean();
    const g = ez.sub(zy).mean();
    const h = ez2.sub(ez.square()).mean();
    return Array.from(stack([f, g, h]).dataSync() as Float64Array) as [number, number, number];
  });
}

/**
 * The temperature T minimising the mean negative log-likelihood of `targets` under softmax(logits / T), within
 * `TEMPERATURE_RANGE`, with NLL and ECE before and after. The likelihood is convex in 1/T, so the minimum is found
 * exactly (safeguarded Newton steps on 1/T, in float64 on the logits' device); no randomness, no learning rate.
 * Scaling never changes a prediction, only its confidence. Fit on held-out data, never on the test set.
 */
export function fitTemperature(logits: Tensor, targets: Tensor, options: FitTemperatureOptions = {}): TemperatureFit {
  if (options === null || typeof options !== 'object') throw invalidParameterError('fitTemperature: options', 'an object', options);
  const bins = options.bins ?? 15;
  if (!Number.isInteger(bins) || bins < 1) throw invalidParameterError('fitTemperature: bins', 'a positive integer', options.bins);
  const { z, y } = checkInputs(logits, targets);
  try {
    return noGrad(() => tidy(() => {
      const zy = z.gather(1, y.unsqueeze(1)).squeeze(1);
      // β = 1/T; f′ is increasing, so the minimum is where it crosses 0 (or an end of the range)
      let lo = 1 / TEMPERATURE_RANGE[1], hi = 1 / TEMPERATURE_RANGE[0];
      const [nllBefore, g1, h1] = nllAt(z, zy, 1);
      let beta = 1;
      let atBound = true;
      if (nllAt(z, zy, lo)[1] >= 0) beta = lo;
      else if (nllAt(z, zy, hi)[1] <= 0) beta = hi;
      else {
        atBound = false;
        let [g, h] = [g1, h1];
        for (let i = 0; i < 200 && g !== 0; i++) {
          if (g > 0) hi = beta;
          else lo = beta;
          let next = h > 0 ? beta - g / h : NaN;
          if (!(next > lo && next < hi)) next = (lo + hi) / 2; // a Newton step that leaves the bracket: bisect
          const done = Math.abs(next - beta) <= 1e-12 * beta || hi - lo <= 1e-12 * hi;
          beta = next;
          if (done) break;
          [, g, h] = nllAt(z, zy, beta);
        }
      }
      const nllAfter = nllAt(z, zy, beta)[0];
      const ece = (scale: number) => {
        const acc = zeros([3, bins], { dtype: 'float64', device: z.device });
        accumulateCalibration(acc, z.mul(scale), y, bins);
        return calibrationFromSums(acc);
      };
      return { temperature: 1 / beta, samples: z.size(0), nllBefore, nllAfter, eceBefore: ece(1), eceAfter: ece(beta), atBound };
    }));
  } finally {
    z.dispose();
    y.dispose();
  }
}
