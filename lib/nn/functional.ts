/** `kiln.nn.functional`: the stateless NN ops (PyTorch's torch.nn.functional, camelCase). */
import { N } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf, optId } from '../tensor/tensor';

type Pair = number | [number, number];
/** How a loss is reduced over the batch. */
export type Reduction = 'none' | 'mean' | 'sum';

const REDUCTION: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };
function reduction(r: unknown): number {
  if (typeof r !== 'string' || !(r in REDUCTION)) throw invalidParameterError('reduction', "'none', 'mean' or 'sum'", r);
  return REDUCTION[r as Reduction];
}
/** The largest kernel size, stride, padding, dilation or group count: libtorch keeps them in 32-bit ints. */
const MAX_INT32 = 2 ** 31 - 1;
/** A size pair (`n` or `[h, w]`) of integers in [min, 2^31): what convolution and pooling take. */
export function pairOf(v: Pair, name: string, min = 0): [number, number] {
  const p = typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => Number.isInteger(x) && x >= min && x <= MAX_INT32))
    throw invalidParameterError(name, `${min === 0 ? 'a non-negative' : 'a positive'} integer below 2^31 or [h, w]`, v);
  return p as [number, number];
}
function pair(v: Pair, name: string): number[] {
  return pairOf(v, name);
}
function prob(p: unknown, name = 'p'): number {
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw invalidParameterError(name, 'a probability in [0, 1]', p);
  return p;
}
/** Checks that an options argument is an object (null or a number would fail later as a TypeError). */
export function optionsObject(o: unknown, fn: string): void {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw invalidParameterError(`${fn}: options`, 'an options object', o);
}
function need4d(x: Tensor, fn: string): void {
  idOf(x, 'input');
  if (x.ndim !== 4 && x.ndim !== 3) throw new KilnError(`${fn}: input must be [N, C, H, W] (or [C, H, W]), got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
}

export interface Conv2dOptions {
  stride?: Pair;
  /** a size, [h, w], or 'same' / 'valid' */
  padding?: Pair | 'same' | 'valid';
  dilation?: Pair;
  groups?: number;
}
/** 2-D convolution: input [N, Cin, H, W], weight [Cout, Cin/groups, kH, kW]. */
export function conv2d(input: Tensor, weight: Tensor, bias?: Tensor | null, o: Conv2dOptions = {}): Tensor {
  need4d(input, 'conv2d');
  optionsObject(o, 'conv2d');
  const padding = o.padding === 'same' || o.padding === 'valid' ? o.padding : pair(o.padding ?? 0, 'padding');
  const groups = o.groups ?? 1;
  const inChannels = input.shape[input.ndim - 3];
  // a group count past 2^31 wraps in libtorch's 32-bit arithmetic (a division by zero: SIGFPE)
  if (!Number.isInteger(groups) || groups < 1 || groups > Math.max(1, inChannels))
    throw invalidParameterError('groups', `a positive integer dividing the input's ${inChannels} channels`, groups);
  return new Tensor(N.conv2d(input.id, idOf(weight, 'weight'), optId(bias, 'bias'), pair(o.stride ?? 1, 'stride'), padding, pair(o.dilation ?? 1, 'dilation'), groups));
}

export interface Pool2dOptions {
  stride?: Pair;
  padding?: Pair;
  ceilMode?: boolean;
}
/** Max pooling; stride defaults to the kernel size. */
export function maxPool2d(input: Tensor, kernelSize: Pair, o: Pool2dOptions & { dilation?: Pair } = {}): Tensor {
  need4d(input, 'maxPool2d');
  const k = pair(kernelSize, 'kernelSize');
  return new Tensor(N.maxPool2d(input.id, k, pair(o.stride ?? k as Pair, 'stride'), pair(o.padding ?? 0, 'padding'), pair(o.dilation ?? 1, 'dilation'), !!o.ceilMode));
}
/** Average pooling; stride defaults to the kernel size. */
export function avgPool2d(input: Tensor, kernelSize: Pair, o: Pool2dOptions & { countIncludePad?: boolean } = {}): Tensor {
  need4d(input, 'avgPool2d');
  const k = pair(kernelSize, 'kernelSize');
  return new Tensor(N.avgPool2d(input.id, k, pair(o.stride ?? k as Pair, 'stride'), pair(o.padding ?? 0, 'padding'), !!o.ceilMode, o.countIncludePad ?? true));
}
/** Adaptive average pooling to a fixed output size. */
export function adaptiveAvgPool2d(input: Tensor, outputSize: Pair): Tensor {
  need4d(input, 'adaptiveAvgPool2d');
  return new Tensor(N.adaptiveAvgPool2d(input.id, pair(outputSize, 'outputSize')));
}
export function adaptiveMaxPool2d(input: Tensor, outputSize: Pair): Tensor {
  need4d(input, 'adaptiveMaxPool2d');
  return new Tensor(N.adaptiveMaxPool2d(input.id, pair(outputSize, 'outputSize')));
}

export interface BatchNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  /** use batch statistics and update the running ones */
  training?: boolean;
  momentum?: number;
  eps?: number;
}
/** Batch normalisation over dim 1 (running statistics are updated in place when training). */
export function batchNorm(input: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, o: BatchNormOptions = {}): Tensor {
  idOf(input, 'input');
  const training = !!o.training;
  if (!training && (!runningMean || !runningVar)) throw new KilnError('batchNorm: runningMean and runningVar are required when not training', 'INVALID_ARGUMENT');
  return new Tensor(N.batchNorm(input.id, optId(runningMean, 'runningMean'), optId(runningVar, 'runningVar'), optId(o.weight, 'weight'), optId(o.bias, 'bias'), training, o.momentum ?? 0.1, o.eps ?? 1e-5));
}
/** Layer normalisation over the trailing `normalizedShape` dims. */
export function layerNorm(input: Tensor, normalizedShape: number[], o: { weight?: Tensor | null; bias?: Tensor | null; eps?: number } = {}): Tensor {
  return new Tensor(N.layerNorm(idOf(input, 'input'), normalizedShape, optId(o.weight, 'weight'), optId(o.bias, 'bias'), o.eps ?? 1e-5));
}
/** Dropout (active only when `training`). */
export function dropout(input: Tensor, p = 0.5, training = true): Tensor {
  return new Tensor(N.dropout(idOf(input, 'input'), prob(p), training));
}
/** Drops whole channels (active only when `training`). */
export function dropout2d(input: Tensor, p = 0.5, training = true): Tensor {
  return new Tensor(N.dropout2d(idOf(input, 'input'), prob(p), training));
}
/** y = x Wᵀ + b */
export function linear(input: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return new Tensor(N.linear(idOf(input, 'input'), idOf(weight, 'weight'), optId(bias, 'bias')));
}
export function relu(x: Tensor): Tensor { idOf(x, 'input'); return x.relu(); }
/**
 * relu(x) whose gradient is Guided Backprop's rule (Springenberg et al.): the input gradient is
 * relu(g)·1[x > 0] for an output gradient g (only positive gradients, only where the ReLU was on).
 * A native autograd function; `kiln.explain.guidedBackprop` puts it in place of a model's ReLUs.
 */
