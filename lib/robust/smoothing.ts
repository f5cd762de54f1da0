/**
 * Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): the smoothed classifier g(x) = the class
 * the base model f most often returns on x + N(0, σ²I), its Monte Carlo PREDICT (abstains unless a
 * binomial test separates the top two classes) and CERTIFY (an L2 radius σ·Φ⁻¹(p_A) within which g
 * provably does not change, p_A a Clopper–Pearson lower bound), and the certified-accuracy curve.
 * Noise is in pixel units, added before the model's own normalisation (`mean`/`std`), drawn from
 * the CPU generator (`seed`: the same counts on every device); the noisy copies of all images run
 * through the model in chunks of `batchSize` under no-grad, their counts stay on the device and are
 * read once per call.
 */
import { invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { arange, onesLike, zeros } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, checkClassifier, logits as logitsOf } from '../nn/classifier';
import { Converter, Domain, Normalization, checkImages, checkLabels, inMode } from './domain';
import { classCount, cpuDraw, intOption, modelSpace, withSeed } from './runs';
import { binomialTestHalf, clopperPearsonLower, normalQuantile } from './statistics';

/** Options shared by `smoothPredict` and `certify`. */
export interface SmoothingOptions extends Normalization {
  /** the noise's standard deviation in pixel units (Cohen et al. use 0.12, 0.25, 0.5, 1.0 on images in [0, 1]) */
  sigma: number;
  /** noisy copies per image (`smoothPredict` default 100, `certify` default 100,000) */
  n?: number;
  /** the failure probability (default 0.001) */
  alpha?: number;
  /** noisy copies per forward pass (default 1000); copies of several images share a pass */
  batchSize?: number;
  /** seeds the noise (the CPU and CUDA generators' states are restored after); default: the generator as it is */
  seed?: number;
}

/** Options of `certify`. */
export interface CertifyOptions extends SmoothingOptions {
  /** copies per image that pick the class to certify (default 100) */
  n0?: number;
}

/** `smoothPredict`'s result for one image. */
export interface SmoothPrediction {
  /** the smoothed classifier's class, or -1 (abstain) */
  prediction: number;
  /** the base model's class counts over the n noisy copies */
  counts: number[];
  /** two-sided binomial test p-value of the top two counts being equally likely */
  pValue: number;
}

/** `certify`'s result for one image. */
export interface Certificate {
  /** the certified class, or -1 (abstain: p_A ≤ ½) */
  prediction: number;
  /** the certified L2 radius in pixel units, σ·Φ⁻¹(p_A) (0 when abstaining) */
  radius: number;
  /** the lower confidence bound on the probability of `guess` under noise */
  pA: number;
  /** the class the n0 selection copies picked */
  guess: number;
  /** the base model's class counts over the n estimation copies (counts[guess] is n_A) */
  counts: number[];
}

/** Smoothing options after validation. */
interface Resolved {
  sigma: number;
  n: number;
  n0: number;
  alpha: number;
  batchSize: number;
  seed: number | undefined;
  domain: Domain;
}

/** Validates smoothing options (`nDefault` for n). */
export function resolveSmoothing(o: CertifyOptions, what: string, nDefault: number): Resolved {
  if (!o || typeof o !== 'object') throw invalidParameterError(`${what}: options`, 'an object with sigma', o);
  if (typeof o.sigma !== 'number' || !Number.isFinite(o.sigma) || o.sigma <= 0) throw invalidParameterError(`${what}: sigma`, 'a finite number > 0 (pixel units, e.g. 0.25)', o.sigma);
  const alpha = o.alpha ?? 0.001;
  if (typeof alpha !== 'number' || !(alpha > 0 && alpha < 1)) throw invalidParameterError(`${what}: alpha`, 'a number in (0, 1)', o.alpha);
  return {
    sigma: o.sigma,
    alpha,
    n: intOption(o.n, nDefault, `${what}: n`),
    n0: intOption(o.n0, 100, `${what}: n0`),
    batchSize: intOption(o.batchSize, 1000, `${what}: batchSize`),
    seed: o.seed === undefined ? undefined : intOption(o.seed, 0, `${what}: seed`, 0),
    domain: new Domain(o, `${what}: options`),
  };
}

/**
 * The base model's class counts on `n` noisy copies (pixels + σ·N(0, I)) of each image of `p`
 * [N, C, H, W]: [N, classes] int64 on p's device. Copies are laid out image after image and run
 * `batchSize` at a time, so one chunk may span several images; no readback.
 */
export function noisyCounts(model: Classifier, conv: Converter, p: Tensor, n: number, sigma: number, batchSize: number, classes: number): Tensor {
  const images = p.size(0);
  const shape = p.shape.slice(1);
  let counts = zeros([images * classes], { dtype: 'int64', device: p.device });
  for (let s0 = 0; s0 < images * n; s0 += batchSize) {
    const len = Math.min(batchSize, images * n - s0);
    const next = noGrad(() => tidy(() => {
      const image = arange(s0, s0 + len, 1, { dtype: 'int64', device: p.device }).floorDivide(n);
      const noisy = p.indexSelect(0, image).add(cpuDraw('randn', [len, ...shape], p).mul(sigma));
      const pred = logitsOf(model, conv.toModel(noisy)).argmax(1);
      return counts.scatterAdd(0, image.mul(classes).add(pred), onesLike(pred));
    }));
    counts.dispose();
    counts = next;
  }
  const out = counts.view([images, classes]);
  counts.dispose();
  return out;
}

