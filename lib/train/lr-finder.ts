/**
 * The learning-rate range test (Smith 2017; fastai's `lr_find`): train for a few steps while the
 * learning rate grows exponentially from `startLr` to `endLr`, record the smoothed loss, stop once
 * it diverges, then put the model, the optimizer and the random generators (CPU and CUDA) back as they were.
 * Suggests the rate of steepest descent of the smoothed loss, and the rate at its minimum ÷ 10 (both, as fastai, away
 * from the curve's first tenth and last points).
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { keep } from '../tensor/memory';
import { saveRngStates } from '../tensor/creation';
import { noGrad } from '../autograd';
import type { Trainer } from './trainer';
import { BatchSource, toSource } from './sources';
import { disposeBatch } from './options';
import { linePanel, svgDocument, writePng } from './plots';

/** Options of `findLR`. */
export interface LRFinderOptions {
  /** first learning rate (default 1e-7) */
  startLr?: number;
  /** last learning rate (default 10) */
  endLr?: number;
  /** steps from startLr to endLr (default 100); the data is cycled if it has fewer batches */
  steps?: number;
  /** 'exp' (default): geometric steps; 'linear' */
  mode?: 'exp' | 'linear';
  /** weight of the loss's exponential moving average, bias-corrected (default 0.98, fastai's) */
  smoothing?: number;
  /** stop once the smoothed loss exceeds this multiple of its minimum (default 4, fastai's) */
  divergeThreshold?: number;
  /** batch size for {x, y} tensors and data sets (default 32) */
  batchSize?: number;
}

/** What `findLR` measured. */
export interface LRFinderResult {
  /** the learning rate of each step taken */
  lrs: number[];
  /** the smoothed loss after each step */
  losses: number[];
  /** each step's loss as measured */
  rawLosses: number[];
  /** the learning rate where the smoothed loss falls fastest (per log-unit of lr for 'exp') */
  steepest: number;
  /** the learning rate of the smallest smoothed loss, ÷ 10 */
  minimum: number;
  /** whether the loss diverged (or became NaN) before `endLr` */
  stoppedEarly: boolean;
}

function positive(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !(v > 0)) throw invalidParameterError(name, 'a positive number', v);
  return v;
}

/** The learning rate of step `i` of `n` between `a` and `b`. */
export function lrAt(i: number, n: number, a: number, b: number, mode: 'exp' | 'linear'): number {
  const t = n > 1 ? i / (n - 1) : 0;
  return mode === 'exp' ? a * (b / a) ** t : a + (b - a) * t;
}

/**
 * The points `[lo, hi)` the suggestions look at: as fastai, not the first tenth of the planned steps (the smoothed loss
 * is still settling there) nor the last 5 — nor a diverged last point —, unless that leaves fewer than 3 points.
 */
export function suggestionWindow(recorded: number, steps: number, stoppedEarly: boolean): [number, number] {
  const n = stoppedEarly ? Math.max(1, recorded - 1) : recorded;
  const lo = Math.floor(steps / 10), hi = n - 5;
  return hi - lo >= 3 ? [lo, hi] : [0, n];
}

/** Index of the steepest descent of `ys` against `xs` (central differences inside, one-sided at the ends, as numpy.gradient). */
export function steepestIndex(xs: number[], ys: number[]): number {
  const n = ys.length;
  if (n < 2) return 0;
  let best = 0, bestSlope = Infinity;
  for (let i = 0; i < n; i++) {
    const lo = Math.max(0, i - 1), hi = Math.min(n - 1, i + 1);
    const slope = (ys[hi] - ys[lo]) / (xs[hi] - xs[lo]);
    if (slope < bestSlope) {
      bestSlope = slope;
      best = i;
    }
  }
  return best;
}

/**
 * Runs the learning-rate range test with `trainer` (its model, optimizer, loss, objective and
 * mixed precision) on `data`, then restores the model's weights and buffers, the optimizer's state
 * and learning rates, and every random generator (CPU and CUDA: dropout on a GPU draws from its
 * device's). The trainer's scheduler is not stepped.
 */