export function guidedRelu(x: Tensor): Tensor { return new Tensor(N.guidedRelu(idOf(x, 'input'))); }
/**
 * relu(x) whose gradient is Deconvolution's rule (Zeiler & Fergus): the input gradient is relu(g)
 * for an output gradient g, whatever the sign of x. Used by `kiln.explain.deconvolution`.
 */
export function deconvRelu(x: Tensor): Tensor { return new Tensor(N.deconvRelu(idOf(x, 'input'))); }
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor { idOf(x, 'input'); return x.gelu(approximate); }
export function silu(x: Tensor): Tensor { idOf(x, 'input'); return x.silu(); }
/** x · relu6(x + 3) / 6 (torch.nn.functional.hardswish). */
export function hardswish(x: Tensor): Tensor { idOf(x, 'input'); return x.hardswish(); }
/** relu6(x + 3) / 6 (torch.nn.functional.hardsigmoid). */
export function hardsigmoid(x: Tensor): Tensor { idOf(x, 'input'); return x.hardsigmoid(); }
export function leakyRelu(x: Tensor, negativeSlope = 0.01): Tensor { idOf(x, 'input'); return x.leakyRelu(negativeSlope); }
export function softmax(x: Tensor, dim: number): Tensor { idOf(x, 'input'); return x.softmax(dim); }
export function logSoftmax(x: Tensor, dim: number): Tensor { idOf(x, 'input'); return x.logSoftmax(dim); }

