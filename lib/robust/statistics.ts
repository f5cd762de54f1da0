/**
 * The statistics randomized smoothing needs, in float64 JS: log-gamma and log-beta, the regularised
 * incomplete beta function I_x(a, b) (Lentz's continued fraction) and its inverse (the beta
 * distribution's quantile: safeguarded Newton), the standard normal quantile Φ⁻¹ (Wichura's AS241),
 * the one-sided Clopper–Pearson lower bound and the two-sided binomial test at p = ½. `test/46b`
 * checks them against scipy 1.10 (`scripts/make-smoothing-fixtures.py`) to ~1e-12 relative.
 */
import { invalidParameterError } from '../errors';

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/** Stirling series remainder: lgamma(x) − ((x − ½)·ln x − x + ½·ln 2π), for x ≥ 10 (error < 1e-17). */
function stirlingRemainder(x: number): number {
  const r = 1 / (x * x);
  // Bernoulli terms B_2k / (2k(2k − 1) x^(2k−1)), k = 1…7
  return (1 / x) * (1 / 12 + r * (-1 / 360 + r * (1 / 1260 + r * (-1 / 1680 + r * (1 / 1188 + r * (-691 / 360360 + r * (1 / 156)))))));
}

/** ln Γ(x) for x > 0: the Stirling series, shifted up to x ≥ 10 by Γ's recurrence. */
export function logGamma(x: number): number {
  if (!(x > 0)) return NaN;
  let shift = 0;
  let prod = 1;
  while (x < 10) {
    prod *= x;
    x += 1;
    shift++;
  }
  return (x - 0.5) * Math.log(x) - x + HALF_LOG_2PI + stirlingRemainder(x) - (shift ? Math.log(prod) : 0);
}

/** ln Γ(a) − ln Γ(a + b) for a ≥ 10, b > 0, without the cancellation of two large logs. */
function logGammaRatio(a: number, b: number): number {
  const s = a + b;
  return (a - 0.5) * Math.log1p(-b / s) - b * Math.log(s) + b + stirlingRemainder(a) - stirlingRemainder(s);
}

/**
 * ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b), a, b > 0, accurate also when a or b is large: with
 * both ≥ 10 the Stirling forms are combined before summing ((a − ½)·ln(a/(a+b)) + (b − ½)·ln(b/(a+b))
 * − ½·ln(a+b) + ½·ln 2π + remainders), so terms of size a·ln a never cancel.
 */
export function logBeta(a: number, b: number): number {
  if (a < b) [a, b] = [b, a];
  if (a < 10) return logGamma(a) + logGamma(b) - logGamma(a + b);
  if (b < 10) return logGamma(b) + logGammaRatio(a, b);
  const s = a + b;
  return (a - 0.5) * Math.log1p(-b / s) + (b - 0.5) * Math.log1p(-a / s) - 0.5 * Math.log(s) + HALF_LOG_2PI
    + stirlingRemainder(a) + stirlingRemainder(b) - stirlingRemainder(s);
}

/** Lentz's continued fraction for I_x(a, b) (Numerical Recipes' betacf); converges fast for x < (a + 1)/(a + b + 2). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  const qab = a + b, qap = a + 1, qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 100000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) return h;
  }
  return h;
}

/** x^a·(1 − x)^b / B(a, b), the continued fraction's prefactor. */
function betaFront(a: number, b: number, x: number): number {
  return Math.exp(a * Math.log(x) + b * Math.log1p(-x) - logBeta(a, b));
}

/**
 * The regularised incomplete beta function I_x(a, b) = P(X ≤ x) for X ~ Beta(a, b) (scipy's
 * `betainc(a, b, x)`), a, b > 0; `upper` gives 1 − I_x(a, b) without the loss of subtracting from 1.
 */
export function betaInc(a: number, b: number, x: number, upper = false): number {
  if (!(a > 0) || !(b > 0) || !(x >= 0 && x <= 1)) return NaN;
  if (x === 0) return upper ? 1 : 0;
  if (x === 1) return upper ? 0 : 1;
  // the fraction for I_x(a, b) converges for x below the mean; above it use I_x(a, b) = 1 − I_{1−x}(b, a)
  if (x < (a + 1) / (a + b + 2)) {
    const v = (betaFront(a, b, x) * betaContinuedFraction(a, b, x)) / a;
    return upper ? 1 - v : v;
  }
  const v = (betaFront(b, a, 1 - x) * betaContinuedFraction(b, a, 1 - x)) / b;
  return upper ? v : 1 - v;
}

/**
 * The Beta(a, b) quantile: x with I_x(a, b) = q (scipy's `beta.ppf(q, a, b)`), q in [0, 1].
 * Newton's method on ln of the nearer tail, kept inside a shrinking bracket (bisection when a step
 * leaves it), to a relative step of 1e-15.
 */
