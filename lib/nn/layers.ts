/** Built-in layers (PyTorch's names, options in camelCase, PyTorch's default initialisation). */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { empty, zeros, ones } from '../tensor/creation';
import { Module } from './module';
import * as F from './functional';
import { kaimingUniform_, uniform_, fans } from './init';

type Pair = number | [number, number];

function posInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw invalidParameterError(name, 'a positive integer', v);
  return v;
}
const pairOf = (v: Pair, name: string): [number, number] => F.pairOf(v, name, 0);
const posPairOf = (v: Pair, name: string): [number, number] => F.pairOf(v, name, 1);
function intOf(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidParameterError(name, 'an integer', v);
  return v;
}
/** Checks pooling options at construction (stride/dilation positive, padding non-negative). */
function checkPool(o: F.Pool2dOptions & { dilation?: Pair }): void {
  if (o === null || typeof o !== 'object') throw invalidParameterError('options', 'an options object', o);
  if (o.stride !== undefined) posPairOf(o.stride, 'stride');
  if (o.padding !== undefined) pairOf(o.padding, 'padding');
  if (o.dilation !== undefined) posPairOf(o.dilation, 'dilation');
}

/** PyTorch's default init for conv/linear: kaiming_uniform(a=√5) weights, U(±1/√fanIn) bias. */
function resetLinearLike(weight: Tensor, bias: Tensor | null): void {
  kaimingUniform_(weight, { a: Math.sqrt(5) });
  if (bias) {
    const [fanIn] = fans(weight);
    const b = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
    uniform_(bias, -b, b);
  }
}

export interface Conv2dOptions {
  stride?: Pair;
  /** a size, [h, w], 'same' or 'valid' */
  padding?: Pair | 'same' | 'valid';
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
  paddingMode?: 'zeros' | 'reflect' | 'replicate' | 'circular';
}
/** 2-D convolution layer: weight [out, in/groups, kH, kW], bias [out]. */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly options: {
    stride: [number, number]; padding: [number, number] | 'same' | 'valid'; dilation: [number, number]; groups: number;
    bias: boolean; paddingMode: 'zeros' | 'reflect' | 'replicate' | 'circular'; kernelSize: [number, number];
  };
  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: Pair, o: Conv2dOptions = {}) {
    super();
    F.optionsObject(o, 'Conv2d');
    posInt(inChannels, 'inChannels');
    posInt(outChannels, 'outChannels');
    const groups = posInt(o.groups ?? 1, 'groups');
    if (groups > inChannels) throw invalidParameterError('groups', `a positive integer dividing inChannels (${inChannels})`, groups);
    if (inChannels % groups || outChannels % groups) throw new KilnError(`Conv2d: inChannels (${inChannels}) and outChannels (${outChannels}) must be divisible by groups (${groups})`, 'INVALID_ARGUMENT');
    const k = posPairOf(kernelSize, 'kernelSize');
    const padding = o.padding === 'same' || o.padding === 'valid' ? o.padding : pairOf(o.padding ?? 0, 'padding');
    const paddingMode = o.paddingMode ?? 'zeros';
    if (!['zeros', 'reflect', 'replicate', 'circular'].includes(paddingMode)) throw invalidParameterError('paddingMode', "'zeros', 'reflect', 'replicate' or 'circular'", paddingMode);
    this.options = { stride: posPairOf(o.stride ?? 1, 'stride'), padding, dilation: posPairOf(o.dilation ?? 1, 'dilation'), groups, bias: o.bias ?? true, paddingMode, kernelSize: k };
    if (padding === 'same' && (this.options.stride[0] !== 1 || this.options.stride[1] !== 1)) throw new KilnError("Conv2d: padding 'same' needs stride 1", 'INVALID_ARGUMENT');
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels / groups, k[0], k[1]]))!;
    this.bias = this.registerParameter('bias', this.options.bias ? empty([outChannels]) : null);
    resetLinearLike(this.weight, this.bias);
  }
  forward(x: Tensor): Tensor {
    const o = this.options;
    if (o.paddingMode === 'zeros' || o.padding === 'valid') return F.conv2d(x, this.weight, this.bias, o);
    // Non-zero padding modes: pad explicitly, then convolve without padding (as PyTorch does).
    const [ph, pw] = o.padding === 'same'
      ? [o.dilation[0] * (o.kernelSize[0] - 1), o.dilation[1] * (o.kernelSize[1] - 1)].map((t) => [Math.floor(t / 2), t - Math.floor(t / 2)])
      : [[o.padding[0], o.padding[0]], [o.padding[1], o.padding[1]]];
    const padded = F.pad(x, [pw[0], pw[1], ph[0], ph[1]], o.paddingMode as 'reflect' | 'replicate' | 'circular');
    try {
      return F.conv2d(padded, this.weight, this.bias, { ...o, padding: 0 });
    } finally {
      padded.dispose();
    }
  }
  /** Each output element sums in/groups × kh × kw products. */
  protected override ownMultiplyAdds(output: Tensor): number {
    return output.numel * (this.weight.numel / this.weight.shape[0]);
  }
}