export interface CrossEntropyOptions {
  /** per-class weights, shape [C] */
  weight?: Tensor | null;
  reduction?: Reduction;
  ignoreIndex?: number;
  /** 0 … 1: mixes the target with the uniform distribution */
  labelSmoothing?: number;
}
function checkClassTarget(input: Tensor, target: Tensor, fn: string): void {
  idOf(input, 'input');
  idOf(target, 'target');
  const s = input.shape, t = target.shape;
  if (target.dtype === 'int64' || target.dtype === 'int32' || target.dtype === 'uint8') {
    if (s.length < 1 || t.length !== s.length - 1 || t[0] !== s[0])
      throw new KilnError(`${fn}: class-index target of shape [${t.join(', ')}] does not match input of shape [${s.join(', ')}] (expected [${[s[0], ...s.slice(2)].join(', ')}])`, 'INVALID_ARGUMENT');
  }
}
/** Cross-entropy between logits [N, C, …] and class indices [N, …] (int64) or probabilities [N, C, …]. */
export function crossEntropy(input: Tensor, target: Tensor, o: CrossEntropyOptions = {}): Tensor {
  checkClassTarget(input, target, 'crossEntropy');
  const ls = o.labelSmoothing ?? 0;
  prob(ls, 'labelSmoothing');
  return new Tensor(N.crossEntropy(input.id, target.id, optId(o.weight, 'weight'), reduction(o.reduction ?? 'mean'), o.ignoreIndex ?? -100, ls));
}
/** Negative log-likelihood of log-probabilities [N, C, …] at class indices [N, …]. */
export function nllLoss(input: Tensor, target: Tensor, o: Omit<CrossEntropyOptions, 'labelSmoothing'> = {}): Tensor {
  checkClassTarget(input, target, 'nllLoss');
  return new Tensor(N.nllLoss(input.id, target.id, optId(o.weight, 'weight'), reduction(o.reduction ?? 'mean'), o.ignoreIndex ?? -100));
}
/** Mean squared error. */
export function mseLoss(input: Tensor, target: Tensor, o: { reduction?: Reduction } = {}): Tensor {
  return new Tensor(N.mseLoss(idOf(input, 'input'), idOf(target, 'target'), reduction(o.reduction ?? 'mean')));
}
/** Mean absolute error. */
export function l1Loss(input: Tensor, target: Tensor, o: { reduction?: Reduction } = {}): Tensor {
  return new Tensor(N.l1Loss(idOf(input, 'input'), idOf(target, 'target'), reduction(o.reduction ?? 'mean')));
}
/**
 * KL divergence; `input` holds log-probabilities, `target` probabilities (or log-probabilities
 * with `logTarget`). `reduction: 'batchmean'` divides the sum by the batch size (PyTorch's advice).
 */
export function klDiv(input: Tensor, target: Tensor, o: { reduction?: Reduction | 'batchmean'; logTarget?: boolean } = {}): Tensor {
  const r = o.reduction ?? 'mean';
  if (r === 'batchmean') {
    const s = new Tensor(N.klDiv(idOf(input, 'input'), idOf(target, 'target'), REDUCTION.sum, !!o.logTarget));
    const out = s.div(input.size(0));
    s.dispose();
    return out;
  }
  return new Tensor(N.klDiv(idOf(input, 'input'), idOf(target, 'target'), reduction(r), !!o.logTarget));
}
/** Binary cross-entropy on logits. */
export function binaryCrossEntropyWithLogits(input: Tensor, target: Tensor, o: { weight?: Tensor | null; reduction?: Reduction } = {}): Tensor {
  return new Tensor(N.bceWithLogits(idOf(input, 'input'), idOf(target, 'target'), optId(o.weight, 'weight'), reduction(o.reduction ?? 'mean')));
}

export interface InterpolateOptions {
  size?: Pair;
  scaleFactor?: number | [number, number];
  mode?: 'nearest' | 'bilinear' | 'bicubic' | 'area';
  alignCorners?: boolean;
  /** low-pass filter when downsampling (bilinear/bicubic only), as PIL and torchvision's antialias=True */
  antialias?: boolean;
}
/** Resizes [N, C, H, W] images to `size` or by `scaleFactor`. */
export function interpolate(input: Tensor, o: InterpolateOptions): Tensor {
  need4d(input, 'interpolate');
  optionsObject(o, 'interpolate');
  if ((o.size === undefined) === (o.scaleFactor === undefined)) throw new KilnError('interpolate: give exactly one of size and scaleFactor', 'INVALID_ARGUMENT');
  const mode = o.mode ?? 'nearest';
  if (!['nearest', 'bilinear', 'bicubic', 'area'].includes(mode)) throw invalidParameterError('mode', "'nearest', 'bilinear', 'bicubic' or 'area'", mode);
  if (o.alignCorners !== undefined && (mode === 'nearest' || mode === 'area'))
    throw new KilnError(`interpolate: alignCorners only applies to bilinear/bicubic, not '${mode}'`, 'INVALID_ARGUMENT');
  if (o.antialias && mode !== 'bilinear' && mode !== 'bicubic') throw new KilnError(`interpolate: antialias only applies to bilinear/bicubic, not '${mode}'`, 'INVALID_ARGUMENT');
  let scale: number[] | null = null;
  if (o.scaleFactor !== undefined) {
    const sf = typeof o.scaleFactor === 'number' ? [o.scaleFactor, o.scaleFactor] : o.scaleFactor;
    if (!Array.isArray(sf) || sf.length !== 2 || !sf.every((v) => typeof v === 'number' && v > 0)) throw invalidParameterError('scaleFactor', 'a positive number or [h, w]', o.scaleFactor);
    scale = sf.map((v) => Math.round(v * 1e6));
  }
  return new Tensor(N.interpolate(input.id, o.size === undefined ? null : pair(o.size, 'size'), scale, mode, o.alignCorners === undefined ? -1 : o.alignCorners ? 1 : 0, !!o.antialias));
}

