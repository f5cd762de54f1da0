/**
 * Classification metrics, usable on their own or inside the trainer: accuracy, top-k
 * accuracy, confusion matrix, per-class and macro precision / recall / F1, and expected
 * calibration error. The tensor work (argmax, counting, binning) runs natively; only the
 * small results (counts, a C×C matrix, per-bin sums) are read back.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { zeros, ones } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';

/** Checks logits [N, C] (or predictions [N]) against int targets [N]. */
function checkPair(pred: unknown, target: unknown, fn: string, needLogits = false): void {
  if (!(pred instanceof Tensor) || pred.isDisposed) throw invalidParameterError(`${fn}: logits`, 'a Tensor [N, C] of scores' + (needLogits ? '' : ' or [N] of class indices'), pred);
  if (!(target instanceof Tensor) || target.isDisposed) throw invalidParameterError(`${fn}: targets`, 'a Tensor [N] of class indices', target);
  if (target.ndim !== 1) throw new KilnError(`${fn}: targets must be 1-D [N], got shape [${target.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (needLogits ? pred.ndim !== 2 : pred.ndim !== 2 && pred.ndim !== 1)
    throw new KilnError(`${fn}: logits must be [N, C]${needLogits ? '' : ' (or predictions [N])'}, got shape [${pred.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (pred.size(0) !== target.size(0))
    throw new KilnError(`${fn}: ${pred.size(0)} predictions for ${target.size(0)} targets`, 'INVALID_ARGUMENT');
}

/** Predicted class indices from logits [N, C] (or the indices themselves when 1-D). */
function predictions(pred: Tensor): Tensor {
  return pred.ndim === 2 ? pred.argmax(1) : pred.to({ dtype: 'int64' });
}

/** Number of correct top-1 predictions as a device scalar (int64), no readback. */
export function correctCount(logits: Tensor, targets: Tensor): Tensor {
  return tidy(() => noGrad(() => predictions(logits).eq(targets.to({ dtype: 'int64' })).sum()));
}

/** Number of samples whose target is among the k highest scores, as a device scalar. */
export function topKCorrectCount(logits: Tensor, targets: Tensor, k: number): Tensor {
  return tidy(() => noGrad(() => {
    const idx = logits.topk(Math.min(k, logits.size(1)), 1).indices;
    return idx.eq(targets.to({ dtype: 'int64' }).unsqueeze(1)).sum();
  }));
}

/** Fraction of samples whose predicted class (argmax of logits [N, C], or predictions [N]) equals the target. */
export function accuracy(logits: Tensor, targets: Tensor): number {
  checkPair(logits, targets, 'accuracy');
  const n = targets.size(0);
  if (n === 0) return NaN;
  const c = correctCount(logits, targets);
  try {
    return c.item() / n;
  } finally {
    c.dispose();
  }
}

/** Fraction of samples whose target is among the k highest-scoring classes. */
export function topKAccuracy(logits: Tensor, targets: Tensor, k = 5): number {
  checkPair(logits, targets, 'topKAccuracy', true);
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 1) throw invalidParameterError('topKAccuracy: k', 'a positive integer', k);
  const n = targets.size(0);
  if (n === 0) return NaN;
  const c = topKCorrectCount(logits, targets, k);
  try {
    return c.item() / n;
  } finally {
    c.dispose();
  }
}

/** Adds the confusion counts of one batch into `cm` (a float64 [C*C] device tensor), natively. */
export function accumulateConfusion(cm: Tensor, logits: Tensor, targets: Tensor, numClasses: number): void {
  tidy(() => noGrad(() => {
    const p = predictions(logits);
    const t = targets.to({ dtype: 'int64', device: p.device });
    const idx = t.mul(numClasses).add(p);
    const add = zeros([numClasses * numClasses], { dtype: 'float64', device: p.device }).scatterAdd(0, idx, ones([idx.size(0)], { dtype: 'float64', device: p.device }));
    cm.add_(add);
  }));
}

/** Reads a float64 [C*C] count tensor back as a C×C array of integers. */
export function confusionFromCounts(counts: Tensor, numClasses: number): number[][] {
  const flat = counts.dataSync() as Float64Array;
  const out: number[][] = [];
  for (let i = 0; i < numClasses; i++) out.push(Array.from(flat.subarray(i * numClasses, (i + 1) * numClasses), Math.round));
  return out;
}

/**
 * The confusion matrix: `cm[t][p]` counts samples of true class t predicted as p.
 * `logits` may be scores [N, C] or predicted indices [N]; `numClasses` defaults to C (or max+1).
 */
export function confusionMatrix(logits: Tensor, targets: Tensor, numClasses?: number): number[][] {
  checkPair(logits, targets, 'confusionMatrix');
  let c = numClasses;
  if (c === undefined) {
    if (logits.ndim === 2) c = logits.size(1);
    else c = tidy(() => Math.max(logits.max().item(), targets.max().item()) + 1);
  }
  if (typeof c !== 'number' || !Number.isInteger(c) || c < 1) throw invalidParameterError('confusionMatrix: numClasses', 'a positive integer', numClasses);
  if (logits.ndim === 2 && logits.size(1) !== c)
    throw new KilnError(`confusionMatrix: logits have ${logits.size(1)} classes, numClasses is ${c}`, 'INVALID_ARGUMENT');
  const k = c;
  return tidy(() => {
    const cm = zeros([k * k], { dtype: 'float64', device: logits.device });
    accumulateConfusion(cm, logits, targets, k);
    return confusionFromCounts(cm, k);
  });
}

/** Per-class and macro-averaged precision, recall and F1, with supports. */
export interface ClassificationReport {
  precision: number[];
  recall: number[];
  f1: number[];
  /** true samples per class */
  support: number[];
  macroPrecision: number;
  macroRecall: number;
  macroF1: number;
  /** overall accuracy (trace / total) */
  accuracy: number;
}

/**
 * Precision, recall and F1 per class and macro-averaged, from a confusion matrix (rows:
 * true class, columns: predicted). A class never predicted has precision 0 (as scikit-learn).
 */
export function classificationReport(cm: number[][]): ClassificationReport {
  if (!Array.isArray(cm) || cm.length === 0 || !cm.every((r) => Array.isArray(r) && r.length === cm.length && r.every((v) => typeof v === 'number' && v >= 0)))
    throw invalidParameterError('classificationReport: cm', 'a square C×C array of non-negative counts', cm);
  const c = cm.length;
  const precision: number[] = [], recall: number[] = [], f1: number[] = [], support: number[] = [];
  let trace = 0, total = 0;
  for (let i = 0; i < c; i++) {
    const tp = cm[i][i];
    let row = 0, col = 0;
    for (let j = 0; j < c; j++) {
      row += cm[i][j];
      col += cm[j][i];
    }
    const p = col > 0 ? tp / col : 0;
    const r = row > 0 ? tp / row : 0;
    precision.push(p);
    recall.push(r);
    f1.push(p + r > 0 ? (2 * p * r) / (p + r) : 0);
    support.push(row);
    trace += tp;
    total += row;
  }
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  return { precision, recall, f1, support, macroPrecision: mean(precision), macroRecall: mean(recall), macroF1: mean(f1), accuracy: total > 0 ? trace / total : NaN };
}

/** Precision, recall and F1 straight from logits and targets. */
export function precisionRecallF1(logits: Tensor, targets: Tensor, numClasses?: number): ClassificationReport {
  return classificationReport(confusionMatrix(logits, targets, numClasses));
}

/** Options of `expectedCalibrationError`. */
export interface CalibrationOptions {
  /** equal-width confidence bins (default 15) */
  bins?: number;
  /** the inputs are already probabilities (rows summing to 1), not logits */
  probabilities?: boolean;
}

/** Adds one batch's calibration sums into `acc` (float64 [3, bins]: count, confidence sum, correct sum). */
export function accumulateCalibration(acc: Tensor, logits: Tensor, targets: Tensor, bins: number, probabilities = false): void {
  tidy(() => noGrad(() => {
    const probs = probabilities ? logits : logits.softmax(1);
    const { values: conf, indices: pred } = probs.max(1);
    const correct = pred.eq(targets.to({ dtype: 'int64', device: pred.device })).to({ dtype: 'float64' });
    const c64 = conf.to({ dtype: 'float64' });
    const bin = c64.mul(bins).floor().clamp(0, bins - 1).to({ dtype: 'int64' });
    const n = bin.size(0);
    const dev = bin.device;
    const count = zeros([bins], { dtype: 'float64', device: dev }).scatterAdd(0, bin, ones([n], { dtype: 'float64', device: dev }));
    const confSum = zeros([bins], { dtype: 'float64', device: dev }).scatterAdd(0, bin, c64);
    const corrSum = zeros([bins], { dtype: 'float64', device: dev }).scatterAdd(0, bin, correct);
    acc.select(0, 0).add_(count);
    acc.select(0, 1).add_(confSum);
    acc.select(0, 2).add_(corrSum);
  }));
}

/** One equal-width confidence bin of a reliability diagram: [lower, upper) (the last one includes 1), its images, their mean confidence and accuracy (NaN when empty). */
export interface ReliabilityBin {
  lower: number;
  upper: number;
  count: number;
  confidence: number;
  accuracy: number;
}

/** The bins of accumulated [3, bins] sums (count, confidence sum, correct sum). */
export function binsFromSums(acc: Tensor): ReliabilityBin[] {
  const d = acc.dataSync() as Float64Array;
  const bins = d.length / 3;
  return Array.from({ length: bins }, (_, b) => {
    const n = d[b];
    return { lower: b / bins, upper: (b + 1) / bins, count: n, confidence: n > 0 ? d[bins + b] / n : NaN, accuracy: n > 0 ? d[2 * bins + b] / n : NaN };
  });
}

/** ECE of reliability bins: Σ_b (n_b / N) · |accuracy_b − confidence_b| (NaN without images). */
export function eceOfBins(bins: ReliabilityBin[]): number {
  const total = bins.reduce((a, b) => a + b.count, 0);
  if (total === 0) return NaN;
  return bins.reduce((e, b) => (b.count > 0 ? e + (b.count / total) * Math.abs(b.accuracy - b.confidence) : e), 0);
}

/** ECE from accumulated [3, bins] sums. */
export function calibrationFromSums(acc: Tensor): number {
  return eceOfBins(binsFromSums(acc));
}

/**
 * The reliability diagram's data: per equal-width bin of top softmax probability, how many images fall in it, their
 * mean confidence and their accuracy — and the ECE they make. `plotReliability` draws it.
 */
export function reliability(logits: Tensor, targets: Tensor, options: CalibrationOptions = {}): { bins: ReliabilityBin[]; ece: number } {
  checkPair(logits, targets, 'reliability', true);
  if (options === null || typeof options !== 'object') throw invalidParameterError('reliability: options', 'an object', options);
  const bins = options.bins ?? 15;
  if (typeof bins !== 'number' || !Number.isInteger(bins) || bins < 1) throw invalidParameterError('reliability: bins', 'a positive integer', bins);
  return tidy(() => {
    const acc = zeros([3, bins], { dtype: 'float64', device: logits.device });
    accumulateCalibration(acc, logits, targets, bins, !!options.probabilities);
    const b = binsFromSums(acc);
    return { bins: b, ece: eceOfBins(b) };
  });
}

/**
 * Expected calibration error: how far the model's confidence (its top softmax probability)
 * is from its accuracy, averaged over equal-width confidence bins weighted by their size.
 */
export function expectedCalibrationError(logits: Tensor, targets: Tensor, options: CalibrationOptions = {}): number {
  checkPair(logits, targets, 'expectedCalibrationError', true);
  if (options === null || typeof options !== 'object') throw invalidParameterError('expectedCalibrationError: options', 'an object', options);
  const bins = options.bins ?? 15;
  if (typeof bins !== 'number' || !Number.isInteger(bins) || bins < 1) throw invalidParameterError('expectedCalibrationError: bins', 'a positive integer', bins);
  return tidy(() => {
    const acc = zeros([3, bins], { dtype: 'float64', device: logits.device });
    accumulateCalibration(acc, logits, targets, bins, !!options.probabilities);
    return calibrationFromSums(acc);
  });
}
