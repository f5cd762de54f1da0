/**
 * Weighted linear surrogates for Lime and KernelShap, fitted in float64 on the host (the design is
 * small: samples × segments): least squares (minimum-norm, via a one-sided Jacobi SVD, as LAPACK's
 * gelsd behind scikit-learn's LinearRegression), ridge (Cholesky) and lasso (cyclic coordinate
 * descent). All fit an unpenalised intercept by centring on the weighted means, as scikit-learn does.
 */
import { KilnError } from '../errors';

/** Which linear model Lime fits: lasso (Captum's default), ridge, or plain least squares. */
export type SurrogateKind = 'lasso' | 'ridge' | 'linear';

/** A fitted linear surrogate: y ≈ intercept + Σ_j coef[j]·z_j. */
export interface LinearFit {
  coef: Float64Array;
  intercept: number;
}

/** The weighted design: `rows` samples × `cols` features (row-major `z`), targets `y`, weights `w` ≥ 0. */
export interface Design {
  z: Float64Array;
  y: Float64Array;
  w: Float64Array;
  rows: number;
  cols: number;
}

/** Weighted means of the columns and of y, and the centred copies. */
function centre(d: Design): { zc: Float64Array; yc: Float64Array; zMean: Float64Array; yMean: number; wSum: number } {
  const { z, y, w, rows, cols } = d;
  let wSum = 0;
  for (let i = 0; i < rows; i++) wSum += w[i];
  if (!(wSum > 0)) throw new KilnError('the surrogate model has no sample with a positive weight', 'INVALID_ARGUMENT');
  const zMean = new Float64Array(cols);
  let yMean = 0;
  for (let i = 0; i < rows; i++) {
    yMean += w[i] * y[i];
    for (let j = 0; j < cols; j++) zMean[j] += w[i] * z[i * cols + j];
  }
  yMean /= wSum;
  for (let j = 0; j < cols; j++) zMean[j] /= wSum;
  const zc = new Float64Array(rows * cols), yc = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    yc[i] = y[i] - yMean;
    for (let j = 0; j < cols; j++) zc[i * cols + j] = z[i * cols + j] - zMean[j];
  }
  return { zc, yc, zMean, yMean, wSum };
}

function withIntercept(coef: Float64Array, zMean: Float64Array, yMean: number): LinearFit {
  let b = yMean;
  for (let j = 0; j < coef.length; j++) b -= zMean[j] * coef[j];
  return { coef, intercept: b };
}

/**
 * Minimum-norm least squares of A (rows × cols, row-major) β ≈ b by a one-sided Jacobi SVD;
 * singular values below `rcond`·σ_max count as zero (numpy's default rcond: ε·max(rows, cols)).
 */
export function lstsq(a: Float64Array, b: Float64Array, rows: number, cols: number): Float64Array {
  // columns of U·Σ (copied, column-major) and V, rotated until the columns are orthogonal
  const u = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) u[j * rows + i] = a[i * cols + j];
  const v = new Float64Array(cols * cols);
  for (let j = 0; j < cols; j++) v[j * cols + j] = 1;
  const eps = 2.220446049250313e-16;
  for (let sweep = 0; sweep < 80; sweep++) {
    let rotated = false;
    for (let p = 0; p < cols - 1; p++)
      for (let q = p + 1; q < cols; q++) {
        let alpha = 0, beta = 0, gamma = 0;
        for (let i = 0; i < rows; i++) {
          const up = u[p * rows + i], uq = u[q * rows + i];
          alpha += up * up;
          beta += uq * uq;
          gamma += up * uq;
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t), s = c * t;
        for (let i = 0; i < rows; i++) {
          const up = u[p * rows + i], uq = u[q * rows + i];
          u[p * rows + i] = c * up - s * uq;
          u[q * rows + i] = s * up + c * uq;
        }
        for (let i = 0; i < cols; i++) {
          const vp = v[p * cols + i], vq = v[q * cols + i];
          v[p * cols + i] = c * vp - s * vq;
          v[q * cols + i] = s * vp + c * vq;
        }
      }
    if (!rotated) break;
  }
  const sigma = new Float64Array(cols);
  let smax = 0;
  for (let j = 0; j < cols; j++) {
    let s2 = 0;
    for (let i = 0; i < rows; i++) s2 += u[j * rows + i] ** 2;
    sigma[j] = Math.sqrt(s2);
    smax = Math.max(smax, sigma[j]);
  }
  const cut = eps * Math.max(rows, cols) * smax;
  const x = new Float64Array(cols);
  for (let j = 0; j < cols; j++) {
    if (!(sigma[j] > cut)) continue;
    // (u_jᵀ b) / σ_j², since u holds U·Σ
    let ub = 0;
    for (let i = 0; i < rows; i++) ub += u[j * rows + i] * b[i];
    const f = ub / (sigma[j] * sigma[j]);
    for (let k = 0; k < cols; k++) x[k] += f * v[j * cols + k];
  }
  return x;
}