/** Options of `gridSample` (PyTorch's F.grid_sample). */
export interface GridSampleOptions {
  mode?: 'bilinear' | 'nearest' | 'bicubic';
  paddingMode?: 'zeros' | 'border' | 'reflection';
  /** default false, as PyTorch */
  alignCorners?: boolean;
}
/**
 * Samples `input` [N, C, H, W] at `grid` [N, Ho, Wo, 2] (x, y in −1..1) — differentiable in both,
 * so it also builds spatial transformer networks.
 */
export function gridSample(input: Tensor, grid: Tensor, o: GridSampleOptions = {}): Tensor {
  need4d(input, 'gridSample');
  idOf(grid, 'grid');
  const [n, , , two] = grid.shape;
  if (grid.ndim !== 4 || two !== 2 || n !== input.size(0))
    throw new KilnError(`gridSample: grid must be [N, Ho, Wo, 2] with N = ${input.size(0)}, got [${grid.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  const modes = ['bilinear', 'nearest', 'bicubic'], pads = ['zeros', 'border', 'reflection'];
  const m = modes.indexOf(o.mode ?? 'bilinear'), p = pads.indexOf(o.paddingMode ?? 'zeros');
  if (m < 0) throw invalidParameterError('mode', "'bilinear', 'nearest' or 'bicubic'", o.mode);
  if (p < 0) throw invalidParameterError('paddingMode', "'zeros', 'border' or 'reflection'", o.paddingMode);
  return new Tensor(N.gridSample(input.id, grid.id, m, p, !!o.alignCorners));
}
/** The sampling grid [N, H, W, 2] of affine maps `theta` [N, 2, 3] for an output of `size` [N, C, H, W] (F.affine_grid). */
export function affineGrid(theta: Tensor, size: number[], alignCorners = false): Tensor {
  idOf(theta, 'theta');
  if (theta.ndim !== 3 || theta.size(1) !== 2 || theta.size(2) !== 3) throw new KilnError(`affineGrid: theta must be [N, 2, 3], got [${theta.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (!Array.isArray(size) || size.length !== 4 || !size.every((v) => Number.isInteger(v) && v > 0) || size[0] !== theta.size(0))
    throw invalidParameterError('size', `[N, C, H, W] positive integers with N = ${theta.size(0)}`, size);
  return new Tensor(N.affineGrid(theta.id, size, alignCorners));
}
/** Pads the last dims: `pads` = [left, right, top, bottom, …] as in PyTorch. */
export function pad(input: Tensor, pads: number[], mode: 'constant' | 'reflect' | 'replicate' | 'circular' = 'constant', value = 0): Tensor {
  if (!Array.isArray(pads) || pads.length % 2 !== 0 || !pads.every(Number.isInteger)) throw invalidParameterError('pads', 'an even-length array of integers', pads);
  if (!['constant', 'reflect', 'replicate', 'circular'].includes(mode)) throw invalidParameterError('mode', "'constant', 'reflect', 'replicate' or 'circular'", mode);
  idOf(input, 'input');
  const shape = input.shape;
  if (pads.length / 2 > shape.length) throw new KilnError(`pad: ${pads.length} pads cover ${pads.length / 2} dims, the input has ${shape.length}`, 'INVALID_ARGUMENT');
  // libtorch's non-constant modes pad k = 1, 2 or 3 trailing dims of a (k+1)-D or (k+2)-D input (unbatched or batched)
  const k = pads.length / 2;
  if (mode !== 'constant' && !(k >= 1 && k <= 3 && (shape.length === k + 1 || shape.length === k + 2)))
    throw new KilnError(`pad: '${mode}' padding takes 2, 4 or 6 pads for a 2-/3-D, 3-/4-D or 4-/5-D input; this ${shape.length}-D input got ${pads.length}`, 'INVALID_ARGUMENT');
  for (let i = 0; i < pads.length / 2; i++) {
    const size = shape[shape.length - 1 - i];
    if (size + pads[2 * i] + pads[2 * i + 1] < 0)
      throw new KilnError(`pad: pads [${pads[2 * i]}, ${pads[2 * i + 1]}] would remove more than the ${size} elements of dim ${shape.length - 1 - i}`, 'INVALID_ARGUMENT');
  }
  return new Tensor(N.pad(input.id, pads, mode, value));
}
/** One-hot encoding of int64 class indices. */
export function oneHot(x: Tensor, numClasses = -1): Tensor {
  idOf(x, 'input');
  return x.oneHot(numClasses);
}