export function betaQuantile(q: number, a: number, b: number): number {
  if (!(a > 0) || !(b > 0) || !(q >= 0 && q <= 1)) return NaN;
  if (q === 0) return 0;
  if (q === 1) return 1;
  // solve on the smaller tail: I_x(a, b) = q, or 1 − I_x(a, b) = 1 − q
  const upper = q > 0.5;
  const target = upper ? 1 - q : q;
  const logTarget = Math.log(target);
  const logB = logBeta(a, b);
  let lo = 0, hi = 1;
  // start at the mean, or where the leading term of the tail's series equals the target
  let x = a / (a + b);
  if (!upper) {
    const guess = Math.exp((logTarget + Math.log(a) + logB) / a);
    if (guess > 0 && guess < x) x = guess;
  } else {
    const guess = 1 - Math.exp((logTarget + Math.log(b) + logB) / b);
    if (guess < 1 && guess > x) x = guess;
  }
  for (let it = 0; it < 300; it++) {
    const tail = betaInc(a, b, x, upper);
    // the tail is decreasing in x for the upper one, increasing for the lower one
    const above = upper ? tail < target : tail > target;
    if (above) hi = x;
    else lo = x;
    if (tail === target) return x;
    // Newton on ln(tail): d ln(tail)/dx = ±pdf/tail
    const logPdf = (a - 1) * Math.log(x) + (b - 1) * Math.log1p(-x) - logB;
    const slope = (upper ? -1 : 1) * Math.exp(logPdf - Math.log(tail));
    let next = x - (Math.log(tail) - logTarget) / slope;
    if (!(next > lo && next < hi) || !Number.isFinite(next)) next = lo > 0 ? (hi < 1 || lo > 0.5 ? 0.5 * (lo + hi) : Math.sqrt(lo * hi)) : 0.5 * hi;
    if (Math.abs(next - x) <= 1e-15 * x || hi - lo <= 1e-16 * hi) return next;
    x = next;
  }
  return x;
}

/** Wichura's AS241 (PPND16) coefficients: central region, |q − ½| ≤ 0.425. */
const A = [3.387132872796366608, 133.14166789178437745, 1971.5909503065514427, 13731.693765509461125, 45921.953931549871457, 67265.770927008700853, 33430.575583588128105, 2509.0809287301226727];
const B = [1, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077, 21213.794301586595867, 39307.89580009271061, 28729.085735721942674, 5226.495278852545925];
/** intermediate region, r = sqrt(−ln min(q, 1 − q)) ≤ 5 */
const C = [1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055, 3.64784832476320460504, 1.27045825245236838258, 0.24178072517745061177, 0.0227238449892691845833, 7.7454501427834140764e-4];
const D = [1, 2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455, 0.14810397642748007459, 0.0151986665636164571966, 5.475938084995344946e-4, 1.05075007164441684324e-9];
/** tail region, r > 5 */
const E = [6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358, 0.29656057182850489123, 0.026532189526576123093, 0.0012426609473880784386, 2.71155556874348757815e-5, 2.01033439929228813265e-7];
const F = [1, 0.59983220655588793769, 0.13692988092273580531, 0.0148753612908506148525, 7.868691311456132591e-4, 1.8463183175100546818e-5, 1.4215117583164458887e-7, 2.04426310338993978564e-15];

function poly(c: number[], x: number): number {
  let s = 0;
  for (let i = c.length - 1; i >= 0; i--) s = s * x + c[i];
  return s;
}

/** Φ⁻¹(q), the standard normal quantile (scipy's `norm.ppf`), by Wichura's AS241 (relative error ~1e-16). */
export function normalQuantile(q: number): number {
  if (!(q >= 0 && q <= 1)) return NaN;
  if (q === 0) return -Infinity;
  if (q === 1) return Infinity;
  const d = q - 0.5;
  if (Math.abs(d) <= 0.425) {
    const r = 0.180625 - d * d;
    return (d * poly(A, r)) / poly(B, r);
  }
  let r = Math.sqrt(-Math.log(d < 0 ? q : 1 - q));
  let v: number;
  if (r <= 5) {
    r -= 1.6;
    v = poly(C, r) / poly(D, r);
  } else {
    r -= 5;
    v = poly(E, r) / poly(F, r);
  }
  return d < 0 ? -v : v;
}

/** Checks a count k of n trials (integers, 0 ≤ k ≤ n, n ≥ 1). */
function checkCounts(k: number, n: number, what: string): void {
  if (!Number.isInteger(n) || n < 1) throw invalidParameterError(`${what}: n`, 'a positive integer', n);
  if (!Number.isInteger(k) || k < 0 || k > n) throw invalidParameterError(`${what}: k`, `an integer in [0, ${n}]`, k);
}

/**
 * The one-sided Clopper–Pearson lower confidence bound on a binomial proportion from k successes
 * in n trials, at confidence 1 − alpha: the Beta(k, n − k + 1) quantile at alpha (0 when k = 0).
 * Equals statsmodels' `proportion_confint(k, n, alpha=2*alpha, method='beta')[0]`, as Cohen et al. use it.
 */
export function clopperPearsonLower(k: number, n: number, alpha: number): number {
  checkCounts(k, n, 'clopperPearsonLower');
  if (typeof alpha !== 'number' || !(alpha > 0 && alpha < 1)) throw invalidParameterError('clopperPearsonLower: alpha', 'a number in (0, 1)', alpha);
  return k === 0 ? 0 : betaQuantile(alpha, k, n - k + 1);
}

/**
 * The two-sided exact binomial test of H₀: p = ½ for k successes in n trials (scipy's
 * `binomtest(k, n, 0.5).pvalue`): the probability of an outcome at most as likely as k,
 * min(1, 2·P(X ≤ min(k, n − k))).
 */
export function binomialTestHalf(k: number, n: number): number {
  checkCounts(k, n, 'binomialTestHalf');
  const m = Math.min(k, n - k);
  if (2 * m === n) return 1;
  // P(X ≤ m) for X ~ Binomial(n, ½) is I_½(n − m, m + 1)
  return Math.min(1, 2 * betaInc(n - m, m + 1, 0.5));
}