export async function findLR(trainer: Trainer, data: BatchSource, options: LRFinderOptions = {}): Promise<LRFinderResult> {
  if (options === null || typeof options !== 'object') throw invalidParameterError('findLR: options', 'an object', options);
  const startLr = positive(options.startLr ?? 1e-7, 'findLR: startLr');
  const endLr = positive(options.endLr ?? 10, 'findLR: endLr');
  if (!(endLr > startLr)) throw invalidParameterError('findLR: endLr', `a number above startLr (${startLr})`, endLr);
  const steps = options.steps ?? 100;
  if (!Number.isInteger(steps) || steps < 2) throw invalidParameterError('findLR: steps', 'an integer ≥ 2', options.steps);
  const mode = options.mode ?? 'exp';
  if (mode !== 'exp' && mode !== 'linear') throw invalidParameterError('findLR: mode', "'exp' or 'linear'", options.mode);
  const beta = options.smoothing ?? 0.98;
  if (typeof beta !== 'number' || !(beta >= 0 && beta < 1)) throw invalidParameterError('findLR: smoothing', 'a number in [0, 1)', options.smoothing);
  const diverge = positive(options.divergeThreshold ?? 4, 'findLR: divergeThreshold');
  const src = toSource(data, 'findLR: data', { batchSize: options.batchSize, shuffle: true, seed: trainer.seed ?? 0 });

  const { model, optimizer } = trainer;
  const weights = new Map<string, Tensor>();
  noGrad(() => { for (const [k, v] of model.stateDict()) weights.set(k, keep(v.clone())); });
  const opt = optimizer.stateDict();
  const optTensors = new Map<string, Tensor>();
  noGrad(() => { for (const [k, v] of opt.tensors) optTensors.set(k, keep(v.clone())); });
  const savedOpt = { groups: opt.groups.map((g) => ({ ...g })), steps: opt.steps.map((s) => [...s]), tensors: optTensors };
  const restoreRng = saveRngStates();
  const wasTraining = model.training;
  const globalStep = trainer.globalStep, optimizerSteps = trainer.optimizerSteps;

  const lrs: number[] = [], losses: number[] = [], rawLosses: number[] = [];
  let avg = 0, best = Infinity, stoppedEarly = false;
  try {
    outer: for (let epoch = 0; lrs.length < steps; epoch++) {
      let any = false;
      for await (const batch of src.batches(epoch)) {
        any = true;
        const lr = lrAt(lrs.length, steps, startLr, endLr, mode);
        optimizer.lr = lr;
        let loss: number;
        try {
          loss = trainer.trainOnBatch(batch.x, batch.y);
        } finally {
          if (src.owned) disposeBatch(batch);
        }
        avg = beta * avg + (1 - beta) * loss;
        const smoothed = avg / (1 - beta ** (lrs.length + 1));
        lrs.push(lr);
        rawLosses.push(loss);
        losses.push(smoothed);
        if (!Number.isFinite(smoothed) || (lrs.length > 1 && smoothed > diverge * best)) {
          stoppedEarly = lrs.length < steps;
          break outer;
        }
        best = Math.min(best, smoothed);
        if (lrs.length >= steps) break outer;
      }
      if (!any) throw new KilnError('findLR: the data gave no batches', 'INVALID_ARGUMENT');
    }
  } finally {
    model.loadStateDict(weights);
    optimizer.loadStateDict(savedOpt);
    optimizer.zeroGrad();
    restoreRng();
    model.train(wasTraining);
    trainer.globalStep = globalStep;
    trainer.optimizerSteps = optimizerSteps;
    for (const t of [...weights.values(), ...optTensors.values()]) t.dispose();
  }
  const [lo, hi] = suggestionWindow(losses.length, steps, stoppedEarly);
  const xs = lrs.slice(lo, hi).map((l) => (mode === 'exp' ? Math.log(l) : l)), ys = losses.slice(lo, hi);
  let iMin = 0;
  for (let i = 1; i < ys.length; i++) if (ys[i] < ys[iMin]) iMin = i;
  return { lrs, losses, rawLosses, steepest: lrs[lo + steepestIndex(xs, ys)], minimum: lrs[lo + iMin] / 10, stoppedEarly };
}

/** Writes the range test's smoothed loss against the learning rate (log scale for 'exp' runs) to a PNG file, marking the suggestions. */
export async function plotLRFinder(r: LRFinderResult, file: string, o: { title?: string } = {}): Promise<void> {
  if (!r || !Array.isArray(r.lrs) || r.lrs.length === 0) throw invalidParameterError('plotLRFinder: result', 'what findLR returned', r);
  const xs = r.lrs.map((l) => Math.log10(l));
  const parts: string[] = [];
  const width = 640, height = 400;
  const finite = r.losses.filter(Number.isFinite);
  const lo = Math.min(...finite), hi = Math.min(Math.max(...finite), lo + 4 * (finite[0] - lo + 1e-12));
  const mark = (lr: number, color: string, label: string) => ({ xs: [Math.log10(lr), Math.log10(lr)], ys: [lo, hi], color, label });
  linePanel(parts, { x: 0, y: 0, width, height }, {
    title: o.title ?? 'Learning-rate range test', xLabel: 'learning rate', yLabel: 'smoothed loss', integerX: true,
    yRange: [lo, hi], xTickLabel: (v) => `1e${v}`,
    series: [
      { xs, ys: r.losses.map((v) => (v > hi ? NaN : v)), color: '#1f77b4', label: 'loss' },
      mark(r.steepest, '#d62728', 'steepest'), mark(r.minimum, '#2ca02c', 'min ÷ 10'),
    ],
  });
  await writePng(file, svgDocument(width, height, parts));
}