/** Weighted least squares with an intercept; the minimum-norm solution where the design is rank-deficient. */
export function fitLeastSquares(d: Design): LinearFit {
  const { zc, yc, zMean, yMean } = centre(d);
  const { rows, cols, w } = d;
  const a = new Float64Array(rows * cols), b = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const r = Math.sqrt(w[i]);
    b[i] = r * yc[i];
    for (let j = 0; j < cols; j++) a[i * cols + j] = r * zc[i * cols + j];
  }
  return withIntercept(lstsq(a, b, rows, cols), zMean, yMean);
}

/** Weighted ridge with an intercept: minimises Σ_i w_i (y_i − b − z_i·β)² + α‖β‖² (scikit-learn's Ridge). */
export function fitRidge(d: Design, alpha: number): LinearFit {
  const { zc, yc, zMean, yMean } = centre(d);
  const { rows, cols, w } = d;
  const g = new Float64Array(cols * cols), r = new Float64Array(cols);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      const wz = w[i] * zc[i * cols + j];
      r[j] += wz * yc[i];
      for (let k = 0; k <= j; k++) g[j * cols + k] += wz * zc[i * cols + k];
    }
  for (let j = 0; j < cols; j++) g[j * cols + j] += alpha;
  // Cholesky G = L Lᵀ (lower triangle in place), then two triangular solves
  for (let j = 0; j < cols; j++) {
    for (let k = 0; k < j; k++) g[j * cols + j] -= g[j * cols + k] ** 2;
    const djj = g[j * cols + j];
    if (!(djj > 0)) throw new KilnError('the ridge system is not positive definite (alpha too small for this design)', 'INVALID_ARGUMENT');
    g[j * cols + j] = Math.sqrt(djj);
    for (let i = j + 1; i < cols; i++) {
      let s = g[i * cols + j];
      for (let k = 0; k < j; k++) s -= g[i * cols + k] * g[j * cols + k];
      g[i * cols + j] = s / g[j * cols + j];
    }
  }
  const t = new Float64Array(cols);
  for (let i = 0; i < cols; i++) {
    let s = r[i];
    for (let k = 0; k < i; k++) s -= g[i * cols + k] * t[k];
    t[i] = s / g[i * cols + i];
  }
  const beta = new Float64Array(cols);
  for (let i = cols - 1; i >= 0; i--) {
    let s = t[i];
    for (let k = i + 1; k < cols; k++) s -= g[k * cols + i] * beta[k];
    beta[i] = s / g[i * cols + i];
  }
  return withIntercept(beta, zMean, yMean);
}

/**
 * Weighted lasso with an intercept: minimises (1 / (2 Σw)) Σ_i w_i (y_i − b − z_i·β)² + α‖β‖₁, the
 * objective of scikit-learn's Lasso with sample weights (which it rescales to sum to the number of
 * samples). Cyclic coordinate descent from β = 0 until no coefficient moves by more than `tol`
 * times the largest one (scikit-learn stops on a duality gap of 1e-4 instead: its answer is
 * coarser than this one).
 */
export function fitLasso(d: Design, alpha: number, tol = 1e-12, maxSweeps = 100000): LinearFit {
  const { zc, yc, zMean, yMean, wSum } = centre(d);
  const { rows, cols, w } = d;
  const norm2 = new Float64Array(cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) norm2[j] += w[i] * zc[i * cols + j] ** 2;
  const beta = new Float64Array(cols);
  const res = Float64Array.from(yc); // yc − Zc·β
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let moved = 0, largest = 0;
    for (let j = 0; j < cols; j++) {
      if (norm2[j] === 0) continue;
      let rho = 0;
      for (let i = 0; i < rows; i++) rho += w[i] * zc[i * cols + j] * res[i];
      rho = rho / wSum + (norm2[j] / wSum) * beta[j];
      const next = (Math.sign(rho) * Math.max(Math.abs(rho) - alpha, 0)) / (norm2[j] / wSum);
      const step = next - beta[j];
      if (step !== 0) {
        for (let i = 0; i < rows; i++) res[i] -= step * zc[i * cols + j];
        beta[j] = next;
      }
      moved = Math.max(moved, Math.abs(step));
      largest = Math.max(largest, Math.abs(next));
    }
    if (moved <= tol * Math.max(largest, 1e-300)) break;
  }
  return withIntercept(beta, zMean, yMean);
}

/** Fits the chosen surrogate (α: the lasso's or ridge's penalty; unused by least squares). */
export function fitSurrogate(d: Design, kind: SurrogateKind, alpha: number): LinearFit {
  if (kind === 'lasso') return fitLasso(d, alpha);
  if (kind === 'ridge') return fitRidge(d, alpha);
  return fitLeastSquares(d);
}