/** Fully connected layer: y = x Wᵀ + b, weight [out, in]. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, o: { bias?: boolean } = {}) {
    super();
    F.optionsObject(o, 'Linear');
    const bias = o.bias ?? true;
    posInt(inFeatures, 'inFeatures');
    posInt(outFeatures, 'outFeatures');
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures]))!;
    this.bias = this.registerParameter('bias', bias ? empty([outFeatures]) : null);
    resetLinearLike(this.weight, this.bias);
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
  /** Each output element sums in_features products. */
  protected override ownMultiplyAdds(output: Tensor): number {
    return output.numel * this.weight.shape[1];
  }
}

export interface BatchNormOptions {
  eps?: number;
  /** weight of each batch in the running statistics (default 0.1); null: their cumulative average, as PyTorch's momentum=None */
  momentum?: number | null;
  affine?: boolean;
  trackRunningStats?: boolean;
}
/** Batch normalisation over channels of [N, C, H, W] input. */
export class BatchNorm2d extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  readonly numBatchesTracked: Tensor | null;
  readonly eps: number;
  /** weight of each training batch in the running statistics; null: their cumulative average (set it to change) */
  momentum: number | null;
  constructor(readonly numFeatures: number, o: BatchNormOptions = {}) {
    super();
    posInt(numFeatures, 'numFeatures');
    this.eps = o.eps ?? 1e-5;
    this.momentum = o.momentum === undefined ? 0.1 : o.momentum;
    if (!(this.eps > 0)) throw invalidParameterError('eps', 'a positive number', o.eps);
    if (this.momentum !== null && !(this.momentum >= 0 && this.momentum <= 1)) throw invalidParameterError('momentum', 'a number in [0, 1] or null', o.momentum);
    const affine = o.affine ?? true, track = o.trackRunningStats ?? true;
    this.weight = this.registerParameter('weight', affine ? ones([numFeatures]) : null);
    this.bias = this.registerParameter('bias', affine ? zeros([numFeatures]) : null);
    this.runningMean = this.registerBuffer('running_mean', track ? zeros([numFeatures]) : null);
    this.runningVar = this.registerBuffer('running_var', track ? ones([numFeatures]) : null);
    this.numBatchesTracked = this.registerBuffer('num_batches_tracked', track ? zeros([], { dtype: 'int64' }) : null);
  }
  forward(x: Tensor): Tensor {
    if (x.ndim !== 4) throw new KilnError(`BatchNorm2d: expected [N, C, H, W] input, got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    if (x.size(1) !== this.numFeatures) throw new KilnError(`BatchNorm2d: expected ${this.numFeatures} channels, got ${x.size(1)}`, 'INVALID_ARGUMENT');
    const useBatchStats = this.training || !this.runningMean;
    if (this.training && this.numBatchesTracked) this.numBatchesTracked.add_(1);
    let momentum = this.momentum ?? 0;
    if (this.momentum === null && this.training && this.numBatchesTracked) momentum = 1 / this.numBatchesTracked.item(); // PyTorch's cumulative average
    if (typeof momentum !== 'number' || !(momentum >= 0 && momentum <= 1)) throw invalidParameterError('BatchNorm2d: momentum', 'a number in [0, 1] or null', this.momentum);
    return F.batchNorm(x, this.runningMean, this.runningVar, { weight: this.weight, bias: this.bias, training: useBatchStats, momentum, eps: this.eps });
  }
}

/** Randomly zeroes elements with probability p in training mode. */
export class Dropout extends Module {
  constructor(readonly p = 0.5) { super(); if (!(p >= 0 && p <= 1)) throw invalidParameterError('p', 'a probability in [0, 1]', p); }
  forward(x: Tensor): Tensor { return F.dropout(x, this.p, this.training); }
}
/** Randomly zeroes whole channels with probability p in training mode. */
export class Dropout2d extends Module {
  constructor(readonly p = 0.5) { super(); if (!(p >= 0 && p <= 1)) throw invalidParameterError('p', 'a probability in [0, 1]', p); }
  forward(x: Tensor): Tensor { return F.dropout2d(x, this.p, this.training); }
}
/** Max pooling layer. */
export class MaxPool2d extends Module {
  constructor(readonly kernelSize: Pair, readonly options: F.Pool2dOptions & { dilation?: Pair } = {}) { super(); posPairOf(kernelSize, 'kernelSize'); checkPool(options); }
  forward(x: Tensor): Tensor { return F.maxPool2d(x, this.kernelSize, this.options); }
}
/** Average pooling layer. */
export class AvgPool2d extends Module {
  constructor(readonly kernelSize: Pair, readonly options: F.Pool2dOptions & { countIncludePad?: boolean } = {}) { super(); posPairOf(kernelSize, 'kernelSize'); checkPool(options); }
  forward(x: Tensor): Tensor { return F.avgPool2d(x, this.kernelSize, this.options); }
}
/** Adaptive average pooling to a fixed output size. */
export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: Pair) { super(); pairOf(outputSize, 'outputSize'); }
  forward(x: Tensor): Tensor { return F.adaptiveAvgPool2d(x, this.outputSize); }
}
/** Adaptive max pooling to a fixed output size. */
export class AdaptiveMaxPool2d extends Module {
  constructor(readonly outputSize: Pair) { super(); pairOf(outputSize, 'outputSize'); }
  forward(x: Tensor): Tensor { return F.adaptiveMaxPool2d(x, this.outputSize); }
}
/** Flattens dims startDim..endDim (default: all but the batch dim). */
export class Flatten extends Module {
  constructor(readonly startDim = 1, readonly endDim = -1) { super(); intOf(startDim, 'startDim'); intOf(endDim, 'endDim'); }
  forward(x: Tensor): Tensor { return x.flatten(this.startDim, this.endDim); }
}
export class ReLU extends Module { forward(x: Tensor): Tensor { return x.relu(); } }
/** min(max(x, 0), 6) (MobileNet's activation). */
export class ReLU6 extends Module { forward(x: Tensor): Tensor { return x.clamp(0, 6); } }
export class LeakyReLU extends Module {
  constructor(readonly negativeSlope = 0.01) { super(); if (typeof negativeSlope !== 'number' || Number.isNaN(negativeSlope)) throw invalidParameterError('negativeSlope', 'a number', negativeSlope); }
  forward(x: Tensor): Tensor { return x.leakyRelu(this.negativeSlope); }
}
export class GELU extends Module {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') { super(); if (approximate !== 'none' && approximate !== 'tanh') throw invalidParameterError('approximate', "'none' or 'tanh'", approximate); }
  forward(x: Tensor): Tensor { return x.gelu(this.approximate); }
}
export class SiLU extends Module { forward(x: Tensor): Tensor { return x.silu(); } }
/** x · relu6(x + 3) / 6 (MobileNetV3's activation). */
export class Hardswish extends Module { forward(x: Tensor): Tensor { return x.hardswish(); } }
/** relu6(x + 3) / 6 (MobileNetV3's squeeze-excitation gate). */
export class Hardsigmoid extends Module { forward(x: Tensor): Tensor { return x.hardsigmoid(); } }
export class Tanh extends Module { forward(x: Tensor): Tensor { return x.tanh(); } }
export class Sigmoid extends Module { forward(x: Tensor): Tensor { return x.sigmoid(); } }
export class Softmax extends Module {
  constructor(readonly dim = -1) { super(); intOf(dim, 'dim'); }
  forward(x: Tensor): Tensor { return x.softmax(this.dim); }
}
/** Returns its input unchanged (as a new handle, a view of the same memory). */
export class Identity extends Module { forward(x: Tensor): Tensor { return x.view(x.shape); } }
/** Multiplies by a constant (e.g. airbench's scaled classifier head). */
export class Mul extends Module {
  constructor(readonly scale: number) { super(); if (typeof scale !== 'number') throw invalidParameterError('scale', 'a number', scale); }
  forward(x: Tensor): Tensor { return x.mul(this.scale); }
}

export interface LayerNormOptions {
  /** added to the variance (default 1e-5) */
  eps?: number;
  /** learn a per-element scale and shift (weight, bias; default true) */
  elementwiseAffine?: boolean;
}
/** Layer normalisation over the last dims (`normalizedShape`), as torch.nn.LayerNorm: weight and bias of that shape. */
export class LayerNorm extends Module {
  readonly normalizedShape: number[];
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly eps: number;
  constructor(normalizedShape: number | number[], o: LayerNormOptions = {}) {
    super();
    const shape = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
    if (!Array.isArray(shape) || shape.length === 0) throw invalidParameterError('normalizedShape', 'a positive integer or a non-empty array of them', normalizedShape);
    shape.forEach((d, i) => posInt(d, `normalizedShape[${i}]`));
    this.normalizedShape = [...shape];
    this.eps = o.eps ?? 1e-5;
    if (typeof this.eps !== 'number' || !(this.eps > 0)) throw invalidParameterError('eps', 'a positive number', o.eps);
    const affine = o.elementwiseAffine ?? true;
    this.weight = this.registerParameter('weight', affine ? ones(this.normalizedShape) : null);
    this.bias = this.registerParameter('bias', affine ? zeros(this.normalizedShape) : null);
  }
  forward(x: Tensor): Tensor {
    const k = this.normalizedShape.length;
    if (x.ndim < k || x.shape.slice(-k).some((d, i) => d !== this.normalizedShape[i]))
      throw new KilnError(`LayerNorm: expected input ending in [${this.normalizedShape.join(', ')}], got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    return F.layerNorm(x, this.normalizedShape, { weight: this.weight, bias: this.bias, eps: this.eps });
  }
}
/** Layer normalisation over the channels of [N, C, H, W] at each position (torchvision's LayerNorm2d, as ConvNeXt uses it). */
export class LayerNorm2d extends LayerNorm {
  constructor(readonly numChannels: number, o: LayerNormOptions = {}) {
    super(numChannels, o);
  }
  override forward(x: Tensor): Tensor {
    if (x.ndim !== 4 || x.size(1) !== this.numChannels)
      throw new KilnError(`LayerNorm2d: expected [N, ${this.numChannels}, H, W] input, got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    const last = x.permute(0, 2, 3, 1);
    try {
      const y = F.layerNorm(last, this.normalizedShape, { weight: this.weight, bias: this.bias, eps: this.eps });
      try {
        return y.permute(0, 3, 1, 2);
      } finally {
        y.dispose();
      }
    } finally {
      last.dispose();
    }
  }
}
/** Reorders the dims of its input (torchvision.ops.Permute), e.g. [0, 2, 3, 1] for channels-last features. */
export class Permute extends Module {
  readonly dims: number[];
  constructor(dims: number[]) {
    super();
    if (!Array.isArray(dims) || dims.length === 0 || [...dims].sort((a, b) => a - b).some((d, i) => d !== i))
      throw invalidParameterError('dims', 'a permutation of 0 … n−1', dims);
    this.dims = [...dims];
  }
  forward(x: Tensor): Tensor {
    if (x.ndim !== this.dims.length) throw new KilnError(`Permute: expected a ${this.dims.length}-d input, got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    return x.permute(...this.dims);
  }
}