/**
 * The public entry: checks the model, x and the options, then runs `fn` with the model in eval mode
 * (every submodule's mode restored after) on x's pixels (checked against the bounds), with the
 * model's class count, under `seed`.
 */
function smoothed<T>(what: string, model: Classifier | Module, x: Tensor, options: CertifyOptions, nDefault: number,
  fn: (m: Classifier, conv: Converter, p: Tensor, r: Resolved, classes: number) => T): T {
  const m = checkClassifier(model, `${what}: model`);
  checkImages(x, `${what}: x`);
  const r = resolveSmoothing(options, what, nDefault);
  return inMode(m, false, () => tidy(() => {
    const conv = modelSpace(r.domain, x);
    try {
      const p = conv.toPixels(x.detach());
      r.domain.checkPixels(p, `${what}: x`);
      const classes = classCount(m, conv, p);
      return withSeed(r.seed, () => fn(m, conv, p, r, classes));
    } finally {
      conv.dispose();
    }
  }));
}

/** Rows of an [N, K] int64 tensor as arrays of numbers (one readback). */
function rows(t: Tensor): number[][] {
  const [n, k] = t.shape;
  const v = t.dataSync() as BigInt64Array;
  return Array.from({ length: n }, (_, i) => Array.from(v.subarray(i * k, (i + 1) * k), Number));
}

/**
 * Cohen et al.'s PREDICT: per image, the base model's class counts over `n` noisy copies (default
 * 100); the top class is returned when the two-sided binomial test of the top two counts being
 * equally likely gives p ≤ alpha, else -1 (abstain). With probability ≥ 1 − alpha a returned
 * class is the smoothed classifier's.
 */
export function smoothPredict(model: Classifier | Module, x: Tensor, options: SmoothingOptions): SmoothPrediction[] {
  return smoothed('smoothPredict', model, x, options, 100, (m, conv, p, r, classes) => {
    const c = noisyCounts(m, conv, p, r.n, r.sigma, r.batchSize, classes);
    const counts = rows(c);
    c.dispose();
    return counts.map((row) => {
      // the top two classes (ties to the lower index)
      let a = 0;
      for (let k = 1; k < row.length; k++) if (row[k] > row[a]) a = k;
      let b = a === 0 ? 1 : 0;
      for (let k = 0; k < row.length; k++) if (k !== a && row[k] > row[b]) b = k;
      const second = row.length > 1 ? row[b] : 0;
      const pValue = binomialTestHalf(row[a], row[a] + second);
      return { prediction: pValue <= r.alpha ? a : -1, counts: row, pValue };
    });
  });
}

/**
 * The certificate of counts: n_A = counts[guess] of n copies gives p_A, the one-sided (1 − alpha)
 * Clopper–Pearson lower bound; the radius is σ·Φ⁻¹(p_A) when p_A > ½, else abstain (-1, radius 0).
 */
export function certificate(counts: number[], guess: number, n: number, sigma: number, alpha: number): Certificate {
  const pA = clopperPearsonLower(counts[guess], n, alpha);
  const certified = pA > 0.5;
  return { prediction: certified ? guess : -1, radius: certified ? sigma * normalQuantile(pA) : 0, pA, guess, counts };
}

/**
 * Cohen et al.'s CERTIFY: per image, the class the base model returns most often over `n0` noisy
 * copies (default 100) is the guess; its count n_A over `n` fresh copies (default 100,000) gives
 * p_A, a lower confidence bound (Clopper–Pearson, one-sided, 1 − alpha) on its probability under
 * noise, and the smoothed classifier is certified constant within the L2 ball of radius σ·Φ⁻¹(p_A)
 * (pixel units) when p_A > ½ — with probability ≥ 1 − alpha over the draws. Else it abstains (-1).
 */
export function certify(model: Classifier | Module, x: Tensor, options: CertifyOptions): Certificate[] {
  return smoothed('certify', model, x, options, 100000, (m, conv, p, r, classes) => {
    const [guess, counts] = tidy(() => {
      const g = noisyCounts(m, conv, p, r.n0, r.sigma, r.batchSize, classes).argmax(1);
      const c = noisyCounts(m, conv, p, r.n, r.sigma, r.batchSize, classes);
      return [Array.from(g.dataSync() as BigInt64Array, Number), rows(c)];
    });
    return counts.map((row, i) => certificate(row, guess[i], r.n, r.sigma, r.alpha));
  });
}

/**
 * The certified accuracy at each radius (the curve Cohen et al. plot): the fraction of images
 * whose certificate is the true label with radius ≥ r. Abstentions count as wrong.
 */
export function certifiedAccuracy(results: Certificate[], labels: number[] | Tensor, radii: number[]): number[] {
  if (!Array.isArray(results) || results.length === 0 || !results.every((c) => c && typeof c === 'object' && Number.isInteger(c.prediction) && typeof c.radius === 'number'))
    throw invalidParameterError('certifiedAccuracy: results', "a non-empty array of certify's results", results);
  const y = checkLabels(labels, results.length, 'certifiedAccuracy: labels');
  const truth = tidy(() => Array.from(y.to({ device: 'cpu' }).dataSync() as BigInt64Array, Number));
  y.dispose();
  if (!Array.isArray(radii) || !radii.every((r) => typeof r === 'number' && r >= 0)) throw invalidParameterError('certifiedAccuracy: radii', 'an array of numbers ≥ 0', radii);
  return radii.map((radius) => results.filter((c, i) => c.prediction === truth[i] && c.radius >= radius).length / results.length);
}
