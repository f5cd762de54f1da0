/**
 * Gamma, Dirichlet and Beta variates drawn from libtorch's CPU generator (so `kiln.manualSeed`
 * repeats them), as plain float64 numbers: the normals and uniforms of a call come in bulk (a
 * few tensors per call, not one per number) and Marsaglia–Tsang's rejection runs over them.
 */
import { invalidParameterError } from '../errors';
import { rand, randn } from './creation';
import { Tensor } from './tensor';

/** Reads a float64 CPU tensor back and frees it. */
function take(t: Tensor): Float64Array {
  try { return t.dataSync() as Float64Array; } finally { t.dispose(); }
}

function positive(v: unknown, name: string): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw invalidParameterError(name, 'a positive finite number', v);
  return v;
}
function count(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw invalidParameterError(name, 'a non-negative integer', v);
  return v;
}

/**
 * log of n Gamma(a, 1) draws: Marsaglia and Tsang's method for shape s ≥ 1 (acceptance ≥ 95 %,
 * so one bulk draw of normals and uniforms with 5 % spare usually suffices); for a < 1 through
 * Gamma(a + 1)·U^(1/a), kept in logs so that tiny shapes do not underflow to 0.
 */
function logGamma(a: number, n: number): Float64Array {
  const s = a < 1 ? a + 1 : a;
  const d = s - 1 / 3, c = 1 / Math.sqrt(9 * d);
  const out = new Float64Array(n);
  let filled = 0;
  while (filled < n) {
    const m = Math.ceil((n - filled) * 1.05) + 4;
    const z = take(randn([m], { dtype: 'float64' })), u = take(rand([m], { dtype: 'float64' }));
    for (let i = 0; i < m && filled < n; i++) {
      const v = (1 + c * z[i]) ** 3;
      if (v > 0 && Math.log(u[i]) < 0.5 * z[i] * z[i] + d - d * v + d * Math.log(v)) out[filled++] = Math.log(d * v);
    }
  }
  if (a < 1) {
    const u = take(rand([n], { dtype: 'float64' }));
    for (let i = 0; i < n; i++) out[i] += Math.log(u[i]) / a;
  }
  return out;
}

/** `n` draws from Gamma(alpha, 1) (shape alpha > 0, scale 1). */
export function sampleGamma(alpha: number, n: number): Float64Array {
  const lg = logGamma(positive(alpha, 'sampleGamma: alpha'), count(n, 'sampleGamma: n'));
  return lg.map(Math.exp);
}

/** Rows of Dirichlet(alphas) from independent log-Gamma columns (one bulk draw per distinct α). */
function dirichletRows(alphas: number[], n: number): Float64Array[] {
  const k = alphas.length;
  const logs: Float64Array[] = new Array(k);
  for (const a of new Set(alphas)) {
    const cols = alphas.flatMap((v, j) => (v === a ? [j] : []));
    const g = logGamma(a, n * cols.length);
    cols.forEach((j, q) => { logs[j] = g.subarray(q * n, (q + 1) * n); });
  }
  return Array.from({ length: n }, (_, i) => {
    let top = -Infinity;
    for (let j = 0; j < k; j++) top = Math.max(top, logs[j][i]);
    const row = new Float64Array(k);
    let sum = 0;
    for (let j = 0; j < k; j++) sum += (row[j] = Math.exp(logs[j][i] - top));
    for (let j = 0; j < k; j++) row[j] /= sum;
    return row;
  });
}

/**
 * `n` draws from Dirichlet(alphas) (each α > 0): n rows of alphas.length weights summing to 1,
 * as torch.distributions.Dirichlet (normalised Gamma(αⱼ, 1) variates).
 */
export function sampleDirichlet(alphas: number[], n: number): Float64Array[] {
  if (!Array.isArray(alphas) || alphas.length === 0) throw invalidParameterError('sampleDirichlet: alphas', 'a non-empty array of positive numbers', alphas);
  alphas.forEach((a, j) => positive(a, `sampleDirichlet: alphas[${j}]`));
  return dirichletRows(alphas, count(n, 'sampleDirichlet: n'));
}

/** One draw from Beta(a, b) (a, b > 0), or `n` of them. */
export function sampleBeta(a: number, b: number): number;
export function sampleBeta(a: number, b: number, n: number): Float64Array;
export function sampleBeta(a: number, b: number, n?: number): number | Float64Array {
  positive(a, 'sampleBeta: a');
  positive(b, 'sampleBeta: b');
  const rows = dirichletRows([a, b], n === undefined ? 1 : count(n, 'sampleBeta: n'));
  return n === undefined ? rows[0][0] : Float64Array.from(rows, (r) => r[0]);
}
